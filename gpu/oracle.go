package gpu

import (
	_ "embed"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/hbench/hbench/budget"
)

//go:embed kernels/oracle.cu
var oracleSrc string

// oracleThreads is the block size of every kernel of oracle.cu (OT).
const oracleThreads = 256

// OracleDefines returns the oracle module's defines for a shape and
// selection (PerKVHead: lists on the group's summed softmax
// probabilities; PerHead: on the raw scores).
func OracleDefines(s Shape, sel Selection) map[string]string {
	bf, shared := "1", "0"
	if s.DType == FP16 {
		bf = "0"
	}
	if sel == PerKVHead {
		shared = "1"
	}
	return map[string]string{
		"HEAD_DIM": strconv.Itoa(s.HeadDim), "GROUP": strconv.Itoa(s.Heads / s.KVHeads),
		"SHARED": shared, "DTYPE_BF16": bf, "TUNR": strconv.Itoa(topk.Unroll),
	}
}

// TopKTuning are the radix top-k's launch parameters.
type TopKTuning struct {
	// BlocksPerSM is the blocks per SM the lists of one call aim at
	// (each list gets SMs*BlocksPerSM/lists blocks, within the chunk limits).
	BlocksPerSM int
	// Unroll is the items per thread per step of the histogram passes.
	Unroll int
}

// topk is the tuning in force, from HBENCH_TOPK (see ParseTopKTuning).
var topk = func() TopKTuning {
	t, err := ParseTopKTuning(os.Getenv("HBENCH_TOPK"))
	if err != nil {
		panic(err)
	}
	return t
}()

// ParseTopKTuning returns the default top-k tuning (4 blocks per SM,
// unroll 4) overridden by env ("bps=8,unr=8"), for A/B timings.
func ParseTopKTuning(env string) (TopKTuning, error) {
	t := TopKTuning{BlocksPerSM: 4, Unroll: 4}
	if env == "" {
		return t, nil
	}
	for _, kv := range strings.Split(env, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n < 1 || n > 64 {
			return t, fmt.Errorf("HBENCH_TOPK: %q is not key=integer in 1..64", kv)
		}
		switch k {
		case "bps":
			t.BlocksPerSM = n
		case "unr":
			t.Unroll = n
		default:
			return t, fmt.Errorf("HBENCH_TOPK: unknown key %q (bps, unr)", k)
		}
	}
	return t, nil
}

// ChunkPlan splits n items into at most want blocks of at least minChunk
// items (rounded up to a multiple of align); it returns the blocks (>= 1)
// and the items per block. The kernels' launch plans use it, and so do
// callers that split work over blocks the same way (gpueval).
func ChunkPlan(n, want, minChunk, align int) (blocks, chunk int) {
	n = max(n, 1)
	blocks = max(1, min(want, (n+minChunk-1)/minChunk))
	chunk = (n + blocks - 1) / blocks
	chunk = (chunk + align - 1) / align * align
	return (n + chunk - 1) / chunk, chunk
}

// OracleStep is the oracle's decode step on the GPU: exact scores q·k of
// every key, a radix top-k of each list's scores (sink + local + top-k
// with the CPU tie-break), then the sparse decode over the lists. With
// PerKVHead the list of a KV head ranks keys by the summed softmax
// probabilities of its query heads (methods.Oracle with Options.Shared);
// with PerHead each query head ranks by its raw score.
type OracleStep struct {
	Shape  Shape
	Sel    Selection
	Budget budget.Budget
	// SBlocks and SChunk split the N keys of each KV head for scoring.
	SBlocks, SChunk int
	// L holds the raw scores [Batch][Heads][Context] (fp32); S the list
	// scores [Batch][Lists][Context] the top-k ranks (L itself for
	// PerHead).
	L, S   Buffer
	part   Buffer
	scores *Func
	probs  *Func
	*RadixTopK
	// Dec is the sparse decode over Idx.
	Dec *Decoder
}

// RadixTopK selects sink + local + the top-k of each list's float
// scores over the middle range (the CPU tie-break: higher score, then
// lower position) into Idx. With Div > 1 a score covers Div consecutive
// positions (Quest's pages) and is ranked once, weighted by its
// positions in the middle range.
type RadixTopK struct {
	Shape  Shape
	Sel    Selection
	Budget budget.Budget
	Div    int
	// Blocks and Chunk split each list's items (positions, or pages that
	// meet the middle range).
	Blocks, Chunk int
	// Idx holds the lists [Batch][Lists][Budget.Total] (int32).
	Idx                 Buffer
	st, ghist, cnt, bas Buffer
	pass, count, compct *Func
}

// newRadixTopK allocates the top-k's buffers; mod is a loaded oracle.cu.
func newRadixTopK(c *Ctx, mod *Module, s Shape, sel Selection, b budget.Budget, div int) (*RadixTopK, error) {
	t := &RadixTopK{Shape: s, Sel: sel, Budget: b, Div: div}
	var err error
	for _, f := range []struct {
		p    **Func
		name string
	}{{&t.pass, "topk_pass"}, {&t.count, "topk_count"}, {&t.compct, "topk_compact"}} {
		if *f.p, err = c.Func(mod, f.name); err != nil {
			return nil, err
		}
	}
	lists := s.Batch * s.Lists(sel)
	t.Blocks, t.Chunk = ChunkPlan(t.Items(), max(1, c.d.Props.SMs*topk.BlocksPerSM/lists), 4*oracleThreads, oracleThreads)
	for _, a := range []struct {
		b *Buffer
		n int64
	}{
		{&t.Idx, int64(lists) * int64(b.Total) * 4},
		{&t.st, int64(lists) * 2 * 4},
		{&t.ghist, int64(lists) * 256 * 4},
		{&t.cnt, int64(lists) * 4},
		{&t.bas, int64(lists) * int64(t.Blocks) * 2 * 4},
	} {
		if *a.b, err = c.Alloc(a.n); err != nil {
			t.free(c)
			return nil, err
		}
	}
	// The passes leave the histograms and tickets at zero; they start so.
	for _, z := range []Buffer{t.ghist, t.cnt, t.st} {
		if err := c.Fill32(z, 0, 0); err != nil {
			t.free(c)
			return nil, err
		}
	}
	if err := c.Sync(); err != nil {
		t.free(c)
		return nil, err
	}
	return t, nil
}

// Items is the number of ranked items of a list: the positions of the
// middle range, or the pages of Div positions that meet it.
func (t *RadixTopK) Items() int {
	lo, hi := t.Budget.MiddleRange()
	if hi <= lo {
		return 0
	}
	return (hi-1)/t.Div + 1 - lo/t.Div
}

// EnqueueTopKOf selects from scores S into t.Idx: the score of item i
// (positions [i*Div, (i+1)*Div)) of list l is S[l*stride + i]. Four
// radix passes, the per-block weights and the ordered compaction.
func (t *RadixTopK) EnqueueTopKOf(c *Ctx, s Stream, S Buffer, stride int) error {
	div := t.Div
	sh := t.Shape
	b := t.Budget
	lo, hi := b.MiddleRange()
	grid := Dim3{uint32(t.Blocks), uint32(sh.Lists(t.Sel)), uint32(sh.Batch)}
	blk := Dim3{X: oracleThreads}
	if b.Heavy > 0 {
		for p := 0; p < 4; p++ {
			if err := c.Launch(t.pass, grid, blk, 0, s, S, div, stride, lo, hi, t.Chunk, b.Heavy, p, t.st, t.ghist, t.cnt); err != nil {
				return err
			}
		}
		if err := c.Launch(t.count, grid, blk, 0, s, S, div, stride, lo, hi, t.Chunk, b.Heavy, t.st, t.bas); err != nil {
			return err
		}
	}
	return c.Launch(t.compct, grid, blk, 0, s, S, div, stride, sh.Context, lo, hi, t.Chunk, b.Heavy, t.st, t.bas, b.Sink, b.Local, b.Total, t.Idx)
}

// TopKBytes is the byte floor of the top-k alone: the scores of the
// items read once.
func (t *RadixTopK) TopKBytes() int64 {
	return int64(t.Shape.Batch*t.Shape.Lists(t.Sel)) * int64(t.Items()) * 4
}

func (t *RadixTopK) free(c *Ctx) {
	for _, b := range []Buffer{t.Idx, t.st, t.ghist, t.cnt, t.bas} {
		if b.Ptr != 0 {
			c.Free(b)
		}
	}
}

// NewOracleStep compiles the kernels and allocates the step's buffers.
// The budget must be resolved for s.Context keys.
func NewOracleStep(c *Ctx, s Shape, sel Selection, b budget.Budget) (*OracleStep, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if sel != PerKVHead && sel != PerHead {
		return nil, fmt.Errorf("oracle step: selection must be per-kv-head or per-head, got %v", sel)
	}
	if err := checkBudget(s, b); err != nil {
		return nil, fmt.Errorf("oracle step: %w", err)
	}
	mod, err := c.module("oracle.cu", oracleSrc, OracleDefines(s, sel))
	if err != nil {
		return nil, err
	}
	o := &OracleStep{Shape: s, Sel: sel, Budget: b}
	for _, f := range []struct {
		p    **Func
		name string
	}{{&o.scores, "oracle_scores"}, {&o.probs, "oracle_probs"}} {
		if *f.p, err = c.Func(mod, f.name); err != nil {
			return nil, err
		}
	}
	sms := c.d.Props.SMs
	kvl := s.Batch * s.KVHeads
	// Scoring: a few waves of blocks, at most 256 per KV head (oracle_probs
	// reduces each head's block partials in every block).
	o.SBlocks, o.SChunk = ChunkPlan(s.Context, min(256, max(1, sms*8/kvl)), 512, 16)
	lists := s.Batch * s.Lists(sel)
	n := int64(s.Context)
	allocs := []struct {
		b *Buffer
		n int64
	}{
		{&o.L, int64(s.Batch*s.Heads) * n * 4},
		{&o.part, int64(s.Batch*s.Heads) * int64(o.SBlocks) * 2 * 4},
	}
	if sel == PerKVHead {
		allocs = append(allocs, struct {
			b *Buffer
			n int64
		}{&o.S, int64(lists) * n * 4})
	}
	for _, a := range allocs {
		if *a.b, err = c.Alloc(a.n); err != nil {
			o.Free(c)
			return nil, err
		}
	}
	if sel == PerHead {
		o.S = o.L
	}
	if o.RadixTopK, err = newRadixTopK(c, mod, s, sel, b, 1); err != nil {
		o.Free(c)
		return nil, err
	}
	if o.Dec, err = NewDecoder(c, s, sel, b.Total); err != nil {
		o.Free(c)
		return nil, err
	}
	return o, nil
}

// checkBudget checks that a resolved budget fits the shape's context.
func checkBudget(s Shape, b budget.Budget) error {
	if b.N != s.Context || b.Total < 1 || b.Sink < 0 || b.Local < 0 || b.Heavy < 0 || b.Sink+b.Local+b.Heavy != b.Total || b.Total > b.N {
		return fmt.Errorf("budget %+v does not fit context %d", b, s.Context)
	}
	return nil
}

func scaleOf(s Shape, scale float32) float32 {
	if scale == 0 {
		return 1 / sqrt32(float32(s.HeadDim))
	}
	return scale
}

// EnqueueScores writes the raw scores L (and, per KV head, the list
// scores S) of q against k.
func (o *OracleStep) EnqueueScores(c *Ctx, s Stream, q, k Buffer, scale float32) error {
	sh := o.Shape
	sc := scaleOf(sh, scale)
	grid := Dim3{uint32(o.SBlocks), uint32(sh.KVHeads), uint32(sh.Batch)}
	blk := Dim3{X: oracleThreads}
	if err := c.Launch(o.scores, grid, blk, 0, s, q, k, sh.Context, sh.KVHeads, o.SChunk, sc, o.L, o.part); err != nil {
		return err
	}
	if o.Sel != PerKVHead {
		return nil
	}
	return c.Launch(o.probs, grid, blk, 0, s, o.L, o.part, o.SBlocks, sh.Context, sh.KVHeads, o.SChunk, sc, o.S)
}

// EnqueueTopK selects from the list scores in o.S into o.Idx.
func (o *OracleStep) EnqueueTopK(c *Ctx, s Stream) error {
	return o.EnqueueTopKOf(c, s, o.S, o.Shape.Context)
}

// EnqueueSelect scores and selects: the lists land in o.Idx.
func (o *OracleStep) EnqueueSelect(c *Ctx, s Stream, in DecodeInputs) error {
	if err := o.EnqueueScores(c, s, in.Q, in.K, in.Scale); err != nil {
		return err
	}
	return o.EnqueueTopK(c, s)
}

// Enqueue runs the whole step: select, then the sparse decode of in.Q
// over in.K, in.V into o.Dec.Out.
func (o *OracleStep) Enqueue(c *Ctx, s Stream, in DecodeInputs) error {
	if err := o.EnqueueSelect(c, s, in); err != nil {
		return err
	}
	in.Idx = o.Idx
	return o.Dec.Enqueue(c, s, in)
}

// StepBytes is the byte floor of one step: all of K once, the raw scores
// written, the K/V rows of the lists, the lists, q and the output.
func (o *OracleStep) StepBytes() int64 {
	sh := o.Shape
	return sh.KVBytes()/2 + int64(sh.Batch*sh.Heads)*int64(sh.Context)*4 + sh.DecodeBytes(o.Sel, o.Budget.Total)
}

// Free releases the step's buffers.
func (o *OracleStep) Free(c *Ctx) {
	for _, b := range []Buffer{o.L, o.part} {
		if b.Ptr != 0 {
			c.Free(b)
		}
	}
	if o.RadixTopK != nil {
		o.RadixTopK.free(c)
	}
	if o.Sel == PerKVHead && o.S.Ptr != 0 {
		c.Free(o.S)
	}
	if o.Dec != nil {
		o.Dec.Free(c)
	}
}

// StreamStep is StreamingLLM's decode step on the GPU: the lists of the
// sink and the most recent keys (the whole non-sink budget is the recent
// window, as methods.Streaming), then the sparse decode over them.
type StreamStep struct {
	Shape  Shape
	Sel    Selection
	Budget budget.Budget
	// Idx holds the lists [Batch][Lists][Budget.Total] (int32).
	Idx   Buffer
	lists *Func
	// Dec is the sparse decode over Idx.
	Dec *Decoder
}

// NewStreamStep compiles the kernels and allocates the step's buffers.
func NewStreamStep(c *Ctx, s Shape, sel Selection, b budget.Budget) (*StreamStep, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if sel != PerKVHead && sel != PerHead {
		return nil, fmt.Errorf("streaming step: selection must be per-kv-head or per-head, got %v", sel)
	}
	if err := checkBudget(s, b); err != nil {
		return nil, fmt.Errorf("streaming step: %w", err)
	}
	mod, err := c.module("oracle.cu", oracleSrc, OracleDefines(s, sel))
	if err != nil {
		return nil, err
	}
	st := &StreamStep{Shape: s, Sel: sel, Budget: b}
	if st.lists, err = c.Func(mod, "stream_lists"); err != nil {
		return nil, err
	}
	if st.Idx, err = c.Alloc(int64(s.Batch*s.Lists(sel)) * int64(b.Total) * 4); err != nil {
		return nil, err
	}
	if st.Dec, err = NewDecoder(c, s, sel, b.Total); err != nil {
		c.Free(st.Idx)
		return nil, err
	}
	return st, nil
}

// EnqueueSelect writes the lists to st.Idx.
func (st *StreamStep) EnqueueSelect(c *Ctx, s Stream) error {
	lists := st.Shape.Batch * st.Shape.Lists(st.Sel)
	n := int64(lists) * int64(st.Budget.Total)
	return c.Launch(st.lists, fillGrid(n), Dim3{X: 256}, 0, s, lists, st.Budget.Total, st.Budget.Sink, st.Shape.Context, st.Idx)
}

// Enqueue runs the whole step: the lists, then the sparse decode.
func (st *StreamStep) Enqueue(c *Ctx, s Stream, in DecodeInputs) error {
	if err := st.EnqueueSelect(c, s); err != nil {
		return err
	}
	in.Idx = st.Idx
	return st.Dec.Enqueue(c, s, in)
}

// Free releases the step's buffers.
func (st *StreamStep) Free(c *Ctx) {
	c.Free(st.Idx)
	if st.Dec != nil {
		st.Dec.Free(c)
	}
}
