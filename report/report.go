package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hbench/hbench/resultfmt"
)

// Dir is the name of the report folder inside a run directory.
const Dir = "report"

// Options tune a report.
type Options struct {
	// Sparsity is the budget of the single-sparsity views (Pareto, layer
	// heatmap, latency and bandwidth against context): the nearest present
	// sparsity on a log scale is used. 0 means 16.
	Sparsity float64
	// Quiet prints only the report's location on the terminal writer, not
	// the tables.
	Quiet bool
}

// Rendered is everything a report holds, before it is written.
type Rendered struct {
	Run     *Run
	Tables  []*Table
	Figures []*Figure
}

// Render builds the tables and figures of run r (nothing is written).
func Render(r *Run, o Options) *Rendered {
	all := append(variantsOf(r.quality()), latencyVariants(r.latency())...)
	st := newStyles(all)
	out := &Rendered{Run: r}
	out.Tables = append(qualityTables(r), latencyTables(r)...)
	out.Figures = append(qualityFigures(r, st, o.Sparsity), latencyFigures(r, st, o.Sparsity)...)
	return out
}

// Write renders the run in runDir into runDir/report/ (report.md,
// index.html, figures/) with default options, and prints the tables on
// terminal (which may be nil).
func Write(runDir string, terminal io.Writer) error {
	return WriteWith(runDir, terminal, Options{})
}

// WriteWith is Write with options.
func WriteWith(runDir string, terminal io.Writer, o Options) error {
	r, err := Load(runDir)
	if err != nil {
		return err
	}
	if len(r.Cells) == 0 {
		return fmt.Errorf("report %s: the run has no cells yet", runDir)
	}
	rep := Render(r, o)
	dir := filepath.Join(runDir, Dir)
	if err := os.MkdirAll(filepath.Join(dir, "figures"), 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	keep := map[string]bool{}
	for _, f := range rep.Figures {
		if err := f.save(dir); err != nil {
			return fmt.Errorf("report %s: %w", runDir, err)
		}
		keep[filepath.Base(f.PNG())], keep[filepath.Base(f.SVG())] = true, true
	}
	// Drop figures of an earlier rendering that this one no longer makes.
	old, err := os.ReadDir(filepath.Join(dir, "figures"))
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	for _, e := range old {
		if n := e.Name(); e.Type().IsRegular() && !keep[n] && (strings.HasSuffix(n, ".png") || strings.HasSuffix(n, ".svg")) {
			if err := os.Remove(filepath.Join(dir, "figures", n)); err != nil {
				return fmt.Errorf("report: %w", err)
			}
		}
	}
	md, err := rep.Markdown()
	if err != nil {
		return err
	}
	if err := resultfmt.WriteFileAtomic(filepath.Join(dir, "report.md"), []byte(md)); err != nil {
		return err
	}
	if err := resultfmt.WriteFileAtomic(filepath.Join(dir, "index.html"), []byte(rep.HTML())); err != nil {
		return err
	}
	if terminal != nil {
		for _, t := range rep.Tables {
			if o.Quiet {
				break
			}
			s, err := t.Text()
			if err != nil {
				return err
			}
			fmt.Fprintln(terminal, s)
		}
		fmt.Fprintf(terminal, "report: %s (%d tables, %d figures)\n", filepath.Join(dir, "index.html"), len(rep.Tables), len(rep.Figures))
	}
	return nil
}

// summaryRows is the run summary as (field, value) pairs.
func (rep *Rendered) summaryRows() [][2]string {
	r := rep.Run
	var rows [][2]string
	add := func(k, v string) {
		if v != "" {
			rows = append(rows, [2]string{k, v})
		}
	}
	if m := r.Manifest; m != nil {
		add("experiment", m.Experiment)
		add("run", m.RunID)
		add("config", m.ConfigPath)
		add("config hash", m.ConfigHash)
		add("commit", m.Commit)
		add("Go", m.GoVersion)
		if m.Host.Hostname != "" || m.Host.OS != "" {
			add("host", fmt.Sprintf("%s (%s/%s, %d CPUs, %d workers)", m.Host.Hostname, m.Host.OS, m.Host.Arch, m.Host.CPUs, m.Host.Workers))
		}
		if g := m.GPU; g != nil {
			add("GPU", fmt.Sprintf("%s (sm_%s, %d SMs, driver %s, NVRTC %s, copy %.0f GB/s)", g.Name, strings.ReplaceAll(g.ComputeCapability, ".", ""), g.SMs, g.Driver, g.NVRTC, g.CopyGBps))
		}
		if !m.Started.IsZero() {
			add("started", m.Started.UTC().Format(time.RFC3339))
		}
		if !m.Finished.IsZero() {
			add("finished", fmt.Sprintf("%s (%s)", m.Finished.UTC().Format(time.RFC3339), m.Finished.Sub(m.Started).Round(time.Second)))
		}
	}
	q, l := len(r.quality()), len(r.latency())
	add("cells", fmt.Sprintf("%d (%d quality, %d latency)", len(r.Cells), q, l))
	if qc := r.quality(); len(qc) > 0 {
		var ws []string
		for _, w := range workloadsOf(qc) {
			ls := layersOf(filter(qc, func(c *resultfmt.Cell) bool { return c.Workload == w }))
			ws = append(ws, fmt.Sprintf("%s (layers %s)", w, joinInts(ls)))
		}
		add("workloads", strings.Join(ws, "; "))
		var names []string
		for _, v := range variantsOf(qc) {
			names = append(names, v.Name)
		}
		add("methods", strings.Join(names, ", "))
		var bl []string
		for _, b := range budgetsOf(qc) {
			bl = append(bl, b.Label())
		}
		add("budgets", strings.Join(bl, ", "))
		c := qc[0]
		add("sink / local", fmt.Sprintf("%d / %d keys", c.Sink, c.Local))
		sel := "per query head"
		if c.Shared {
			sel = "shared per KV head"
		}
		add("selection", sel)
	}
	return rows
}

func (rep *Rendered) title() string {
	if m := rep.Run.Manifest; m != nil && m.Experiment != "" {
		return "hbench report: " + m.Experiment
	}
	return "hbench report: " + filepath.Base(rep.Run.Dir)
}

// Markdown renders report.md: summary, figures linked relatively (PNG
// shown, SVG linked), then tables.
func (rep *Rendered) Markdown() (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", rep.title())
	for _, kv := range rep.summaryRows() {
		fmt.Fprintf(&b, "- **%s**: %s\n", kv[0], strings.ReplaceAll(kv[1], "|", "\\|"))
	}
	if len(rep.Figures) > 0 {
		fmt.Fprintf(&b, "\n## Figures\n\n")
		group := ""
		for _, f := range rep.Figures {
			if f.Group != group {
				group = f.Group
				fmt.Fprintf(&b, "### %s\n\n", group)
			}
			fmt.Fprintf(&b, "![%s](%s)\n\n%s ([SVG](%s))\n\n", f.Title, f.PNG(), f.Caption, f.SVG())
		}
	}
	if len(rep.Tables) > 0 {
		fmt.Fprintf(&b, "## Tables\n\n")
		note, group := "", ""
		for _, t := range rep.Tables {
			if t.Group != group {
				group = t.Group
				fmt.Fprintf(&b, "### %s\n\n", group)
				note = ""
			}
			if t.Note != note {
				fmt.Fprintf(&b, "_%s_\n\n", t.Note)
				note = t.Note
			}
			s, err := t.Markdown()
			if err != nil {
				return "", err
			}
			b.WriteString(s)
			b.WriteString("\n")
		}
	}
	return b.String(), nil
}

const css = `body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:72em;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}
dl.summary{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dl.summary dt{font-weight:600}dl.summary dd{margin:0}
table{border-collapse:collapse;margin:1em 0 1.5em;font-variant-numeric:tabular-nums;font-size:.92em}
caption{text-align:left;font-weight:600;padding-bottom:.3em}
th,td{padding:.2em .7em;border-bottom:1px solid #e4e4e4;text-align:right}
th.name{text-align:left;font-weight:normal}thead th{border-bottom:2px solid #999;font-weight:600}
td strong{color:#000}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(22em,1fr));gap:1.5em}
figure{margin:0}figure img{width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.88em;color:#444}
.note{color:#555;font-style:italic}
details pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:.85em}`

// HTML renders index.html: one self-contained page (inline CSS, no
// scripts, no external resources) that references the figures relatively,
// so the report folder opens from disk or can be copied anywhere.
func (rep *Rendered) HTML() string {
	var b strings.Builder
	e := html.EscapeString
	fmt.Fprintf(&b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>%s</title>\n<style>\n%s\n</style>\n</head>\n<body>\n", e(rep.title()), css)
	fmt.Fprintf(&b, "<h1>%s</h1>\n<dl class=\"summary\">\n", e(rep.title()))
	for _, kv := range rep.summaryRows() {
		fmt.Fprintf(&b, "<dt>%s</dt><dd>%s</dd>\n", e(kv[0]), e(kv[1]))
	}
	b.WriteString("</dl>\n")
	if len(rep.Figures) > 0 {
		b.WriteString("<h2 id=\"figures\">Figures</h2>\n")
		group := "\x00"
		for _, f := range rep.Figures {
			if f.Group != group {
				if group != "\x00" {
					b.WriteString("</div>\n")
				}
				group = f.Group
				fmt.Fprintf(&b, "<h3>%s</h3>\n<div class=\"figs\">\n", e(group))
			}
			w, h := f.PixelSize()
			fmt.Fprintf(&b, "<figure id=\"%s\"><a href=\"%s\"><img src=\"%s\" width=\"%d\" height=\"%d\" alt=\"%s\"></a>\n<figcaption>%s <a href=\"%s\">SVG</a></figcaption></figure>\n",
				e(f.Name), e(f.SVG()), e(f.PNG()), w, h, e(f.Title), e(f.Caption), e(f.SVG()))
		}
		b.WriteString("</div>\n")
	}
	if len(rep.Tables) > 0 {
		b.WriteString("<h2 id=\"tables\">Tables</h2>\n")
		note, group, open := "", "", false
		closeDetails := func() {
			if open {
				b.WriteString("</details>\n")
				open = false
			}
		}
		for i, t := range rep.Tables {
			if t.Group != group {
				closeDetails()
				group = t.Group
				fmt.Fprintf(&b, "<h3>%s</h3>\n", e(group))
				note = ""
			}
			if t.Detail && !open {
				n := 0
				for _, u := range rep.Tables[i:] {
					if !u.Detail || u.Group != t.Group {
						break
					}
					n++
				}
				fmt.Fprintf(&b, "<details><summary>per-layer tables (%d)</summary>\n", n)
				open = true
			}
			if !t.Detail {
				closeDetails()
			}
			if t.Note != note {
				fmt.Fprintf(&b, "<p class=\"note\">%s</p>\n", e(t.Note))
				note = t.Note
			}
			b.WriteString(t.HTML())
		}
		closeDetails()
	}
	if m := rep.Run.Manifest; m != nil && m.Config != nil {
		if cfg, err := json.MarshalIndent(m.Config, "", "  "); err == nil && !bytes.Equal(cfg, []byte("null")) {
			fmt.Fprintf(&b, "<h2>Configuration</h2>\n<details><summary>the experiment as run</summary><pre>%s</pre></details>\n", e(string(cfg)))
		}
	}
	b.WriteString("</body>\n</html>\n")
	return b.String()
}
