package gpu

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/methods"
	"github.com/hbench/hbench/tensor"
	"github.com/hbench/hbench/workloads"
)

// h2oTwin is a float64 twin of methods.H2O's Selector (h2oSelector) that
// exposes its accumulated scores and can be told to follow the GPU's
// choice after a near-tie. Its arithmetic is the CPU's (float32 logits by
// tensor.Dot32, float64 exp and sums), and the tests check its lists
// against methods.H2O's at every step until it is told to follow.
type h2oTwin struct {
	g      *attn.Group
	shared bool
	recent float64
	acc    [][]float64 // per track: [T] accumulated scores
	keep   [][]int32   // per track: the cache (ascending)
}

// newH2OTwin sets up the caches at the end of the prefill (positions <
// t0), as h2oSelector.start.
func newH2OTwin(g *attn.Group, shared bool, recent float64, init string, t0 int) *h2oTwin {
	nt := len(g.Q)
	if shared {
		nt = 1
	}
	w := &h2oTwin{g: g, shared: shared, recent: recent, acc: make([][]float64, nt), keep: make([][]int32, nt)}
	for i := range w.acc {
		w.acc[i] = make([]float64, g.T())
		for j := 0; j < t0; j++ {
			w.keep[i] = append(w.keep[i], int32(j))
		}
	}
	if init != "prefill" {
		return w
	}
	l := make([]float32, t0)
	e := make([]float64, t0)
	for i := range g.Q {
		a := w.acc[min(i, nt-1)]
		for t := 0; t < t0; t++ {
			q := g.Q[i].Row(t)
			m := float32(math.Inf(-1))
			for j := 0; j <= t; j++ {
				l[j] = tensor.Dot32(q, g.K.Row(j)) * g.Scale
				m = max(m, l[j])
			}
			var z float64
			for j := 0; j <= t; j++ {
				e[j] = math.Exp(float64(l[j] - m))
				z += e[j]
			}
			for j := 0; j <= t; j++ {
				a[j] += e[j] / z
			}
		}
	}
	return w
}

// selectKeys chooses track ti's keys for st (h2oSelector.step without
// the accumulation).
func (w *h2oTwin) selectKeys(ti int, st methods.Step) ([]int32, error) {
	b := H2OBudget(st.Budget, w.recent)
	lo, hi := b.MiddleRange()
	var cand []int32
	for _, j := range w.keep[ti] {
		if int(j) >= lo && int(j) < hi {
			cand = append(cand, j)
		}
	}
	if len(cand) < b.Heavy {
		return nil, fmt.Errorf("twin: heavy %d > %d cached at %d", b.Heavy, len(cand), st.T)
	}
	acc := w.acc[ti]
	slices.SortFunc(cand, func(a, c int32) int {
		switch {
		case acc[a] > acc[c]:
			return -1
		case acc[a] < acc[c]:
			return 1
		}
		return int(a - c)
	})
	heavy := cand[:b.Heavy]
	slices.Sort(heavy)
	var keep []int32
	for i := 0; i < b.Sink; i++ {
		keep = append(keep, int32(i))
	}
	keep = append(keep, heavy...)
	for i := b.N - b.Local; i < b.N; i++ {
		keep = append(keep, int32(i))
	}
	w.keep[ti] = keep
	return keep, nil
}

// accumulate adds the softmax weights of track ti's query head(s) at T
// over its keys.
func (w *h2oTwin) accumulate(ti, T int) {
	heads := []int{ti}
	if w.shared {
		heads = heads[:0]
		for i := range w.g.Q {
			heads = append(heads, i)
		}
	}
	keep := w.keep[ti]
	l := make([]float32, len(keep))
	e := make([]float64, len(keep))
	for _, i := range heads {
		q := w.g.Q[i].Row(T)
		m := float32(math.Inf(-1))
		for k, j := range keep {
			l[k] = tensor.Dot32(q, w.g.K.Row(int(j))) * w.g.Scale
			m = max(m, l[k])
		}
		var z float64
		for k, x := range l {
			e[k] = math.Exp(float64(x - m))
			z += e[k]
		}
		for k, j := range keep {
			w.acc[ti][j] += e[k] / z
		}
	}
}

// h2oCase is one run of the GPU pipeline beside the CPU: steps
// consecutive positions from t0.
type h2oCase struct {
	s         Shape
	sel       Selection
	spec      budget.Spec
	recent    float64
	init      string
	t0, steps int
}

// h2oTol is the relative tolerance of the GPU's accumulated scores
// against the twin's, and of a near-tie: the GPU's logits are fp32 dot
// products in another order than tensor.Dot32 (relative error ~1e-7 of
// the logit, so ~1e-6 of a weight), the rest is double as on the CPU.
const h2oTol = 1e-4

// h2oSelectors makes methods.H2O (tc's init and recent) and its twin (the
// prefill scores and accumulation from tc.t0) for each (batch, KV head)
// group over the K of kv, the V of vv and the queries q ([Batch][Heads]),
// and where, which maps list li to its (group, track).
func h2oSelectors(t *testing.T, tc h2oCase, q []*tensor.Mat, kv, vv kvData, scale float32) ([]methods.Selector, []*h2oTwin, func(li int) (int, int)) {
	t.Helper()
	s := tc.s
	g := s.Heads / s.KVHeads
	shared := tc.sel == PerKVHead
	e, ok := methods.Registry.Lookup("h2o")
	if !ok {
		t.Fatal("method h2o not registered")
	}
	p := e.Defaults().(*methods.H2OParams)
	p.Init, p.Recent = tc.init, tc.recent
	m, err := e.New(p, methods.Env{})
	if err != nil {
		t.Fatal(err)
	}
	var sels []methods.Selector
	var twins []*h2oTwin
	for bb := 0; bb < s.Batch; bb++ {
		for kh := 0; kh < s.KVHeads; kh++ {
			grp := &attn.Group{K: kv.mats[bb*s.KVHeads+kh], V: vv.mats[bb*s.KVHeads+kh], Scale: scale}
			for h := kh * g; h < (kh+1)*g; h++ {
				grp.Q = append(grp.Q, q[bb*s.Heads+h])
				grp.QHeads = append(grp.QHeads, h)
			}
			sl, err := m.Prepare(grp, methods.Options{Shared: shared})
			if err != nil {
				t.Fatal(err)
			}
			sels = append(sels, sl)
			twins = append(twins, newH2OTwin(grp, shared, tc.recent, tc.init, tc.t0))
		}
	}
	nl := s.Lists(tc.sel)
	where := func(li int) (int, int) {
		bb, l := li/nl, li%nl
		if shared {
			return bb*s.KVHeads + l, 0
		}
		return bb*s.KVHeads + l/g, l % g
	}
	return sels, twins, where
}

// runH2OCase runs the GPU H2O pipeline for tc.steps consecutive steps and
// compares, step by step, its lists with the twin's and methods.H2O's
// (exactly, or where they differ, as a multiset of the twin's scores
// within h2oTol, after which the twin follows the GPU), its accumulated
// scores with the twin's, and its output with the float64 reference on
// its lists. q holds [Batch][Heads] query matrices of Context rows.
func runH2OCase(t *testing.T, d *Device, name string, tc h2oCase, q []*tensor.Mat, kv, vv kvData, scale float32) {
	t.Helper()
	s, sel := tc.s, tc.sel
	g := s.Heads / s.KVHeads
	shared := sel == PerKVHead
	sels, twins, where := h2oSelectors(t, tc, q, kv, vv, scale)
	nl := s.Lists(sel)
	lists := s.Batch * nl
	pre := make([]float32, lists*s.Context)
	for li := 0; li < lists; li++ {
		gi, ti := where(li)
		for j := 0; j < tc.t0; j++ {
			pre[li*s.Context+j] = float32(twins[gi].acc[ti][j])
		}
	}
	last := tc.t0 + tc.steps - 1
	capTotal := H2OBudget(tc.spec.Resolve(last+1), tc.recent).Total
	followed := make([]bool, lists)
	ties := 0
	var worstOut, worstAcc float64
	qstep := make([]float32, s.Batch*s.Heads*s.HeadDim)
	err := d.Do(func(c *Ctx) error {
		h, err := NewH2OStep(c, s, sel, tc.recent, capTotal)
		if err != nil {
			return err
		}
		defer h.Free(c)
		var in DecodeInputs
		in.Scale = scale
		for _, u := range []struct {
			b   *Buffer
			src []uint16
		}{{&in.K, kv.raw}, {&in.V, vv.raw}} {
			if *u.b, err = Upload(c, u.src); err != nil {
				return err
			}
			defer c.Free(*u.b)
		}
		if in.Q, err = c.Alloc(int64(len(qstep)) * 4); err != nil {
			return err
		}
		defer c.Free(in.Q)
		preBuf, err := Upload(c, pre)
		if err != nil {
			return err
		}
		defer c.Free(preBuf)
		for _, b := range []Buffer{h.Pos, h.Acc, h.Idx, h.Lg} {
			if err := c.Poison(b); err != nil {
				return err
			}
		}
		st, err := c.NewStream()
		if err != nil {
			return err
		}
		defer c.DestroyStream(st)
		cpu := make([][][]int32, len(sels))
		var pos, idx []int32
		var acc []float64
		var out []float32
		download := func(total int) error {
			pos, idx = make([]int32, lists*h.Cap), make([]int32, lists*total)
			acc, out = make([]float64, lists*h.Cap), make([]float32, len(qstep))
			return errors.Join(Download(c, pos, h.Pos), Download(c, idx, h.Idx), Download(c, acc, h.Acc), Download(c, out, h.Dec.Out))
		}
		for t := tc.t0; t <= last; t++ {
			b := tc.spec.Resolve(t + 1)
			eb := H2OBudget(b, tc.recent)
			for bb := 0; bb < s.Batch; bb++ {
				for hh := 0; hh < s.Heads; hh++ {
					copy(qstep[(bb*s.Heads+hh)*s.HeadDim:], q[bb*s.Heads+hh].Row(t))
				}
			}
			if err := CopyTo(c, in.Q, qstep); err != nil {
				return err
			}
			if t == tc.t0 {
				if err := h.EnqueueStart(c, st, in, preBuf, t, b); err != nil {
					return err
				}
			} else {
				// One CUDA graph per step, as the bench times it.
				if err := h.Plan(c, b); err != nil {
					return err
				}
				gr, err := c.Capture(st, func() error { return h.Enqueue(c, st, in, t, b) })
				if err != nil {
					return err
				}
				if err := c.LaunchGraph(gr, st); err != nil {
					return err
				}
				if err := c.SyncStream(st); err != nil {
					return err
				}
				c.DestroyGraph(gr)
			}
			if err := download(eb.Total); err != nil {
				return err
			}
			for gi, sl := range sels {
				ls, err := sl.Select(methods.Step{T: t, Budget: b}, nil)
				if err != nil {
					return fmt.Errorf("methods.H2O at %d: %w", t, err)
				}
				cpu[gi] = cpu[gi][:0]
				for _, l := range ls {
					cpu[gi] = append(cpu[gi], slices.Clone(l))
				}
			}
			for li := 0; li < lists; li++ {
				gi, ti := where(li)
				tw := twins[gi]
				accBefore := slices.Clone(tw.acc[ti])
				want, err := tw.selectKeys(ti, methods.Step{T: t, Budget: b})
				if err != nil {
					return err
				}
				if !followed[li] && !slices.Equal(want, cpu[gi][ti]) {
					return fmt.Errorf("%s: step %d list %d: the twin's list differs from methods.H2O's\n twin %v\n  cpu %v", name, t, li, want, cpu[gi][ti])
				}
				slots := pos[li*h.Cap : li*h.Cap+eb.Total]
				if got := idx[li*eb.Total : (li+1)*eb.Total]; !slices.Equal(got, slots) {
					return fmt.Errorf("%s: step %d list %d: Idx %v is not the slots %v", name, t, li, got, slots)
				}
				got := slices.Sorted(slices.Values(slots))
				if !slices.Equal(got, want) {
					// A near-tie: the same multiset of CPU scores.
					a, w := make([]float64, len(got)), make([]float64, len(want))
					for i := range got {
						if got[i] < 0 || int(got[i]) > t || (i > 0 && got[i] == got[i-1]) {
							return fmt.Errorf("%s: step %d list %d: bad list %v", name, t, li, got)
						}
						a[i], w[i] = accBefore[got[i]], accBefore[want[i]]
					}
					slices.Sort(a)
					slices.Sort(w)
					for i := range a {
						if math.Abs(a[i]-w[i]) > h2oTol*math.Max(math.Abs(a[i]), math.Abs(w[i]))+1e-300 {
							return fmt.Errorf("%s: step %d list %d: GPU list differs from the CPU's beyond a near-tie (score %g vs %g)\n gpu %v\n cpu %v", name, t, li, a[i], w[i], got, want)
						}
					}
					ties++
					followed[li] = true
					tw.keep[ti] = got
				}
			}
			// Accumulate on the twin (each track once), then compare scores.
			done := map[[2]int]bool{}
			for li := 0; li < lists; li++ {
				gi, ti := where(li)
				if !done[[2]int{gi, ti}] {
					twins[gi].accumulate(ti, t)
					done[[2]int{gi, ti}] = true
				}
				for i := 0; i < eb.Total; i++ {
					pj := pos[li*h.Cap+i]
					ga, wa := acc[li*h.Cap+i], twins[gi].acc[ti][pj]
					diff := math.Abs(ga - wa)
					if !(diff <= h2oTol*math.Abs(wa)+1e-300) {
						return fmt.Errorf("%s: step %d list %d position %d: accumulated score %g, want %g", name, t, li, pj, ga, wa)
					}
					if wa != 0 {
						worstAcc = max(worstAcc, diff/math.Abs(wa))
					}
				}
			}
			// Output against the float64 reference on the GPU's lists.
			ref := make([]float64, len(out))
			for bb := 0; bb < s.Batch; bb++ {
				for hh := 0; hh < s.Heads; hh++ {
					kvi := bb*s.KVHeads + hh/g
					li := bb*nl + hh
					if shared {
						li = bb*nl + hh/g
					}
					o := (bb*s.Heads + hh) * s.HeadDim
					logits := attn.Logits(qstep[o:o+s.HeadDim], kv.mats[kvi], t+1, scale, nil)
					copy(ref[o:o+s.HeadDim], attn.SparseOutput(logits, idx[li*eb.Total:(li+1)*eb.Total], vv.mats[kvi], nil))
				}
			}
			re := relErr(out, ref)
			if !(re < 1e-3) {
				return fmt.Errorf("%s: step %d: output rel err %.2e", name, t, re)
			}
			worstOut = max(worstOut, re)
		}
		// A repeated step changes nothing (the bench replays one).
		pos0, acc0, out0 := pos, acc, out
		b := tc.spec.Resolve(last + 1)
		gr, err := c.Capture(st, func() error { return h.Enqueue(c, st, in, last, b) })
		if err != nil {
			return err
		}
		defer c.DestroyGraph(gr)
		for range 2 {
			if err := c.LaunchGraph(gr, st); err != nil {
				return err
			}
		}
		if err := c.SyncStream(st); err != nil {
			return err
		}
		if err := download(H2OBudget(b, tc.recent).Total); err != nil {
			return err
		}
		if !slices.Equal(pos, pos0) || !slices.Equal(acc, acc0) || !slices.Equal(out, out0) {
			return fmt.Errorf("%s: a repeated step changed the state or the output", name)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Logf("%s: %d steps from %d, total %d..%d: lists = methods.H2O (%d near-tie list-steps followed), scores rel err <= %.1e, output rel err <= %.1e, repeat is a no-op",
		name, tc.steps, tc.t0, H2OBudget(tc.spec.Resolve(tc.t0+1), tc.recent).Total, capTotal, ties, worstAcc, worstOut)
}

// randQueries returns [Batch][Heads] query matrices of Context rows.
func randQueries(rng *rand.Rand, s Shape, amp float64) []*tensor.Mat {
	var q []*tensor.Mat
	for i := 0; i < s.Batch*s.Heads; i++ {
		m := tensor.NewMat(s.Context, s.HeadDim)
		for j := range m.Data {
			m.Data[j] = float32(amp * rng.NormFloat64())
		}
		q = append(q, m)
	}
	return q
}

func TestH2OStepMatchesReference(t *testing.T) {
	d := device(t)
	rng := rand.New(rand.NewPCG(21, 22))
	for _, tc := range []h2oCase{
		{Shape{1, 4, 1, 128, 900, BF16}, PerHead, budget.Spec{Sparsity: 8, Sink: 4, Local: 16}, 0, "prefill", 600, 200},
		{Shape{1, 4, 1, 128, 900, BF16}, PerKVHead, budget.Spec{Sparsity: 8, Sink: 4, Local: 16}, 0, "prefill", 600, 200},
		{Shape{2, 8, 2, 128, 700, BF16}, PerKVHead, budget.Spec{Tokens: 64, Sink: 2, Local: 8}, 0, "zero", 400, 150},
		{Shape{2, 8, 2, 128, 700, BF16}, PerHead, budget.Spec{Sparsity: 16, Sink: 4, Local: 4}, 0.5, "prefill", 400, 150},
		{Shape{1, 2, 2, 64, 500, FP16}, PerHead, budget.Spec{Tokens: 40}, 0, "zero", 200, 100},                         // no windows
		{Shape{1, 2, 2, 64, 500, FP16}, PerKVHead, budget.Spec{Tokens: 13, Sink: 4, Local: 8}, 0, "prefill", 200, 100}, // heavy 1
		{Shape{1, 4, 1, 128, 300, BF16}, PerKVHead, budget.Spec{Tokens: 1}, 0, "zero", 100, 50},                        // k = 1
		{Shape{1, 8, 1, 128, 300, BF16}, PerKVHead, budget.Spec{Tokens: 41, Sink: 4, Local: 4}, 0.5, "zero", 100, 80},
		{Shape{1, 32, 8, 128, 2100, BF16}, PerKVHead, budget.Spec{Sparsity: 32, Sink: 4, Local: 32}, 0, "zero", 2000, 60},
		{Shape{1, 32, 8, 128, 2100, BF16}, PerHead, budget.Spec{Sparsity: 32, Sink: 4, Local: 32}, 0, "zero", 2000, 60},
	} {
		name := fmt.Sprintf("%+v %v %+v recent %g %s", tc.s, tc.sel, tc.spec, tc.recent, tc.init)
		kv, vv := randKV(rng, tc.s), randKV(rng, tc.s)
		q := randQueries(rng, tc.s, 2)
		runH2OCase(t, d, name, tc, q, kv, vv, float32(1/math.Sqrt(float64(tc.s.HeadDim))))
	}
}

// TestH2OStepOnRealCapture runs the pipeline on the shipped real capture
// (testdata/persuasion: one KV head and its two query heads per layer),
// 150 steps per budget, per-head and shared, with the capture's scale.
func TestH2OStepOnRealCapture(t *testing.T) {
	d := device(t)
	files, _ := filepath.Glob("../testdata/persuasion/*.safetensors")
	if len(files) == 0 {
		t.Skip("no testdata/persuasion capture")
	}
	for _, f := range files {
		c, err := workloads.ReadCapture(f)
		if err != nil {
			t.Fatal(err)
		}
		s := Shape{Batch: 1, Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.D, Context: c.T, DType: FP16}
		if err := s.Validate(); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		kv, vv := captureKV(c.K, c.T), captureKV(c.V, c.T)
		t0 := min(1024, c.T-150)
		for _, sel := range []Selection{PerHead, PerKVHead} {
			for _, v := range []struct {
				spec   budget.Spec
				recent float64
				init   string
			}{
				{budget.Spec{Sparsity: 8, Sink: 4, Local: 16}, 0, "prefill"},
				{budget.Spec{Tokens: 64, Sink: 4, Local: 8}, 0, "zero"},
				{budget.Spec{Sparsity: 16, Sink: 4}, 0.5, "prefill"},
			} {
				tc := h2oCase{s: s, sel: sel, spec: v.spec, recent: v.recent, init: v.init, t0: t0, steps: 150}
				name := fmt.Sprintf("%s %v %+v recent %g %s", filepath.Base(f), sel, v.spec, v.recent, v.init)
				runH2OCase(t, d, name, tc, c.Q, kv, vv, c.Scale)
			}
		}
	}
}

// TestCompileH2OArchs compiles every h2o.cu variant for sm_80 and sm_90;
// it needs NVRTC, not a device.
func TestCompileH2OArchs(t *testing.T) {
	compileSelectionArchs(t, "h2o.cu", h2oSrc, H2ODefines)
}

func TestH2OBudget(t *testing.T) {
	b := budget.Spec{Sparsity: 8, Sink: 4, Local: 16}.Resolve(1000) // total 125
	if e := H2OBudget(b, 0); e != b {
		t.Errorf("recent 0 changed %+v to %+v", b, e)
	}
	if e := H2OBudget(b, 0.5); e.Local != 61 || e.Heavy != 60 || e.Sink+e.Local+e.Heavy != e.Total {
		t.Errorf("recent 0.5: %+v", e)
	}
	if e := H2OBudget(budget.Spec{Tokens: 20, Local: 16}.Resolve(100), 0.5); e.Local != 16 || e.Heavy != 4 {
		t.Errorf("recent below the local window: %+v", e)
	}
}

// h2oModelSelect is a Go model of h2o_select on one list's slots.
func h2oModelSelect(P []int32, A []float64, prev, total, lo, hi, T, addT, need int) {
	bs := -1
	for i := 0; i < prev; i++ {
		p := int(P[i])
		if p >= lo && p < hi && (bs < 0 || A[i] < A[bs] || (A[i] == A[bs] && P[i] > P[bs])) {
			bs = i
		}
	}
	switch {
	case need == 1 && bs >= 0 && addT == 1:
		P[bs], A[bs] = int32(T), 0
	case need == 1 && bs >= 0:
		P[bs], A[bs] = P[prev-1], A[prev-1]
	case need == 0 && addT == 1:
		P[prev], A[prev] = int32(T), 0
	}
}

// TestH2OSlotModel runs a Go model of the GPU pipeline (EnqueueStart's
// top-k, stepParams, h2o_select's eviction, the accumulation in the CPU's
// arithmetic) against methods.H2O for every case of the GPU tests: the
// lists must be equal at every step. It needs no device.
func TestH2OSlotModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	for _, tc := range []h2oCase{
		{Shape{1, 4, 1, 64, 400, BF16}, PerHead, budget.Spec{Sparsity: 8, Sink: 4, Local: 16}, 0, "prefill", 200, 150},
		{Shape{1, 4, 1, 64, 400, BF16}, PerKVHead, budget.Spec{Sparsity: 8, Sink: 4, Local: 16}, 0, "prefill", 200, 150},
		{Shape{2, 4, 2, 64, 300, BF16}, PerKVHead, budget.Spec{Tokens: 40, Sink: 2, Local: 8}, 0, "zero", 150, 120},
		{Shape{1, 4, 2, 64, 400, BF16}, PerHead, budget.Spec{Sparsity: 16, Sink: 4, Local: 4}, 0.5, "prefill", 200, 150},
		{Shape{1, 2, 2, 64, 300, FP16}, PerHead, budget.Spec{Tokens: 40}, 0, "zero", 100, 100},
		{Shape{1, 2, 2, 64, 300, FP16}, PerKVHead, budget.Spec{Tokens: 13, Sink: 4, Local: 8}, 0, "prefill", 100, 100},
		{Shape{1, 4, 1, 64, 200, BF16}, PerKVHead, budget.Spec{Tokens: 1}, 0, "zero", 100, 50},
		{Shape{1, 8, 1, 64, 200, BF16}, PerKVHead, budget.Spec{Tokens: 41, Sink: 4, Local: 4}, 0.5, "zero", 100, 80},
		{Shape{1, 4, 1, 64, 400, BF16}, PerHead, budget.Spec{Sparsity: 16, Sink: 4}, 0.5, "prefill", 200, 150},
	} {
		s, sel := tc.s, tc.sel
		name := fmt.Sprintf("%+v %v %+v recent %g %s", s, sel, tc.spec, tc.recent, tc.init)
		kv := randKV(rng, s)
		q := randQueries(rng, s, 2)
		scale := float32(1 / math.Sqrt(float64(s.HeadDim)))
		// V = K: the model only selects
		sels, twins, where := h2oSelectors(t, tc, q, kv, kv, scale)
		lists := s.Batch * s.Lists(sel)
		last := tc.t0 + tc.steps - 1
		h := &H2OStep{Shape: s, Sel: sel, Recent: tc.recent, Cap: H2OBudget(tc.spec.Resolve(last+1), tc.recent).Total, T: -1}
		P := make([][]int32, lists)
		A := make([][]float64, lists)
		for t0 := tc.t0; t0 <= last; t0++ {
			b := tc.spec.Resolve(t0 + 1)
			if t0 == tc.t0 {
				eb := H2OBudget(b, tc.recent)
				lo, hi := eb.MiddleRange()
				for li := 0; li < lists; li++ {
					gi, ti := where(li)
					pre := make([]float32, t0)
					for j := range pre {
						pre[j] = float32(twins[gi].acc[ti][j])
					}
					l := eb.Fixed(nil)[:eb.Sink]
					l, _ = methods.TopKIndices(pre, lo, min(hi, t0), eb.Heavy, l, nil)
					for j := eb.N - eb.Local; j < eb.N; j++ {
						l = append(l, int32(j))
					}
					P[li] = make([]int32, h.Cap)
					A[li] = make([]float64, h.Cap)
					copy(P[li], l)
					for i, j := range l {
						if int(j) < t0 {
							A[li][i] = float64(pre[j])
						}
					}
				}
				h.T, h.Budget, h.raw = t0, eb, b
			} else {
				eb, prev, addT, need, _, err := h.stepParams(t0, b)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				lo, hi := eb.MiddleRange()
				for li := 0; li < lists; li++ {
					h2oModelSelect(P[li], A[li], prev, eb.Total, lo, hi, t0, addT, need)
				}
				h.T, h.Budget, h.raw = t0, eb, b
			}
			total := h.Budget.Total
			for gi, sl := range sels {
				ls, err := sl.Select(methods.Step{T: t0, Budget: b}, nil)
				if err != nil {
					t.Fatalf("%s: methods.H2O at %d: %v", name, t0, err)
				}
				for li := 0; li < lists; li++ {
					if g2, ti := where(li); g2 == gi {
						got := slices.Sorted(slices.Values(P[li][:total]))
						if !slices.Equal(got, ls[ti]) {
							t.Fatalf("%s: step %d list %d:\nmodel %v\n  cpu %v", name, t0, li, got, ls[ti])
						}
						// The model's slots accumulate as the twin (its keep = the slots).
						twins[gi].keep[ti] = got
					}
				}
			}
			for li := 0; li < lists; li++ {
				gi, ti := where(li)
				before := slices.Clone(twins[gi].acc[ti])
				twins[gi].accumulate(ti, t0)
				for i := 0; i < total; i++ {
					j := P[li][i]
					A[li][i] += twins[gi].acc[ti][j] - before[j]
				}
			}
		}
		t.Logf("%s: %d steps, model lists = methods.H2O", name, tc.steps)
	}
}
