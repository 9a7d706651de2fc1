// Package budget resolves how many keys a sparse-attention method may keep
// for one query, and how that number splits between the fixed sink and
// local windows and the method's own ("heavy") choice. Every method and
// metric takes its budget from Resolve, so that methods compared at one
// sparsity keep exactly the same number of tokens.
package budget

import (
	"errors"
	"fmt"
	"math"
)

// Spec is the budget policy of an experiment. Exactly one of Sparsity and
// Tokens is set.
type Spec struct {
	// Sparsity s gives a total budget of ceil(n / s) keys for a query that
	// sees n keys. Must be > 1 when set.
	Sparsity float64 `json:"sparsity,omitempty"`
	// Tokens gives a fixed total budget of keys (capped at n).
	Tokens int `json:"tokens,omitempty"`
	// Sink is the number of leading keys (positions 0..Sink-1) always kept.
	Sink int `json:"sink"`
	// Local is the number of most recent keys (positions n-Local..n-1) always kept.
	Local int `json:"local"`
}

// Budget is a resolved budget for a query that sees keys 0..N-1.
// Total = Sink + Local + Heavy <= N.
type Budget struct {
	N     int // visible keys
	Total int // keys kept in all
	Sink  int // keys 0..Sink-1
	Local int // keys N-Local..N-1
	Heavy int // keys the method picks among positions Sink..N-Local-1
}

// Validate reports every problem with the spec, joined.
func (s Spec) Validate() error {
	var errs []error
	switch {
	case s.Sparsity != 0 && s.Tokens != 0:
		errs = append(errs, errors.New("give sparsity or tokens, not both"))
	case s.Sparsity == 0 && s.Tokens == 0:
		errs = append(errs, errors.New("give sparsity (> 1) or tokens (> 0)"))
	case s.Tokens < 0:
		errs = append(errs, fmt.Errorf("tokens: must be > 0, got %d", s.Tokens))
	case s.Sparsity != 0 && (!(s.Sparsity > 1) || math.IsInf(s.Sparsity, 0)):
		errs = append(errs, fmt.Errorf("sparsity: must be a finite number > 1, got %g", s.Sparsity))
	}
	if s.Sink < 0 {
		errs = append(errs, fmt.Errorf("sink: must be >= 0, got %d", s.Sink))
	}
	if s.Local < 0 {
		errs = append(errs, fmt.Errorf("local: must be >= 0, got %d", s.Local))
	}
	return errors.Join(errs...)
}

// TotalFor returns the total budget for a query that sees n keys.
func (s Spec) TotalFor(n int) int {
	k := s.Tokens
	if s.Sparsity > 0 {
		k = int(math.Ceil(float64(n) / s.Sparsity))
	}
	return max(1, min(k, n))
}

// Resolve returns the budget for a query that sees n keys. The sink window
// is taken first, then the local window, each clipped so the total is never
// exceeded; the remainder is the heavy budget. A spec whose windows eat the
// whole budget therefore degrades to StreamingLLM rather than overspending;
// CheckFits reports that case at validation time.
func (s Spec) Resolve(n int) Budget {
	if n <= 0 {
		return Budget{}
	}
	k := s.TotalFor(n)
	sink := min(s.Sink, k)
	local := min(s.Local, k-sink)
	return Budget{N: n, Total: k, Sink: sink, Local: local, Heavy: k - sink - local}
}

// CheckFits reports an error when, for a query that sees n keys, the
// budget is larger than the context or the sink and local windows leave
// no heavy budget (every method would then select the same keys).
func (s Spec) CheckFits(n int) error {
	if s.Tokens > n {
		return fmt.Errorf("tokens %d is larger than the context of %d keys", s.Tokens, n)
	}
	k := s.TotalFor(n)
	if s.Sink+s.Local >= k {
		return fmt.Errorf("sink %d + local %d use the whole budget of %d keys at %d visible keys: no heavy budget left", s.Sink, s.Local, k, n)
	}
	return nil
}

// Fixed appends the always-kept positions of b (sink then local, ascending
// and disjoint) to dst.
func (b Budget) Fixed(dst []int32) []int32 {
	for i := 0; i < b.Sink; i++ {
		dst = append(dst, int32(i))
	}
	for i := b.N - b.Local; i < b.N; i++ {
		dst = append(dst, int32(i))
	}
	return dst
}

// MiddleRange returns the half-open range [lo, hi) of positions the heavy
// budget chooses from: everything outside the sink and local windows.
func (b Budget) MiddleRange() (lo, hi int) { return b.Sink, b.N - b.Local }
