package gpu

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/tensor"
	"github.com/hbench/hbench/workloads"
)

// captureKV returns the first n positions of the capture's KV heads as
// fp16 kernel inputs (the capture holds fp16 values, so the conversion
// is exact).
func captureKV(mats []*tensor.Mat, n int) kvData {
	var kd kvData
	for _, m := range mats {
		sub := &tensor.Mat{Rows: n, Cols: m.Cols, Data: m.Data[:n*m.Cols]}
		for _, x := range sub.Data {
			kd.raw = append(kd.raw, tensor.F32ToF16(x))
		}
		kd.mats = append(kd.mats, sub)
	}
	return kd
}

// TestSelectionOnRealCapture runs the oracle, Quest and StreamingLLM
// steps on the shipped real capture sample (testdata/persuasion: fp16
// Q/K/V of layers 1, 4 and 7, one KV head and its two query heads) at
// several query positions, and checks them against the CPU methods as
// the random-input tests do (softmax scale 1/sqrt(d) on both sides).
func TestSelectionOnRealCapture(t *testing.T) {
	d := device(t)
	files, _ := filepath.Glob("../testdata/persuasion/*.safetensors")
	if len(files) == 0 {
		t.Skip("no testdata/persuasion capture")
	}
	for _, f := range files {
		c, err := workloads.ReadCapture(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, pos := range []int{c.T - 1, 1000, 99} {
			n := pos + 1
			s := Shape{Batch: 1, Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.D, Context: n, DType: FP16}
			if err := s.Validate(); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			kv, vv := captureKV(c.K, n), captureKV(c.V, n)
			var q []float32
			for h := 0; h < c.Heads; h++ {
				q = append(q, c.Q[h].Row(pos)...)
			}
			for _, spec := range []budget.Spec{{Sparsity: 8, Sink: 4, Local: 16}, {Sparsity: 32}} {
				b := spec.Resolve(n)
				for _, sel := range []Selection{PerHead, PerKVHead} {
					name := fmt.Sprintf("%s pos %d %v budget %+v", filepath.Base(f), pos, sel, b)
					checkOracleStep(t, d, "oracle "+name, s, sel, b, q, kv, vv, false)
					checkQuestStep(t, d, "quest "+name, s, sel, 16, b, q, kv, vv, false)
					checkStreamStep(t, d, s, sel, b, q, kv, vv)
				}
			}
		}
	}
}
