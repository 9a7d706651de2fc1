package gpueval

import (
	"fmt"
	"slices"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/gpu"
	"github.com/hbench/hbench/methods"
	"github.com/hbench/hbench/registry"
)

func init() {
	Register(registry.Entry[Adapter]{
		Name: "h2o",
		Doc:  "gpu.H2OStep: slots with accumulated scores on the device, one eviction step per consecutive position (prefill scores from the CPU's methods.H2O)",
		New:  newH2OAdapter,
	})
}

// h2oMethod is H2O on the GPU. Unlike the other adapters its Selector is
// stateful: a gpu.H2OStep per Selector carries the kept slots and their
// accumulated scores from one position to the next, as methods.H2O's
// Selector does, so it does not use gpuMethod's per-step steps.
//
// The first Select (position t0) uploads the CPU's prefill scores
// (methods.H2O.PrefillScores, float64, rounded to fp32 for the step's
// radix top-k; zeros with init zero) and runs EnqueueStart; each later
// position runs Enqueue. The GPU's logits are fp32 dot products in
// another order than the CPU's tensor.Dot32 and its scores start from the
// fp32-rounded prefill, so a near-tie between accumulated scores may break
// the other way (gpu/h2o_test.go measures this against the CPU): lists
// equal methods.H2O's except after such a near-tie.
type h2oMethod struct {
	methods.Method
	ev     *Evaluator
	h      *methods.H2O
	recent float64
}

func newH2OAdapter(ev *Evaluator, params any, cpu methods.Method) (methods.Method, error) {
	h, ok := cpu.(*methods.H2O)
	if !ok {
		return nil, fmt.Errorf("gpu h2o: method is a %T", cpu)
	}
	p, ok := params.(*methods.H2OParams)
	if !ok {
		return nil, fmt.Errorf("gpu h2o: parameters are a %T", params)
	}
	return &h2oMethod{Method: cpu, ev: ev, h: h, recent: p.Recent}, nil
}

// NeedsConsecutive implements methods.ConsecutiveNeeder, as methods.H2O.
func (m *h2oMethod) NeedsConsecutive() bool { return true }

// Prepare implements methods.Method.
func (m *h2oMethod) Prepare(g *attn.Group, opt methods.Options) (methods.Selector, error) {
	sh := gpu.Shape{Batch: 1, Heads: len(g.Q), KVHeads: 1, HeadDim: g.D(), Context: g.T(), DType: gpu.FP16}
	if err := sh.Validate(); err != nil {
		return nil, fmt.Errorf("gpu h2o: %v (run with device: cpu)", err)
	}
	if _, err := m.ev.group(g); err != nil {
		return nil, err
	}
	sel := gpu.PerHead
	if opt.Shared {
		sel = gpu.PerKVHead
	}
	return &h2oSelector{m: m, g: g, sh: sh, sel: sel, lastT: -1}, nil
}

// h2oSelector runs one budget policy's H2O cache on the GPU (the
// contract of methods.H2O's Selector: consecutive positions, a repeated
// position returns the same keys).
type h2oSelector struct {
	m    *h2oMethod
	g    *attn.Group
	sh   gpu.Shape // Context: the group's T
	sel  gpu.Selection
	step *gpu.H2OStep // nil before the first Select
	// lastT is the last position (-1 before the first step); lastB its step.
	lastT int
	lastB methods.Step
	lists [][]int32 // the last step's lists (ascending)
	q     []float32
	idx   []int32
}

// Select implements methods.Selector.
func (s *h2oSelector) Select(st methods.Step, sel [][]int32) ([][]int32, error) {
	switch {
	case s.lastT >= 0 && st.T == s.lastT:
		if st != s.lastB {
			return nil, fmt.Errorf("gpu h2o: position %d asked again with budget %+v after %+v: a Selector serves one budget policy", st.T, st.Budget, s.lastB.Budget)
		}
		return s.emit(sel), nil
	case s.lastT >= 0 && st.T != s.lastT+1:
		return nil, fmt.Errorf("gpu h2o: positions must be consecutive (queries: {last: N} with stride 1): got %d after %d", st.T, s.lastT)
	case st.T >= s.g.T() || st.T < 0 || st.Budget.N != st.T+1:
		return nil, fmt.Errorf("gpu h2o: position %d with %d visible keys out of range for a sequence of %d", st.T, st.Budget.N, s.g.T())
	}
	gs, err := s.m.ev.group(s.g)
	if err != nil {
		return nil, err
	}
	first := s.lastT < 0
	var pre []float32
	if first {
		if s.step == nil {
			if s.step, err = s.newStep(st); err != nil {
				return nil, fmt.Errorf("gpu h2o position %d: %w", st.T, err)
			}
		}
		pre = s.prefill(st.T)
	}
	s.q = s.q[:0]
	for h := range s.g.Q {
		s.q = append(s.q, s.g.Q[h].Row(st.T)...)
	}
	lists := s.sh.Lists(s.sel)
	total := st.Budget.Total // H2OBudget moves keys between windows, not the total
	s.idx = slices.Grow(s.idx[:0], lists*total)[:lists*total]
	h := s.step
	err = s.m.ev.Dev.Do(func(c *gpu.Ctx) error {
		qb, err := gpu.Upload(c, s.q)
		if err != nil {
			return err
		}
		defer c.Free(qb)
		in := gpu.DecodeInputs{Q: qb, K: gs.K, V: gs.V, Scale: gs.Scale}
		if first {
			pb, err := c.Alloc(int64(lists) * int64(s.sh.Context) * 4)
			if err != nil {
				return err
			}
			defer c.Free(pb)
			if pre != nil {
				err = gpu.CopyTo(c, pb, pre)
			} else {
				err = c.Fill32(pb, 0, 0) // init zero
			}
			if err != nil {
				return err
			}
			if err := h.EnqueueStart(c, 0, in, pb, st.T, st.Budget); err != nil {
				return err
			}
		} else {
			if err := h.Enqueue(c, 0, in, st.T, st.Budget); err != nil {
				return err
			}
			if err := c.Sync(); err != nil {
				return err
			}
		}
		if h.Budget.Total != total {
			return fmt.Errorf("the step kept %d keys, budget %d", h.Budget.Total, total)
		}
		return gpu.Download(c, s.idx, h.Idx)
	})
	if err != nil {
		return nil, fmt.Errorf("gpu h2o position %d: %w", st.T, err)
	}
	if len(s.lists) != lists {
		s.lists = make([][]int32, lists)
	}
	for l := range s.lists {
		s.lists[l] = append(s.lists[l][:0], s.idx[l*total:(l+1)*total]...)
		slices.Sort(s.lists[l]) // the slots are in slot order
	}
	s.lastT, s.lastB = st.T, st
	return s.emit(sel), nil
}

// newStep allocates the Selector's H2OStep for a first step st, with
// slots for the largest total it can reach by the group's last position
// (the total grows by at most one key per step); it is freed with the
// group (Evaluator.Drop).
func (s *h2oSelector) newStep(st methods.Step) (*gpu.H2OStep, error) {
	capTotal := min(s.sh.Context, gpu.H2OBudget(st.Budget, s.m.recent).Total+s.sh.Context-1-st.T)
	v, err := s.m.ev.prepared(s, s.g, func(c *gpu.Ctx, _ *groupState) (any, func(*gpu.Ctx), error) {
		h, err := gpu.NewH2OStep(c, s.sh, s.sel, s.m.recent, capTotal)
		if err != nil {
			return nil, nil, err
		}
		return h, h.Free, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*gpu.H2OStep), nil
}

// prefill returns the CPU's prefill scores for a first step at t0 as the
// step's [Lists][T] fp32 input (nil for zeros: init zero, or t0 = 0).
func (s *h2oSelector) prefill(t0 int) []float32 {
	tracks := s.m.h.PrefillScores(s.g, t0, s.sel == gpu.PerKVHead)
	if tracks == nil {
		return nil
	}
	T := s.sh.Context
	pre := make([]float32, len(tracks)*T)
	for l, acc := range tracks {
		for j, a := range acc {
			pre[l*T+j] = float32(a)
		}
	}
	return pre
}

// emit copies the last step's lists into sel (every head of the group
// gets its KV head's list with PerKVHead).
func (s *h2oSelector) emit(sel [][]int32) [][]int32 {
	heads := len(s.g.Q)
	if len(sel) != heads {
		sel = make([][]int32, heads)
	}
	for h := range sel {
		l := h
		if s.sel == gpu.PerKVHead {
			l = 0
		}
		sel[h] = append(sel[h][:0], s.lists[l]...)
	}
	return sel
}
