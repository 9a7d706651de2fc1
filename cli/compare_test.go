package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/hbench/hbench/resultfmt"
)

// TestCompareCommand compares the latency fixture with a copy in which
// dense is 10% slower at 128K: that row must show a significant +10%,
// an unchanged row "~".
func TestCompareCommand(t *testing.T) {
	a := copyFixtureRun(t, "latency")
	b := copyFixtureRun(t, "latency")
	cells, err := resultfmt.ReadCells(b)
	if err != nil {
		t.Fatal(err)
	}
	w, err := resultfmt.OpenCellWriter(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cells {
		if c.Method == "dense" && c.Latency.Context == 131072 {
			for i := range c.Latency.SamplesUS {
				c.Latency.SamplesUS[i] *= 1.1
			}
			c.Latency.MedianUS *= 1.1
			if err := w.Append(c); err != nil { // a later record with the same ID wins
				t.Fatal(err)
			}
		}
	}
	w.Close()

	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"compare", a, b}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	if !strings.Contains(out, "60 shared cells; 0 only in A, 0 only in B.") {
		t.Errorf("header wrong:\n%s", out)
	}
	var dense128, dense4 string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "│ dense ") && strings.Contains(l, "128K") {
			dense128 = l
		}
		if strings.Contains(l, "│ dense ") && strings.Contains(l, " 4K ") {
			dense4 = l
		}
	}
	if !strings.Contains(dense128, "+10.") || strings.Contains(dense128, " ~ ") {
		t.Errorf("dense at 128K: %q, want a significant +10%%", dense128)
	}
	if !strings.Contains(dense4, " ~ ") {
		t.Errorf("dense at 4K: %q, want ~", dense4)
	}

	for _, args := range [][]string{{"compare", a}, {"compare", "--alpha", "2", a, b}} {
		if code := Main(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	q := copyFixtureRun(t, "quality")
	stdout.Reset()
	if code := Main(context.Background(), []string{"compare", "--markdown", q, q}, &stdout, &stderr); code != 0 {
		t.Fatalf("quality compare: exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "| persuasion | 1     | quest[page=16]") || !strings.Contains(stdout.String(), "recall A") {
		t.Errorf("quality compare output:\n%.1500s", stdout.String())
	}
}
