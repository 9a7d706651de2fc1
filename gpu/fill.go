package gpu

import (
	_ "embed"
	"fmt"
	"math/bits"
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

// GatherRowBytes is the bytes EnqueueGatherRows reads: the K and V rows
// of k positions in each of the shape's lists for sel, and their indices.
func GatherRowBytes(sh Shape, sel Selection, k int) int64 {
	return int64(sh.Batch*sh.Lists(sel)) * int64(k) * (4*int64(sh.HeadDim) + 4)
}

// EnqueueGatherRows reads, on stream s, the K and V rows (16-bit, [Batch]
// [KVHeads][Context][HeadDim]) of the index lists idx (int32, [Batch]
// [Lists(sel)][k]) as the gather decode does, and nothing else (16-byte
// loads, eight rows in flight per thread): what reading those random rows
// alone costs, beside the gather. It is a plain reader, not a ceiling. The
// xor of every 32-bit word read is xor-ed into the uint32 at out (zero it
// for a checksum).
func (c *Ctx) EnqueueGatherRows(s Stream, sh Shape, sel Selection, k int, kb, vb, idx, out Buffer) error {
	if err := sh.Validate(); err != nil {
		return err
	}
	if sel == Dense || k < 1 || k > sh.Context {
		return fmt.Errorf("gather rows: %v lists of %d positions in %d", sel, k, sh.Context)
	}
	lists := sh.Batch * sh.Lists(sel)
	if int64(lists)*int64(k)*2 >= 1<<32 {
		return fmt.Errorf("gather rows: %d lists of %d rows is too many", lists, k)
	}
	chunks := sh.HeadDim * 2 / 16 // 16-byte chunks per row, a power of two dividing a warp
	if sh.HeadDim%8 != 0 || chunks < 1 || chunks > 32 || chunks&(chunks-1) != 0 {
		return fmt.Errorf("gather rows: head dim %d is not 8 times a power of two up to 128", sh.HeadDim)
	}
	lc := bits.TrailingZeros(uint(chunks))
	f, err := c.utilFunc("gather_rows")
	if err != nil {
		return err
	}
	grid := Dim3{X: uint32(c.d.Props.SMs * 8)}
	return c.Launch(f, grid, Dim3{X: 256}, 0, s, kb, vb, idx, lists, sh.Lists(sel), sh.KVHeads, k, sh.Context, lc, out)
}
