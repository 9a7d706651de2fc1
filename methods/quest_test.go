package methods

import (
	"fmt"
	"slices"
	"testing"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/tensor"
)

// dotSeq is q·k summed in float32 in channel order, the order
// questPages.upper sums in: fl(a+b) is monotone in a and b and fl(a·b) in
// b for fixed a, so termwise bounds carry over to the rounded sums exactly.
func dotSeq(q, k []float32) float32 {
	var s float32
	for c := range q {
		s += q[c] * k[c]
	}
	return s
}

// TestQuestUpperBound checks U(page) ≥ q·k for every key of every page, at
// full precision and with label quantisation, for random queries.
func TestQuestUpperBound(t *testing.T) {
	g := randGroup(5, 203, 24, 3)
	for _, page := range []int{1, 7, 16} {
		for _, bits := range []int{16, 8, 3, 1} {
			t.Run(fmt.Sprintf("page%d-bits%d", page, bits), func(t *testing.T) {
				qp := buildQuestPages(g, page, bits)
				exact := buildQuestPages(g, page, 16)
				for _, q := range g.Q {
					for tq := 0; tq < g.T(); tq += 17 {
						qv := q.Row(tq)
						for p := 0; p*page < g.T(); p++ {
							u := qp.upper(qv, p)
							if bits < 16 && u < exact.upper(qv, p) {
								t.Fatalf("page %d: quantised U %g below exact U %g", p, u, exact.upper(qv, p))
							}
							for j := p * page; j < min((p+1)*page, g.T()); j++ {
								if s := dotSeq(qv, g.K.Row(j)); s > u {
									t.Fatalf("page %d key %d: q·k = %g > U = %g", p, j, s, u)
								}
							}
						}
					}
				}
			})
		}
	}
}

// TestQuestHand checks U and the page selection on a hand-made case.
func TestQuestHand(t *testing.T) {
	// d = 2, page 2: pages {0,1}, {2,3}, {4,5}, {6,7}.
	k := []float32{
		1, -2, 3, 0, // page 0: min (1,-2) max (3,0)
		0, 1, 0, 2, // page 1: min (0,1)  max (0,2)
		-1, -1, -2, 0, // page 2: min (-2,-1) max (-1,0)
		5, 5, 5, 5, // page 3 (current page at T = 6 and 7)
	}
	q := []float32{1, -1}
	g := &attn.Group{K: &tensor.Mat{Rows: 8, Cols: 2, Data: k}, V: tensor.NewMat(8, 2), Scale: 1,
		Q: []*tensor.Mat{{Rows: 8, Cols: 2, Data: repeatRow(q, 8)}}, QHeads: []int{0}}
	qp := buildQuestPages(g, 2, 16)
	// U = Σ max(q_i max_i, q_i min_i)
	for p, want := range []float32{3 + 2, 0 - 1, -1 + 1} {
		if u := qp.upper(q, p); u != want {
			t.Errorf("U(page %d) = %g, want %g", p, u, want)
		}
	}
	m := newMethod(t, "quest", func(p any) { p.(*QuestParams).Page = 2 }, Env{})
	for _, c := range []struct {
		spec budget.Spec
		T    int
		want []int32
	}{
		// 3 keys, no windows: the current page {6} (T=6 sees 0..6), then page 0 (U 5).
		{budget.Spec{Tokens: 3}, 6, []int32{0, 1, 6}},
		// 4 keys: current page {6,7}, page 0 {0,1}.
		{budget.Spec{Tokens: 4}, 7, []int32{0, 1, 6, 7}},
		// 5 keys: then page 2 (U 0) beats page 1 (U −1), truncated to its leading key 4.
		{budget.Spec{Tokens: 5}, 7, []int32{0, 1, 4, 6, 7}},
		// sink {0}, local {7}, heavy 3 among 1..6: the current page's key 6,
		// page 0's key 1, page 2's leading key 4.
		{budget.Spec{Tokens: 5, Sink: 1, Local: 1}, 7, []int32{0, 1, 4, 6, 7}},
		// heavy 4 among 1..6 with pages ranked 3, 0, 2, 1: 6, 1, 4, 5.
		{budget.Spec{Tokens: 6, Sink: 1, Local: 1}, 7, []int32{0, 1, 4, 5, 6, 7}},
	} {
		s, err := m.Prepare(g, Options{})
		if err != nil {
			t.Fatal(err)
		}
		sel, err := s.Select(step(c.spec, c.T), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(sel[0], c.want) {
			t.Errorf("%+v T=%d: selected %v, want %v", c.spec, c.T, sel[0], c.want)
		}
	}
}

func repeatRow(r []float32, n int) []float32 {
	var out []float32
	for i := 0; i < n; i++ {
		out = append(out, r...)
	}
	return out
}

func TestQuestAuxBits(t *testing.T) {
	for _, c := range []struct {
		page, bits int
		want       float64
	}{
		{16, 16, 2 * 128 * 16 / 16.0},
		{16, 4, 2*128*4/16.0 + 2},
		{32, 8, 2*128*8/32.0 + 1},
	} {
		m := newMethod(t, "quest", func(p any) { p.(*QuestParams).Page, p.(*QuestParams).Bits = c.page, c.bits }, Env{})
		if got := m.AuxBits(128, 2); got != c.want {
			t.Errorf("page %d bits %d: AuxBits %g, want %g", c.page, c.bits, got, c.want)
		}
	}
}
