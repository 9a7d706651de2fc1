package methods

import (
	"fmt"
	"testing"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/budget"
)

// benchMethods are the methods timed by BenchmarkSelect and
// BenchmarkPrepare, at their default parameters where they have them.
var benchMethods = []struct {
	name, method string
	set          func(p any)
}{
	{"random", "random", nil},
	{"lsh-64", "lsh", nil},
	{"lsh-1024", "lsh", func(p any) { p.(*LSHParams).Bits = 1024 }},
	{"hashattention-32", "hashattention", func(p any) { p.(*HashAttentionParams).Init = "random" }},
	{"quest", "quest", nil},
	{"quest-4bit", "quest", func(p any) { p.(*QuestParams).Bits = 4 }},
	{"doublesparsity", "doublesparsity", func(p any) { p.(*DoubleSparsityParams).Calibration = Names{"self"} }},
	{"h2o", "h2o", func(p any) { p.(*H2OParams).Init = "zero" }},
	{"oracle", "oracle", nil},
}

// benchSizes are the key counts, with one query head and d = 128.
var benchSizes = []struct {
	name string
	n    int
}{{"8K", 8 << 10}, {"64K", 64 << 10}}

const benchSlack = 512 // extra positions for stateful methods' consecutive steps

var benchGroups = map[int]*attn.Group{}

func benchGroup(n int) *attn.Group {
	if g := benchGroups[n]; g != nil {
		return g
	}
	g := randGroup(42, n+benchSlack, 128, 1)
	benchGroups[n] = g
	return g
}

var benchSpec = budget.Spec{Sparsity: 16, Sink: 4, Local: 64}

// BenchmarkSelect times one decode step's selection for one query over n
// keys (sparsity 16, sink 4, local 64), after Prepare; H2O steps through
// consecutive positions from n−1 on. keys/s counts visible keys scored.
func BenchmarkSelect(b *testing.B) {
	for _, size := range benchSizes {
		for _, c := range benchMethods {
			b.Run(fmt.Sprintf("%s/%s", c.name, size.name), func(b *testing.B) {
				g := benchGroup(size.n)
				m := newMethod(b, c.method, c.set, Env{})
				s, err := m.Prepare(g, Options{Seed: 1})
				if err != nil {
					b.Fatal(err)
				}
				var sel [][]int32
				T := size.n - 1
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if c.method == "h2o" {
						if T == g.T() {
							b.StopTimer()
							s, _ = m.Prepare(g, Options{Seed: 1})
							T = size.n - 1
							b.StartTimer()
						}
						if sel, err = s.Select(Step{T: T, Budget: benchSpec.Resolve(T + 1)}, sel); err != nil {
							b.Fatal(err)
						}
						T++
						continue
					}
					if sel, err = s.Select(Step{T: T, Budget: benchSpec.Resolve(T + 1)}, sel); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(size.n)*float64(b.N)/b.Elapsed().Seconds(), "keys/s")
			})
		}
	}
}

// BenchmarkPrepare times building a method's per-key metadata (codes,
// page labels, label cache) for n+512 keys, one query head, d = 128, with
// a fresh method each time (methods cache their build per Group).
func BenchmarkPrepare(b *testing.B) {
	for _, size := range benchSizes {
		for _, c := range benchMethods {
			switch c.method {
			case "random", "h2o", "oracle": // nothing to build
				continue
			}
			b.Run(fmt.Sprintf("%s/%s", c.name, size.name), func(b *testing.B) {
				g := benchGroup(size.n)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					// a fresh method: Prepare caches its build per Group
					m := newMethod(b, c.method, c.set, Env{})
					if _, err := m.Prepare(g, Options{Seed: 1}); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(g.T())*float64(b.N)/b.Elapsed().Seconds(), "keys/s")
			})
		}
	}
}
