package runner

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/config"
	"github.com/hbench/hbench/gpu"
	"github.com/hbench/hbench/gpueval"
	"github.com/hbench/hbench/resultfmt"
)

// deviceExperiment writes an experiment on the shipped capture and a
// small synthetic workload, with every method that has a GPU adapter and
// one that has none (random: it stays on the CPU), and loads it.
func deviceExperiment(t *testing.T, device string) *config.Experiment {
	t.Helper()
	abs, err := filepath.Abs("../testdata")
	if err != nil {
		t.Fatal(err)
	}
	y := fmt.Sprintf(`name: dev
device: %s
workloads:
  - name: real
    capture: {files: [%q]}
  - name: synth
    synthetic: {seed: 5, tokens: 1500, heads: 4, kv_heads: 1}
queries: {last: 6}
budget: {sparsity: [8, 32], sink: 4, local: 16}
methods:
  - dense
  - oracle
  - streaming
  - random
  - quest: {page: 16}
  - lsh: {bits: 64}
  - doublesparsity: {calibration: self, channels: 16}
  - label: h2o
    h2o: {init: prefill}
    workloads: [real]
  - label: hashattention
    hashattention: {weights: %q}
    workloads: [real]
  - label: hash-random
    hashattention: {init: random, seed: 2}
    workloads: [synth]
`, device, filepath.Join(abs, "persuasion", "*.safetensors"), filepath.Join(abs, "weights", "persuasion-2k-b32.safetensors"))
	path := filepath.Join(t.TempDir(), "dev.yaml")
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return load(t, path)
}

// TestDeviceGPUWithoutDriver: device: gpu fails with the file, line and
// field where no driver loads; device: auto runs on the CPU then, with
// the CPU's cell ids and numbers.
func TestDeviceGPUWithoutDriver(t *testing.T) {
	if ev, err := gpueval.Open(0); err == nil {
		ev.Close()
		t.Skip("a GPU is present (TestDeviceGPUMatchesCPU covers it)")
	} else if !errors.Is(err, gpu.ErrNoGPU) {
		t.Fatal(err)
	}
	x := deviceExperiment(t, "gpu")
	_, err := Run(context.Background(), x, Options{Root: t.TempDir(), Workers: 2})
	if err == nil || !strings.Contains(err.Error(), x.Path+":2: device: gpu:") || !errors.Is(err, gpu.ErrNoGPU) {
		t.Fatalf("device gpu without a driver: %v", err)
	}
	var log strings.Builder
	auto, err := Run(context.Background(), deviceExperiment(t, "auto"), Options{Root: t.TempDir(), Workers: 2, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "device auto:") {
		t.Errorf("auto fell back silently: log %q", log.String())
	}
	cpu, err := Run(context.Background(), deviceExperiment(t, "cpu"), Options{Root: t.TempDir(), Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	a, c := numbers(t, auto.Cells), numbers(t, cpu.Cells)
	if len(a) != len(c) || len(a) == 0 {
		t.Fatalf("auto %d cells, cpu %d", len(a), len(c))
	}
	for id, v := range c {
		if a[id] != v {
			t.Fatalf("cell %s: auto %s, cpu %s", id, a[id], v)
		}
	}
}

// TestDeviceGPUMatchesCPU runs the experiment on the CPU and on the GPU
// and compares every summarized metric of every cell: within 1e-3 on the
// capture (fp16 data: both paths see the same numbers), and within 2e-2
// on the float32 synthetic workload, which the GPU run rounds to fp16
// (keys move by up to 2^-11 relative, which moves near-tied keys across
// the budget's threshold: a stated, looser tolerance).
func TestDeviceGPUMatchesCPU(t *testing.T) {
	if ev, err := gpueval.Open(0); err != nil {
		if errors.Is(err, gpu.ErrNoGPU) {
			t.Skipf("no GPU: %v", err)
		}
		t.Fatal(err)
	} else {
		ev.Close()
	}
	var log strings.Builder
	g, err := Run(context.Background(), deviceExperiment(t, "gpu"), Options{Root: t.TempDir(), Workers: 4, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), `"random" has no GPU adapter`) {
		t.Errorf("no note for random on the CPU: %q", log.String())
	}
	c, err := Run(context.Background(), deviceExperiment(t, "cpu"), Options{Root: t.TempDir(), Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Cells) != len(c.Cells) || len(c.Cells) == 0 {
		t.Fatalf("gpu %d cells, cpu %d", len(g.Cells), len(c.Cells))
	}
	worst := map[string]float64{}
	for i, cc := range c.Cells {
		gc := g.Cells[i]
		if gc.ID == cc.ID || gc.Variant != cc.Variant || gc.Workload != cc.Workload || gc.Layer != cc.Layer || gc.Sparsity != cc.Sparsity {
			t.Fatalf("cell %d: gpu %s %s, cpu %s %s", i, gc.ID, gc.Variant, cc.ID, cc.Variant)
		}
		tol := 1e-3
		if cc.Workload == "synth" {
			tol = 2e-2
		}
		for m, cs := range cc.Metrics {
			gs := gc.Metrics[m]
			for _, f := range []struct {
				n    string
				a, b float64
			}{{"mean", cs.Mean, gs.Mean}, {"median", cs.Median, gs.Median}, {"p10", cs.P10, gs.P10}, {"p90", cs.P90, gs.P90}, {"min", cs.Min, gs.Min}, {"max", cs.Max, gs.Max}} {
				d := math.Abs(f.a - f.b)
				key := cc.Workload + " " + cc.Variant
				worst[key] = math.Max(worst[key], d)
				if d > tol {
					t.Errorf("%s layer %d %s %gx: %s %s: CPU %.6f GPU %.6f (tolerance %g)", cc.Workload, cc.Layer, cc.Variant, cc.Sparsity, m, f.n, f.a, f.b, tol)
				}
			}
		}
		if gc.Samples != cc.Samples {
			t.Errorf("%s: %d samples on the GPU, %d on the CPU", cc.Variant, gc.Samples, cc.Samples)
		}
	}
	for k, d := range worst {
		t.Logf("%s: largest metric difference %.2e", k, d)
	}
	if _, err := resultfmt.ReadManifest(g.Dir); err != nil {
		t.Fatal(err)
	}
}

// TestRefPrefetch: with prefetch (as GPU runs use it) the first request
// of a group builds every (head, position) reference in the background;
// each equals the one built on request, and a dropped or closed cache
// builds nothing more.
func TestRefPrefetch(t *testing.T) {
	x := deviceExperiment(t, "cpu")
	groups, err := Load(x)
	if err != nil {
		t.Fatal(err)
	}
	g := groups["synth"][0]
	pos := x.Queries.Positions(g.T())
	c := newRefCache(x)
	c.prefetch = x.Queries.Positions
	plain := newRefCache(x)
	r, err := c.get(g, 1, pos[2])
	if err != nil {
		t.Fatal(err)
	}
	c.wg.Wait() // the prefetch finishes
	c.mu.Lock()
	n := len(c.m)
	c.mu.Unlock()
	if want := len(pos) * len(g.Q); n != want {
		t.Fatalf("%d references built, want %d", n, want)
	}
	for _, tt := range pos {
		for h := range g.Q {
			got, err := c.get(g, h, tt)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := plain.get(g, h, tt)
			if got.LSE != want.LSE || got.N != want.N || got.Recall([]int32{0, 1, 2}, 3) != want.Recall([]int32{0, 1, 2}, 3) {
				t.Fatalf("head %d position %d: prefetched reference differs", h, tt)
			}
		}
	}
	if r2, _ := c.get(g, 1, pos[2]); r2 != r {
		t.Fatal("reference rebuilt")
	}
	c.drop([]*attn.Group{g})
	if r, err := c.getFor(g, 0, pos[0], true); r != nil || err != nil {
		t.Fatal("prefetch after drop built a reference")
	}
	c.close()
	if r, err := c.getFor(groups["synth"][0], 0, pos[0], true); r != nil || err != nil {
		t.Fatal("prefetch after close built a reference")
	}
	c.mu.Lock()
	n = len(c.m)
	c.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d references left after drop", n)
	}
}
