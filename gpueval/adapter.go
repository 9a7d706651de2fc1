package gpueval

import (
	"errors"
	"fmt"
	"slices"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/gpu"
	"github.com/hbench/hbench/methods"
	"github.com/hbench/hbench/registry"
)

// Adapter builds the GPU twin of a configured CPU method: params is the
// method's decoded parameter struct (as methods.Registry's constructor
// got it) and cpu the method built from it. It returns ErrUnsupported
// (wrapped, with the reason) for a configuration its GPU step does not
// implement; the method then runs on the CPU.
type Adapter func(ev *Evaluator, params any, cpu methods.Method) (methods.Method, error)

// Adapters holds the GPU adapters by method name (methods.Registry's).
var Adapters = registry.New[Adapter]("gpu adapter")

// Register adds an adapter; each adapter file registers itself in init.
func Register(e registry.Entry[Adapter]) { Adapters.Register(e) }

// ErrUnsupported says a method configuration has no GPU path.
var ErrUnsupported = errors.New("no GPU path")

// Wrap returns the method to evaluate for a variant of method name: its
// GPU adapter's, or cpu itself with a note saying why it stays on the
// CPU (no adapter for the method, or ErrUnsupported). Any other error of
// the adapter is returned.
func (ev *Evaluator) Wrap(name string, params any, cpu methods.Method) (methods.Method, string, error) {
	e, ok := Adapters.Lookup(name)
	if !ok {
		return cpu, fmt.Sprintf("method %q has no GPU adapter (have: %v): it runs on the CPU, on the same fp16-rounded K/V", name, Adapters.Names()), nil
	}
	m, err := e.New(ev, params, cpu)
	if errors.Is(err, ErrUnsupported) {
		return cpu, fmt.Sprintf("method %q: %v: it runs on the CPU, on the same fp16-rounded K/V", name, err), nil
	}
	if err != nil {
		return nil, "", err
	}
	return m, "", nil
}

// stepFunc enqueues one decode step's selection for the query q (fp32
// [Heads][d] on the device) of g's state s at shape sh (Context = t+1)
// and budget b, on the default stream, and returns the device buffer of
// the index lists ([Lists][b.Total] int32) and a function freeing what
// it allocated.
type stepFunc func(c *gpu.Ctx, s *groupState, sh gpu.Shape, sel gpu.Selection, b budget.Budget, q gpu.Buffer) (idx gpu.Buffer, free func(), err error)

// gpuMethod is an adapted method: the CPU method's AuxBits, a GPU
// Selector. prepare, when set, runs at Prepare (e.g. key codes).
type gpuMethod struct {
	methods.Method
	ev      *Evaluator
	name    string
	prepare func(g *attn.Group) error
	step    stepFunc
}

// Prepare implements methods.Method.
func (m *gpuMethod) Prepare(g *attn.Group, opt methods.Options) (methods.Selector, error) {
	sh := gpu.Shape{Batch: 1, Heads: len(g.Q), KVHeads: 1, HeadDim: g.D(), Context: g.T(), DType: gpu.FP16}
	if err := sh.Validate(); err != nil {
		return nil, fmt.Errorf("gpu %s: %v (run with device: cpu)", m.name, err)
	}
	if _, err := m.ev.group(g); err != nil {
		return nil, err
	}
	if m.prepare != nil {
		if err := m.prepare(g); err != nil {
			return nil, fmt.Errorf("gpu %s: %w", m.name, err)
		}
	}
	sel := gpu.PerHead
	if opt.Shared {
		sel = gpu.PerKVHead
	}
	return &stepSelector{m: m, g: g, sel: sel}, nil
}

// stepSelector runs an adapted method's GPU step at each decode position.
type stepSelector struct {
	m   *gpuMethod
	g   *attn.Group
	sel gpu.Selection
	q   []float32
	idx []int32
}

// Select implements methods.Selector.
func (s *stepSelector) Select(st methods.Step, sel [][]int32) ([][]int32, error) {
	g, b := s.g, st.Budget
	heads, d := len(g.Q), g.D()
	sh := gpu.Shape{Batch: 1, Heads: heads, KVHeads: 1, HeadDim: d, Context: st.T + 1, DType: gpu.FP16}
	s.q = s.q[:0]
	for h := range g.Q {
		s.q = append(s.q, g.Q[h].Row(st.T)...)
	}
	lists := sh.Lists(s.sel)
	s.idx = slices.Grow(s.idx[:0], lists*b.Total)[:lists*b.Total]
	gs, err := s.m.ev.group(g)
	if err != nil {
		return nil, err
	}
	err = s.m.ev.Dev.Do(func(c *gpu.Ctx) error {
		qb, err := gpu.Upload(c, s.q)
		if err != nil {
			return err
		}
		defer c.Free(qb)
		idx, free, err := s.m.step(c, gs, sh, s.sel, b, qb)
		if free != nil {
			defer free()
		}
		if err != nil {
			return err
		}
		if err := c.Sync(); err != nil {
			return err
		}
		return gpu.Download(c, s.idx, idx)
	})
	if err != nil {
		return nil, fmt.Errorf("gpu %s position %d: %w", s.m.name, st.T, err)
	}
	if len(sel) != heads {
		sel = make([][]int32, heads)
	}
	for h := range sel {
		l := h
		if s.sel == gpu.PerKVHead {
			l = 0
		}
		sel[h] = append(sel[h][:0], s.idx[l*b.Total:(l+1)*b.Total]...)
		slices.Sort(sel[h]) // the steps' lists are ascending already; cheap insurance
	}
	return sel, nil
}
