package methods

import (
	"github.com/hbench/hbench/attn"
)

// RandomParams configures the random-k floor.
type RandomParams struct {
	Seed int64 `yaml:"seed" doc:"extra seed, mixed with the run's seed, the layer, the KV head and the position"`
}

// Random keeps the sink and local windows and a uniform random sample,
// without replacement, of the heavy budget among the other visible keys.
// It looks at no data, so it is the floor every content-based method must
// beat. The sample depends only on (seed, run seed, layer, KV head, query
// head, position), not on call order; with Options.Shared the group's heads
// share one sample.
type Random struct{ p RandomParams }

func init() {
	Register(Spec{
		Name:     "random",
		Doc:      "uniform random sample of the heavy budget, plus sink and local (the floor)",
		Defaults: func() any { return &RandomParams{} },
		New: func(p any, _ Env) (Method, error) {
			return &Random{p: *p.(*RandomParams)}, nil
		},
	})
}

// Prepare implements Method.
func (r *Random) Prepare(g *attn.Group, opt Options) (Selector, error) {
	return &randomSelector{heads: len(g.Q), shared: opt.Shared,
		seed: []int64{r.p.Seed, opt.Seed, int64(g.Layer), int64(g.KVHead)}}, nil
}

// AuxBits implements Method: nothing is stored.
func (r *Random) AuxBits(d, groupSize int) float64 { return 0 }

type randomSelector struct {
	heads  int
	shared bool
	seed   []int64
	pool   []int32
}

// Select implements Selector.
func (s *randomSelector) Select(st Step, sel [][]int32) ([][]int32, error) {
	sel = ensureHeads(sel, s.heads)
	for i := range sel {
		if s.shared && i > 0 {
			sel[i] = append(sel[i][:0], sel[0]...)
			continue
		}
		sel[i] = s.sample(st, i, sel[i][:0])
	}
	return sel, nil
}

// sample draws Heavy of the middle positions by a partial Fisher-Yates
// shuffle and returns sink + sample + local, ascending.
func (s *randomSelector) sample(st Step, head int, dst []int32) []int32 {
	b := st.Budget
	lo, hi := b.MiddleRange()
	s.pool = s.pool[:0]
	for j := lo; j < hi; j++ {
		s.pool = append(s.pool, int32(j))
	}
	rng := newRand(append(s.seed, int64(head), int64(st.T))...)
	k := min(b.Heavy, len(s.pool))
	for i := 0; i < k; i++ {
		j := i + rng.IntN(len(s.pool)-i)
		s.pool[i], s.pool[j] = s.pool[j], s.pool[i]
	}
	pick := s.pool[:k]
	sortInt32(pick)
	for i := 0; i < b.Sink; i++ {
		dst = append(dst, int32(i))
	}
	dst = append(dst, pick...)
	for i := b.N - b.Local; i < b.N; i++ {
		dst = append(dst, int32(i))
	}
	return dst
}
