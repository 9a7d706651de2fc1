package methods

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/tensor"
)

// H2OParams configures H2O.
type H2OParams struct {
	Init   string  `yaml:"init" doc:"initial accumulated scores at the first evaluated step: prefill (column sums of the full causal attention of the preceding positions, as the H2O authors) or zero (as Quest's comparison)"`
	Recent float64 `yaml:"recent" doc:"fraction of the non-sink budget given to the recent window (H2O's own split: 0.5); 0 keeps the experiment's local window, as every other method"`
}

// Validate implements the config check.
func (p *H2OParams) Validate() error {
	var errs []error
	if p.Init != "prefill" && p.Init != "zero" {
		errs = append(errs, fmt.Errorf("init: must be prefill or zero, got %q", p.Init))
	}
	if !(p.Recent >= 0 && p.Recent < 1) {
		errs = append(errs, fmt.Errorf("recent: must be in [0, 1), got %g", p.Recent))
	}
	return errors.Join(errs...)
}

// H2O is Heavy-Hitter Oracle eviction (Zhang et al., "H2O: Heavy-Hitter
// Oracle for Efficient Generative Inference of Large Language Models",
// NeurIPS 2023, §3, Algorithm 1): each cached token carries an accumulated
// score, the sum of the softmax weights it received from every past
// query's attention (computed over the tokens cached at that step); at
// each decode step the cache keeps the recent window plus the heavy budget
// of cached tokens with the largest accumulated score, and evicts the rest
// for good. Here the first Select call is the end of the prefill (the
// cache then holds every earlier position, with scores from the full
// causal attention of those positions, or zero); each step's query at T
// attends to sink + local + the Heavy cached middle tokens with the largest
// accumulated score (ties to the older position) — exactly Budget.Total
// keys — and its softmax weights over them are then added to their scores.
// The authors split the budget evenly between heavy hitters and recent
// tokens; recent: 0.5 does that (the recent window then grows to half the
// non-sink budget when that exceeds the experiment's local window), while
// the default 0 keeps the experiment's windows, as every other method.
// An evicted token never returns (the sink and local windows aside, which
// hold tokens never evicted while the windows stay fixed). With
// Options.Shared the group's heads share one cache ranked by their summed
// scores. The Selector holds the cache of one budget policy: the runner
// must give each budget spec its own Selector, and call it at consecutive
// positions T, T+1, ... (a jump is an error; a repeated T returns the same
// keys).
type H2O struct {
	p H2OParams

	// prefill caches the prefill scores of a Group (per track: [t0]
	// accumulated scores), shared by the Selectors of several budgets.
	prefill prepCache[[][]float64]
}

func init() {
	Register(Spec{
		Name:     "h2o",
		Doc:      "H2O: keep the heavy hitters by accumulated attention, evicting the rest for good (stateful, needs consecutive positions)",
		Defaults: func() any { return &H2OParams{Init: "prefill"} },
		New: func(p any, _ Env) (Method, error) {
			hp := *p.(*H2OParams)
			if err := hp.Validate(); err != nil {
				return nil, fmt.Errorf("h2o: %w", err)
			}
			return &H2O{p: hp}, nil
		},
	})
}

// AuxBits implements Method: one accumulated score per token and query
// head (32 bits each; with Shared, one per KV head). It is eviction state
// rather than a lookup structure, but it is memory the method keeps.
func (h *H2O) AuxBits(d, groupSize int) float64 { return float64(32 * groupSize) }

// Prepare implements Method.
func (h *H2O) Prepare(g *attn.Group, opt Options) (Selector, error) {
	n := len(g.Q)
	if opt.Shared {
		n = 1
	}
	return &h2oSelector{m: h, g: g, shared: opt.Shared, tracks: make([]h2oTrack, n), lastT: -1}, nil
}

// PrefillScores returns the accumulated scores a Selector of g starts
// from when its first step is at position t0: per track (each query head,
// or one track with shared) the column sums of the causal attention of
// the positions 0..t0-1 ([t0] each); nil with init zero or t0 = 0. The GPU
// pipeline uploads them. They are cached and shared: read only.
func (h *H2O) PrefillScores(g *attn.Group, t0 int, shared bool) [][]float64 {
	if h.p.Init != "prefill" || t0 <= 0 {
		return nil
	}
	return h.prefillScores(g, t0, shared)
}

// prefillScores returns the column sums of the causal attention of the
// positions 0..t0-1 of g, per track.
func (h *H2O) prefillScores(g *attn.Group, t0 int, shared bool) [][]float64 {
	acc, _ := h.prefill.get(prepKey{g: g, t0: t0, shared: shared}, func() ([][]float64, error) {
		nt := len(g.Q)
		if shared {
			nt = 1
		}
		acc := make([][]float64, nt)
		for i := range acc {
			acc[i] = make([]float64, t0)
		}
		l := make([]float32, t0)
		w := make([]float64, t0)
		for i := range g.Q {
			a := acc[min(i, nt-1)]
			for t := 0; t < t0; t++ {
				q := g.Q[i].Row(t)
				m := float32(math.Inf(-1))
				for j := 0; j <= t; j++ {
					l[j] = tensor.Dot32(q, g.K.Row(j)) * g.Scale
					m = max(m, l[j])
				}
				var z float64
				for j := 0; j <= t; j++ {
					w[j] = math.Exp(float64(l[j] - m))
					z += w[j]
				}
				for j := 0; j <= t; j++ {
					a[j] += w[j] / z
				}
			}
		}
		return acc, nil
	})
	return acc
}

type h2oTrack struct {
	acc  []float64 // [T] accumulated scores
	keep []int32   // the cache after the last step (ascending)
}

type h2oSelector struct {
	m         *H2O
	g         *attn.Group
	shared    bool
	tracks    []h2oTrack
	lastT     int
	lastB     Step
	cand      []int32
	logits    []float32
	weightBuf []float64
}

// Select implements Selector.
func (s *h2oSelector) Select(st Step, sel [][]int32) ([][]int32, error) {
	heads := len(s.g.Q)
	sel = ensureHeads(sel, heads)
	switch {
	case s.lastT >= 0 && st.T == s.lastT:
		if st != s.lastB {
			return nil, fmt.Errorf("h2o: position %d asked again with budget %+v after %+v: a Selector serves one budget policy", st.T, st.Budget, s.lastB.Budget)
		}
		return s.emit(sel), nil
	case s.lastT >= 0 && st.T != s.lastT+1:
		return nil, fmt.Errorf("h2o: positions must be consecutive (queries: {last: N} with stride 1): got %d after %d", st.T, s.lastT)
	case st.T >= s.g.T() || st.T < 0 || st.Budget.N != st.T+1:
		return nil, fmt.Errorf("h2o: position %d with %d visible keys out of range for a sequence of %d", st.T, st.Budget.N, s.g.T())
	}
	if s.lastT < 0 {
		s.start(st.T)
	}
	for ti := range s.tracks {
		if err := s.step(ti, st); err != nil {
			return nil, err
		}
	}
	s.lastT, s.lastB = st.T, st
	return s.emit(sel), nil
}

// start sets up the caches at the end of the prefill (positions < t0).
func (s *h2oSelector) start(t0 int) {
	pre := s.m.PrefillScores(s.g, t0, s.shared)
	for ti := range s.tracks {
		tr := &s.tracks[ti]
		tr.acc = make([]float64, s.g.T())
		if pre != nil {
			copy(tr.acc, pre[ti])
		}
		tr.keep = tr.keep[:0]
		for j := 0; j < t0; j++ {
			tr.keep = append(tr.keep, int32(j))
		}
	}
}

// step chooses track ti's keys for st and accumulates the attention of
// its query head(s) over them.
func (s *h2oSelector) step(ti int, st Step) error {
	tr := &s.tracks[ti]
	b := st.Budget
	if r := s.m.p.Recent; r > 0 {
		// the recent window grows by at most one key per step (the total
		// does), so its start never moves back onto an evicted token
		local := max(b.Local, int(math.Round(r*float64(b.Total-b.Sink))))
		b.Heavy -= local - b.Local
		b.Local = local
	}
	lo, hi := b.MiddleRange()
	s.cand = s.cand[:0]
	for _, j := range tr.keep {
		if int(j) >= lo && int(j) < hi {
			s.cand = append(s.cand, j)
		}
	}
	if len(s.cand) < b.Heavy {
		return fmt.Errorf("h2o: at position %d the heavy budget %d exceeds the %d cached tokens (the budget grew by more than one key per step, or the windows changed)", st.T, b.Heavy, len(s.cand))
	}
	acc := tr.acc
	slices.SortFunc(s.cand, func(a, c int32) int {
		switch {
		case acc[a] > acc[c]:
			return -1
		case acc[a] < acc[c]:
			return 1
		}
		return int(a - c)
	})
	heavy := s.cand[:b.Heavy]
	slices.Sort(heavy)
	keep := tr.keep[:0]
	for i := 0; i < b.Sink; i++ {
		keep = append(keep, int32(i))
	}
	keep = append(keep, heavy...)
	for i := b.N - b.Local; i < b.N; i++ {
		keep = append(keep, int32(i))
	}
	tr.keep = keep
	// accumulate this step's attention over the kept tokens
	heads := []int{ti}
	if s.shared {
		heads = heads[:0]
		for i := range s.g.Q {
			heads = append(heads, i)
		}
	}
	for _, i := range heads {
		q := s.g.Q[i].Row(st.T)
		s.logits = resize32(s.logits, len(keep))
		m := float32(math.Inf(-1))
		for k, j := range keep {
			s.logits[k] = tensor.Dot32(q, s.g.K.Row(int(j))) * s.g.Scale
			m = max(m, s.logits[k])
		}
		var z float64
		s.weightBuf = slices.Grow(s.weightBuf[:0], len(keep))[:len(keep)]
		for k, x := range s.logits {
			e := math.Exp(float64(x - m))
			s.weightBuf[k] = e
			z += e
		}
		for k, j := range keep {
			acc[j] += s.weightBuf[k] / z
		}
	}
	return nil
}

func (s *h2oSelector) emit(sel [][]int32) [][]int32 {
	for i := range sel {
		sel[i] = append(sel[i][:0], s.tracks[min(i, len(s.tracks)-1)].keep...)
	}
	return sel
}

// NeedsConsecutive reports that H2O's Selectors must see consecutive
// positions (its cache evolves one decode step at a time), so an
// experiment can reject a query plan that skips positions before running.
func (h *H2O) NeedsConsecutive() bool { return true }
