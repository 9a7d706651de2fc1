package report

import (
	"fmt"
	"math"
	"sort"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/hbench/hbench/resultfmt"
)

// setup is everything of a latency shape except context length and
// budget: cells of one setup are comparable on one figure.
type setup struct {
	Batch, Heads, KVHeads, HeadDim int
	DType, Cache                   string
	Graph                          bool
}

func setupOf(c *resultfmt.Cell) setup {
	l := c.Latency
	return setup{l.Batch, l.Heads, l.KVHeads, l.HeadDim, l.DType, l.Cache, l.Graph}
}

// String describes the setup for titles and captions.
func (s setup) String() string {
	g := ""
	if s.Graph {
		g = ", CUDA graph"
	}
	return fmt.Sprintf("batch %d, %d/%d heads, d=%d, %s, %s L2%s", s.Batch, s.Heads, s.KVHeads, s.HeadDim, s.DType, s.Cache, g)
}

// short is the part of a setup that tells figures of one run apart: L2
// state and graph launch.
func (s setup) short() string {
	g := "stream"
	if s.Graph {
		g = "graph"
	}
	return s.Cache + " L2, " + g
}

// isDense reports whether a latency cell times dense attention.
func isDense(c *resultfmt.Cell) bool { return c.Method == "dense" || c.Latency.Stage == "dense" }

// latencySeries names a latency line: the variant, and the stage when it
// is not the method itself (a bench kernel's stage may carry its name).
func latencySeries(c *resultfmt.Cell) variant {
	n := variantName(c)
	if s := c.Latency.Stage; s != "" && s != n && s != "dense" && s != c.Method {
		n += " · " + s
	}
	return variant{Name: n, Method: c.Method}
}

// latencyVariants lists the latency series: dense first, then methods in
// run order, each method's whole-pipeline series ("step" or no stage)
// before its stages, so that the pipeline gets the solid line.
func latencyVariants(cells []*resultfmt.Cell) []variant {
	var out []variant
	seen := map[string]bool{}
	methodRank := map[string]int{}
	rank := map[string][2]int{}
	for _, c := range cells {
		v := latencySeries(c)
		if seen[v.Name] {
			continue
		}
		seen[v.Name] = true
		if _, ok := methodRank[c.Method]; !ok {
			methodRank[c.Method] = len(methodRank) + 1
		}
		r := [2]int{methodRank[c.Method], 2}
		switch {
		case isDense(c):
			r = [2]int{0, 0}
		case c.Latency.Stage == "" || c.Latency.Stage == "step":
			r[1] = 1
		}
		rank[v.Name] = r
		out = append(out, v)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := rank[out[i].Name], rank[out[j].Name]
		return a[0] < b[0] || (a[0] == b[0] && a[1] < b[1])
	})
	return out
}

func setupsOf(cells []*resultfmt.Cell) []setup {
	var out []setup
	seen := map[setup]bool{}
	for _, c := range cells {
		s := setupOf(c)
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// latencyFigures makes, for each setup of the run's latency cells, the
// latency-vs-context, speedup-vs-sparsity and bandwidth figures.
func latencyFigures(r *Run, st *styles, at float64) []*Figure {
	lat := r.latency()
	var out []*Figure
	sets := setupsOf(lat)
	for i, s := range sets {
		cells := filter(lat, func(c *resultfmt.Cell) bool { return setupOf(c) == s })
		suffix, tag := "", ""
		if len(sets) > 1 {
			suffix = "-" + strconv.Itoa(i+1)
			tag = " (" + s.short() + ")"
		}
		sparse := filter(cells, func(c *resultfmt.Cell) bool { return !isDense(c) })
		sp, hasSp := chooseSparsity(sparse, at)
		atS := func(c *resultfmt.Cell) bool { return isDense(c) || !hasSp || c.Sparsity == sp }
		for _, f := range []*Figure{
			latencyContextFigure(filter(cells, atS), st, s, sp, suffix),
			speedupFigure(cells, st, s, suffix),
			bandwidthFigure(filter(cells, atS), st, s, sp, suffix, r.Manifest),
		} {
			if f != nil {
				f.setTitle(f.Title + tag)
				f.Group = "Latency: " + s.String()
				out = append(out, f)
			}
		}
	}
	return out
}

// byContext returns one series' cells sorted by context length (the last
// cell wins when a context repeats).
func byContext(cells []*resultfmt.Cell, v variant) []*resultfmt.Cell {
	m := map[int]*resultfmt.Cell{}
	for _, c := range cells {
		if latencySeries(c).Name == v.Name {
			m[c.Latency.Context] = c
		}
	}
	out := make([]*resultfmt.Cell, 0, len(m))
	for _, c := range m {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Latency.Context < out[j].Latency.Context })
	return out
}

func atLabel(sp float64) string {
	if sp > 0 {
		return " at " + fmtInt(sp) + "×"
	}
	return ""
}

// latencyContextFigure: median latency against context length, log-log,
// with p25–p75 bars; dense and each sparse series at sparsity sp.
func latencyContextFigure(cells []*resultfmt.Cell, st *styles, s setup, sp float64, suffix string) *Figure {
	vars := latencyVariants(cells)
	title := "Decode latency vs context" + atLabel(sp)
	p := newPlot(title, "context length (tokens)", "latency per call (µs)")
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker = log2Ticks(fmtTokens)
	p.Y.Tick.Marker = logTicks()
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	var legend []legendItem
	for _, v := range vars {
		cs := byContext(cells, v)
		var xy plotter.XYs
		var lo, hi []float64
		for _, c := range cs {
			l := c.Latency
			if l.MedianUS <= 0 || l.Context <= 0 {
				continue
			}
			xy = append(xy, plotter.XY{X: float64(l.Context), Y: l.MedianUS})
			p25, p75 := math.Min(positiveOr(l.P25US, l.MedianUS), l.MedianUS), math.Max(l.P75US, l.MedianUS)
			lo, hi = append(lo, l.MedianUS-p25), append(hi, p75-l.MedianUS)
			xmin, xmax = math.Min(xmin, float64(l.Context)), math.Max(xmax, float64(l.Context))
			ymin, ymax = math.Min(ymin, p25), math.Max(ymax, p75)
		}
		if len(xy) == 0 {
			continue
		}
		line, pts, err := plotter.NewLinePoints(xy)
		if err != nil {
			continue
		}
		line.LineStyle, pts.GlyphStyle = st.line(v), st.glyph(v)
		if eb, err := plotter.NewYErrorBars(errPoints{xy, lo, hi}); err == nil {
			eb.LineStyle = draw.LineStyle{Color: st.method[v.Method].Color, Width: vg.Points(0.7)}
			eb.CapWidth = vg.Points(3)
			p.Add(eb)
		}
		p.Add(line, pts)
		legend = append(legend, legendItem{v.Name, []plot.Thumbnailer{line, pts}})
	}
	if len(legend) == 0 {
		return nil
	}
	p.X.Min, p.X.Max = padLog(xmin, xmax, 0.04)
	p.Y.Min, p.Y.Max = padLog(ymin, ymax, 0.05)
	cap := fmt.Sprintf("Median GPU time of one decode call against context length (%s)%s. Bars: p25–p75 of the timed repeats.", s, atLabel(sp))
	return plotFigure("latency-context"+suffix, title, cap, p, legend)
}

func positiveOr(x, def float64) float64 {
	if x > 0 {
		return x
	}
	return def
}

// wholeSteps drops the stage cells (select, qcode, topk, ...) of kernels
// that also time their whole decode "step": a stage is part of a step, not
// a replacement for dense decode, so only steps are compared with dense.
func wholeSteps(cells []*resultfmt.Cell) []*resultfmt.Cell {
	hasStep := map[string]bool{}
	for _, c := range cells {
		if c.Latency != nil && c.Latency.Stage == "step" {
			hasStep[c.Variant] = true
		}
	}
	return filter(cells, func(c *resultfmt.Cell) bool {
		return c.Latency != nil && (!hasStep[c.Variant] || c.Latency.Stage == "step")
	})
}

// speedupFigure: dense median ÷ sparse median, one line per sparse
// series (a pipeline's whole step only, not its stages), with a dashed
// line at break-even. Against sparsity at the
// longest context that has dense and sparse timings when the run has
// several sparsities; otherwise against context length at the one
// sparsity.
func speedupFigure(cells []*resultfmt.Cell, st *styles, s setup, suffix string) *Figure {
	dense := map[int]float64{}
	for _, c := range cells {
		if isDense(c) && c.Latency.MedianUS > 0 {
			dense[c.Latency.Context] = c.Latency.MedianUS
		}
	}
	sparse := filter(wholeSteps(cells), func(c *resultfmt.Cell) bool {
		return !isDense(c) && c.Sparsity > 0 && c.Latency.MedianUS > 0 && dense[c.Latency.Context] > 0
	})
	if len(sparse) == 0 {
		return nil
	}
	sps := map[float64]bool{}
	ctx := 0
	for _, c := range sparse {
		sps[c.Sparsity] = true
		ctx = max(ctx, c.Latency.Context)
	}
	vsSparsity := len(sps) > 1
	var title, name, xlabel, cap string
	if vsSparsity {
		sparse = filter(sparse, func(c *resultfmt.Cell) bool { return c.Latency.Context == ctx })
		title = fmt.Sprintf("Speedup over dense at %s context", fmtTokens(float64(ctx)))
		name, xlabel = "speedup-sparsity", "sparsity (visible keys ÷ kept keys)"
		cap = fmt.Sprintf("Median dense latency divided by median sparse latency at context %s (%s); above the dashed line the sparse method is faster.", fmtTokens(float64(ctx)), s)
	} else {
		sp := sparse[0].Sparsity
		title = fmt.Sprintf("Speedup over dense at %s×", fmtInt(sp))
		name, xlabel = "speedup-context", "context length (tokens)"
		cap = fmt.Sprintf("Median dense latency divided by median sparse latency at sparsity %s×, against context length (%s); above the dashed line the sparse method is faster.", fmtInt(sp), s)
	}
	p := newPlot(title, xlabel, "speedup over dense (×)")
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.Y.Tick.Marker = logTicks()
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), 1.0, 1.0
	var xs []float64
	var legend []legendItem
	for _, v := range latencyVariants(sparse) {
		var xy plotter.XYs
		for _, c := range sparse {
			if latencySeries(c).Name != v.Name {
				continue
			}
			x := c.Sparsity
			if !vsSparsity {
				x = float64(c.Latency.Context)
			}
			y := dense[c.Latency.Context] / c.Latency.MedianUS
			xy = append(xy, plotter.XY{X: x, Y: y})
			xs = append(xs, x)
			xmin, xmax = math.Min(xmin, x), math.Max(xmax, x)
			ymin, ymax = math.Min(ymin, y), math.Max(ymax, y)
		}
		sort.Slice(xy, func(i, j int) bool { return xy[i].X < xy[j].X })
		line, pts, err := plotter.NewLinePoints(xy)
		if err != nil {
			continue
		}
		line.LineStyle, pts.GlyphStyle = st.line(v), st.glyph(v)
		p.Add(line, pts)
		legend = append(legend, legendItem{v.Name, []plot.Thumbnailer{line, pts}})
	}
	if len(legend) == 0 {
		return nil
	}
	if vsSparsity {
		p.X.Tick.Marker = valueTicks(xs, func(v float64) string { return fmtInt(v) + "×" })
	} else {
		p.X.Tick.Marker = log2Ticks(fmtTokens)
	}
	p.X.Min, p.X.Max = padLog(xmin, xmax, 0.04)
	p.Y.Min, p.Y.Max = padLog(ymin, ymax, 0.06)
	if even, err := plotter.NewLine(plotter.XYs{{X: p.X.Min, Y: 1}, {X: p.X.Max, Y: 1}}); err == nil {
		even.LineStyle = draw.LineStyle{Color: black, Width: vg.Points(0.6), Dashes: []vg.Length{vg.Points(3), vg.Points(2)}}
		p.Add(even)
		legend = append(legend, legendItem{"break-even (dense)", []plot.Thumbnailer{even}})
	}
	return plotFigure(name+suffix, title, cap, p, legend)
}

// bandwidthFigure: achieved device-memory bandwidth (minimum bytes moved ÷
// median time) against context length, with the measured copy ceiling.
func bandwidthFigure(cells []*resultfmt.Cell, st *styles, s setup, sp float64, suffix string, m *resultfmt.Manifest) *Figure {
	var ceil []float64
	for _, c := range cells {
		if c.Latency.CeilingGBps > 0 {
			ceil = append(ceil, c.Latency.CeilingGBps)
		}
	}
	ceiling := 0.0
	if len(ceil) > 0 {
		sort.Float64s(ceil)
		ceiling = ceil[len(ceil)/2]
	} else if m != nil && m.GPU != nil && m.GPU.CopyGBps > 0 {
		ceiling = m.GPU.CopyGBps
	}
	title := "Achieved bandwidth vs context" + atLabel(sp)
	p := newPlot(title, "context length (tokens)", "achieved bandwidth (GB/s)")
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = log2Ticks(fmtTokens)
	xmin, xmax, ymax := math.Inf(1), math.Inf(-1), ceiling
	var legend []legendItem
	for _, v := range latencyVariants(cells) {
		var xy plotter.XYs
		for _, c := range byContext(cells, v) {
			gb := c.Latency.GBps
			if gb <= 0 && c.Latency.Bytes > 0 && c.Latency.MedianUS > 0 {
				gb = float64(c.Latency.Bytes) / c.Latency.MedianUS / 1e3
			}
			if gb <= 0 || c.Latency.Context <= 0 {
				continue
			}
			xy = append(xy, plotter.XY{X: float64(c.Latency.Context), Y: gb})
			xmin, xmax, ymax = math.Min(xmin, float64(c.Latency.Context)), math.Max(xmax, float64(c.Latency.Context)), math.Max(ymax, gb)
		}
		line, pts, err := plotter.NewLinePoints(xy)
		if err != nil {
			continue
		}
		line.LineStyle, pts.GlyphStyle = st.line(v), st.glyph(v)
		p.Add(line, pts)
		legend = append(legend, legendItem{v.Name, []plot.Thumbnailer{line, pts}})
	}
	if len(legend) == 0 {
		return nil
	}
	p.X.Min, p.X.Max = padLog(xmin, xmax, 0.04)
	p.Y.Min, p.Y.Max = 0, ymax*1.08
	p.Y.Tick.Marker = linTicks()
	cap := fmt.Sprintf("Minimum device-memory traffic of one call divided by its median time, against context length (%s)%s.", s, atLabel(sp))
	if ceiling > 0 {
		if l, err := plotter.NewLine(plotter.XYs{{X: p.X.Min, Y: ceiling}, {X: p.X.Max, Y: ceiling}}); err == nil {
			l.LineStyle = draw.LineStyle{Color: grey, Width: vg.Points(1.6)}
			p.Add(l)
			legend = append(legend, legendItem{fmt.Sprintf("measured ceiling (%.0f GB/s)", ceiling), []plot.Thumbnailer{l}})
		}
		cap += fmt.Sprintf(" Thick grey line: the measured copy bandwidth of the device, %.0f GB/s.", ceiling)
	}
	return plotFigure("bandwidth-context"+suffix, title, cap, p, legend)
}

// latencyTables makes one table per setup: rows are series (variant ·
// stage, and sparsity), columns context lengths, values median µs.
func latencyTables(r *Run) []*Table {
	lat := r.latency()
	var out []*Table
	for _, s := range setupsOf(lat) {
		cells := filter(lat, func(c *resultfmt.Cell) bool { return setupOf(c) == s })
		ctxSet := map[int]bool{}
		for _, c := range cells {
			ctxSet[c.Latency.Context] = true
		}
		var ctxs []int
		for c := range ctxSet {
			ctxs = append(ctxs, c)
		}
		sort.Ints(ctxs)
		t := &Table{
			Title:  "Median latency (µs) — " + s.String(),
			Group:  "Latency: " + s.String(),
			Metric: "latency",
			Header: []string{"method"},
			format: func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
			Note:   "Rows: method (· stage) at a budget; columns: context length in tokens. Median of the timed repeats, in µs.",
		}
		for _, c := range ctxs {
			t.Header = append(t.Header, fmtTokens(float64(c)))
		}
		type rowKey struct {
			name string
			b    Budget
		}
		var keys []rowKey
		seen := map[rowKey]bool{}
		for _, c := range cells {
			k := rowKey{latencySeries(c).Name, budgetOf(c)}
			if isDense(c) {
				k.b = Budget{}
			}
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
		for _, k := range keys {
			row := make([]float64, len(ctxs))
			for j := range row {
				row[j] = math.NaN()
			}
			for _, c := range cells {
				kk := rowKey{latencySeries(c).Name, budgetOf(c)}
				if isDense(c) {
					kk.b = Budget{}
				}
				if kk == k {
					row[sort.SearchInts(ctxs, c.Latency.Context)] = c.Latency.MedianUS
				}
			}
			name := k.name
			if k.b != (Budget{}) {
				name += " @ " + k.b.Label()
			}
			t.RowNames = append(t.RowNames, name)
			t.Values = append(t.Values, row)
		}
		out = append(out, t)
	}
	return out
}
