package train

import (
	"context"
	"os"
	"testing"

	"github.com/hbench/hbench/workloads"
)

// devCapture is the shared dev capture the acceptance benchmark uses.
const devCapture = "/work/shared/data/qkv/persuasion-L4.safetensors"

// BenchmarkTrainLayer trains every query head (4) of one layer of the
// shared dev capture (8192 tokens) with the default config and the query
// positions of experiments/train-persuasion.yaml (all but the 128 that
// learned-vs-lsh.yaml evaluates). Run with -benchtime=1x; it reports
// seconds per layer and the validation recall of the exported maps.
func BenchmarkTrainLayer(b *testing.B) {
	path := os.Getenv("HBENCH_TRAIN_CAPTURE")
	if path == "" {
		path = devCapture
	}
	c, err := workloads.ReadCapture(path)
	if err != nil {
		b.Skipf("dev capture not available: %v", err)
	}
	groups := c.Groups("persuasion")
	cfg := Defaults()
	cfg.Exclude = workloads.QueryPlan{Last: 128, Stride: 8}
	for b.Loop() {
		_, rep, err := Train(context.Background(), cfg, groups, nil)
		if err != nil {
			b.Fatal(err)
		}
		var r8, r16 float64
		for _, h := range rep.Heads {
			r8 += h.Final.TopK[0] / float64(len(rep.Heads))
			r16 += h.Final.TopK[1] / float64(len(rep.Heads))
		}
		b.ReportMetric(rep.Seconds, "s/layer")
		b.ReportMetric(r8, "recall@8x")
		b.ReportMetric(r16, "recall@16x")
	}
}
