package gpueval

import (
	"fmt"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/gpu"
	"github.com/hbench/hbench/methods"
	"github.com/hbench/hbench/registry"
	"github.com/hbench/hbench/tensor"
)

func init() {
	Register(registry.Entry[Adapter]{
		Name: "lsh",
		Doc:  "gpu.LSHStep: the CPU's hyperplanes, key codes at prefill, query codes + XOR/popcount counting select per step",
		New:  newLSHAdapter,
	})
}

// lshMethod is LSH on the GPU. Its hyperplanes depend on the Options'
// seed as well as the group (methods.LSH.Planes), so each Prepare builds
// a gpuMethod for its seed.
type lshMethod struct {
	methods.Method
	ev         *Evaluator
	l          *methods.LSH
	bits, bins int // code bits; distinct scores of a per-head list
	mips       bool
}

// lshKey names a group's prepared LSH state: the planes are drawn per
// (group, seed).
type lshKey struct {
	m    *lshMethod
	seed int64
}

// lshPrep is a group's device state for LSH and one seed: the packed
// planes ([In][Words*32] fp32) and the key codes over all T positions
// ([T][Words] uint32; with MIPS, M² is the largest |k|² of all T keys,
// as methods.LSH).
type lshPrep struct {
	p, kc gpu.Buffer
}

func newLSHAdapter(ev *Evaluator, _ any, cpu methods.Method) (methods.Method, error) {
	l, ok := cpu.(*methods.LSH)
	if !ok {
		return nil, fmt.Errorf("gpu lsh: method is a %T", cpu)
	}
	p := l.Params()
	// Codes are padded to whole 32-bit words (zero planes: a constant
	// added to every score).
	bins := 32*((p.Bits+31)/32) + 1
	if bins > gpu.MaxHashBins {
		return nil, fmt.Errorf("%w: lsh bits %d (the GPU counting select keeps at most %d distinct scores)", ErrUnsupported, p.Bits, gpu.MaxHashBins)
	}
	return &lshMethod{Method: cpu, ev: ev, l: l, bits: p.Bits, bins: bins, mips: p.MIPS}, nil
}

// Prepare implements methods.Method.
func (m *lshMethod) Prepare(g *attn.Group, opt methods.Options) (methods.Selector, error) {
	if opt.Shared && (m.bins-1)*len(g.Q)+1 > gpu.MaxHashBins {
		return nil, fmt.Errorf("gpu lsh: %d bits summed over %d query heads exceed the GPU counting select's %d distinct scores (run with device: cpu)", m.bits, len(g.Q), gpu.MaxHashBins)
	}
	key := lshKey{m: m, seed: opt.Seed}
	gm := &gpuMethod{Method: m.Method, ev: m.ev, name: "lsh"}
	gm.prepare = func(g *attn.Group) error {
		_, err := m.ev.prepared(key, g, func(c *gpu.Ctx, s *groupState) (any, func(*gpu.Ctx), error) {
			return m.build(c, s, g, opt)
		})
		return err
	}
	gm.step = func(c *gpu.Ctx, s *groupState, sh gpu.Shape, sel gpu.Selection, b budget.Budget, q gpu.Buffer) (gpu.Buffer, func(), error) {
		v, err := s.built(key, "key codes")
		if err != nil {
			return gpu.Buffer{}, nil, err
		}
		p := v.(*lshPrep)
		st, err := gpu.NewLSHStep(c, sh, sel, m.bits, m.mips, b)
		if err != nil {
			return gpu.Buffer{}, nil, err
		}
		free := func() { st.Free(c) }
		if err := c.CopyDtoD(st.P, p.p, st.P.Size, 0); err != nil {
			return gpu.Buffer{}, free, err
		}
		if err := st.EnqueueQueryCodes(c, 0, q); err != nil {
			return gpu.Buffer{}, free, err
		}
		// One KV head, one sequence: the codes of keys 0..t are the
		// first t+1 rows of the prefill codes.
		kc := gpu.Buffer{Ptr: p.kc.Ptr, Size: int64(sh.Context) * int64(st.Words) * 4}
		return st.Hash.Idx, free, st.Hash.EnqueueSelectCodes(c, 0, kc)
	}
	return gm.Prepare(g, opt)
}

// build uploads g's planes for opt's seed and computes the key codes of
// all its T keys.
func (m *lshMethod) build(c *gpu.Ctx, s *groupState, g *attn.Group, opt methods.Options) (any, func(*gpu.Ctx), error) {
	sh := gpu.Shape{Batch: 1, Heads: len(g.Q), KVHeads: 1, HeadDim: g.D(), Context: s.T, DType: gpu.FP16}
	st, err := gpu.NewLSHStep(c, sh, gpu.PerHead, m.bits, m.mips, budget.Budget{N: s.T, Total: 1, Heavy: 1})
	if err != nil {
		return nil, nil, err
	}
	defer st.Free(c)
	if err := st.SetPlanes(c, []*tensor.Mat{m.l.Planes(g, opt)}); err != nil {
		return nil, nil, err
	}
	if err := st.EnqueueKeyCodes(c, 0, s.K); err != nil {
		return nil, nil, err
	}
	bufs, err := cloneBuffers(c, st.P, st.KC)
	if err != nil {
		return nil, nil, err
	}
	p := &lshPrep{p: bufs[0], kc: bufs[1]}
	return p, func(c *gpu.Ctx) {
		c.Free(p.p)
		c.Free(p.kc)
	}, nil
}
