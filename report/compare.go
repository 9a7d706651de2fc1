package report

import (
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/perf/benchmath"

	"github.com/hbench/hbench/resultfmt"
)

// CompareOptions tune Compare.
type CompareOptions struct {
	// Alpha is the significance level of the latency test (default 0.05).
	Alpha float64
	// Confidence is the level of the median's confidence interval
	// (default 0.95).
	Confidence float64
	// Markdown prints Markdown tables instead of terminal tables.
	Markdown bool
}

// Pair is one cell present in both runs.
type Pair struct{ A, B *resultfmt.Cell }

// Comparison is the result of matching two runs' cells.
type Comparison struct {
	A, B *Run
	// Pairs are the shared cells, in run A's order.
	Pairs []Pair
	// OnlyA and OnlyB count the cells found in one run only.
	OnlyA, OnlyB int
}

// cellKey identifies a cell by what it measured, for runs whose cell IDs
// differ (two experiments over the same grid).
func cellKey(c *resultfmt.Cell) string {
	k := fmt.Sprintf("%s|%s|%d|%s|%g|%d", c.Kind, c.Workload, c.Layer, variantName(c), c.Sparsity, c.Tokens)
	if l := c.Latency; l != nil {
		k += fmt.Sprintf("|%s|%d|%v", l.Stage, l.Context, setupOf(c))
	}
	return k
}

// Match pairs the cells of a and b: by cell ID first, then, for cells
// whose ID is not in the other run, by workload, layer, variant, budget
// (and, for latency, stage, context and shape).
func Match(a, b *Run) *Comparison {
	cmp := &Comparison{A: a, B: b}
	byID := map[string]*resultfmt.Cell{}
	byKey := map[string]*resultfmt.Cell{}
	for _, c := range b.Cells {
		byID[c.ID] = c
		byKey[cellKey(c)] = c
	}
	used := map[*resultfmt.Cell]bool{}
	for _, c := range a.Cells {
		m, ok := byID[c.ID]
		if !ok || m.Kind != c.Kind || used[m] {
			m, ok = byKey[cellKey(c)]
		}
		if !ok || used[m] {
			cmp.OnlyA++
			continue
		}
		used[m] = true
		cmp.Pairs = append(cmp.Pairs, Pair{c, m})
	}
	cmp.OnlyB = len(b.Cells) - len(used)
	return cmp
}

func runLabel(r *Run) string {
	if r.Manifest != nil && r.Manifest.RunID != "" {
		return r.Manifest.RunID
	}
	return filepath.Base(filepath.Clean(r.Dir))
}

// CompareRuns reads the runs in dirA and dirB and prints the comparison.
func CompareRuns(dirA, dirB string, w io.Writer, o CompareOptions) error {
	a, err := Load(dirA)
	if err != nil {
		return err
	}
	b, err := Load(dirB)
	if err != nil {
		return err
	}
	return Match(a, b).Write(w, o)
}

// Tables returns the comparison as tables: for each quality metric, the
// shared quality cells with A, B and B−A; then the shared latency cells
// with medians, confidence intervals, the relative change and whether it
// is significant ("~" when the Mann-Whitney U test cannot tell the two
// sample sets apart at level Alpha, as benchstat prints).
func (cmp *Comparison) Tables(o CompareOptions) [][][]string {
	if o.Alpha <= 0 {
		o.Alpha = 0.05
	}
	if o.Confidence <= 0 {
		o.Confidence = 0.95
	}
	var out [][][]string
	for _, m := range qualityMetrics {
		t := [][]string{{"workload", "layer", "method", "budget", m.Name + " A", m.Name + " B", "B − A"}}
		for _, p := range cmp.Pairs {
			if p.A.Kind != resultfmt.KindQuality {
				continue
			}
			sa, okA := p.A.Metrics[m.Name]
			sb, okB := p.B.Metrics[m.Name]
			if !okA && !okB {
				continue
			}
			f := fmtFrac
			if m.Log {
				f = fmtSig
			}
			va, vb, d := "–", "–", "–"
			if okA {
				va = f(sa.Mean)
			}
			if okB {
				vb = f(sb.Mean)
			}
			if okA && okB {
				d = signed(sb.Mean-sa.Mean, m.Log)
			}
			t = append(t, []string{p.A.Workload, strconv.Itoa(p.A.Layer), variantName(p.A), budgetOf(p.A).Label(), va, vb, d})
		}
		if len(t) > 1 {
			out = append(out, t)
		}
	}
	t := [][]string{{"method", "budget", "context", "median µs A", "median µs B", "B vs A", "P"}}
	th := &benchmath.Thresholds{CompareAlpha: o.Alpha}
	for _, p := range cmp.Pairs {
		if p.A.Latency == nil || p.B.Latency == nil {
			continue
		}
		sa := benchmath.NewSample(append([]float64(nil), p.A.Latency.SamplesUS...), th)
		sb := benchmath.NewSample(append([]float64(nil), p.B.Latency.SamplesUS...), th)
		b := "–"
		if !isDense(p.A) {
			b = budgetOf(p.A).Label()
		}
		row := []string{latencySeries(p.A).Name, b, fmtTokens(float64(p.A.Latency.Context))}
		if len(sa.Values) == 0 || len(sb.Values) == 0 {
			row = append(row, fmtMedian(p.A.Latency.MedianUS, ""), fmtMedian(p.B.Latency.MedianUS, ""), "?", "no samples")
			t = append(t, row)
			continue
		}
		ma := benchmath.AssumeNothing.Summary(sa, o.Confidence)
		mb := benchmath.AssumeNothing.Summary(sb, o.Confidence)
		c := benchmath.AssumeNothing.Compare(sa, sb)
		row = append(row, fmtMedian(ma.Center, ma.PctRangeString()), fmtMedian(mb.Center, mb.PctRangeString()), c.FormatDelta(ma.Center, mb.Center), c.String())
		t = append(t, row)
	}
	if len(t) > 1 {
		out = append(out, t)
	}
	return out
}

func fmtMedian(v float64, ci string) string {
	s := strconv.FormatFloat(v, 'f', 2, 64)
	if ci != "" {
		s += " ± " + ci
	}
	return s
}

func signed(d float64, sig bool) string {
	if d == 0 {
		return "0"
	}
	if sig {
		return strconv.FormatFloat(d, 'g', 3, 64)
	}
	s := strconv.FormatFloat(d, 'f', 3, 64)
	if d > 0 {
		s = "+" + s
	}
	return s
}

// Write prints the comparison: a header naming the runs and the number of
// shared cells, then the tables.
func (cmp *Comparison) Write(w io.Writer, o CompareOptions) error {
	fmt.Fprintf(w, "A: %s (%s)\nB: %s (%s)\n%d shared cells; %d only in A, %d only in B.\n\n",
		runLabel(cmp.A), cmp.A.Dir, runLabel(cmp.B), cmp.B.Dir, len(cmp.Pairs), cmp.OnlyA, cmp.OnlyB)
	if len(cmp.Pairs) == 0 {
		return fmt.Errorf("compare: the runs share no cells")
	}
	for _, t := range cmp.Tables(o) {
		names := 4 // workload, layer, method, budget
		if t[0][0] == "method" {
			names = 1
		}
		tab := newTableWriter(w, o.Markdown, len(t[0]), names)
		tab.Header(anySlice(t[0])...)
		for _, r := range t[1:] {
			if err := tab.Append(r); err != nil {
				return fmt.Errorf("compare: %w", err)
			}
		}
		if err := tab.Render(); err != nil {
			return fmt.Errorf("compare: %w", err)
		}
		fmt.Fprintln(w)
	}
	if hasQuality(cmp) {
		fmt.Fprintf(w, "Quality: means over query positions and heads; B − A is not tested for significance (runs keep\nsummaries, not per-query samples).\n")
	}
	if hasLatency(cmp) {
		fmt.Fprintf(w, "Latency: median of the repeats ± the %s confidence interval; \"B vs A\" is B's median relative to A's,\n\"~\" when a Mann-Whitney U test cannot tell them apart at alpha=%g.\n", pct(o.Confidence, 0.95), orDefault(o.Alpha, 0.05))
	}
	return nil
}

func hasQuality(cmp *Comparison) bool {
	for _, p := range cmp.Pairs {
		if p.A.Kind == resultfmt.KindQuality {
			return true
		}
	}
	return false
}

func hasLatency(cmp *Comparison) bool {
	for _, p := range cmp.Pairs {
		if p.A.Latency != nil {
			return true
		}
	}
	return false
}

func orDefault(x, d float64) float64 {
	if x > 0 {
		return x
	}
	return d
}

func pct(x, d float64) string {
	return strings.TrimSuffix(strconv.FormatFloat(100*orDefault(x, d), 'f', 1, 64), ".0") + "%"
}
