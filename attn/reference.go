package attn

import (
	"math"

	"github.com/hbench/hbench/tensor"
)

// Logits writes scale·(q·k_j) for keys j in [0, n) to dst (resized) and
// returns it. Dot products are accumulated in float64.
func Logits(q []float32, k *tensor.Mat, n int, scale float32, dst []float64) []float64 {
	dst = resize(dst, n)
	s := float64(scale)
	for j := 0; j < n; j++ {
		dst[j] = s * tensor.Dot(q, k.Row(j))
	}
	return dst
}

// Softmax writes the softmax of logits to dst (resized) and returns it with
// the log-sum-exp of the logits.
func Softmax(logits []float64, dst []float64) ([]float64, float64) {
	dst = resize(dst, len(logits))
	m := math.Inf(-1)
	for _, x := range logits {
		m = max(m, x)
	}
	var z float64
	for i, x := range logits {
		e := math.Exp(x - m)
		dst[i] = e
		z += e
	}
	for i := range dst {
		dst[i] /= z
	}
	return dst, m + math.Log(z)
}

// Output writes Σ_j w_j v_j over keys j in [0, len(w)) to dst (resized to
// the head dimension) and returns it.
func Output(w []float64, v *tensor.Mat, dst []float64) []float64 {
	dst = resize(dst, v.Cols)
	clear(dst)
	for j, wj := range w {
		if wj == 0 {
			continue
		}
		row := v.Row(j)
		for c, x := range row {
			dst[c] += wj * float64(x)
		}
	}
	return dst
}

// SparseOutput computes the attention output restricted to the keys in sel
// with the softmax renormalised over sel, from precomputed full logits. It
// writes the result to dst (resized) and returns it.
func SparseOutput(logits []float64, sel []int32, v *tensor.Mat, dst []float64) []float64 {
	dst = resize(dst, v.Cols)
	clear(dst)
	if len(sel) == 0 {
		return dst
	}
	m := math.Inf(-1)
	for _, j := range sel {
		m = max(m, logits[j])
	}
	var z float64
	for _, j := range sel {
		e := math.Exp(logits[j] - m)
		z += e
		row := v.Row(int(j))
		for c, x := range row {
			dst[c] += e * float64(x)
		}
	}
	for c := range dst {
		dst[c] /= z
	}
	return dst
}

// Decode returns the exact causal decode-attention output for query q at
// position t over keys and values 0..t.
func Decode(q []float32, k, v *tensor.Mat, t int, scale float32) []float64 {
	l := Logits(q, k, t+1, scale, nil)
	p, _ := Softmax(l, nil)
	return Output(p, v, nil)
}

func resize(s []float64, n int) []float64 {
	if cap(s) < n {
		return make([]float64, n)
	}
	return s[:n]
}
