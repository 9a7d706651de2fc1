package workloads

import (
	"errors"
	"fmt"
)

// QueryPlan says which query positions t of a sequence of T positions are
// evaluated; the query at t sees keys 0..t (causal decode).
//
// Last > 0 takes the last Last positions with step Stride (consecutive
// decode steps when Stride is 1, which stateful methods such as H2O need).
// Every > 0 instead takes every Every-th position from From on. Positions
// below MinContext are skipped in both cases.
type QueryPlan struct {
	Last       int `yaml:"last" json:"last,omitempty" doc:"evaluate the last N positions"`
	Stride     int `yaml:"stride" json:"stride,omitempty" doc:"step between positions with last (default 1: consecutive decode steps)"`
	Every      int `yaml:"every" json:"every,omitempty" doc:"evaluate every N-th position (alternative to last)"`
	From       int `yaml:"from" json:"from,omitempty" doc:"first position for every"`
	MinContext int `yaml:"min_context" json:"min_context,omitempty" doc:"skip positions that see fewer keys than this"`
}

// Validate reports every problem with the plan, joined.
func (p QueryPlan) Validate() error {
	var errs []error
	switch {
	case p.Last > 0 && p.Every > 0:
		errs = append(errs, errors.New("give last or every, not both"))
	case p.Last <= 0 && p.Every <= 0:
		errs = append(errs, errors.New("give last (> 0) or every (> 0)"))
	}
	if p.Stride < 0 {
		errs = append(errs, fmt.Errorf("stride: must be > 0, got %d", p.Stride))
	}
	if p.From < 0 || p.MinContext < 0 {
		errs = append(errs, errors.New("from and min_context must be >= 0"))
	}
	return errors.Join(errs...)
}

// Positions returns the evaluated positions, ascending, for a sequence of
// T positions.
func (p QueryPlan) Positions(T int) []int {
	var out []int
	if p.Last > 0 {
		stride := max(p.Stride, 1)
		first := T - 1 - (p.Last-1)*stride
		for t := first; t < T; t += stride {
			if t >= 0 && t+1 >= p.MinContext {
				out = append(out, t)
			}
		}
		return out
	}
	if p.Every > 0 {
		for t := p.From; t < T; t += p.Every {
			if t+1 >= p.MinContext {
				out = append(out, t)
			}
		}
	}
	return out
}

// Consecutive reports whether the plan evaluates consecutive positions.
func (p QueryPlan) Consecutive() bool { return p.Last > 0 && p.Stride <= 1 || p.Every == 1 }
