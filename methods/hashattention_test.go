package methods

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/tensor"
)

func linearMLP(w ...float32) *MLP {
	return &MLP{W: []*tensor.Mat{{Rows: 2, Cols: 2, Data: w}}, B: [][]float32{{0, 0}}}
}

// handHashGroup is layer 3, one KV head with two query heads, six keys in
// all four quadrants of the plane.
func handHashGroup() *attn.Group {
	k := []float32{1, 1, 1, -1, -1, 1, -1, -1, 2, 0.5, 0.1, -3}
	return &attn.Group{
		Layer: 3, QHeads: []int{0, 1}, Scale: 1,
		K: &tensor.Mat{Rows: 6, Cols: 2, Data: k}, V: tensor.NewMat(6, 2),
		Q: []*tensor.Mat{
			{Rows: 6, Cols: 2, Data: repeatRow([]float32{1, 1}, 6)},
			{Rows: 6, Cols: 2, Data: repeatRow([]float32{1, -1}, 6)},
		},
	}
}

// TestHashAttentionHand checks the codes, scores and selections of
// hand-set linear maps against values computed by hand.
//
// Codes are (bit0, bit1) = (x0 > 0, x1 > 0). Head 0 maps queries and keys
// by the identity: q = (1,1) → 11 and the keys → 11 01 10 00 11 01, so the
// scores (matching bits) are 2 1 1 0 2 1. Head 1 maps queries by the
// identity, q = (1,−1) → 01, and keys by the channel swap: keys → 11 10 01
// 00 11 10, scores 1 0 2 1 1 0. Summed: 3 1 3 1 3 1.
func TestHashAttentionHand(t *testing.T) {
	dir := t.TempDir()
	w := &HashWeights{Bits: 2, Dim: 2, Activation: "identity", Maps: map[[2]int]*HeadMaps{
		{3, 0}: {Q: linearMLP(1, 0, 0, 1), K: linearMLP(1, 0, 0, 1)},
		{3, 1}: {Q: linearMLP(1, 0, 0, 1), K: linearMLP(0, 1, 1, 0)},
	}}
	if err := w.Save(filepath.Join(dir, "w.safetensors")); err != nil {
		t.Fatal(err)
	}
	m := newMethod(t, "hashattention", func(p any) { p.(*HashAttentionParams).Weights = "w.safetensors" }, Env{Dir: dir})
	g := handHashGroup()
	for _, c := range []struct {
		shared bool
		spec   budget.Spec
		want   [2][]int32
	}{
		// top 3 by score, ties to the lower position
		{false, budget.Spec{Tokens: 3}, [2][]int32{{0, 1, 4}, {0, 2, 3}}},
		{true, budget.Spec{Tokens: 3}, [2][]int32{{0, 2, 4}, {0, 2, 4}}},
		// sink {0}, local {5}, heavy 1 among 1..4
		{false, budget.Spec{Tokens: 3, Sink: 1, Local: 1}, [2][]int32{{0, 4, 5}, {0, 2, 5}}},
	} {
		s, err := m.Prepare(g, Options{Shared: c.shared})
		if err != nil {
			t.Fatal(err)
		}
		sel, err := s.Select(step(c.spec, 5), nil)
		if err != nil {
			t.Fatal(err)
		}
		for h := range sel {
			if !slices.Equal(sel[h], c.want[h]) {
				t.Errorf("shared=%v %+v head %d: %v, want %v", c.shared, c.spec, h, sel[h], c.want[h])
			}
		}
	}
	s, _ := m.Prepare(g, Options{})
	dst := make([]float32, 6)
	for h, want := range [][]float32{{2, 1, 1, 0, 2, 1}, {1, 0, 2, 1, 1, 0}} {
		s.(*hashSelector).score(h, 5, 6, dst)
		if !slices.Equal(dst, want) {
			t.Errorf("head %d scores %v, want %v", h, dst, want)
		}
	}
	if got := m.AuxBits(2, 2); got != 4 {
		t.Errorf("AuxBits = %g, want 2 bits × 2 query heads", got)
	}
	// a group the file does not cover
	g4 := *g // a new Group: methods cache their build per Group
	g4.Layer = 4
	if _, err := m.Prepare(&g4, Options{}); err == nil || !strings.Contains(err.Error(), "layer 4 query head 0") || !strings.Contains(err.Error(), "L3.H0, L3.H1") {
		t.Errorf("missing map: error %v, want one naming layer 4 query head 0 and the covered maps", err)
	}
	g3 := *g
	g3.K, g3.V = tensor.NewMat(6, 3), tensor.NewMat(6, 3)
	if _, err := m.Prepare(&g3, Options{}); err == nil || !strings.Contains(err.Error(), "head dimension 2") {
		t.Errorf("wrong dimension: error %v", err)
	}
}

// TestHashAttentionRandomInit checks the untrained maps: deterministic in
// the seed, differing across seeds, with the declared code width, and a
// multi-word code (bits > 64) scoring a key against itself at full marks.
func TestHashAttentionRandomInit(t *testing.T) {
	g := randGroup(4, 40, 16, 2)
	codes := func(seed int64, bits int) [][]uint64 {
		m := newMethod(t, "hashattention", func(p any) {
			hp := p.(*HashAttentionParams)
			hp.Init, hp.Seed, hp.Bits = "random", seed, bits
		}, Env{})
		if got := m.AuxBits(16, 2); got != float64(2*bits) {
			t.Errorf("AuxBits %g, want %d", got, 2*bits)
		}
		s, err := m.Prepare(g, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s.(*hashSelector).keys
	}
	a, b, c := codes(1, 32), codes(1, 32), codes(2, 32)
	same := func(x, y [][]uint64) bool {
		for h := range x {
			for i := range x[h] {
				if x[h][i] != y[h][i] {
					return false
				}
			}
		}
		return true
	}
	if !same(a, b) || same(a, c) {
		t.Errorf("random maps: same seed equal %v (want true), other seed equal %v (want false)", same(a, b), same(a, c))
	}
	// tied maps: a query equal to a key scores every bit
	copy(g.Q[0].Row(30), g.K.Row(7))
	m := newMethod(t, "hashattention", func(p any) {
		hp := p.(*HashAttentionParams)
		hp.Init, hp.Bits = "random", 100
	}, Env{})
	s, _ := m.Prepare(g, Options{})
	dst := make([]float32, 31)
	s.(*hashSelector).score(0, 30, 31, dst)
	if dst[7] != 100 {
		t.Errorf("query = key 7 scores %g, want 100", dst[7])
	}
}

func TestHashAttentionParams(t *testing.T) {
	spec, _ := Registry.Lookup("hashattention")
	for _, c := range []struct {
		set  func(*HashAttentionParams)
		want string
	}{
		{func(p *HashAttentionParams) {}, "weights:"},
		{func(p *HashAttentionParams) { p.Weights, p.Init = "x", "random" }, "give one of"},
		{func(p *HashAttentionParams) { p.Weights, p.Trained = "x", "t" }, "give one of"},
		{func(p *HashAttentionParams) { p.Trained = "t" }, "no train block"},
		{func(p *HashAttentionParams) { p.Init = "zeros" }, "init: must be random"},
		{func(p *HashAttentionParams) { p.Init, p.Bits = "random", 0 }, "bits"},
		{func(p *HashAttentionParams) { p.Init, p.Activation = "random", "gelu" }, "activation"},
		{func(p *HashAttentionParams) { p.Weights = "missing.safetensors" }, "missing.safetensors"},
	} {
		p := spec.Defaults().(*HashAttentionParams)
		c.set(p)
		if _, err := spec.New(p, Env{Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one containing %q", *p, err, c.want)
		}
	}
}
