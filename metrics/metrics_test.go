package metrics

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hbench/hbench/tensor"
)

// handRef builds a reference whose logits are exactly ls (d = 1, q = 1,
// scale 1, k_j = ls[j]) and values v_j = (j, 1).
func handRef(ls []float32) *Reference {
	n := len(ls)
	k := &tensor.Mat{Rows: n, Cols: 1, Data: append([]float32(nil), ls...)}
	v := tensor.NewMat(n, 2)
	for j := 0; j < n; j++ {
		v.Row(j)[0], v.Row(j)[1] = float32(j), 1
	}
	return NewReference([]float32{1}, k, v, n-1, 1, 0)
}

func TestRecallHandComputed(t *testing.T) {
	r := handRef([]float32{0, 3, 1, 2, 5})
	cases := []struct {
		sel    []int32
		budget int
		want   float64
	}{
		{[]int32{4, 1}, 2, 1},    // exact top-2
		{[]int32{4, 3}, 2, 0.5},  // one of two
		{[]int32{0, 2}, 2, 0},    // none
		{[]int32{1, 3, 4}, 3, 1}, // top-3
		{[]int32{0, 1, 2}, 3, 1.0 / 3},
		{[]int32{0, 1, 2, 3, 4}, 5, 1}, // dense
	}
	for _, c := range cases {
		if got := r.Recall(c.sel, c.budget); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("Recall(%v, %d) = %g, want %g", c.sel, c.budget, got, c.want)
		}
	}
}

func TestRecallTies(t *testing.T) {
	// Logits 5, 2, 2, 2, 0: top-2 is {0} plus any one of {1,2,3}.
	r := handRef([]float32{5, 2, 2, 2, 0})
	for _, sel := range [][]int32{{0, 1}, {0, 2}, {0, 3}} {
		if got := r.Recall(sel, 2); got != 1 {
			t.Errorf("tie-broken oracle %v has recall %g, want 1", sel, got)
		}
	}
	if got := r.Recall([]int32{1, 2}, 2); got != 0.5 {
		t.Errorf("two tied keys for one tie slot: recall %g, want 0.5", got)
	}
	if got := r.Recall([]int32{1, 4}, 2); got != 0.5 {
		t.Errorf("recall %g, want 0.5", got)
	}
}

func TestMassAndOutputError(t *testing.T) {
	// logits 0 and ln 3: probabilities 1/4, 3/4.
	r := handRef([]float32{0, float32(math.Log(3))})
	if got := r.MassRecall([]int32{1}); math.Abs(got-0.75) > 1e-6 {
		t.Errorf("mass = %g, want 0.75", got)
	}
	if got := r.MassRecall([]int32{0, 1}); math.Abs(got-1) > 1e-12 {
		t.Errorf("dense mass = %g", got)
	}
	// Dense output (0.75, 1); selecting key 1 alone gives (1, 1): error 0.25/‖(0.75,1)‖ = 0.2.
	if got := r.OutputError([]int32{1}); math.Abs(got-0.2) > 1e-6 {
		t.Errorf("output error = %g, want 0.2", got)
	}
	if got := r.OutputError([]int32{0, 1}); got > 1e-12 {
		t.Errorf("dense output error = %g, want 0", got)
	}
	if got := r.Density([]int32{1}); got != 0.5 {
		t.Errorf("density = %g", got)
	}
}

func TestRandomProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	n, d := 300, 16
	k, v := tensor.NewMat(n, d), tensor.NewMat(n, d)
	for i := range k.Data {
		k.Data[i], v.Data[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
	}
	q := make([]float32, d)
	for i := range q {
		q[i] = float32(rng.NormFloat64())
	}
	r := NewReference(q, k, v, n-1, 0.25, 40)
	// Mass of a top-k set is at least that of any other k-set.
	top := make([]int32, 0, 30)
	order := make([]int32, n)
	for i := range order {
		order[i] = int32(i)
	}
	for i := 0; i < 30; i++ { // selection sort of the 30 largest
		best := i
		for j := i + 1; j < n; j++ {
			if r.Logits[order[j]] > r.Logits[order[best]] {
				best = j
			}
		}
		order[i], order[best] = order[best], order[i]
		top = append(top, order[i])
	}
	if got := r.Recall(top, 30); got != 1 {
		t.Fatalf("top-30 recall %g", got)
	}
	rnd := order[100:130]
	if r.MassRecall(top) < r.MassRecall(rnd) || r.OutputError(top) > r.OutputError(rnd) {
		t.Fatalf("top-k worse than a random set: mass %g vs %g, err %g vs %g", r.MassRecall(top), r.MassRecall(rnd), r.OutputError(top), r.OutputError(rnd))
	}
}

func TestSummarize(t *testing.T) {
	s := Summarize([]float64{4, 1, 3, 2, 5})
	if s.Mean != 3 || s.Median != 3 || s.Min != 1 || s.Max != 5 || s.Count != 5 {
		t.Fatalf("Summarize = %+v", s)
	}
	if math.Abs(s.P10-1.4) > 1e-12 || math.Abs(s.P90-4.6) > 1e-12 { // numpy: 1.4, 4.6
		t.Fatalf("percentiles %+v", s)
	}
	if (Summarize(nil) != Summarize([]float64{})) || Summarize(nil).Count != 0 {
		t.Fatal("empty summary")
	}
}
