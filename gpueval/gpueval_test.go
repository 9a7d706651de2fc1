package gpueval

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/gpu"
	"github.com/hbench/hbench/methods"
	"github.com/hbench/hbench/metrics"
	"github.com/hbench/hbench/resultfmt"
	"github.com/hbench/hbench/workloads"
)

var (
	testEvOnce sync.Once
	testEv     *Evaluator
	testEvErr  error
)

// evaluator opens the GPU once for the package's tests, or skips the test
// with the reason no GPU is usable.
func evaluator(t testing.TB) *Evaluator {
	t.Helper()
	testEvOnce.Do(func() { testEv, testEvErr = Open(0) })
	if testEvErr != nil {
		if errors.Is(testEvErr, gpu.ErrNoGPU) {
			t.Skipf("no GPU: %v", testEvErr)
		}
		t.Fatalf("open: %v", testEvErr)
	}
	return testEv
}

// Tolerances: metricTol bounds every summarized metric's difference
// between the CPU and the GPU path on the same (fp16) data (the issue's
// acceptance); refTol the reference's logits and output, which are both
// float64 and differ only by summation order.
const (
	metricTol = 1e-3
	refTol    = 1e-9
)

// captureGroups returns the shipped capture's groups (fp16 values).
func captureGroups(t *testing.T) []*attn.Group {
	files, _ := filepath.Glob("../testdata/persuasion/*.safetensors")
	if len(files) == 0 {
		t.Skip("no testdata/persuasion capture")
	}
	var out []*attn.Group
	for _, f := range files {
		c, err := workloads.ReadCapture(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c.Groups("persuasion")...)
	}
	return out
}

// synthGroups returns a small synthetic workload (GQA groups of 4, N not
// a multiple of any tile), rounded to fp16 when round is set.
func synthGroups(t *testing.T, tokens int, round bool) []*attn.Group {
	p := workloads.DefaultSyntheticParams()
	p.Seed, p.Tokens, p.Heads, p.KVHeads = 11, tokens, 8, 2
	gs, err := workloads.GenerateSynthetic(*p)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs {
		g.Workload = "synth"
	}
	if round {
		if err := RoundFP16(gs); err != nil {
			t.Fatal(err)
		}
	}
	return gs
}

type methodCase struct {
	name   string
	params any
	exact  bool // selections must be equal as sets (else: as a multiset of exact logits)
	codes  bool // selections from float32 hash MLPs: a few code bits may differ
}

func newMethod(t *testing.T, name string, params any) methods.Method {
	spec, ok := methods.Registry.Lookup(name)
	if !ok {
		t.Fatalf("no method %q", name)
	}
	if params == nil && spec.Defaults != nil {
		params = spec.Defaults()
	}
	m, err := spec.New(params, methods.Env{Dir: "../experiments"})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func cases(weights bool) []methodCase {
	hash := &methods.HashAttentionParams{Init: "random", Seed: 3, Bits: 32, Hidden: []int{128, 128}, Activation: "silu"}
	if weights {
		hash = &methods.HashAttentionParams{Weights: "../testdata/weights/persuasion-2k-b32.safetensors"}
	}
	return []methodCase{
		{name: "oracle", params: &methods.OracleParams{}},
		{name: "oracle", params: &methods.OracleParams{Windows: true}},
		{name: "streaming", exact: true},
		{name: "quest", params: &methods.QuestParams{Page: 16, Bits: 16}, exact: true},
		{name: "hashattention", params: hash, codes: true},
	}
}

// samples are one path's metric samples.
type samples struct{ rec, mass, oerr, dens []float64 }

func (s *samples) add(r *metrics.Reference, sel []int32, k int) {
	s.rec = append(s.rec, r.Recall(sel, k))
	s.mass = append(s.mass, r.MassRecall(sel))
	s.oerr = append(s.oerr, r.OutputError(sel))
	s.dens = append(s.dens, r.Density(sel))
}

func (s *samples) stats() map[string]resultfmt.Stat {
	return map[string]resultfmt.Stat{
		"recall": metrics.Summarize(s.rec), "mass_recall": metrics.Summarize(s.mass),
		"output_error": metrics.Summarize(s.oerr), "density": metrics.Summarize(s.dens),
	}
}

// compareMethod evaluates a method on the CPU and through its GPU
// adapter over the groups' last positions, and checks the references,
// each step's selections and the summarized metrics.
func compareMethod(t *testing.T, ev *Evaluator, groups []*attn.Group, mc methodCase, positions int, specs []budget.Spec) {
	cpu := newMethod(t, mc.name, mc.params)
	params := mc.params
	if params == nil {
		params = &struct{}{}
	}
	gm, note, err := ev.Wrap(mc.name, params, cpu)
	if err != nil || note != "" {
		t.Fatalf("%s: wrap: %v %s", mc.name, err, note)
	}
	for _, shared := range []bool{false, true} {
		for _, spec := range specs {
			name := fmt.Sprintf("%s %+v shared=%v %+v", mc.name, mc.params, shared, spec)
			var cs, gs samples
			var steps, mismatched, keys, diffKeys int
			for gi, g := range groups {
				opt := methods.Options{Shared: shared, Seed: int64(gi)}
				csel, err := cpu.Prepare(g, opt)
				if err != nil {
					t.Fatal(err)
				}
				gsel, err := gm.Prepare(g, opt)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				var a, b [][]int32
				for t0 := g.T() - positions; t0 < g.T(); t0++ {
					bud := spec.Resolve(t0 + 1)
					st := methods.Step{T: t0, Budget: bud}
					if a, err = csel.Select(st, a); err != nil {
						t.Fatal(err)
					}
					if b, err = gsel.Select(st, b); err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					crs := make([]*metrics.Reference, len(g.Q))
					for h := range g.Q {
						crs[h] = metrics.NewReference(g.Q[h].Row(t0), g.K, g.V, t0, g.Scale, bud.Total)
					}
					for h := range g.Q {
						cr := crs[h]
						gr, err := ev.Reference(g, h, t0, bud.Total)
						if err != nil {
							t.Fatal(err)
						}
						checkReference(t, name, cr, gr)
						if len(b[h]) != bud.Total {
							t.Fatalf("%s: position %d head %d: GPU selected %d keys, budget %d", name, t0, h, len(b[h]), bud.Total)
						}
						steps++
						keys += bud.Total
						if d := setDiff(a[h], b[h]); d > 0 {
							diffKeys += d
							if mc.exact || !mc.codes && !sameScores(crs, h, shared, a[h], b[h]) {
								mismatched++
								if mismatched <= 3 {
									t.Errorf("%s: position %d head %d: %d of %d keys differ", name, t0, h, d, bud.Total)
								}
							}
						}
						cs.add(cr, a[h], bud.Total)
						gs.add(gr, b[h], bud.Total)
					}
				}
			}
			if mismatched > 0 {
				t.Errorf("%s: %d of %d steps' selections differ", name, mismatched, steps)
			}
			if mc.codes && float64(diffKeys) > 0.01*float64(keys) {
				t.Errorf("%s: %d of %d selected keys differ (code bits from float32 MLPs, or H2O's near-ties: at most 1%% expected)", name, diffKeys, keys)
			}
			cst, gst := cs.stats(), gs.stats()
			for m, c := range cst {
				g := gst[m]
				for _, f := range []struct {
					n    string
					a, b float64
				}{{"mean", c.Mean, g.Mean}, {"median", c.Median, g.Median}, {"p10", c.P10, g.P10}, {"p90", c.P90, g.P90}, {"min", c.Min, g.Min}, {"max", c.Max, g.Max}} {
					if math.Abs(f.a-f.b) > metricTol {
						t.Errorf("%s: %s %s: CPU %.6f, GPU %.6f (tolerance %g)", name, m, f.n, f.a, f.b, metricTol)
					}
				}
			}
			t.Logf("%s: %d steps, %d of %d keys differ; recall mean CPU %.6f GPU %.6f, output error mean CPU %.6f GPU %.6f",
				name, steps, diffKeys, keys, cst["recall"].Mean, gst["recall"].Mean, cst["output_error"].Mean, gst["output_error"].Mean)
		}
	}
}

// checkReference compares a GPU reference with the CPU's.
func checkReference(t *testing.T, name string, cr, gr *metrics.Reference) {
	t.Helper()
	if cr.N != gr.N {
		t.Fatalf("%s: reference over %d keys, CPU %d", name, gr.N, cr.N)
	}
	for j, l := range cr.Logits {
		if math.Abs(gr.Logits[j]-l) > refTol*(1+math.Abs(l)) {
			t.Fatalf("%s: logit %d of %d: GPU %.17g CPU %.17g", name, j, cr.N, gr.Logits[j], l)
		}
	}
	if math.Abs(gr.LSE-cr.LSE) > refTol*(1+math.Abs(cr.LSE)) {
		t.Fatalf("%s: LSE GPU %.17g CPU %.17g", name, gr.LSE, cr.LSE)
	}
	var d, n float64
	for c, x := range cr.Out {
		d += (gr.Out[c] - x) * (gr.Out[c] - x)
		n += x * x
	}
	if math.Sqrt(d) > refTol*(1+math.Sqrt(n)) {
		t.Fatalf("%s: dense output differs by %g (norm %g)", name, math.Sqrt(d), math.Sqrt(n))
	}
}

// setDiff returns how many keys of a are not in b (both ascending).
func setDiff(a, b []int32) int {
	n := 0
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); !ok {
			n++
		}
	}
	return n
}

// sameScores reports whether two selections of head h are equal as a
// multiset of the oracle's exact scores (ties broken differently, float32
// scores rounded differently): the logits of head h within 1e-4, or with
// shared selection the group's summed probabilities within 1e-5.
func sameScores(refs []*metrics.Reference, h int, shared bool, a, b []int32) bool {
	score := func(j int32) float64 { return refs[h].Logits[j] }
	tol := 1e-4
	if shared {
		tol = 1e-5
		score = func(j int32) float64 {
			var p float64
			for _, r := range refs {
				p += math.Exp(r.Logits[j] - r.LSE)
			}
			return p
		}
	}
	if len(a) != len(b) {
		return false
	}
	sa, sb := make([]float64, len(a)), make([]float64, len(b))
	for i := range a {
		sa[i], sb[i] = score(a[i]), score(b[i])
	}
	slices.Sort(sa)
	slices.Sort(sb)
	for i := range sa {
		if math.Abs(sa[i]-sb[i]) > tol {
			return false
		}
	}
	return true
}

// TestGPUMatchesCPUOnCapture: every adapted method on the shipped capture
// (fp16: both paths see the same numbers), per-head and per-KV-head
// selection, sparsity 8 and 32 with windows and k = 1-ish budgets.
func TestGPUMatchesCPUOnCapture(t *testing.T) {
	ev := evaluator(t)
	groups := captureGroups(t)
	specs := []budget.Spec{{Sparsity: 8, Sink: 4, Local: 16}, {Sparsity: 32}, {Tokens: 1}}
	for _, mc := range cases(true) {
		compareMethod(t, ev, groups, mc, 8, specs)
	}
}

// TestGPUMatchesCPUOnSynthetic: the same on a small synthetic workload
// rounded to fp16 (what a GPU run evaluates), 1531 tokens, GQA group 4.
func TestGPUMatchesCPUOnSynthetic(t *testing.T) {
	ev := evaluator(t)
	groups := synthGroups(t, 1531, true)
	specs := []budget.Spec{{Sparsity: 8, Sink: 4, Local: 16}, {Sparsity: 64, Sink: 1, Local: 3}}
	for _, mc := range cases(false) {
		compareMethod(t, ev, groups, mc, 6, specs)
	}
}

// TestRoundFP16 checks the rounding (no GPU needed): fp16 values stay,
// others move to the nearest fp16, and out-of-range values fail.
func TestRoundFP16(t *testing.T) {
	gs := synthGroups(t, 64, false)
	before := slices.Clone(gs[0].K.Data)
	if err := RoundFP16(gs); err != nil {
		t.Fatal(err)
	}
	changed := 0
	for i, x := range gs[0].K.Data {
		if x != before[i] {
			changed++
		}
		if rel := math.Abs(float64(x-before[i])) / math.Max(math.Abs(float64(before[i])), 6e-5); rel > 1.0/2048 {
			t.Fatalf("K[%d] %g rounded to %g", i, before[i], x)
		}
	}
	if changed == 0 {
		t.Fatal("float32 synthetic keys unchanged by fp16 rounding")
	}
	again := slices.Clone(gs[0].K.Data)
	if err := RoundFP16(gs); err != nil || !slices.Equal(again, gs[0].K.Data) {
		t.Fatalf("rounding is not idempotent (err %v)", err)
	}
	gs[0].V.Data[5] = 1e6
	if err := RoundFP16(gs); err == nil {
		t.Fatal("1e6 accepted as fp16")
	}
}

// TestWrapNotes: a method without an adapter, or a configuration the GPU
// does not implement, stays on the CPU with a note naming it.
func TestWrapNotes(t *testing.T) {
	ev := &Evaluator{}
	for _, c := range []struct {
		name   string
		params any
	}{
		{"random", nil},
		{"quest", &methods.QuestParams{Page: 16, Bits: 8}},
	} {
		cpu := newMethod(t, c.name, c.params)
		m, note, err := ev.Wrap(c.name, c.params, cpu)
		if err != nil || m != cpu || note == "" {
			t.Fatalf("%s: got %T, note %q, err %v", c.name, m, note, err)
		}
		t.Log(note)
	}
	for _, name := range []string{"oracle", "streaming", "quest", "hashattention", "lsh", "doublesparsity", "h2o"} {
		if _, ok := Adapters.Lookup(name); !ok {
			t.Errorf("no adapter for %s", name)
		}
	}
}
