package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hbench/hbench/resultfmt"
)

// copyFixtureRun copies a run fixture of package report into a temp dir.
func copyFixtureRun(t *testing.T, name string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{resultfmt.ManifestFile, resultfmt.CellsFile} {
		b, err := os.ReadFile(filepath.Join("..", "report", "testdata", name, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func TestReportCommand(t *testing.T) {
	dir := copyFixtureRun(t, "quality")
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"report", dir}, 0, "Top-k recall — persuasion, all layers (1, 4) (mean)"},
		{[]string{"report", "--quiet", "--sparsity", "8", dir}, 0, ""},
		{[]string{"report"}, 2, ""},
		{[]string{"report", "--sparsity", "1", dir}, 2, ""},
		{[]string{"report", filepath.Join(dir, "absent")}, 1, ""},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String(), tc.out) {
			t.Errorf("%v: exit %d (want %d), stdout %q, stderr %q", tc.args, code, tc.code, stdout.String(), stderr.String())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "report", "figures", "persuasion-pareto-8.png")); err != nil {
		t.Errorf("--sparsity 8 did not make the 8× Pareto figure: %v", err)
	}
}
