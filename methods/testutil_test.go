package methods

import (
	"math"
	"slices"
	"testing"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/tensor"
)

// randGroup returns a seeded Group of T positions, head dimension d and
// `heads` query heads, with Gaussian queries, keys and values. Keys get a
// per-position norm in [0.5, 2) so inner product and cosine rankings
// differ.
func randGroup(seed int64, T, d, heads int) *attn.Group {
	rng := newRand(seed, 12345)
	mat := func(norms bool) *tensor.Mat {
		m := tensor.NewMat(T, d)
		for j := 0; j < T; j++ {
			s := 1.0
			if norms {
				s = 0.5 + 1.5*rng.Float64()
			}
			for c, row := 0, m.Row(j); c < d; c++ {
				row[c] = float32(rng.NormFloat64() * s)
			}
		}
		return m
	}
	g := &attn.Group{Workload: "rand", Item: "0", K: mat(true), V: mat(false), Scale: float32(1 / math.Sqrt(float64(d)))}
	for i := 0; i < heads; i++ {
		g.Q = append(g.Q, mat(false))
		g.QHeads = append(g.QHeads, i)
	}
	return g
}

// newMethod builds a registered method from its defaults changed by set.
func newMethod(t testing.TB, name string, set func(p any), env Env) Method {
	t.Helper()
	spec, ok := Registry.Lookup(name)
	if !ok {
		t.Fatalf("method %q not registered", name)
	}
	p := spec.Defaults()
	if set != nil {
		set(p)
	}
	m, err := spec.New(p, env)
	if err != nil {
		t.Fatalf("new %s: %v", name, err)
	}
	return m
}

// checkSelection fails unless every head's selection is ascending, unique,
// in [0, T], has exactly Budget.Total keys and holds the sink and local
// windows; with shared, every head must hold the same keys.
func checkSelection(t *testing.T, sel [][]int32, st Step, heads int, shared bool) {
	t.Helper()
	b := st.Budget
	if len(sel) != heads {
		t.Fatalf("T=%d: %d selections for %d heads", st.T, len(sel), heads)
	}
	for h, s := range sel {
		if len(s) != b.Total {
			t.Fatalf("T=%d head %d: %d keys, budget %+v", st.T, h, len(s), b)
		}
		in := map[int32]bool{}
		for i, j := range s {
			if j < 0 || int(j) > st.T || (i > 0 && j <= s[i-1]) {
				t.Fatalf("T=%d head %d: selection not ascending, unique and in [0, T]: %v", st.T, h, s)
			}
			in[j] = true
		}
		for _, j := range b.Fixed(nil) {
			if !in[j] {
				t.Fatalf("T=%d head %d: sink/local key %d missing (budget %+v): %v", st.T, h, j, b, s)
			}
		}
		if shared && h > 0 && !slices.Equal(s, sel[0]) {
			t.Fatalf("T=%d: shared selection differs between heads 0 and %d", st.T, h)
		}
	}
}

// step returns the decode step at position T under spec.
func step(spec budget.Spec, T int) Step { return Step{T: T, Budget: spec.Resolve(T + 1)} }

// selfCalib is an Env whose calibration workload "calib" is groups.
func selfCalib(groups ...*attn.Group) Env {
	return Env{Calibration: func(name string) ([]*attn.Group, error) {
		if name != "calib" {
			return nil, errNoWorkload(name)
		}
		return groups, nil
	}}
}

type errNoWorkload string

func (e errNoWorkload) Error() string { return "no calibration workload " + string(e) }
