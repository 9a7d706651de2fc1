package methods

import (
	"math"
	"slices"
	"testing"

	"github.com/hbench/hbench/budget"
)

// TestRandomUniform checks that random-k picks each middle position with
// probability Heavy/middle (a binomial z-test over many steps), keeps the
// windows, and is reproducible from its seeds.
func TestRandomUniform(t *testing.T) {
	g := randGroup(1, 200, 4, 1)
	m := newMethod(t, "random", nil, Env{})
	spec := budget.Spec{Tokens: 30, Sink: 3, Local: 7}
	const T, steps = 99, 4000
	b := spec.Resolve(T + 1)
	lo, hi := b.MiddleRange()
	count := make([]int, hi-lo)
	for seed := int64(0); seed < steps; seed++ {
		s, _ := m.Prepare(g, Options{Seed: seed})
		sel, err := s.Select(Step{T: T, Budget: b}, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkSelection(t, sel, Step{T: T, Budget: b}, 1, false)
		for _, j := range sel[0] {
			if int(j) >= lo && int(j) < hi {
				count[int(j)-lo]++
			}
		}
	}
	p := float64(b.Heavy) / float64(hi-lo)
	sd := math.Sqrt(steps * p * (1 - p))
	for i, c := range count {
		if z := (float64(c) - steps*p) / sd; math.Abs(z) > 4.5 {
			t.Errorf("position %d picked %d times in %d, expected %.0f (z = %.1f)", lo+i, c, steps, steps*p, z)
		}
	}
	// reproducible, and different for another seed
	pick := func(seed int64) []int32 {
		s, _ := m.Prepare(g, Options{Seed: seed})
		sel, _ := s.Select(Step{T: T, Budget: b}, nil)
		return sel[0]
	}
	if a, c := pick(5), pick(5); !slices.Equal(a, c) {
		t.Errorf("same seed: %v then %v", a, c)
	}
	if a, c := pick(5), pick(6); slices.Equal(a, c) {
		t.Errorf("seeds 5 and 6 gave the same sample %v", a)
	}
}
