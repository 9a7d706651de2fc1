package gpu

import (
	"fmt"

	"github.com/hbench/hbench/budget"
)

// QuestStep is Quest's decode step on the GPU (methods.Quest with 16-bit
// labels): page labels (channel min and max of the keys of each page of
// Page tokens) built at prefill; per step the page bounds U = Σ_c
// max(q_c·max_c, q_c·min_c) (the current page +inf), the radix top-k of
// the pages that meet the middle range by U, each weighted by its
// positions there (whole pages by U, ties to the lower page, the last
// page taken truncated to its leading positions: the CPU rule), index
// expansion to positions, then the sparse decode. With PerKVHead the
// group's bounds are summed.
type QuestStep struct {
	Shape  Shape
	Sel    Selection
	Budget budget.Budget
	// Page is the page size; Pages = ceil(Context / Page).
	Page, Pages int
	// PBlocks and PChunk split the pages of each KV head for scoring.
	PBlocks, PChunk int
	// PL holds the page labels [Batch][KVHeads][Pages][2][HeadDim] (the K
	// dtype: minima, then maxima); PU the bounds [Batch][Lists][Pages].
	PL, PU        Buffer
	pages, scores *Func
	*RadixTopK
	// Dec is the sparse decode over Idx.
	Dec *Decoder
}

// NewQuestStep compiles the kernels and allocates the step's buffers.
func NewQuestStep(c *Ctx, s Shape, sel Selection, page int, b budget.Budget) (*QuestStep, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if sel != PerKVHead && sel != PerHead {
		return nil, fmt.Errorf("quest step: selection must be per-kv-head or per-head, got %v", sel)
	}
	if page < 1 {
		return nil, fmt.Errorf("quest step: page %d must be >= 1", page)
	}
	if err := checkBudget(s, b); err != nil {
		return nil, fmt.Errorf("quest step: %w", err)
	}
	mod, err := c.module("oracle.cu", oracleSrc, OracleDefines(s, sel))
	if err != nil {
		return nil, err
	}
	q := &QuestStep{Shape: s, Sel: sel, Budget: b, Page: page, Pages: (s.Context + page - 1) / page}
	if q.pages, err = c.Func(mod, "quest_pages"); err != nil {
		return nil, err
	}
	if q.scores, err = c.Func(mod, "quest_scores"); err != nil {
		return nil, err
	}
	q.PBlocks, q.PChunk = ChunkPlan(q.Pages, max(1, c.d.Props.SMs*8/(s.Batch*s.KVHeads)), 64, 16)
	if q.PL, err = c.Alloc(int64(s.Batch*s.KVHeads) * int64(q.Pages) * 2 * int64(s.HeadDim) * 2); err != nil {
		return nil, err
	}
	if q.PU, err = c.Alloc(int64(s.Batch*s.Lists(sel)) * int64(q.Pages) * 4); err != nil {
		q.Free(c)
		return nil, err
	}
	if q.RadixTopK, err = newRadixTopK(c, mod, s, sel, b, page); err != nil {
		q.Free(c)
		return nil, err
	}
	if q.Dec, err = NewDecoder(c, s, sel, b.Total); err != nil {
		q.Free(c)
		return nil, err
	}
	return q, nil
}

// EnqueuePages builds the page labels of k (prefill; not part of the step).
func (q *QuestStep) EnqueuePages(c *Ctx, s Stream, k Buffer) error {
	sh := q.Shape
	return c.Launch(q.pages, Dim3{uint32(q.Pages), uint32(sh.KVHeads), uint32(sh.Batch)}, Dim3{X: oracleThreads}, 0, s, k, sh.Context, q.Page, q.PL)
}

// EnqueueSelect scores the pages for in.Q and selects into q.Idx.
func (q *QuestStep) EnqueueSelect(c *Ctx, s Stream, in DecodeInputs) error {
	sh := q.Shape
	grid := Dim3{uint32(q.PBlocks), uint32(sh.KVHeads), uint32(sh.Batch)}
	if err := c.Launch(q.scores, grid, Dim3{X: oracleThreads}, 0, s, in.Q, q.PL, q.Pages, sh.KVHeads, q.PChunk, q.PU); err != nil {
		return err
	}
	return q.EnqueueTopKOf(c, s, q.PU, q.Pages)
}

// Enqueue runs the whole step (the page labels must be built): select,
// then the sparse decode into q.Dec.Out.
func (q *QuestStep) Enqueue(c *Ctx, s Stream, in DecodeInputs) error {
	if err := q.EnqueueSelect(c, s, in); err != nil {
		return err
	}
	in.Idx = q.Idx
	return q.Dec.Enqueue(c, s, in)
}

// LabelBytes is the size of the page labels.
func (q *QuestStep) LabelBytes() int64 { return q.PL.Size }

// StepBytes is the byte floor of one step: the page labels once, the K/V
// rows of the lists, the lists, q and the output.
func (q *QuestStep) StepBytes() int64 {
	return q.LabelBytes() + q.Shape.DecodeBytes(q.Sel, q.Budget.Total)
}

// Free releases the step's buffers.
func (q *QuestStep) Free(c *Ctx) {
	for _, b := range []Buffer{q.PL, q.PU} {
		if b.Ptr != 0 {
			c.Free(b)
		}
	}
	if q.RadixTopK != nil {
		q.RadixTopK.free(c)
	}
	if q.Dec != nil {
		q.Dec.Free(c)
	}
}
