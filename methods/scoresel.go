package methods

// ScoreFunc writes the score of every key position in [0, n) for query head
// i of a Group (an index into Group.Q) at query position t into dst, which
// has length n.
type ScoreFunc func(i, t, n int, dst []float32)

// ScoreSelector turns a per-key score into a Selector with the shared
// policy: sink + local + top-k by score, per query head or, when shared,
// once per KV head on the sum of the heads' scores.
type ScoreSelector struct {
	Heads   int
	Shared  bool
	Score   ScoreFunc
	buf     []float32
	acc     []float32
	scratch []int32
}

// NewScoreSelector returns a ScoreSelector over heads query heads.
func NewScoreSelector(heads int, shared bool, f ScoreFunc) *ScoreSelector {
	return &ScoreSelector{Heads: heads, Shared: shared, Score: f}
}

// Select implements Selector.
func (s *ScoreSelector) Select(st Step, sel [][]int32) ([][]int32, error) {
	n := st.Budget.N
	sel = ensureHeads(sel, s.Heads)
	s.buf = resize32(s.buf, n)
	if !s.Shared {
		for i := 0; i < s.Heads; i++ {
			s.Score(i, st.T, n, s.buf)
			sel[i], s.scratch = TopK(s.buf, st, sel[i], s.scratch)
		}
		return sel, nil
	}
	s.acc = resize32(s.acc, n)
	clear(s.acc)
	for i := 0; i < s.Heads; i++ {
		s.Score(i, st.T, n, s.buf)
		for j, x := range s.buf {
			s.acc[j] += x
		}
	}
	sel[0], s.scratch = TopK(s.acc, st, sel[0], s.scratch)
	for i := 1; i < s.Heads; i++ {
		sel[i] = append(sel[i][:0], sel[0]...)
	}
	return sel, nil
}

func ensureHeads(sel [][]int32, heads int) [][]int32 {
	for len(sel) < heads {
		sel = append(sel, nil)
	}
	return sel[:heads]
}

func resize32(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}
