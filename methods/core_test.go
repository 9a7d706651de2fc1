package methods

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/metrics"
	"github.com/hbench/hbench/tensor"
)

// coreGroup returns a seeded random group of n positions, head dim d and
// heads query heads.
func coreGroup(seed uint64, n, d, heads int) *attn.Group {
	rng := rand.New(rand.NewPCG(seed, 99))
	fill := func(m *tensor.Mat) *tensor.Mat {
		for i := range m.Data {
			m.Data[i] = float32(rng.NormFloat64())
		}
		return m
	}
	g := &attn.Group{Workload: "rand", K: fill(tensor.NewMat(n, d)), V: fill(tensor.NewMat(n, d)), Scale: 0.25}
	for h := 0; h < heads; h++ {
		g.QHeads = append(g.QHeads, h)
		g.Q = append(g.Q, fill(tensor.NewMat(n, d)))
	}
	return g
}

func TestTopKIndices(t *testing.T) {
	scores := []float32{5, 1, 5, 3, 9, 3, 0}
	cases := []struct {
		lo, hi, k int
		want      []int32
	}{
		{0, 7, 1, []int32{4}},
		{0, 7, 2, []int32{0, 4}}, // tie 5 at 0 and 2: lower position wins
		{0, 7, 3, []int32{0, 2, 4}},
		{0, 7, 4, []int32{0, 2, 3, 4}}, // tie 3 at 3 and 5
		{1, 4, 2, []int32{2, 3}},
		{0, 3, 5, []int32{0, 1, 2}}, // k >= range
		{0, 7, 0, nil},
	}
	for _, c := range cases {
		got, _ := TopKIndices(scores, c.lo, c.hi, c.k, nil, nil)
		if !slices.Equal(got, c.want) {
			t.Errorf("TopKIndices(%d,%d,%d) = %v, want %v", c.lo, c.hi, c.k, got, c.want)
		}
	}
	// Against a full sort on random data with many ties.
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := 0; trial < 200; trial++ {
		n := 1 + rng.IntN(300)
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(rng.IntN(20))
		}
		k := rng.IntN(n + 1)
		got, _ := TopKIndices(s, 0, n, k, nil, nil)
		idx := make([]int32, n)
		for i := range idx {
			idx[i] = int32(i)
		}
		slices.SortStableFunc(idx, func(a, b int32) int {
			if s[a] != s[b] {
				if s[a] > s[b] {
					return -1
				}
				return 1
			}
			return int(a - b)
		})
		want := slices.Clone(idx[:k])
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("n=%d k=%d: got %v want %v", n, k, got, want)
		}
	}
}

// checkContract asserts the Selector contract and that sink and local
// windows are kept.
func checkContract(t *testing.T, name string, sel []int32, b budget.Budget, windows bool) {
	t.Helper()
	if len(sel) != b.Total {
		t.Fatalf("%s: %d keys, budget %d", name, len(sel), b.Total)
	}
	for i, j := range sel {
		if j < 0 || int(j) >= b.N || (i > 0 && sel[i-1] >= j) {
			t.Fatalf("%s: bad selection %v", name, sel)
		}
	}
	if windows {
		for _, f := range b.Fixed(nil) {
			if _, ok := slices.BinarySearch(sel, f); !ok {
				t.Fatalf("%s: fixed key %d missing (budget %+v)", name, f, b)
			}
		}
	}
}

func TestCoreMethods(t *testing.T) {
	g := coreGroup(1, 500, 16, 2)
	specs := []budget.Spec{{Sparsity: 4, Sink: 3, Local: 10}, {Sparsity: 32, Sink: 1, Local: 4}, {Tokens: 1}, {Tokens: 7, Sink: 7}}
	for _, shared := range []bool{false, true} {
		for _, name := range []string{"oracle", "streaming"} {
			spec, _ := Registry.Lookup(name)
			for _, params := range []any{spec.Defaults(), &OracleParams{Windows: true}} {
				if name == "streaming" {
					params = spec.Defaults()
				}
				m, err := spec.New(params, Env{})
				if err != nil {
					t.Fatal(err)
				}
				for _, bs := range specs {
					s, _ := m.Prepare(g, Options{Shared: shared})
					var sel [][]int32
					for _, pos := range []int{0, 1, 40, 255, 499} {
						b := bs.Resolve(pos + 1)
						sel, err = s.Select(Step{T: pos, Budget: b}, sel)
						if err != nil {
							t.Fatal(err)
						}
						windows := name == "streaming" || params.(*OracleParams).Windows
						for h := range sel {
							checkContract(t, name, sel[h], b, windows)
							if shared && !slices.Equal(sel[h], sel[0]) {
								t.Fatalf("%s shared: heads differ", name)
							}
							if name == "oracle" && !windows && !shared {
								r := metrics.NewReference(g.Q[h].Row(pos), g.K, g.V, pos, g.Scale, 0)
								if rc := r.Recall(sel[h], b.Total); rc != 1 {
									t.Fatalf("oracle recall %g at pos %d budget %+v", rc, pos, b)
								}
							}
							if name == "streaming" {
								want := budget.Budget{N: b.N, Total: b.Total, Sink: b.Sink, Local: b.Local + b.Heavy}.Fixed(nil)
								if !slices.Equal(sel[h], want) {
									t.Fatalf("streaming %v, want %v", sel[h], want)
								}
							}
						}
					}
				}
			}
		}
	}
}

func TestDenseKeepsEverything(t *testing.T) {
	g := coreGroup(2, 50, 8, 3)
	s, _ := Dense{}.Prepare(g, Options{})
	sel, _ := s.Select(Step{T: 20, Budget: budget.Spec{Sparsity: 8}.Resolve(21)}, nil)
	if len(sel) != 3 || len(sel[2]) != 21 || sel[2][20] != 20 {
		t.Fatalf("dense selection %v", sel)
	}
}

// BenchmarkSelectAndScore is the metric hot path: one query over 8K keys,
// oracle selection at sparsity 16, then exact reference and every metric.
func BenchmarkSelectAndScore(b *testing.B) {
	for _, n := range []int{8192} {
		g := coreGroup(7, n, 128, 1)
		m, _ := (&Oracle{}).Prepare(g, Options{})
		bs := budget.Spec{Sparsity: 16, Sink: 4, Local: 64}
		var sel [][]int32
		b.Run("keys="+strconv.Itoa(n), func(b *testing.B) {
			for b.Loop() {
				bud := bs.Resolve(n)
				sel, _ = m.Select(Step{T: n - 1, Budget: bud}, sel)
				r := metrics.NewReference(g.Q[0].Row(n-1), g.K, g.V, n-1, g.Scale, bud.Total)
				_ = r.Recall(sel[0], bud.Total) + r.MassRecall(sel[0]) + r.OutputError(sel[0])
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "keys/s")
		})
	}
}
