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
		Name: "hashattention",
		Doc:  "gpu.HashStep: key codes at prefill, query codes + XOR/popcount counting select per step (silu MLPs d→128→128→bits, bits a multiple of 32)",
		New:  newHashAdapter,
	})
}

// hashPrep is a group's device state for HashAttention: the packed query
// maps of its query heads and every query head's key codes over all T
// positions ([Heads][T][Bits/32] uint32).
type hashPrep struct {
	qw, kc gpu.Buffer
}

func newHashAdapter(ev *Evaluator, _ any, cpu methods.Method) (methods.Method, error) {
	h, ok := cpu.(*methods.HashAttention)
	if !ok {
		return nil, fmt.Errorf("gpu hashattention: method is a %T", cpu)
	}
	bits := h.Bits()
	if bits%32 != 0 {
		return nil, fmt.Errorf("%w: hashattention bits %d (the GPU codes are multiples of 32 bits)", ErrUnsupported, bits)
	}
	m := &gpuMethod{Method: cpu, ev: ev, name: "hashattention"}
	// maps returns the group's packed query and key maps, or
	// ErrUnsupported for maps the kernels do not implement.
	maps := func(g *attn.Group) (qw, kw []float32, err error) {
		var qm, km []gpu.HashMap
		for _, qh := range g.QHeads {
			hm, act, err := h.HeadMaps(g.Layer, qh, g.D())
			if err != nil {
				return nil, nil, err
			}
			if act != "silu" {
				return nil, nil, fmt.Errorf("activation %q: the GPU maps use silu (run with device: cpu)", act)
			}
			for _, p := range []struct {
				m   *methods.MLP
				dst *[]gpu.HashMap
			}{{hm.Q, &qm}, {hm.K, &km}} {
				if len(p.m.W) != 3 || p.m.W[0].Rows != gpu.HashHidden || p.m.W[1].Rows != gpu.HashHidden {
					return nil, nil, fmt.Errorf("maps of layer %d head %d are not d→%d→%d→bits (run with device: cpu)", g.Layer, qh, gpu.HashHidden, gpu.HashHidden)
				}
				*p.dst = append(*p.dst, gpu.HashMap{W1: p.m.W[0].Data, B1: p.m.B[0], W2: p.m.W[1].Data, B2: p.m.B[1], W3: p.m.W[2].Data, B3: p.m.B[2]})
			}
		}
		if qw, err = gpu.PackHashMaps(qm, g.D(), bits); err != nil {
			return nil, nil, err
		}
		kw, err = gpu.PackHashMaps(km, g.D(), bits)
		return qw, kw, err
	}
	prep := func(g *attn.Group) (*hashPrep, error) {
		v, err := ev.prepared(m, g, func(c *gpu.Ctx, s *groupState) (any, func(*gpu.Ctx), error) {
			qw, kw, err := maps(g)
			if err != nil {
				return nil, nil, err
			}
			sh := gpu.Shape{Batch: 1, Heads: len(g.Q), KVHeads: 1, HeadDim: g.D(), Context: s.T, DType: gpu.FP16}
			st, err := gpu.NewHashStep(c, sh, gpu.PerHead, bits, sh.Heads, budget.Budget{N: s.T, Total: 1, Heavy: 1})
			if err != nil {
				return nil, nil, err
			}
			defer st.Free(c)
			p := &hashPrep{}
			free := func(c *gpu.Ctx) {
				c.Free(p.qw)
				c.Free(p.kc)
			}
			kwb, err := gpu.Upload(c, kw)
			if err != nil {
				return nil, nil, err
			}
			defer c.Free(kwb)
			if p.qw, err = gpu.Upload(c, qw); err != nil {
				return nil, nil, err
			}
			if p.kc, err = c.Alloc(st.KeyCodeBytes()); err != nil {
				free(c)
				return nil, nil, err
			}
			if err := st.EnqueueKeyCodes(c, 0, s.K, kwb, p.kc); err != nil {
				free(c)
				return nil, nil, err
			}
			if err := c.Sync(); err != nil {
				free(c)
				return nil, nil, err
			}
			return p, free, nil
		})
		if err != nil {
			return nil, err
		}
		return v.(*hashPrep), nil
	}
	m.prepare = func(g *attn.Group) error {
		_, err := prep(g)
		return err
	}
	m.step = func(c *gpu.Ctx, s *groupState, sh gpu.Shape, sel gpu.Selection, b budget.Budget, q gpu.Buffer) (gpu.Buffer, func(), error) {
		v, err := s.built(m, "key codes")
		if err != nil {
			return gpu.Buffer{}, nil, err
		}
		p := v.(*hashPrep)
		st, err := gpu.NewHashStep(c, sh, sel, bits, sh.Heads, b)
		if err != nil {
			return gpu.Buffer{}, nil, err
		}
		// The step reads codes [Heads][t+1][words]: copy each head's
		// prefix out of the [Heads][T][words] prefill codes.
		row := int64(bits / 8)
		n := int64(sh.Context)
		kc := p.kc
		var kcs gpu.Buffer
		free := func() {
			st.Free(c)
			c.Free(kcs)
		}
		if sh.Context != s.T {
			if kcs, err = c.Alloc(int64(sh.Heads) * n * row); err != nil {
				return gpu.Buffer{}, free, err
			}
			for h := 0; h < sh.Heads; h++ {
				dst := gpu.Buffer{Ptr: kcs.Ptr + uintptr(int64(h)*n*row), Size: n * row}
				src := gpu.Buffer{Ptr: p.kc.Ptr + uintptr(int64(h)*int64(s.T)*row), Size: n * row}
				if err := c.CopyDtoD(dst, src, n*row, 0); err != nil {
					return gpu.Buffer{}, free, err
				}
			}
			kc = kcs
		}
		return st.Idx, free, st.EnqueueSelect(c, 0, q, p.qw, kc)
	}
	return m, nil
}
