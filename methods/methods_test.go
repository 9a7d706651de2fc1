package methods

import (
	"testing"

	"github.com/hbench/hbench/budget"
)

// TestSelectionInvariants runs every method of this file set over
// consecutive decode steps at several budgets, per head and shared, and
// checks the selection contract of Selector.
func TestSelectionInvariants(t *testing.T) {
	g := randGroup(1, 96, 16, 2)
	cases := []struct {
		name, method string
		set          func(p any)
	}{
		{"random", "random", nil},
		{"lsh", "lsh", func(p any) { p.(*LSHParams).Bits = 16 }},
		{"lsh-mips-100", "lsh", func(p any) { p.(*LSHParams).Bits = 100; p.(*LSHParams).MIPS = true }},
		{"hashattention-random", "hashattention", func(p any) {
			hp := p.(*HashAttentionParams)
			hp.Init, hp.Hidden = "random", []int{8}
		}},
		{"quest", "quest", func(p any) { p.(*QuestParams).Page = 4 }},
		{"quest-3bit", "quest", func(p any) { p.(*QuestParams).Page, p.(*QuestParams).Bits = 5, 3 }},
		{"doublesparsity", "doublesparsity", func(p any) {
			p.(*DoubleSparsityParams).Calibration, p.(*DoubleSparsityParams).Channels = Names{"self"}, 4
		}},
		{"doublesparsity-calib-2bit", "doublesparsity", func(p any) {
			dp := p.(*DoubleSparsityParams)
			dp.Calibration, dp.Channels, dp.Bits = Names{"calib"}, 4, 2
		}},
		{"h2o", "h2o", nil},
		{"h2o-zero", "h2o", func(p any) { p.(*H2OParams).Init = "zero" }},
		{"h2o-recent", "h2o", func(p any) { p.(*H2OParams).Recent = 0.5 }},
	}
	specs := []budget.Spec{
		{Sparsity: 4, Sink: 2, Local: 3},
		{Tokens: 10},
		{Sparsity: 8, Sink: 1, Local: 5},
	}
	env := selfCalib(randGroup(2, 64, 16, 2))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newMethod(t, c.method, c.set, env)
			for _, shared := range []bool{false, true} {
				for _, spec := range specs {
					s, err := m.Prepare(g, Options{Shared: shared, Seed: 3})
					if err != nil {
						t.Fatal(err)
					}
					var sel [][]int32
					for T := 70; T < g.T(); T++ {
						st := step(spec, T)
						if sel, err = s.Select(st, sel); err != nil {
							t.Fatalf("shared=%v %+v T=%d: %v", shared, spec, T, err)
						}
						checkSelection(t, sel, st, len(g.Q), shared)
					}
				}
			}
		})
	}
}
