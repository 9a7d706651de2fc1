package methods

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/budget"
)

// TestH2ONoReadmission runs H2O over many consecutive steps and checks
// that it keeps exactly the budget and never re-admits a token it evicted.
func TestH2ONoReadmission(t *testing.T) {
	g := randGroup(9, 400, 16, 2)
	for _, par := range []H2OParams{{Init: "prefill"}, {Init: "zero"}, {Init: "prefill", Recent: 0.5}} {
		init := fmt.Sprintf("%+v", par)
		for _, shared := range []bool{false, true} {
			for _, spec := range []budget.Spec{{Sparsity: 4, Sink: 2, Local: 8}, {Sparsity: 16, Sink: 0, Local: 4}, {Tokens: 12, Sink: 1, Local: 1}} {
				m := newMethod(t, "h2o", func(p any) { *p.(*H2OParams) = par }, Env{})
				s, err := m.Prepare(g, Options{Shared: shared})
				if err != nil {
					t.Fatal(err)
				}
				const t0 = 200
				evicted := make([]map[int32]bool, len(g.Q))
				prev := make([][]int32, len(g.Q))
				var sel [][]int32
				for T := t0; T < g.T(); T++ {
					st := step(spec, T)
					if sel, err = s.Select(st, sel); err != nil {
						t.Fatalf("%s shared=%v %+v T=%d: %v", init, shared, spec, T, err)
					}
					checkSelection(t, sel, st, len(g.Q), shared)
					if par.Recent > 0 { // H2O's own recent window: half the non-sink budget
						b := st.Budget
						w := max(b.Local, int(math.Round(par.Recent*float64(b.Total-b.Sink))))
						for h, cur := range sel {
							if !slices.Equal(cur[len(cur)-w:], allUpTo(T)[T+1-w:]) {
								t.Fatalf("%s T=%d head %d: recent window of %d not kept: %v", init, T, h, w, cur)
							}
						}
					}
					for h, cur := range sel {
						in := map[int32]bool{}
						for _, j := range cur {
							if evicted[h][j] {
								t.Fatalf("%s shared=%v %+v T=%d head %d: evicted token %d re-admitted", init, shared, spec, T, h, j)
							}
							in[j] = true
						}
						if evicted[h] == nil { // the prefill cache held 0..t0-1
							evicted[h] = map[int32]bool{}
							for j := int32(0); j < t0; j++ {
								if !in[j] {
									evicted[h][j] = true
								}
							}
						}
						for _, j := range prev[h] {
							if !in[j] {
								evicted[h][j] = true
							}
						}
						prev[h] = append(prev[h][:0], cur...)
					}
				}
			}
		}
	}
}

// TestH2OHand checks accumulation and eviction against a direct
// simulation on a tiny case, and the prefill scores against the column
// sums of the causal attention.
func TestH2OHand(t *testing.T) {
	g := randGroup(3, 30, 8, 1)
	m := newMethod(t, "h2o", nil, Env{})
	spec := budget.Spec{Tokens: 6, Sink: 1, Local: 2}
	s, _ := m.Prepare(g, Options{})
	// direct simulation
	const t0 = 20
	acc := make([]float64, g.T())
	for i := 0; i < t0; i++ {
		for j := 0; j <= i; j++ {
			acc[j] += attnWeight(g, 0, i, int32(j), allUpTo(i))
		}
	}
	cache := allUpTo(t0 - 1)
	var sel [][]int32
	for T := t0; T < g.T(); T++ {
		b := spec.Resolve(T + 1)
		// candidates: cached tokens outside the windows; keep the Heavy best
		var cand []int32
		for _, j := range cache {
			if int(j) >= b.Sink && int(j) < b.N-b.Local {
				cand = append(cand, j)
			}
		}
		keep := []int32{0}
		for len(keep) < 1+b.Heavy {
			best := int32(-1)
			for _, j := range cand {
				if !slices.Contains(keep, j) && (best < 0 || acc[j] > acc[best] || acc[j] == acc[best] && j < best) {
					best = j
				}
			}
			keep = append(keep, best)
		}
		keep = append(keep, int32(T-1), int32(T))
		sortInt32(keep)
		var err error
		if sel, err = s.Select(Step{T: T, Budget: b}, sel); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(sel[0], keep) {
			t.Fatalf("T=%d: selected %v, direct simulation %v", T, sel[0], keep)
		}
		for _, j := range keep {
			acc[j] += attnWeight(g, 0, T, j, keep)
		}
		cache = keep
	}
}

// attnWeight is the softmax weight of key j for the query of head h at
// position t, over the keys in set.
func attnWeight(g *attn.Group, h, t int, j int32, set []int32) float64 {
	var z, w float64
	for _, k := range set {
		e := math.Exp(float64(g.Scale) * attnDot(g, h, t, k))
		z += e
		if k == j {
			w = e
		}
	}
	return w / z
}

func attnDot(g *attn.Group, h, t int, k int32) float64 {
	var s float64
	for c, x := range g.Q[h].Row(t) {
		s += float64(x) * float64(g.K.Row(int(k))[c])
	}
	return s
}

func allUpTo(t int) []int32 {
	var out []int32
	for j := 0; j <= t; j++ {
		out = append(out, int32(j))
	}
	return out
}

func TestH2OSteps(t *testing.T) {
	g := randGroup(3, 30, 8, 1)
	m := newMethod(t, "h2o", func(p any) { p.(*H2OParams).Init = "zero" }, Env{})
	spec := budget.Spec{Tokens: 6, Sink: 1, Local: 2}
	s, _ := m.Prepare(g, Options{})
	a, err := s.Select(step(spec, 10), nil)
	if err != nil {
		t.Fatal(err)
	}
	// zero init: at the first step every score ties, so the oldest win
	if want := []int32{0, 1, 2, 3, 9, 10}; !slices.Equal(a[0], want) {
		t.Errorf("zero init first step: %v, want %v", a[0], want)
	}
	b, err := s.Select(step(spec, 10), nil)
	if err != nil || !slices.Equal(a[0], b[0]) {
		t.Errorf("repeated position: %v, %v (want the same keys)", b, err)
	}
	if _, err := s.Select(step(budget.Spec{Tokens: 7}, 10), nil); err == nil || !strings.Contains(err.Error(), "one budget policy") {
		t.Errorf("repeated position with another budget: error %v", err)
	}
	if _, err := s.Select(step(spec, 12), nil); err == nil || !strings.Contains(err.Error(), "consecutive") {
		t.Errorf("jump: error %v", err)
	}
}

// TestH2OPrefillScores checks the exported prefill scores (what a
// Selector's first step starts from, and the GPU pipeline uploads): the
// column sums of the causal attention of the positions before t0, per
// head or summed over the group with shared, and nil with init zero.
func TestH2OPrefillScores(t *testing.T) {
	g := randGroup(4, 40, 8, 2)
	const t0 = 25
	m := newMethod(t, "h2o", nil, Env{}).(*H2O)
	for _, shared := range []bool{false, true} {
		pre := m.PrefillScores(g, t0, shared)
		if want := 2 - btoi(shared); len(pre) != want {
			t.Fatalf("shared=%v: %d tracks, want %d", shared, len(pre), want)
		}
		for ti, acc := range pre {
			if len(acc) != t0 {
				t.Fatalf("shared=%v track %d: %d scores, want %d", shared, ti, len(acc), t0)
			}
			for j := range acc {
				var want float64
				for h := range g.Q {
					if !shared && h != ti {
						continue
					}
					for i := j; i < t0; i++ {
						want += attnWeight(g, h, i, int32(j), allUpTo(i))
					}
				}
				if math.Abs(acc[j]-want) > 1e-5*(1+want) {
					t.Fatalf("shared=%v track %d key %d: %g, want %g", shared, ti, j, acc[j], want)
				}
			}
		}
		// The Selector's first step starts from exactly these scores.
		s, err := m.Prepare(g, Options{Shared: shared})
		if err != nil {
			t.Fatal(err)
		}
		s.(*h2oSelector).start(t0)
		for ti, tr := range s.(*h2oSelector).tracks {
			if !slices.Equal(tr.acc[:t0], pre[ti]) {
				t.Fatalf("shared=%v track %d: the Selector starts from other scores", shared, ti)
			}
		}
	}
	if p := m.PrefillScores(g, 0, false); p != nil {
		t.Errorf("t0 = 0: %d tracks, want none", len(p))
	}
	zero := newMethod(t, "h2o", func(p any) { p.(*H2OParams).Init = "zero" }, Env{}).(*H2O)
	if p := zero.PrefillScores(g, t0, false); p != nil {
		t.Errorf("init zero: %d tracks, want none", len(p))
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
