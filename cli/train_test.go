package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hbench/hbench/methods"
	"github.com/hbench/hbench/train"
)

// TestTrain trains a tiny model on the shipped real sample through the
// command line, from a training file and from flags, and checks its errors.
func TestTrain(t *testing.T) {
	dir := t.TempDir()
	sample, err := filepath.Abs("../testdata/persuasion/persuasion-L4.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "train.yaml")
	os.WriteFile(cfg, []byte(`data:
  capture: {files: ["`+sample+`"]}
train:
  bits: 8
  hidden: [16]
  epochs: 1
  queries: 64
  valid: 16
  from: 512
  heads: [1]
`), 0o644)
	out := filepath.Join(dir, "w.safetensors")
	code, stdout, errs := run(t, "train", "--quiet", "--config", cfg, "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(stdout, "1 maps (L4.H1), 8 bits") {
		t.Errorf("stdout %q", stdout)
	}
	w, err := methods.LoadHashWeights(out)
	if err != nil {
		t.Fatal(err)
	}
	var tr train.Training
	if err := json.Unmarshal([]byte(w.Metadata["training"]), &tr); err != nil {
		t.Fatal(err)
	}
	if len(tr.Files) != 1 || tr.Files[0].Path != sample || len(tr.Files[0].SHA256) != 64 || tr.Config.Bits != 8 || len(tr.Report.Heads) != 1 {
		t.Errorf("training metadata: files %+v, bits %d, %d heads", tr.Files, tr.Config.Bits, len(tr.Report.Heads))
	}

	// Flags and capture arguments, through the cache (second run reuses it).
	cache := filepath.Join(dir, "cache")
	args := []string{"train", "--out", filepath.Join(dir, "w2.safetensors"), "--cache", cache, "--bits", "8", "--epochs", "1", "--queries", "32", "--from", "512", "--heads", "0", sample}
	if code, _, errs := run(t, args...); code != 0 {
		t.Fatalf("flags: exit %d: %s", code, errs)
	}
	if code, _, errs := run(t, args...); code != 0 || !strings.Contains(errs, "found in cache") {
		t.Fatalf("second run: exit %d, stderr %q; want a cache hit", code, errs)
	}

	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("data:\n  capture: {files: [x.safetensors]}\ntrain:\n  bitz: 8\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "baddata.yaml"), []byte("data:\n  capture:\n    files: [x]\n    tokenz: 3\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "inval.yaml"), []byte("data:\n  capture: {files: [x]}\ntrain:\n  bits: 0\n  lr: -1\n"), 0o644)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"train", sample}, 2, "--out is required"},
		{[]string{"train", "--out", out}, 2, "give --config TRAIN.yaml or capture files"},
		{[]string{"train", "--out", out, "--layers", "a", sample}, 2, `--layers: "a" is not an integer`},
		{[]string{"train", "--out", out, "--config", bad}, 1, "bad.yaml: line 4: field bitz not found"},
		{[]string{"train", "--out", out, "--config", filepath.Join(dir, "inval.yaml")}, 1, "inval.yaml: train: bits: must be in 1..1024, got 0\nlr: must be"},
		{[]string{"train", "--out", out, "--config", filepath.Join(dir, "baddata.yaml")}, 1, `baddata.yaml:4: data.capture: unknown parameter "tokenz" (known: files, layers, tokens)`},
		{[]string{"train", "--out", out, "--layers", "3", sample}, 1, "the data has none of layers [3]"},
	} {
		code, _, errs := run(t, c.args...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args[1:], code, errs, c.code, c.want)
		}
	}
}
