package report

import (
	"bytes"
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"

	"github.com/hbench/hbench/resultfmt"
)

// Table is one methods × budget table of one metric.
type Table struct {
	// Title names the workload, layer(s) and metric.
	Title string
	// Group is the report section the table belongs to.
	Group string
	// Detail marks a breakdown (one layer of several) that index.html
	// folds away under its summary table.
	Detail bool
	// Metric is the metric key (resultfmt.Metric*), or "latency".
	Metric string
	// Header is the first column's name followed by one column label per
	// budget (or context length).
	Header []string
	// RowNames holds one method variant per row.
	RowNames []string
	// Values is [row][column] (NaN where the run has no cell).
	Values [][]float64
	// Best marks, per column, the best non-reference value(s).
	Best [][]bool
	// Note says how to read the table (what is marked, what is pooled).
	Note string
	// format prints one value.
	format func(float64) string
}

// Cell returns the formatted value at row i, column j ("–" when missing).
func (t *Table) Cell(i, j int) string {
	v := t.Values[i][j]
	if math.IsNaN(v) {
		return "–"
	}
	return t.format(v)
}

func fmtFrac(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
func fmtSig(v float64) string  { return strconv.FormatFloat(v, 'g', 3, 64) }

// qualityTables builds, for each workload, one table per quality metric
// over all layers pooled, then (when the workload has several layers) one
// per layer.
func qualityTables(r *Run) []*Table {
	q := r.quality()
	var out []*Table
	for _, w := range workloadsOf(q) {
		wc := filter(q, func(c *resultfmt.Cell) bool { return c.Workload == w })
		layers := layersOf(wc)
		for _, m := range qualityMetrics {
			scope := fmt.Sprintf("layer %d", layers[0])
			if len(layers) > 1 {
				scope = "all layers (" + joinInts(layers) + ")"
			}
			if t := qualityTable(wc, m, w, scope); t != nil {
				out = append(out, t)
			}
		}
		if len(layers) < 2 {
			continue
		}
		for _, l := range layers {
			lc := filter(wc, func(c *resultfmt.Cell) bool { return c.Layer == l })
			for _, m := range qualityMetrics {
				if t := qualityTable(lc, m, w, fmt.Sprintf("layer %d", l)); t != nil {
					t.Detail = true
					out = append(out, t)
				}
			}
		}
	}
	return out
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}

// qualityTable builds the variants × budgets table of metric m over cells
// (pooling the layers present), or nil when no cell has the metric.
func qualityTable(cells []*resultfmt.Cell, m metricInfo, workload, scope string) *Table {
	vars := variantsOf(cells)
	buds := budgetsOf(cells)
	t := &Table{
		Title:  fmt.Sprintf("%s — %s, %s (mean)", m.Title, workload, scope),
		Group:  "Workload " + workload,
		Metric: m.Name,
		Header: []string{"method"},
		format: fmtFrac,
	}
	if m.Log {
		t.format = fmtSig
	}
	for _, b := range buds {
		t.Header = append(t.Header, b.Label())
	}
	any := false
	refs := make([]bool, len(vars))
	for i, v := range vars {
		refs[i] = isReference(v.Method)
		row := make([]float64, len(buds))
		for j, b := range buds {
			cs := filter(cells, func(c *resultfmt.Cell) bool { return variantName(c) == v.Name && budgetOf(c) == b })
			row[j] = math.NaN()
			if s, ok := pooled(cs, m.Name); ok {
				row[j] = s.Mean
				any = true
			}
		}
		t.RowNames = append(t.RowNames, v.Name)
		t.Values = append(t.Values, row)
	}
	if !any {
		return nil
	}
	t.Best = markBest(t.Values, refs, m.Higher, t.format)
	dir := "highest"
	if !m.Higher {
		dir = "lowest"
	}
	t.Note = fmt.Sprintf("Rows: method variants; columns: sparsity (visible keys ÷ kept keys). Bold: %s value in the column among non-reference methods (dense and oracle are references).", dir)
	return t
}

// markBest marks, per column, every non-reference value that equals the
// best one as printed (so that visibly tied values are all marked).
func markBest(vals [][]float64, refs []bool, higher bool, format func(float64) string) [][]bool {
	best := make([][]bool, len(vals))
	for i := range vals {
		best[i] = make([]bool, len(vals[i]))
	}
	if len(vals) == 0 {
		return best
	}
	for j := range vals[0] {
		bi := -1
		for i := range vals {
			v := vals[i][j]
			if refs[i] || math.IsNaN(v) {
				continue
			}
			if bi < 0 || (higher && v > vals[bi][j]) || (!higher && v < vals[bi][j]) {
				bi = i
			}
		}
		if bi < 0 {
			continue
		}
		want := format(vals[bi][j])
		for i := range vals {
			if !refs[i] && !math.IsNaN(vals[i][j]) && format(vals[i][j]) == want {
				best[i][j] = true
			}
		}
	}
	return best
}

// rows returns the table's body with the best values decorated by mark.
func (t *Table) rows(mark func(string) string) [][]string {
	out := make([][]string, len(t.RowNames))
	for i, n := range t.RowNames {
		row := []string{n}
		for j := range t.Values[i] {
			s := t.Cell(i, j)
			if t.Best != nil && t.Best[i][j] {
				s = mark(s)
			}
			row = append(row, s)
		}
		out[i] = row
	}
	return out
}

// newTableWriter returns a table whose first nameCols columns are
// left-aligned and the value columns right-aligned.
func newTableWriter(w io.Writer, md bool, cols, nameCols int) *tablewriter.Table {
	align := tw.CellAlignment{Global: tw.AlignRight, PerColumn: make([]tw.Align, cols)}
	for i := range align.PerColumn {
		align.PerColumn[i] = tw.AlignRight
	}
	for i := 0; i < nameCols && i < cols; i++ {
		align.PerColumn[i] = tw.AlignLeft
	}
	opts := []tablewriter.Option{
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithRowAlignmentConfig(align),
		tablewriter.WithHeaderAlignmentConfig(align),
	}
	if md {
		opts = append(opts, tablewriter.WithRenderer(renderer.NewMarkdown()))
	}
	return tablewriter.NewTable(w, opts...)
}

// Markdown renders the table as GitHub Markdown, best values in bold,
// under a bold title line.
func (t *Table) Markdown() (string, error) {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "**%s**\n\n", t.Title)
	tab := newTableWriter(&buf, true, len(t.Header), 1)
	tab.Header(anySlice(t.Header)...)
	for _, r := range t.rows(func(s string) string { return "**" + s + "**" }) {
		if err := tab.Append(r); err != nil {
			return "", fmt.Errorf("table %q: %w", t.Title, err)
		}
	}
	if err := tab.Render(); err != nil {
		return "", fmt.Errorf("table %q: %w", t.Title, err)
	}
	return buf.String(), nil
}

// Text renders the table for a terminal: a box table, best values marked
// with a trailing '*'.
func (t *Table) Text() (string, error) {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%s\n", t.Title)
	tab := newTableWriter(&buf, false, len(t.Header), 1)
	tab.Header(anySlice(t.Header)...)
	for _, r := range t.rows(func(s string) string { return s + "*" }) {
		if err := tab.Append(r); err != nil {
			return "", fmt.Errorf("table %q: %w", t.Title, err)
		}
	}
	if err := tab.Render(); err != nil {
		return "", fmt.Errorf("table %q: %w", t.Title, err)
	}
	return buf.String(), nil
}

// HTML renders the table as an HTML <table> with a caption; best values
// are in <strong>.
func (t *Table) HTML() string {
	var b strings.Builder
	fmt.Fprintf(&b, "<table>\n<caption>%s</caption>\n<thead><tr>", html.EscapeString(t.Title))
	for i, h := range t.Header {
		cls := ""
		if i == 0 {
			cls = ` class="name"`
		}
		fmt.Fprintf(&b, "<th%s>%s</th>", cls, html.EscapeString(h))
	}
	b.WriteString("</tr></thead>\n<tbody>\n")
	for _, r := range t.rows(func(s string) string { return "\x00" + s }) {
		b.WriteString("<tr>")
		for j, s := range r {
			if j == 0 {
				fmt.Fprintf(&b, `<th class="name">%s</th>`, html.EscapeString(s))
				continue
			}
			if strings.HasPrefix(s, "\x00") {
				fmt.Fprintf(&b, "<td><strong>%s</strong></td>", html.EscapeString(s[1:]))
				continue
			}
			fmt.Fprintf(&b, "<td>%s</td>", html.EscapeString(s))
		}
		b.WriteString("</tr>\n")
	}
	b.WriteString("</tbody>\n</table>\n")
	return b.String()
}

func anySlice(s []string) []any {
	out := make([]any, len(s))
	for i, x := range s {
		out[i] = x
	}
	return out
}
