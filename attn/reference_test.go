package attn

import (
	"math"
	"testing"

	"github.com/hbench/hbench/tensor"
)

func TestDecodeHandComputed(t *testing.T) {
	// Two keys with logits 0 and ln 3 (scale 1): weights 1/4 and 3/4.
	k := &tensor.Mat{Rows: 2, Cols: 1, Data: []float32{0, float32(math.Log(3))}}
	v := &tensor.Mat{Rows: 2, Cols: 2, Data: []float32{4, 0, 0, 8}}
	q := []float32{1}
	got := Decode(q, k, v, 1, 1)
	want := []float64{1, 6}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-6 {
			t.Fatalf("Decode = %v, want %v", got, want)
		}
	}
	// Causality: at t = 0 only key 0 is seen.
	if got := Decode(q, k, v, 0, 1); got[0] != 4 || got[1] != 0 {
		t.Fatalf("Decode at t=0 = %v, want [4 0]", got)
	}
	l := Logits(q, k, 2, 1, nil)
	p, lse := Softmax(l, nil)
	if math.Abs(p[0]-0.25) > 1e-7 || math.Abs(lse-math.Log(4)) > 1e-6 {
		t.Fatalf("softmax %v lse %g", p, lse)
	}
	// A sparse output over every key equals the dense one; over one key it is that value.
	if s := SparseOutput(l, []int32{0, 1}, v, nil); math.Abs(s[1]-6) > 1e-6 {
		t.Fatalf("SparseOutput(all) = %v", s)
	}
	if s := SparseOutput(l, []int32{1}, v, nil); s[0] != 0 || s[1] != 8 {
		t.Fatalf("SparseOutput({1}) = %v", s)
	}
}
