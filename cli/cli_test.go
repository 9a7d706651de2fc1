package cli

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsage(t *testing.T) {
	if code, out, _ := run(t); code != 2 || !strings.Contains(out, "Commands:") {
		t.Fatalf("no args: %d %q", code, out)
	}
	if code, _, errs := run(t, "frobnicate"); code != 2 || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %d %q", code, errs)
	}
	if code, out, _ := run(t, "run", "--help"); code != 0 || !strings.Contains(out, "-fresh") {
		t.Fatalf("run --help: %d %q", code, out)
	}
	if code, _, errs := run(t, "run"); code != 2 || !strings.Contains(errs, "need exactly one experiment file") {
		t.Fatalf("run without file: %d %q", code, errs)
	}
}

func TestValidateReportsPositions(t *testing.T) {
	code, _, errs := run(t, "validate", "testdata/bad.yaml")
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"testdata/bad.yaml:6: budget.sparsity[1]", "testdata/bad.yaml:8: methods[0].oracle: unknown parameter \"windos\""} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr %q lacks %q", errs, want)
		}
	}
	if code, out, errs := run(t, "validate", "testdata/small.yaml"); code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("validate small: %d %q %q", code, out, errs)
	}
}

// TestRunGolden runs a small experiment end to end in-process and compares
// the printed table with testdata/run_small.golden (go test -update
// rewrites it).
func TestRunGolden(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := run(t, "run", "--quiet", "--no-report", "--out", dir, "testdata/small.yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "6 cells (0 already finished, skipped)") {
		t.Fatalf("last line %q", last)
	}
	table := strings.Join(lines[:len(lines)-1], "\n") + "\n"
	golden := filepath.Join("testdata", "run_small.golden")
	if *update {
		os.WriteFile(golden, []byte(table), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if table != string(want) {
		t.Fatalf("table differs from %s (go test ./cli -update to accept):\n%s", golden, table)
	}
	// A second run resumes: nothing is recomputed.
	code, out, _ = run(t, "run", "--quiet", "--no-report", "--out", dir, "testdata/small.yaml")
	if code != 0 || !strings.Contains(out, "6 cells (6 already finished, skipped)") {
		t.Fatalf("rerun: %d %q", code, out)
	}
}
