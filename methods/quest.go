package methods

import (
	"errors"
	"fmt"
	"math"

	"github.com/hbench/hbench/attn"
)

// QuestParams configures Quest.
type QuestParams struct {
	Page int `yaml:"page" doc:"page size S in tokens (pages start at position 0)"`
	Bits int `yaml:"bits" doc:"bits per stored min/max value: 16 keeps them at the KV cache precision (no quantisation, as the authors); 1..15 quantises each page's labels on a uniform grid, min rounded down and max rounded up so U stays an upper bound"`
}

// Validate implements the config check.
func (p *QuestParams) Validate() error {
	var errs []error
	if p.Page < 1 {
		errs = append(errs, fmt.Errorf("page: must be > 0, got %d", p.Page))
	}
	if p.Bits < 1 || p.Bits > 16 {
		errs = append(errs, fmt.Errorf("bits: must be in 1..16, got %d", p.Bits))
	}
	return errors.Join(errs...)
}

// Quest is query-aware page selection (Tang et al., "Quest: Query-Aware
// Sparsity for Efficient Long-Context LLM Inference", ICML 2024, §3.2–3.3):
// the keys are cut into pages of S tokens; for each page and channel i the
// minimum m_i and maximum M_i of the keys are stored; at a decode step the
// page score U = Σ_i max(q_i·M_i, q_i·m_i) is an upper bound of q·k for
// every key k of the page; whole pages are taken by decreasing U until the
// token budget is used. Here the heavy budget is filled that way among the
// positions outside the sink and local windows: pages in order of U (ties
// to the lower page), the current (last) page first, always; the last page
// taken is truncated to its leading positions so the selection has exactly
// Budget.Total keys. With Options.Shared the group's heads share the pages
// with the largest summed U. Auxiliary memory: 2·d·bits/S bits per token,
// plus, when quantised, a per-page grid origin and step (two 16-bit values,
// 32/S bits per token).
type Quest struct{ p QuestParams }

func init() {
	Register(Spec{
		Name:     "quest",
		Doc:      "Quest: pages of S tokens ranked by the upper bound Σ max(q·min, q·max)",
		Defaults: func() any { return &QuestParams{Page: 16, Bits: 16} },
		New: func(p any, _ Env) (Method, error) {
			qp := *p.(*QuestParams)
			if err := qp.Validate(); err != nil {
				return nil, fmt.Errorf("quest: %w", err)
			}
			return &Quest{p: qp}, nil
		},
	})
}

// AuxBits implements Method.
func (q *Quest) AuxBits(d, groupSize int) float64 {
	b := 2 * float64(d*q.p.Bits) / float64(q.p.Page)
	if q.p.Bits < 16 {
		b += 32 / float64(q.p.Page)
	}
	return b
}

// questPages holds the page labels of one Group: min and max are
// [pages][d], page p covering positions [p·S, (p+1)·S).
type questPages struct {
	s        int
	d        int
	min, max []float32
}

// buildQuestPages computes the (optionally quantised) page labels of the
// keys k ([T][d] row-major in data).
func buildQuestPages(g *attn.Group, s, bits int) *questPages {
	t, d := g.T(), g.D()
	np := (t + s - 1) / s
	qp := &questPages{s: s, d: d, min: make([]float32, np*d), max: make([]float32, np*d)}
	for p := 0; p < np; p++ {
		lo, hi := qp.min[p*d:(p+1)*d], qp.max[p*d:(p+1)*d]
		copy(lo, g.K.Row(p*s))
		copy(hi, g.K.Row(p*s))
		for j := p*s + 1; j < min((p+1)*s, t); j++ {
			for c, x := range g.K.Row(j) {
				lo[c] = min(lo[c], x)
				hi[c] = max(hi[c], x)
			}
		}
		if bits < 16 {
			quantOutward(lo, hi, bits)
		}
	}
	return qp
}

// quantOutward quantises the page's labels on one uniform grid of 2^bits
// levels spanning [min(lo), max(hi)], rounding lo down and hi up so the
// dequantised box contains the exact one.
func quantOutward(lo, hi []float32, bits int) {
	a, b := lo[0], hi[0]
	for c := range lo {
		a, b = min(a, lo[c]), max(b, hi[c])
	}
	levels := float64(int(1)<<bits - 1)
	step := (float64(b) - float64(a)) / levels
	if step == 0 {
		return
	}
	for c := range lo {
		l := math.Floor((float64(lo[c]) - float64(a)) / step)
		h := math.Ceil((float64(hi[c]) - float64(a)) / step)
		l, h = max(l, 0), min(h, levels)
		ql := float32(float64(a) + l*step)
		qh := float32(float64(a) + h*step)
		// float32 rounding of the grid point must not cross the value
		for ql > lo[c] {
			ql = math.Nextafter32(ql, float32(math.Inf(-1)))
		}
		for qh < hi[c] {
			qh = math.Nextafter32(qh, float32(math.Inf(1)))
		}
		lo[c], hi[c] = ql, qh
	}
}

// upper returns U(page p) = Σ_i max(q_i·max_i, q_i·min_i).
func (qp *questPages) upper(q []float32, p int) float32 {
	lo, hi := qp.min[p*qp.d:(p+1)*qp.d], qp.max[p*qp.d:(p+1)*qp.d]
	var u float32
	for c, x := range q {
		if x >= 0 {
			u += x * hi[c]
		} else {
			u += x * lo[c]
		}
	}
	return u
}

// Prepare implements Method.
func (q *Quest) Prepare(g *attn.Group, opt Options) (Selector, error) {
	s := &questSelector{g: g, pages: buildQuestPages(g, q.p.Page, q.p.Bits)}
	s.ScoreSelector = NewScoreSelector(len(g.Q), opt.Shared, s.score)
	return s, nil
}

type questSelector struct {
	*ScoreSelector
	g     *attn.Group
	pages *questPages
}

// score gives every position its page's U, and the current page +Inf, so
// that the shared top-k (higher score, then lower position) takes whole
// pages by U and truncates the last one to its leading positions.
func (s *questSelector) score(i, t, n int, dst []float32) {
	q := s.g.Q[i].Row(t)
	ps := s.pages.s
	cur := (n - 1) / ps
	for p := 0; p*ps < n; p++ {
		u := float32(math.Inf(1))
		if p != cur {
			u = s.pages.upper(q, p)
		}
		for j := p * ps; j < min((p+1)*ps, n); j++ {
			dst[j] = u
		}
	}
}
