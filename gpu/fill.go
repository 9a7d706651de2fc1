package gpu

import (
	_ "embed"
	"fmt"
)

//go:embed kernels/util.cu
var utilSrc string

func (c *Ctx) utilFunc(name string) (*Func, error) {
	m, err := c.module("util.cu", utilSrc, nil)
	if err != nil {
		return nil, err
	}
	return c.Func(m, name)
}

func fillGrid(n int64) Dim3 {
	return Dim3{X: uint32(min(max((n+255)/256, 1), 4096))}
}

// FillF32 fills b with random non-zero float32 values in [-2, 2).
func (c *Ctx) FillF32(b Buffer, seed uint64) error {
	f, err := c.utilFunc("fill_f32")
	if err != nil {
		return err
	}
	n := b.Size / 4
	return c.Launch(f, fillGrid(n), Dim3{X: 256}, 0, 0, b, n, int64(seed))
}

// Fill16 fills b with random non-zero bf16 or fp16 values in [-2, 2).
func (c *Ctx) Fill16(b Buffer, dtype string, seed uint64) error {
	f, err := c.utilFunc("fill_16")
	if err != nil {
		return err
	}
	bf := int32(1)
	if dtype == FP16 {
		bf = 0
	}
	n := b.Size / 2
	return c.Launch(f, fillGrid(n), Dim3{X: 256}, 0, 0, b, n, int64(seed), bf)
}

// FillStrideLists fills b with lists int32 index lists of k positions in
// [0, N): entry j of each list is a random position in [j*N/k,
// (j+1)*N/k), so lists are distinct and in position order.
func (c *Ctx) FillStrideLists(b Buffer, lists, k, n int, seed uint64) error {
	if k < 1 || k > n {
		return fmt.Errorf("gpu: list length %d not in [1, %d]", k, n)
	}
	if b.Size < int64(lists)*int64(k)*4 {
		return fmt.Errorf("gpu: buffer of %d bytes too small for %d lists of %d", b.Size, lists, k)
	}
	f, err := c.utilFunc("fill_stride_lists")
	if err != nil {
		return err
	}
	return c.Launch(f, fillGrid(int64(lists)*int64(k)), Dim3{X: 256}, 0, 0, b, lists, k, n, int64(seed))
}

// FillU32 fills b with uniformly random 32-bit words.
func (c *Ctx) FillU32(b Buffer, seed uint64) error {
	f, err := c.utilFunc("fill_u32")
	if err != nil {
		return err
	}
	n := b.Size / 4
	return c.Launch(f, fillGrid(n), Dim3{X: 256}, 0, 0, b, n, int64(seed))
}

// EnqueueNoop launches an empty kernel of one 32-thread block on s (the
// fixed per-call cost of the timing protocol).
func (c *Ctx) EnqueueNoop(s Stream) error {
	f, err := c.utilFunc("noop")
	if err != nil {
		return err
	}
	return c.Launch(f, Dim3{X: 1}, Dim3{X: 32}, 0, s)
}
