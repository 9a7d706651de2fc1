package runner

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hbench/hbench/config"
	"github.com/hbench/hbench/resultfmt"
)

func load(t *testing.T, path string) *config.Experiment {
	t.Helper()
	x, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// numbers returns each cell's metrics, keyed by ID, as JSON (timings excluded).
func numbers(t *testing.T, cells []*resultfmt.Cell) map[string]string {
	out := map[string]string{}
	for _, c := range cells {
		b, _ := json.Marshal(c.Metrics)
		out[c.ID] = c.Variant + " " + string(b)
	}
	return out
}

func TestRunProperties(t *testing.T) {
	x := load(t, "testdata/small.yaml")
	res, err := Run(context.Background(), x, Options{Root: t.TempDir(), Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 * 3 * 2; len(res.Cells) != want { // layers × methods × budgets
		t.Fatalf("%d cells, want %d", len(res.Cells), want)
	}
	for _, c := range res.Cells {
		r, m, e := c.Metrics[resultfmt.MetricRecall], c.Metrics[resultfmt.MetricMassRecall], c.Metrics[resultfmt.MetricOutputError]
		if c.Samples != 6*2 { // positions × query heads
			t.Errorf("%s: %d samples", c.Variant, c.Samples)
		}
		switch c.Method {
		case "dense":
			if r.Min != 1 || e.Max != 0 || m.Min < 1-1e-12 {
				t.Errorf("dense: recall %+v error %+v mass %+v", r, e, m)
			}
		case "oracle":
			if r.Min != 1 || r.Max != 1 {
				t.Errorf("oracle recall %+v, want exactly 1", r)
			}
		case "streaming":
			if r.Mean >= 1 {
				t.Errorf("streaming recall %+v on real data", r)
			}
		}
	}
	for _, f := range []string{resultfmt.ManifestFile, resultfmt.CellsFile, resultfmt.SummaryFile} {
		if _, err := os.Stat(filepath.Join(res.Dir, f)); err != nil {
			t.Error(err)
		}
	}
	man, err := resultfmt.ReadManifest(res.Dir)
	if err != nil || man.ConfigHash != x.Hash || man.Finished.IsZero() || man.GoVersion == "" || man.Commit == "" {
		t.Fatalf("manifest %+v, %v", man, err)
	}
}

func TestResumeMatchesUninterrupted(t *testing.T) {
	x := load(t, "testdata/small.yaml")
	full, err := Run(context.Background(), x, Options{Root: t.TempDir(), Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	// First attempt stops after 5 cells, as if killed.
	part, err := Run(context.Background(), x, Options{Root: root, Workers: 2, MaxCells: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(part.Cells) != 5 {
		t.Fatalf("partial run kept %d cells", len(part.Cells))
	}
	// A torn line from the kill.
	f, _ := os.OpenFile(filepath.Join(part.Dir, resultfmt.CellsFile), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"id":"deadbeef","kind":"qua`)
	f.Close()
	// A cancelled attempt (interrupt) must not lose or corrupt anything either.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, x, Options{Root: root, Workers: 2}); err == nil || !strings.Contains(err.Error(), "resume") {
		t.Fatalf("cancelled run: err %v", err)
	}
	res, err := Run(context.Background(), x, Options{Root: root, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped < 5 {
		t.Fatalf("resumed run skipped %d cells, want >= 5", res.Skipped)
	}
	a, b := numbers(t, full.Cells), numbers(t, res.Cells)
	if len(a) != len(b) {
		t.Fatalf("%d cells vs %d", len(a), len(b))
	}
	for id, v := range a {
		if b[id] != v {
			t.Errorf("cell %s differs:\n full    %s\n resumed %s", id, v, b[id])
		}
	}
	// A third run recomputes nothing.
	again, err := Run(context.Background(), x, Options{Root: root, Workers: 2})
	if err != nil || again.Skipped != len(full.Cells) {
		t.Fatalf("rerun skipped %d of %d (err %v)", again.Skipped, len(full.Cells), err)
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"missing file", strings.Replace(readFile(t, "testdata/small.yaml"), "persuasion-L4", "nope-L4", 1), "small.yaml:4: workloads[0].capture: no file matches"},
		{"budget larger than context", strings.Replace(readFile(t, "testdata/small.yaml"), "sparsity: [4, 16]", "tokens: [100000]", 1), "budget.tokens: workload \"real\", first evaluated position 594: tokens 100000 is larger than the context of 595 keys"},
		{"windows eat the budget", strings.Replace(readFile(t, "testdata/small.yaml"), "local: 8", "local: 80", 1), "budget.sparsity[1]: workload \"real\""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x, err := config.Parse("testdata/small.yaml", []byte(c.yaml))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Load(x)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

func readFile(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStatefulMethodNeedsConsecutivePlan(t *testing.T) {
	y := strings.Replace(readFile(t, "testdata/small.yaml"), "queries: {last: 6}", "queries: {last: 6, stride: 2}", 1)
	y = strings.Replace(y, "  - streaming\n", "  - streaming\n  - h2o\n", 1)
	x, err := config.Parse("testdata/small.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	_, err = BuildMethods(context.Background(), x, t.TempDir(), nil, false)
	if err == nil || !strings.Contains(err.Error(), "small.yaml:12: methods.h2o: needs consecutive query positions") {
		t.Fatalf("error %v", err)
	}
}

func TestTrainBlockTrainsOnceThenCaches(t *testing.T) {
	x := load(t, "testdata/trained.yaml")
	root := t.TempDir()
	var progress strings.Builder
	res, err := Run(context.Background(), x, Options{Root: root, Workers: 2, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Cells) != 1 || res.Cells[0].AuxBits != 8*2 {
		t.Fatalf("cells %+v", res.Cells)
	}
	files, _ := filepath.Glob(filepath.Join(root, ".cache", "hashattention", "*.safetensors"))
	if len(files) != 1 {
		t.Fatalf("cache holds %v", files)
	}
	info, _ := os.Stat(files[0])
	progress.Reset()
	if _, err := Run(context.Background(), x, Options{Root: root, Workers: 2, Progress: &progress, Fresh: true}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(progress.String(), "found in cache") {
		t.Fatalf("second run did not use the cache: %q", progress.String())
	}
	if again, _ := os.Stat(files[0]); !again.ModTime().Equal(info.ModTime()) {
		t.Fatal("weights were rewritten")
	}
}
