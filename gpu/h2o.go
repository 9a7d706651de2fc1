package gpu

import (
	_ "embed"
	"fmt"
	"math"
	"strconv"

	"github.com/hbench/hbench/budget"
)

//go:embed kernels/h2o.cu
var h2oSrc string

// h2oThreads is the block size of h2o_logits, h2o_accum and h2o_init
// (HT); h2oSelectThreads that of h2o_select (ST).
const (
	h2oThreads       = 256
	h2oSelectThreads = 1024
)

// H2ODefines returns the h2o module's defines for a shape and selection
// (PerKVHead: one list per KV head scored by the group's summed weights).
func H2ODefines(s Shape, sel Selection) map[string]string {
	bf, shared := "1", "0"
	if s.DType == FP16 {
		bf = "0"
	}
	if sel == PerKVHead {
		shared = "1"
	}
	return map[string]string{"HEAD_DIM": strconv.Itoa(s.HeadDim), "GROUP": strconv.Itoa(s.Heads / s.KVHeads), "SHARED": shared, "DTYPE_BF16": bf}
}

// H2OBudget applies H2O's recent split to a resolved budget as
// methods.H2O does: the local window grows to round(recent·(Total −
// Sink)) keys when that is larger, taken from the heavy budget.
func H2OBudget(b budget.Budget, recent float64) budget.Budget {
	if recent > 0 {
		local := max(b.Local, int(math.Round(recent*float64(b.Total-b.Sink))))
		b.Heavy -= local - b.Local
		b.Local = local
	}
	return b
}

// H2OStep is H2O's decode step on the GPU (methods.H2O): each list (a
// query head, or with PerKVHead a KV head whose group shares it) keeps
// exactly Budget.Total positions, each with an accumulated score (double,
// as the CPU's). EnqueueStart is the CPU's first Select: a radix top-k of
// the prefill scores over the middle range (RadixTopK, ties to the older
// position) gives the kept set. Each later step (Enqueue, one CUDA graph)
// at position t:
//
//  1. h2o_select (one block per list): token t enters (when the local
//     window is not empty; the CPU's new token is only ever kept through
//     it); while the set is over budget (at most once per step) the slot
//     outside the sink and local windows with the lowest score is evicted,
//     ties to the newer position (warp shuffles, then shared memory); the
//     lists are written to Idx;
//  2. h2o_logits: the scaled logits of the list's query heads over the
//     kept keys, and per block the softmax partials;
//  3. h2o_accum: each kept slot's score grows by each head's softmax
//     weight over the kept set (the CPU's order);
//  4. the sparse decode over Idx (Decoder).
//
// An evicted token never returns: the slots only ever take the new
// token. The prefill scores are an input (EnqueueStart's pre), computed
// wherever the caller likes: the tests upload those of a float64 twin of
// the CPU's prefill, the bench random ones.
type H2OStep struct {
	// Shape's Context is the number of K/V rows held: steps run at
	// positions t < Context, each seeing keys 0..t.
	Shape  Shape
	Sel    Selection
	Recent float64
	// Cap is the largest Total a step may keep (slots per list).
	Cap int
	// T is the position of the last step (-1 before EnqueueStart); Budget
	// its budget after the recent split.
	T      int
	Budget budget.Budget
	raw    budget.Budget
	// Pos and Acc are the slots [Batch][Lists][Cap]: kept positions
	// (int32) and accumulated scores (float64), the first Budget.Total
	// valid. Idx holds the last step's lists [Batch][Lists][Budget.Total]
	// (int32, slot order).
	Pos, Acc, Idx Buffer
	// Lg holds the last step's scaled logits [Batch][Lists][heads per
	// list][Cap] (fp32).
	Lg   Buffer
	part Buffer
	// want is the most blocks per list of h2o_logits and h2o_accum.
	want                       int
	mod                        *Module
	sel, logits, accum, initFn *Func
	decs                       map[int]*Decoder
	// Dec is the sparse decode of the last step (K = Budget.Total).
	Dec *Decoder
}

// NewH2OStep compiles the kernels and allocates the state for lists of
// up to maxTotal keys.
func NewH2OStep(c *Ctx, s Shape, sel Selection, recent float64, maxTotal int) (*H2OStep, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if sel != PerKVHead && sel != PerHead {
		return nil, fmt.Errorf("h2o step: selection must be per-kv-head or per-head, got %v", sel)
	}
	if !(recent >= 0 && recent < 1) {
		return nil, fmt.Errorf("h2o step: recent %g must be in [0, 1)", recent)
	}
	if maxTotal < 1 || maxTotal > s.Context {
		return nil, fmt.Errorf("h2o step: max total %d must be in [1, %d]", maxTotal, s.Context)
	}
	mod, err := c.module("h2o.cu", h2oSrc, H2ODefines(s, sel))
	if err != nil {
		return nil, err
	}
	h := &H2OStep{Shape: s, Sel: sel, Recent: recent, Cap: maxTotal, T: -1, mod: mod, decs: map[int]*Decoder{}}
	for _, f := range []struct {
		p    **Func
		name string
	}{{&h.sel, "h2o_select"}, {&h.logits, "h2o_logits"}, {&h.accum, "h2o_accum"}, {&h.initFn, "h2o_init"}} {
		if *f.p, err = c.Func(mod, f.name); err != nil {
			return nil, err
		}
	}
	lists := int64(s.Batch * s.Lists(sel))
	h.want = min(256, max(1, c.d.Props.SMs*8/int(lists)))
	hl := int64(h.headsPerList())
	capn := int64(maxTotal)
	for _, a := range []struct {
		b *Buffer
		n int64
	}{
		{&h.Pos, lists * capn * 4},
		{&h.Acc, lists * capn * 8},
		{&h.Idx, lists * capn * 4},
		{&h.Lg, lists * hl * capn * 4},
		{&h.part, lists * hl * int64(h.want) * 2 * 8},
	} {
		if *a.b, err = c.Alloc(a.n); err != nil {
			h.Free(c)
			return nil, err
		}
	}
	return h, nil
}

func (h *H2OStep) headsPerList() int {
	if h.Sel == PerKVHead {
		return h.Shape.Heads / h.Shape.KVHeads
	}
	return 1
}

// Plan makes sure the sparse decode for b's total (after the recent
// split) exists. It allocates and synchronises, so call it before
// capturing a step whose total is new (Enqueue does it otherwise).
func (h *H2OStep) Plan(c *Ctx, b budget.Budget) error {
	_, err := h.decoder(c, H2OBudget(b, h.Recent).Total)
	return err
}

func (h *H2OStep) decoder(c *Ctx, total int) (*Decoder, error) {
	if d, ok := h.decs[total]; ok {
		return d, nil
	}
	if total > h.Cap {
		return nil, fmt.Errorf("h2o step: total %d above the capacity %d", total, h.Cap)
	}
	d, err := NewDecoder(c, h.Shape, h.Sel, total)
	if err != nil {
		return nil, err
	}
	h.decs[total] = d
	return d, nil
}

// checkStepBudget checks a resolved budget for the step at position t.
func (h *H2OStep) checkStepBudget(t int, b budget.Budget) error {
	if t < 0 || t >= h.Shape.Context || b.N != t+1 || b.Total < 1 || b.Sink < 0 || b.Local < 0 || b.Heavy < 0 ||
		b.Sink+b.Local+b.Heavy != b.Total || b.Total > b.N {
		return fmt.Errorf("h2o step: budget %+v does not fit position %d of a cache of %d rows", b, t, h.Shape.Context)
	}
	if e := H2OBudget(b, h.Recent); e.Total > h.Cap {
		return fmt.Errorf("h2o step: total %d above the capacity %d", e.Total, h.Cap)
	}
	return nil
}

// EnqueueStart runs the first step, at position t0 with budget b
// (resolved for t0+1 keys): the cache then holds positions 0..t0-1 with
// prefill scores pre [Batch][Lists][Context] (fp32, at positions < t0;
// zeros for H2O's zero init), the top-k of the middle range by pre (ties
// to the older position) is kept with the sink and local windows, and the
// step's attention is accumulated and decoded as in Enqueue. It
// synchronises the stream (the top-k's buffers are freed), so it is not
// for capture.
func (h *H2OStep) EnqueueStart(c *Ctx, s Stream, in DecodeInputs, pre Buffer, t0 int, b budget.Budget) error {
	if err := h.checkStepBudget(t0, b); err != nil {
		return err
	}
	sh := h.Shape
	if pre.Size < int64(sh.Batch*sh.Lists(h.Sel))*int64(sh.Context)*4 {
		return fmt.Errorf("h2o step: prefill scores of %d bytes for %d lists of %d positions", pre.Size, sh.Batch*sh.Lists(h.Sel), sh.Context)
	}
	eb := H2OBudget(b, h.Recent)
	lo, hi := eb.MiddleRange()
	// The CPU's first step ranks the cached tokens 0..t0-1 only.
	if cands := min(hi, t0) - lo; cands < eb.Heavy {
		return fmt.Errorf("h2o step: at position %d the heavy budget %d exceeds the %d cached tokens", t0, eb.Heavy, max(cands, 0))
	}
	dec, err := h.decoder(c, eb.Total)
	if err != nil {
		return err
	}
	// The top-k's shape and budget end at t0+1 keys, or at t0 with no
	// local window, so that the new token t0 is never ranked.
	ts, tb := sh, eb
	if eb.Local == 0 {
		tb.N = t0
	} else {
		tb.N = t0 + 1
	}
	ts.Context = tb.N
	omod, err := c.module("oracle.cu", oracleSrc, OracleDefines(sh, h.Sel))
	if err != nil {
		return err
	}
	tk, err := newRadixTopK(c, omod, ts, h.Sel, tb, 1)
	if err != nil {
		return err
	}
	defer func() {
		c.SyncStream(s) // the top-k's work ends before its buffers go
		tk.free(c)
	}()
	if err := tk.EnqueueTopKOf(c, s, pre, sh.Context); err != nil {
		return err
	}
	lists := sh.Batch * sh.Lists(h.Sel)
	if err := c.Launch(h.initFn, Dim3{X: uint32(lists)}, Dim3{X: h2oThreads}, 0, s, tk.Idx, pre, sh.Context, t0, eb.Total, h.Cap, h.Pos, h.Acc, h.Idx); err != nil {
		return err
	}
	if err := h.enqueueAttend(c, s, in, dec, eb.Total, false); err != nil {
		return err
	}
	h.T, h.Budget, h.raw, h.Dec = t0, eb, b, dec
	return c.SyncStream(s)
}

// Enqueue runs the step at position t = T+1 with budget b (resolved for
// t+1 keys; the windows may grow by at most one key per step, as the
// CPU's): select (evict), logits, accumulate, sparse decode of in.Q over
// in.K, in.V into h.Dec.Out. A repeat of the last step (t = T, the same
// budget) does all of that work but changes no state, as a repeated
// methods.H2O Select returns the same keys: a CUDA graph of it can be
// replayed for timing.
func (h *H2OStep) Enqueue(c *Ctx, s Stream, in DecodeInputs, t int, b budget.Budget) error {
	if h.T < 0 {
		return fmt.Errorf("h2o step: Enqueue before EnqueueStart")
	}
	if err := h.checkStepBudget(t, b); err != nil {
		return err
	}
	eb, prev, addT, need, rep, err := h.stepParams(t, b)
	if err != nil {
		return err
	}
	dec, err := h.decoder(c, eb.Total)
	if err != nil {
		return err
	}
	if err := h.enqueueSelect(c, s, t, eb, prev, addT, need); err != nil {
		return err
	}
	if err := h.enqueueAttend(c, s, in, dec, eb.Total, rep); err != nil {
		return err
	}
	h.T, h.Budget, h.raw, h.Dec = t, eb, b, dec
	return nil
}

// stepParams returns the parameters of h2o_select for the step at t with
// budget b after the last step: the budget after the recent split, the
// slots before the step, whether token t enters (addT) and how many slots
// are evicted (need), and whether the step repeats the last one.
func (h *H2OStep) stepParams(t int, b budget.Budget) (eb budget.Budget, prev, addT, need int, rep bool, err error) {
	eb = H2OBudget(b, h.Recent)
	prev = eb.Total
	rep = t == h.T
	switch {
	case rep && b != h.raw:
		err = fmt.Errorf("h2o step: position %d asked again with budget %+v after %+v", t, b, h.raw)
	case !rep && t != h.T+1:
		err = fmt.Errorf("h2o step: positions must be consecutive: got %d after %d", t, h.T)
	case !rep:
		p := h.Budget
		if eb.Sink != p.Sink || eb.Local < p.Local || eb.Local > p.Local+1 || eb.Total < p.Total {
			return eb, 0, 0, 0, false, fmt.Errorf("h2o step: at position %d the budget %+v after %+v: the windows may only grow by one key per step", t, eb, p)
		}
		if eb.Local > 0 {
			addT = 1
		}
		prev = p.Total
		need = p.Total + addT - eb.Total
		if need < 0 || need > 1 {
			err = fmt.Errorf("h2o step: at position %d the heavy budget %d exceeds the cached tokens (the budget grew by more than one key per step, or with no local window)", t, eb.Heavy)
		}
	}
	return eb, prev, addT, need, rep, err
}

func (h *H2OStep) enqueueSelect(c *Ctx, s Stream, t int, eb budget.Budget, prev, addT, need int) error {
	lists := h.Shape.Batch * h.Shape.Lists(h.Sel)
	lo, hi := eb.MiddleRange()
	return c.Launch(h.sel, Dim3{X: uint32(lists)}, Dim3{X: h2oSelectThreads}, 0, s, h.Pos, h.Acc, h.Idx, h.Cap, prev, eb.Total, lo, hi, t, addT, need)
}

// EnqueueSelectRepeat times the eviction scan alone: h2o_select of a
// repeated last step (the scan and the list copy, no state change).
func (h *H2OStep) EnqueueSelectRepeat(c *Ctx, s Stream) error {
	if h.T < 0 {
		return fmt.Errorf("h2o step: select before EnqueueStart")
	}
	return h.enqueueSelect(c, s, h.T, h.Budget, h.Budget.Total, 0, 0)
}

// EnqueueScoreRepeat times the accumulation alone: logits and softmax
// weights of the last step's lists (computed, not stored).
func (h *H2OStep) EnqueueScoreRepeat(c *Ctx, s Stream, in DecodeInputs) error {
	if h.T < 0 {
		return fmt.Errorf("h2o step: score before EnqueueStart")
	}
	return h.enqueueScore(c, s, in, h.Budget.Total, true)
}

func (h *H2OStep) blocks(total int) (nb, chunk int) {
	return ChunkPlan(total, h.want, 128, 16)
}

func (h *H2OStep) enqueueScore(c *Ctx, s Stream, in DecodeInputs, total int, rep bool) error {
	sh := h.Shape
	nb, chunk := h.blocks(total)
	grid := Dim3{uint32(nb), uint32(sh.Lists(h.Sel)), uint32(sh.Batch)}
	blk := Dim3{X: h2oThreads}
	if err := c.Launch(h.logits, grid, blk, 0, s, in.Q, in.K, h.Idx, total, sh.Context, sh.KVHeads, chunk, scaleOf(sh, in.Scale), h.Lg, h.Cap, h.part); err != nil {
		return err
	}
	r := 0
	if rep {
		r = 1
	}
	return c.Launch(h.accum, grid, blk, 0, s, h.Lg, h.Cap, h.part, nb, total, chunk, h.Cap, h.Acc, r)
}

func (h *H2OStep) enqueueAttend(c *Ctx, s Stream, in DecodeInputs, dec *Decoder, total int, rep bool) error {
	if err := h.enqueueScore(c, s, in, total, rep); err != nil {
		return err
	}
	in.Idx = h.Idx
	return dec.Enqueue(c, s, in)
}

// SelectBytes is the byte floor of the select and accumulate part of a
// step with lists of k keys: each slot's position and score read, the
// lists written, the K rows of the lists read, the logits written and
// read, and the scores written back.
func (h *H2OStep) SelectBytes(k int) int64 {
	sh := h.Shape
	lists := int64(sh.Batch * sh.Lists(h.Sel))
	hl := int64(h.headsPerList())
	return lists * int64(k) * (4 + 8 + 4 + int64(sh.HeadDim)*2 + 2*4*hl + 8)
}

// StepBytes is the byte floor of one step with lists of k keys:
// SelectBytes plus the sparse decode's.
func (h *H2OStep) StepBytes(k int) int64 {
	return h.SelectBytes(k) + h.Shape.DecodeBytes(h.Sel, k)
}

// Free releases the step's buffers.
func (h *H2OStep) Free(c *Ctx) {
	for _, b := range []Buffer{h.Pos, h.Acc, h.Idx, h.Lg, h.part} {
		if b.Ptr != 0 {
			c.Free(b)
		}
	}
	for _, d := range h.decs {
		d.Free(c)
	}
	h.decs = nil
}
