package workloads

import (
	"slices"
	"testing"
)

// TestGenerateSyntheticAt: queries computed at some positions only are
// bit-identical to the full generation's there, zero elsewhere, and K and
// V do not change; through the registry, Env.Queries selects them.
func TestGenerateSyntheticAt(t *testing.T) {
	for _, edit := range []func(p *SyntheticParams){
		func(p *SyntheticParams) {},
		func(p *SyntheticParams) { p.PivotalPool, p.HeadSpread, p.Layers = 40, 0.5, 2 },
		func(p *SyntheticParams) { p.Recency, p.Sinks, p.Rope = 0, 0, false },
	} {
		p := DefaultSyntheticParams()
		p.Tokens, p.Heads, p.KVHeads, p.Dim = 301, 4, 2, 64
		edit(p)
		full, err := GenerateSynthetic(*p)
		if err != nil {
			t.Fatal(err)
		}
		pos := []int{0, 5, 17, 200, 299, 300}
		lazy, err := GenerateSyntheticAt(*p, pos)
		if err != nil {
			t.Fatal(err)
		}
		spec, _ := Registry.Lookup("synthetic")
		w, err := spec.New(p, Env{Queries: func(T int) []int { return pos }})
		if err != nil {
			t.Fatal(err)
		}
		viaEnv, err := w.Groups()
		if err != nil {
			t.Fatal(err)
		}
		if len(full) != len(lazy) || len(full) != len(viaEnv) {
			t.Fatalf("%d, %d and %d groups", len(full), len(lazy), len(viaEnv))
		}
		for gi, g := range full {
			for _, l := range []int{gi} {
				for _, o := range [][]float32{lazy[l].K.Data, viaEnv[l].K.Data} {
					if !slices.Equal(o, g.K.Data) {
						t.Fatalf("group %d: keys differ", gi)
					}
				}
				if !slices.Equal(lazy[l].V.Data, g.V.Data) {
					t.Fatalf("group %d: values differ", gi)
				}
			}
			for h := range g.Q {
				for tt := 0; tt < p.Tokens; tt++ {
					want := g.Q[h].Row(tt)
					if !slices.Contains(pos, tt) {
						want = make([]float32, p.Dim)
					}
					if !slices.Equal(lazy[gi].Q[h].Row(tt), want) || !slices.Equal(viaEnv[gi].Q[h].Row(tt), want) {
						t.Fatalf("group %d head %d position %d: lazy query differs", gi, h, tt)
					}
				}
			}
		}
	}
}
