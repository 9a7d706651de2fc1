package train

import (
	"math"
	"math/rand/v2"
	"testing"
)

// randomBatch returns a float64 batch of B queries and P keys of width dim
// with random labels and weights (some pairs masked out).
func randomBatch(rng *rand.Rand, B, P, dim int) *batch[float64] {
	bt := &batch[float64]{B: B, P: P, XQ: make([]float64, B*dim), XK: make([]float64, P*dim), Y: make([]float64, B*P), W: make([]float64, B*P)}
	for i := range bt.XQ {
		bt.XQ[i] = rng.NormFloat64()
	}
	for i := range bt.XK {
		bt.XK[i] = rng.NormFloat64()
	}
	for i := range bt.Y {
		if rng.IntN(4) == 0 {
			bt.Y[i] = 1
			bt.W[i] = 5
		} else if rng.IntN(5) > 0 {
			bt.W[i] = 0.5 + rng.Float64()
		}
	}
	return bt
}

// TestGradients checks the hand-written backward pass against central
// finite differences of the loss, in float64, for every parameter of a
// small model and every activation.
func TestGradients(t *testing.T) {
	for _, act := range []string{"silu", "tanh", "relu", "identity"} {
		t.Run(act, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			widths := []int{5, 7, 6, 4}
			m := &model[float64]{Q: newMLP[float64](widths, rng), K: newMLP[float64](widths, rng), Threshold: 0.3}
			bt := randomBatch(rng, 3, 6, 5)
			a := activation{act}
			g := m.zerosLike()
			var ws workspace[float64]
			lossGrad(m, a, bt, g, &ws)
			loss := func() float64 {
				var ws workspace[float64]
				return lossGrad(m, a, bt, m.zerosLike(), &ws)
			}
			const h = 1e-6
			var worst float64
			checkOne := func(name string, x *float64, want float64) {
				old := *x
				*x = old + h
				lp := loss()
				*x = old - h
				lm := loss()
				*x = old
				num := (lp - lm) / (2 * h)
				// relu has kinks; skip parameters whose perturbation crosses one.
				err := math.Abs(num-want) / max(1e-4, math.Abs(num)+math.Abs(want))
				worst = max(worst, err)
				if err > 1e-5 {
					t.Errorf("%s: backprop %.9g, finite difference %.9g", name, want, num)
				}
			}
			ps, gs := m.params(), g.params()
			for i := range ps {
				for j := range ps[i] {
					checkOne("param", &ps[i][j], gs[i][j])
				}
			}
			checkOne("threshold", &m.Threshold, g.Threshold)
			t.Logf("worst relative error %.2g", worst)
		})
	}
}

// TestLossHand checks the loss against a hand-computed case: a linear
// 1-bit map where both codes are tanh(1) and the threshold is 0.
func TestLossHand(t *testing.T) {
	m := &model[float64]{
		Q: mlp[float64]{Layers: []layer[float64]{{In: 1, Out: 1, W: []float64{1}, B: []float64{0}}}},
		K: mlp[float64]{Layers: []layer[float64]{{In: 1, Out: 1, W: []float64{1}, B: []float64{0}}}},
	}
	bt := &batch[float64]{B: 1, P: 2, XQ: []float64{1}, XK: []float64{1, -1}, Y: []float64{1, 0}, W: []float64{3, 1}}
	var ws workspace[float64]
	got := lossGrad(m, activation{"identity"}, bt, m.zerosLike(), &ws)
	z1 := math.Tanh(1) * math.Tanh(1)
	z2 := -z1
	want := (3*math.Log1p(math.Exp(-z1)) + math.Log1p(math.Exp(z2))) / 4
	if math.Abs(got-want) > 1e-12 {
		t.Fatalf("loss %.15g, want %.15g", got, want)
	}
}
