// Package metrics scores a selection of keys for one query against exact
// attention: top-k recall against the oracle at the same budget,
// attention-mass recall, relative output error and density; and summarises
// samples of a metric (mean, median, p10, p90).
//
// A Reference holds the exact attention of one query (float64 logits,
// probabilities, output) and is computed once and shared by every method
// and budget evaluated on that query.
package metrics

import (
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/tensor"
)

// Reference is the exact decode attention of one query over keys 0..N-1.
// It keeps what the metrics need and no more (about 8·N + 8·KMax bytes),
// since a sweep holds many references at once.
type Reference struct {
	N      int
	Logits []float64 // scale·q·k_j
	LSE    float64   // log Σ exp(Logits)
	Out    []float64 // exact output Σ p_j v_j
	top    []float64 // the KMax largest logits, descending
	outNrm float64
	v      *tensor.Mat
}

// NewReference computes the exact attention of query q at position t (keys
// and values 0..t) of a group's keys k and values v. Recall can then be
// asked for budgets up to kmax keys (kmax <= 0 or > N means N).
func NewReference(q []float32, k, v *tensor.Mat, t int, scale float32, kmax int) *Reference {
	n := t + 1
	if kmax <= 0 || kmax > n {
		kmax = n
	}
	r := &Reference{N: n, v: v}
	r.Logits = attn.Logits(q, k, n, scale, nil)
	m := math.Inf(-1)
	for _, x := range r.Logits {
		m = max(m, x)
	}
	var z float64
	for _, x := range r.Logits {
		z += math.Exp(x - m)
	}
	r.LSE = m + math.Log(z)
	// The exact output goes through the same code as a sparse selection of
	// every key, so dense attention scores an output error of exactly 0.
	all := make([]int32, n)
	for j := range all {
		all[j] = int32(j)
	}
	r.Out = attn.SparseOutput(r.Logits, all, v, nil)
	r.outNrm = norm(r.Out)
	r.top = topDesc(r.Logits, kmax)
	return r
}

// topDesc returns the k largest values of xs in descending order.
func topDesc(xs []float64, k int) []float64 {
	s := slices.Clone(xs)
	if k < len(s) {
		// Partition so the k largest come first, then sort only those.
		lo, hi := 0, len(s)-1
		for lo < hi {
			p := s[lo+(hi-lo)/2]
			i, j := lo, hi
			for i <= j {
				for s[i] > p {
					i++
				}
				for s[j] < p {
					j--
				}
				if i <= j {
					s[i], s[j] = s[j], s[i]
					i++
					j--
				}
			}
			switch {
			case k-1 <= j:
				hi = j
			case k-1 >= i:
				lo = i
			default:
				lo = hi
			}
		}
		s = s[:k:k]
	}
	sort.Sort(sort.Reverse(sort.Float64Slice(s)))
	return s
}

// Probs returns the exact softmax probabilities (allocated on each call).
func (r *Reference) Probs() []float64 {
	p := make([]float64, r.N)
	for j, x := range r.Logits {
		p[j] = math.Exp(x - r.LSE)
	}
	return p
}

// Recall returns the top-k recall of sel against the oracle set of the k
// largest logits, k = budget (clipped to [1, N]).
//
// Ties: the oracle set is ambiguous when several keys share the k-th
// largest logit τ. Recall counts every selected key with a logit above τ,
// plus selected keys with logit exactly τ up to the number of oracle slots
// left for the tie (k − #{logit > τ}). Any tie-breaking of the oracle thus
// scores the same, the oracle itself scores exactly 1, and a selection
// scores 1 exactly when it is some valid top-k set.
func (r *Reference) Recall(sel []int32, budget int) float64 {
	k := max(1, min(budget, r.N))
	if k > len(r.top) {
		panic(fmt.Sprintf("metrics: recall at budget %d asked of a reference built for at most %d", k, len(r.top)))
	}
	tau := r.top[k-1]
	above := sort.Search(k, func(i int) bool { return r.top[i] <= tau }) // #{logit > τ}
	slots := k - above
	var hit, ties int
	for _, j := range sel {
		switch l := r.Logits[j]; {
		case l > tau:
			hit++
		case l == tau:
			ties++
		}
	}
	return float64(hit+min(ties, slots)) / float64(k)
}

// MassRecall returns the exact softmax mass on the selected keys.
func (r *Reference) MassRecall(sel []int32) float64 {
	var m float64
	for _, j := range sel {
		m += math.Exp(r.Logits[j] - r.LSE)
	}
	return min(m, 1)
}

// OutputError returns ‖o_sel − o‖ / ‖o‖, where o_sel is attention over the
// selected keys with the softmax renormalised over them. An empty selection
// has error 1 (output zero).
func (r *Reference) OutputError(sel []int32) float64 {
	o := attn.SparseOutput(r.Logits, sel, r.v, nil)
	var d float64
	for i, x := range o {
		e := x - r.Out[i]
		d += e * e
	}
	if r.outNrm == 0 {
		return math.Sqrt(d)
	}
	return math.Sqrt(d) / r.outNrm
}

// Density returns the fraction of visible keys selected.
func (r *Reference) Density(sel []int32) float64 { return float64(len(sel)) / float64(r.N) }

func norm(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v * v
	}
	return math.Sqrt(s)
}
