package gpueval

import (
	"fmt"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/gpu"
	"github.com/hbench/hbench/methods"
	"github.com/hbench/hbench/registry"
)

func init() {
	Register(registry.Entry[Adapter]{
		Name: "doublesparsity",
		Doc:  "gpu.DSStep: the CPU's calibrated channels, label cache at prefill, label scores + radix top-k per step",
		New:  newDSAdapter,
	})
}

// dsPrep is a group's device state for Double Sparsity: its channels
// ([R] int32) and the label cache of all T keys ([T][R]: fp16, or with
// bits < 16 the float32 quantised values).
type dsPrep struct {
	ch, lb gpu.Buffer
}

func newDSAdapter(ev *Evaluator, params any, cpu methods.Method) (methods.Method, error) {
	ds, ok := cpu.(*methods.DoubleSparsity)
	if !ok {
		return nil, fmt.Errorf("gpu doublesparsity: method is a %T", cpu)
	}
	p, ok := params.(*methods.DoubleSparsityParams)
	if !ok {
		return nil, fmt.Errorf("gpu doublesparsity: parameters are a %T", params)
	}
	r, bits := p.Channels, p.Bits
	m := &gpuMethod{Method: cpu, ev: ev, name: "doublesparsity"}
	prep := func(g *attn.Group) (*dsPrep, error) {
		// The channels (with calibration self, a pass over every query of
		// the group) are computed before the device is taken, once per
		// group: later Prepares find the group's state built.
		gs, err := ev.group(g)
		if err != nil {
			return nil, err
		}
		gs.mu.Lock()
		_, built := gs.extras[m]
		gs.mu.Unlock()
		var ch []int
		if !built {
			if ch, err = ds.Channels(g); err != nil {
				return nil, err
			}
		}
		v, err := ev.prepared(m, g, func(c *gpu.Ctx, s *groupState) (any, func(*gpu.Ctx), error) {
			if ch == nil { // another Prepare of g registered the state first but did not build it yet
				var err error
				if ch, err = ds.Channels(g); err != nil {
					return nil, nil, err
				}
			}
			sh := gpu.Shape{Batch: 1, Heads: len(g.Q), KVHeads: 1, HeadDim: g.D(), Context: s.T, DType: gpu.FP16}
			st, err := gpu.NewDSStep(c, sh, gpu.PerHead, r, bits, budget.Budget{N: s.T, Total: 1, Heavy: 1})
			if err != nil {
				return nil, nil, err
			}
			defer st.Free(c)
			if err := st.SetChannels(c, [][]int{ch}); err != nil {
				return nil, nil, err
			}
			if err := st.EnqueueLabels(c, 0, s.K); err != nil {
				return nil, nil, err
			}
			bufs, err := cloneBuffers(c, st.CH, st.LB)
			if err != nil {
				return nil, nil, err
			}
			p := &dsPrep{ch: bufs[0], lb: bufs[1]}
			return p, func(c *gpu.Ctx) {
				c.Free(p.ch)
				c.Free(p.lb)
			}, nil
		})
		if err != nil {
			return nil, err
		}
		return v.(*dsPrep), nil
	}
	m.prepare = func(g *attn.Group) error {
		_, err := prep(g)
		return err
	}
	m.step = func(c *gpu.Ctx, s *groupState, sh gpu.Shape, sel gpu.Selection, b budget.Budget, q gpu.Buffer) (gpu.Buffer, func(), error) {
		v, err := s.built(m, "label cache")
		if err != nil {
			return gpu.Buffer{}, nil, err
		}
		p := v.(*dsPrep)
		st, err := gpu.NewDSStep(c, sh, sel, r, bits, b)
		if err != nil {
			return gpu.Buffer{}, nil, err
		}
		free := func() { st.Free(c) }
		// One KV head, one sequence: the labels of keys 0..t are the
		// first t+1 rows of the prefill cache.
		for _, cp := range []struct{ dst, src gpu.Buffer }{{st.CH, p.ch}, {st.LB, p.lb}} {
			if err := c.CopyDtoD(cp.dst, cp.src, cp.dst.Size, 0); err != nil {
				return gpu.Buffer{}, free, err
			}
		}
		return st.Idx, free, st.EnqueueSelect(c, 0, q)
	}
	return m, nil
}
