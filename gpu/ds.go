package gpu

import (
	_ "embed"
	"fmt"
	"strconv"

	"github.com/hbench/hbench/budget"
)

//go:embed kernels/ds.cu
var dsSrc string

// dsThreads is the block size of ds.cu's kernels (DS_THREADS).
const dsThreads = 256

// DSDefines returns the ds module's defines for a shape, selection, label
// channels r and label bits (16: unquantised).
func DSDefines(s Shape, sel Selection, r, bits int) map[string]string {
	bf, shared := "1", "0"
	if s.DType == FP16 {
		bf = "0"
	}
	if sel == PerKVHead {
		shared = "1"
	}
	return map[string]string{
		"HEAD_DIM": strconv.Itoa(s.HeadDim), "R": strconv.Itoa(r), "QBITS": strconv.Itoa(bits),
		"GROUP": strconv.Itoa(s.Heads / s.KVHeads), "SHARED": shared, "DTYPE_BF16": bf,
	}
}

// DSStep is Double Sparsity's decode step on the GPU
// (methods.DoubleSparsity): the label cache (the R calibrated channels of
// K per KV head; with Bits < 16 each key's labels quantised on its own
// min-max grid) built at prefill; per step the label scores q[ch]·label of
// every key (PerKVHead: summed over the group in head order, as
// Options.Shared), the radix top-k with the CPU tie-break, then the sparse
// decode. Scores are computed in tensor.Dot32's order without FMA
// contraction, so they equal the CPU's and the lists equal
// methods.DoubleSparsity's exactly (where Go does not contract: amd64).
type DSStep struct {
	Shape  Shape
	Sel    Selection
	Budget budget.Budget
	// R is the label channels per KV head; Bits the bits per label (16:
	// the K dtype; below 16 the labels are stored as their exact float32
	// quantised values).
	R, Bits int
	// SBlocks is the scoring blocks per (batch, KV head).
	SBlocks int
	// CH holds the channels [KVHeads][R] (int32, shared by the batch); LB
	// the labels [Batch][KVHeads][Context][R]; S the list scores
	// [Batch][Lists][Context] (fp32).
	CH, LB, S      Buffer
	labels, scores *Func
	*RadixTopK
	// Dec is the sparse decode over Idx.
	Dec *Decoder
}

// NewDSStep compiles the kernels and allocates the step's buffers. The
// budget must be resolved for s.Context keys.
func NewDSStep(c *Ctx, s Shape, sel Selection, r, bits int, b budget.Budget) (*DSStep, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if sel != PerKVHead && sel != PerHead {
		return nil, fmt.Errorf("doublesparsity step: selection must be per-kv-head or per-head, got %v", sel)
	}
	if r < 1 || r > s.HeadDim {
		return nil, fmt.Errorf("doublesparsity step: channels %d must be in 1..%d", r, s.HeadDim)
	}
	if bits < 1 || bits > 16 {
		return nil, fmt.Errorf("doublesparsity step: bits %d must be in 1..16", bits)
	}
	if err := checkBudget(s, b); err != nil {
		return nil, fmt.Errorf("doublesparsity step: %w", err)
	}
	om, err := c.module("oracle.cu", oracleSrc, OracleDefines(s, sel))
	if err != nil {
		return nil, err
	}
	mod, err := c.module("ds.cu", dsSrc, DSDefines(s, sel, r, bits))
	if err != nil {
		return nil, err
	}
	d := &DSStep{Shape: s, Sel: sel, Budget: b, R: r, Bits: bits}
	if d.labels, err = c.Func(mod, "ds_labels"); err != nil {
		return nil, err
	}
	if d.scores, err = c.Func(mod, "ds_scores"); err != nil {
		return nil, err
	}
	kvl := s.Batch * s.KVHeads
	d.SBlocks = max(1, min((s.Context+dsThreads-1)/dsThreads, c.d.Props.SMs*8/kvl))
	lb := int64(2)
	if bits < 16 {
		lb = 4
	}
	for _, a := range []struct {
		b *Buffer
		n int64
	}{
		{&d.CH, int64(s.KVHeads*r) * 4},
		{&d.LB, int64(kvl) * int64(s.Context) * int64(r) * lb},
		{&d.S, int64(s.Batch*s.Lists(sel)) * int64(s.Context) * 4},
	} {
		if *a.b, err = c.Alloc(a.n); err != nil {
			d.Free(c)
			return nil, err
		}
	}
	if d.RadixTopK, err = newRadixTopK(c, om, s, sel, b, 1); err != nil {
		d.Free(c)
		return nil, err
	}
	if d.Dec, err = NewDecoder(c, s, sel, b.Total); err != nil {
		d.Free(c)
		return nil, err
	}
	return d, nil
}

// SetChannels uploads the channels of every KV head ([KVHeads] lists of R
// channels in [0, HeadDim); shared by the batch).
func (d *DSStep) SetChannels(c *Ctx, ch [][]int) error {
	if len(ch) != d.Shape.KVHeads {
		return fmt.Errorf("doublesparsity step: %d channel sets for %d KV heads", len(ch), d.Shape.KVHeads)
	}
	flat := make([]int32, 0, d.Shape.KVHeads*d.R)
	for h, cs := range ch {
		if len(cs) != d.R {
			return fmt.Errorf("doublesparsity step: KV head %d has %d channels, want %d", h, len(cs), d.R)
		}
		for _, x := range cs {
			if x < 0 || x >= d.Shape.HeadDim {
				return fmt.Errorf("doublesparsity step: KV head %d: channel %d not in [0, %d)", h, x, d.Shape.HeadDim)
			}
			flat = append(flat, int32(x))
		}
	}
	return CopyTo(c, d.CH, flat)
}

// EnqueueLabels builds the label cache d.LB from k with the channels in
// d.CH (prefill; not part of the step).
func (d *DSStep) EnqueueLabels(c *Ctx, s Stream, k Buffer) error {
	sh := d.Shape
	grid := Dim3{uint32((sh.Context + dsThreads - 1) / dsThreads), uint32(sh.KVHeads), uint32(sh.Batch)}
	return c.Launch(d.labels, grid, Dim3{X: dsThreads}, 0, s, k, d.CH, sh.Context, sh.KVHeads, d.LB)
}

// EnqueueScores writes the list scores d.S of q ([Batch][Heads][HeadDim]
// fp32).
func (d *DSStep) EnqueueScores(c *Ctx, s Stream, q Buffer) error {
	sh := d.Shape
	grid := Dim3{uint32(d.SBlocks), uint32(sh.KVHeads), uint32(sh.Batch)}
	return c.Launch(d.scores, grid, Dim3{X: dsThreads}, 0, s, q, d.LB, d.CH, sh.Context, sh.KVHeads, d.S)
}

// EnqueueSelect scores and selects: the lists land in d.Idx.
func (d *DSStep) EnqueueSelect(c *Ctx, s Stream, q Buffer) error {
	if err := d.EnqueueScores(c, s, q); err != nil {
		return err
	}
	return d.EnqueueTopKOf(c, s, d.S, d.Shape.Context)
}

// Enqueue runs the whole step (the labels must be built): select, then
// the sparse decode into d.Dec.Out.
func (d *DSStep) Enqueue(c *Ctx, s Stream, in DecodeInputs) error {
	if err := d.EnqueueSelect(c, s, in.Q); err != nil {
		return err
	}
	in.Idx = d.Idx
	return d.Dec.Enqueue(c, s, in)
}

// LabelBytes is the size of the label cache.
func (d *DSStep) LabelBytes() int64 { return d.LB.Size }

// SelectBytes is the byte floor of the select alone: the labels read and
// the list scores written once, then read once by the top-k.
func (d *DSStep) SelectBytes() int64 { return d.LabelBytes() + 2*d.S.Size }

// StepBytes is the byte floor of one step: the select's bytes, the K/V
// rows of the lists, the lists, q and the output.
func (d *DSStep) StepBytes() int64 {
	return d.SelectBytes() + d.Shape.DecodeBytes(d.Sel, d.Budget.Total)
}

// Free releases the step's buffers.
func (d *DSStep) Free(c *Ctx) {
	for _, b := range []Buffer{d.CH, d.LB, d.S} {
		if b.Ptr != 0 {
			c.Free(b)
		}
	}
	if d.RadixTopK != nil {
		d.RadixTopK.free(c)
	}
	if d.Dec != nil {
		d.Dec.Free(c)
	}
}
