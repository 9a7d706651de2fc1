package gpu

import (
	_ "embed"
	"fmt"
	"strconv"

	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/tensor"
)

//go:embed kernels/lsh.cu
var lshSrc string

// lshThreads is the block size of lsh.cu's kernels (LSH_THREADS).
const lshThreads = 256

// lshQCThreads is lsh_query_codes' block size (QC_THREADS: four warps,
// one per partial sum of tensor.Dot32).
const lshQCThreads = 128

// lshKeysPerBlock is lsh_key_codes' keys per block (KEYS_PER_BLOCK).
const lshKeysPerBlock = 32

// LSHDefines returns the lsh module's defines for a shape, code bits and
// MIPS.
func LSHDefines(s Shape, bits int, mips bool) map[string]string {
	bf, m, in := "1", "0", s.HeadDim
	if s.DType == FP16 {
		bf = "0"
	}
	if mips {
		m, in = "1", s.HeadDim+1
	}
	return map[string]string{
		"HEAD_DIM": strconv.Itoa(s.HeadDim), "IN": strconv.Itoa(in), "MIPS": m, "WORDS": strconv.Itoa(lshWords(bits)),
		"GROUP": strconv.Itoa(s.Heads / s.KVHeads), "DTYPE_BF16": bf,
	}
}

// lshWords is the number of 32-bit words of a code of bits bits.
func lshWords(bits int) int { return (bits + 31) / 32 }

// LSHStep is LSH's decode step on the GPU (methods.LSH, SimHash): key
// codes sign(R·k) per KV head at prefill (with MIPS on the lifted keys
// [k, sqrt(M² − |k|²)]), per step the query codes sign(R·q), then the
// counting select of HashStep on the Hamming scores (summed over the
// group for PerKVHead) and the sparse decode. The planes R are the CPU
// method's (methods.LSH.Planes), and every code bit is computed in
// tensor.Dot32's order without FMA contraction, so the codes equal the
// CPU's bit for bit (where Go itself does not contract: amd64) and the
// lists equal methods.LSH's. Bits that are not a multiple of 32 are
// padded with zero planes: the padding bits match in every code, adding
// the same constant to every score, so the ranking is unchanged.
type LSHStep struct {
	Shape  Shape
	Sel    Selection
	Bits   int
	MIPS   bool
	Budget budget.Budget
	// In is the plane width (HeadDim, or HeadDim+1 with MIPS); Words the
	// 32-bit words per code.
	In, Words int
	// P holds the planes [KVHeads][In][Words*32] (fp32, transposed, zero
	// padded); KC the key codes [Batch][KVHeads][Context][Words]; M2 the
	// largest |k|² per (batch, KV head) (float64, MIPS only).
	P, KC, M2           Buffer
	norms, keyc, qcodes *Func
	// Hash is the counting select and the sparse decode (its QC holds the
	// query codes, its Idx the lists, its Dec the decoder).
	Hash *HashStep
}

// NewLSHStep compiles the kernels and allocates the step's buffers. The
// budget must be resolved for s.Context keys.
func NewLSHStep(c *Ctx, s Shape, sel Selection, bits int, mips bool, b budget.Budget) (*LSHStep, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if bits < 1 {
		return nil, fmt.Errorf("lsh step: bits %d must be >= 1", bits)
	}
	words := lshWords(bits)
	h, err := NewHashStep(c, s, sel, 32*words, s.KVHeads, b)
	if err != nil {
		return nil, fmt.Errorf("lsh step: %w", err)
	}
	l := &LSHStep{Shape: s, Sel: sel, Bits: bits, MIPS: mips, Budget: b, In: s.HeadDim, Words: words, Hash: h}
	if mips {
		l.In++
	}
	mod, err := c.module("lsh.cu", lshSrc, LSHDefines(s, bits, mips))
	if err != nil {
		l.Free(c)
		return nil, err
	}
	for _, f := range []struct {
		p    **Func
		name string
	}{{&l.norms, "lsh_max_norm"}, {&l.keyc, "lsh_key_codes"}, {&l.qcodes, "lsh_query_codes"}} {
		if *f.p, err = c.Func(mod, f.name); err != nil {
			l.Free(c)
			return nil, err
		}
	}
	for _, a := range []struct {
		b *Buffer
		n int64
	}{
		{&l.P, int64(s.KVHeads) * int64(l.In) * int64(32*words) * 4},
		{&l.KC, h.KeyCodeBytes()},
		{&l.M2, int64(s.Batch*s.KVHeads) * 8},
	} {
		if *a.b, err = c.Alloc(a.n); err != nil {
			l.Free(c)
			return nil, err
		}
	}
	return l, nil
}

// PackLSHPlanes lays out the planes of each KV head ([bits][in] each, as
// methods.LSH.Planes) for the kernels: transposed to [in][words*32],
// zero padded, KV heads one after another.
func PackLSHPlanes(planes []*tensor.Mat, in, bits int) ([]float32, error) {
	pb := 32 * lshWords(bits)
	out := make([]float32, len(planes)*in*pb)
	for h, m := range planes {
		if m.Rows != bits || m.Cols != in {
			return nil, fmt.Errorf("gpu: lsh planes of KV head %d are [%d][%d], want [%d][%d]", h, m.Rows, m.Cols, bits, in)
		}
		o := out[h*in*pb : (h+1)*in*pb]
		for p := 0; p < bits; p++ {
			for c, x := range m.Row(p) {
				o[c*pb+p] = x
			}
		}
	}
	return out, nil
}

// SetPlanes uploads the planes of every KV head ([KVHeads] of [Bits][In],
// as methods.LSH.Planes; shared by the batch).
func (l *LSHStep) SetPlanes(c *Ctx, planes []*tensor.Mat) error {
	if len(planes) != l.Shape.KVHeads {
		return fmt.Errorf("lsh step: %d plane sets for %d KV heads", len(planes), l.Shape.KVHeads)
	}
	p, err := PackLSHPlanes(planes, l.In, l.Bits)
	if err != nil {
		return err
	}
	return CopyTo(c, l.P, p)
}

// EnqueueKeyCodes computes the key codes l.KC of k with the planes in
// l.P (prefill; not part of the step).
func (l *LSHStep) EnqueueKeyCodes(c *Ctx, s Stream, k Buffer) error {
	sh := l.Shape
	if l.MIPS {
		if err := c.Fill32(l.M2, 0, s); err != nil {
			return err
		}
		grid := Dim3{uint32((sh.Context + lshThreads - 1) / lshThreads), uint32(sh.KVHeads), uint32(sh.Batch)}
		if err := c.Launch(l.norms, grid, Dim3{X: lshThreads}, 0, s, k, sh.Context, sh.KVHeads, l.M2); err != nil {
			return err
		}
	}
	grid := Dim3{uint32((sh.Context + lshKeysPerBlock - 1) / lshKeysPerBlock), uint32(sh.KVHeads), uint32(sh.Batch)}
	return c.Launch(l.keyc, grid, Dim3{X: lshThreads}, 0, s, k, l.P, sh.Context, sh.KVHeads, l.M2, l.KC)
}

// EnqueueQueryCodes writes the query codes of q ([Batch][Heads][HeadDim]
// fp32) to l.Hash.QC.
func (l *LSHStep) EnqueueQueryCodes(c *Ctx, s Stream, q Buffer) error {
	sh := l.Shape
	return c.Launch(l.qcodes, Dim3{uint32(l.Words), uint32(sh.Heads), uint32(sh.Batch)}, Dim3{X: lshQCThreads}, 0, s, q, l.P, sh.Heads, l.Hash.QC)
}

// EnqueueSelect computes the query codes of q and selects into l.Hash.Idx.
func (l *LSHStep) EnqueueSelect(c *Ctx, s Stream, q Buffer) error {
	if err := l.EnqueueQueryCodes(c, s, q); err != nil {
		return err
	}
	return l.Hash.EnqueueSelectCodes(c, s, l.KC)
}

// Enqueue runs the whole step (the key codes must be built): select,
// then the sparse decode into l.Hash.Dec.Out.
func (l *LSHStep) Enqueue(c *Ctx, s Stream, in DecodeInputs) error {
	if err := l.EnqueueSelect(c, s, in.Q); err != nil {
		return err
	}
	in.Idx = l.Hash.Idx
	return l.Hash.Dec.Enqueue(c, s, in)
}

// PlaneBytes is the size of the planes.
func (l *LSHStep) PlaneBytes() int64 { return l.P.Size }

// SelectBytes is the byte floor of the select alone: the planes and the
// key codes once.
func (l *LSHStep) SelectBytes() int64 { return l.PlaneBytes() + l.KC.Size }

// StepBytes is the byte floor of one step: the select's bytes, the K/V
// rows of the lists, the lists, q and the output.
func (l *LSHStep) StepBytes() int64 {
	return l.SelectBytes() + l.Shape.DecodeBytes(l.Sel, l.Budget.Total)
}

// Free releases the step's buffers.
func (l *LSHStep) Free(c *Ctx) {
	for _, b := range []Buffer{l.P, l.KC, l.M2} {
		if b.Ptr != 0 {
			c.Free(b)
		}
	}
	if l.Hash != nil {
		l.Hash.Free(c)
	}
}
