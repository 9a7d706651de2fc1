// Package report renders a finished hbench run into something a researcher
// can look at and paste into a paper. It reads only the run files, through
// package resultfmt (manifest.json and cells.jsonl), and imports none of
// methods, workloads or gpu, so any run can be re-rendered later without
// running anything.
//
// Write(runDir, terminal) produces runDir/report/:
//
//	report.md      Markdown: run summary, tables, figures
//	index.html     one self-contained page (inline CSS, no scripts) that
//	               opens from disk; figures are referenced relatively
//	figures/*.png  each figure at 200 dpi, and the same figure as *.svg
//
// Data flow: Load reads a Run; tables.go turns quality cells into one
// methods × budget Table per workload and metric (per layer and over all
// layers), figures.go and latency.go turn cells into figures drawn once
// onto both a PNG and an SVG canvas, and html.go/markdown.go lay them out.
// Compare matches the cells of two runs and says, for latency cells,
// whether a difference is significant (golang.org/x/perf/benchmath,
// Mann-Whitney U on the raw samples, "~" when it may be noise).
//
// Every figure is sized for a paper column (3.5 in wide), keeps its legend
// outside the data area, and gives each method the same colour and marker
// in every figure of a run (style.go).
package report
