package metrics

import (
	"fmt"
	"math"

	"github.com/hbench/hbench/tensor"
)

// NewReferenceFrom builds a Reference from exact attention computed
// elsewhere (the GPU reference of package gpueval): logits[j] =
// scale·q·k_j for the N = len(logits) visible keys, and out the dense
// output Σ p_j v_j; v holds the values the metrics gather (rows 0..N-1).
// The log-sum-exp and the top logits are computed here as in
// NewReference, so every metric goes through the same code.
func NewReferenceFrom(logits, out []float64, v *tensor.Mat, kmax int) (*Reference, error) {
	n := len(logits)
	if n == 0 || v == nil || v.Rows < n || len(out) != v.Cols {
		return nil, fmt.Errorf("metrics: reference from %d logits and a %d-wide output over %v values", n, len(out), v != nil)
	}
	if kmax <= 0 || kmax > n {
		kmax = n
	}
	r := &Reference{N: n, Logits: logits, Out: out, v: v}
	r.LSE = LogSumExp(logits)
	r.outNrm = norm(out)
	r.top = topDesc(logits, kmax)
	return r, nil
}

// LogSumExp returns log Σ exp(x_j), computed as NewReference does (max
// first, then the sum in order).
func LogSumExp(xs []float64) float64 {
	m := math.Inf(-1)
	for _, x := range xs {
		m = max(m, x)
	}
	var z float64
	for _, x := range xs {
		z += math.Exp(x - m)
	}
	return m + math.Log(z)
}
