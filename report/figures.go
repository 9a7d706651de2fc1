package report

import (
	"fmt"
	"image/color"
	"math"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/palette"
	"gonum.org/v1/plot/palette/moreland"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/hbench/hbench/resultfmt"
)

// fileStem makes a string safe and short for a file name.
func fileStem(parts ...string) string {
	s := strings.Join(parts, "-")
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteRune('_')
		}
	}
	return b.String()
}

// layerScope describes the layers pooled in a figure.
func layerScope(layers []int) string {
	if len(layers) == 1 {
		return fmt.Sprintf("layer %d", layers[0])
	}
	return fmt.Sprintf("mean over layers %s", joinInts(layers))
}

// maxBands is the most lines a figure draws with their p10–p90 bands;
// beyond it the overlapping bands hide each other and only lines are drawn.
const maxBands = 6

// sparsityFigure plots metric m of each variant against sparsity (log 2
// x), one line per variant with its p10–p90 band, pooled over layers.
// It returns nil when no variant has a point to draw.
func sparsityFigure(cells []*resultfmt.Cell, st *styles, m metricInfo, workload string) *Figure {
	cells = filter(cells, func(c *resultfmt.Cell) bool { return c.Sparsity > 0 })
	vars := variantsOf(cells)
	buds := budgetsOf(cells)
	layers := layersOf(cells)
	type series struct {
		v            variant
		mean, lo, hi plotter.XYs
	}
	var all []series
	var skipped []string
	ymin, ymax := math.Inf(1), math.Inf(-1) // of the lines
	bmin, bmax := math.Inf(1), math.Inf(-1) // of the bands
	xmin, xmax := math.Inf(1), math.Inf(-1)
	for _, v := range vars {
		s := series{v: v}
		for _, b := range buds {
			cs := filter(cells, func(c *resultfmt.Cell) bool { return variantName(c) == v.Name && budgetOf(c) == b })
			stat, ok := pooled(cs, m.Name)
			if !ok || math.IsNaN(stat.Mean) || (m.Log && stat.Mean <= 0) {
				continue
			}
			s.mean = append(s.mean, plotter.XY{X: b.Sparsity, Y: stat.Mean})
			s.lo = append(s.lo, plotter.XY{X: b.Sparsity, Y: math.Min(stat.P10, stat.Mean)})
			s.hi = append(s.hi, plotter.XY{X: b.Sparsity, Y: math.Max(stat.P90, stat.Mean)})
			xmin, xmax = math.Min(xmin, b.Sparsity), math.Max(xmax, b.Sparsity)
			ymin, ymax = math.Min(ymin, stat.Mean), math.Max(ymax, stat.Mean)
			for _, y := range []float64{stat.P10, stat.P90} {
				if !m.Log || y > 0 {
					bmin, bmax = math.Min(bmin, y), math.Max(bmax, y)
				}
			}
		}
		if len(s.mean) == 0 {
			skipped = append(skipped, v.Name)
			continue
		}
		all = append(all, s)
	}
	if len(all) == 0 {
		return nil
	}
	bands := len(all) <= maxBands
	if bands && !math.IsInf(bmin, 0) {
		ymin, ymax = math.Min(ymin, bmin), math.Max(ymax, bmax)
		if m.Log { // a band reaching down to ~0 must not squash the lines
			ymin = math.Max(ymin, ymax*1e-3)
		}
	}
	title := fmt.Sprintf("%s vs sparsity — %s", m.Title, workload)
	p := newPlot(title, "sparsity (visible keys ÷ kept keys)", m.Unit)
	p.X.Scale = plot.LogScale{}
	var sps []float64
	for _, b := range buds {
		sps = append(sps, b.Sparsity)
	}
	p.X.Tick.Marker = valueTicks(sps, func(v float64) string { return fmtInt(v) + "×" })
	p.X.Min, p.X.Max = padLog(xmin, xmax, 0.04)
	if m.Log {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = logTicks()
		p.Y.Min, p.Y.Max = padLog(ymin, ymax, 0.05)
	} else {
		p.Y.Tick.Marker = linTicks()
		pad := 0.04 * math.Max(ymax-ymin, 0.01)
		p.Y.Min, p.Y.Max = math.Max(0, ymin-pad), math.Min(1, ymax+pad)
		if p.Y.Max <= p.Y.Min {
			p.Y.Min, p.Y.Max = ymin-0.05, ymax+0.05
		}
	}
	var legend []legendItem
	for _, s := range all {
		if bands && len(s.mean) > 1 {
			band := make(plotter.XYs, 0, 2*len(s.lo))
			band = append(band, s.lo...)
			for i := len(s.hi) - 1; i >= 0; i-- {
				band = append(band, s.hi[i])
			}
			if m.Log { // keep the band on the axis
				for i := range band {
					band[i].Y = math.Max(band[i].Y, p.Y.Min)
				}
			}
			if poly, err := plotter.NewPolygon(band); err == nil {
				poly.Color = st.band(s.v)
				poly.LineStyle.Width = 0
				p.Add(poly)
			}
		}
	}
	for _, s := range all {
		line, pts, err := plotter.NewLinePoints(s.mean)
		if err != nil {
			continue
		}
		line.LineStyle = st.line(s.v)
		pts.GlyphStyle = st.glyph(s.v)
		p.Add(line, pts)
		legend = append(legend, legendItem{s.v.Name, []plot.Thumbnailer{line, pts}})
	}
	cap := fmt.Sprintf("%s of each method against sparsity on workload %s (%s). Lines: mean over query positions and heads; shaded bands: p10–p90.", m.Title, workload, layerScope(layers))
	if !bands {
		cap = fmt.Sprintf("%s of each method against sparsity on workload %s (%s). Lines: mean over query positions and heads. The p10–p90 bands are left out with more than %d lines (they would hide each other); they are in summary.csv.", m.Title, workload, layerScope(layers), maxBands)
	}
	if m.Log && len(skipped) > 0 {
		cap += fmt.Sprintf(" Not drawn on the log axis (error exactly 0): %s.", strings.Join(skipped, ", "))
	}
	return plotFigure(fileStem(workload, m.Name), title, cap, p, legend)
}

// paretoFigure plots top-k recall against auxiliary memory (bits per token
// per KV head) at sparsity s, one point per non-reference variant with its
// p10–p90 range, and the Pareto frontier (no other variant has both fewer
// bits and higher recall). Returns nil when fewer than two variants have
// data.
func paretoFigure(cells []*resultfmt.Cell, st *styles, s float64, workload string) *Figure {
	cells = filter(cells, func(c *resultfmt.Cell) bool { return c.Sparsity == s && !isReference(c.Method) })
	layers := layersOf(cells)
	type point struct {
		v        variant
		x, y     float64
		p10, p90 float64
	}
	var pts []point
	for _, v := range variantsOf(cells) {
		cs := filter(cells, func(c *resultfmt.Cell) bool { return variantName(c) == v.Name })
		stat, ok := pooled(cs, resultfmt.MetricRecall)
		if !ok {
			continue
		}
		var bits float64
		for _, c := range cs {
			bits = math.Max(bits, c.AuxBits)
		}
		pts = append(pts, point{v: v, x: bits, y: stat.Mean, p10: stat.P10, p90: stat.P90})
	}
	if len(pts) < 2 { // a trade-off needs two contenders
		return nil
	}
	title := fmt.Sprintf("Recall vs auxiliary memory at %s× — %s", fmtInt(s), workload)
	p := newPlot(title, "auxiliary memory (bits per token per KV head)", "top-k recall (fraction of oracle keys)")
	xmax, ymin, ymax := 0.0, 1.0, 0.0
	for _, q := range pts {
		xmax = math.Max(xmax, q.x)
		ymin, ymax = math.Min(ymin, math.Min(q.p10, q.y)), math.Max(ymax, math.Max(q.p90, q.y))
	}
	if xmax == 0 {
		xmax = 1
	}
	p.X.Min, p.X.Max = -0.04*xmax, xmax*1.06
	p.X.Tick.Marker, p.Y.Tick.Marker = linTicks(), linTicks()
	pad := 0.05 * math.Max(ymax-ymin, 0.02)
	p.Y.Min, p.Y.Max = math.Max(0, ymin-pad), math.Min(1, ymax+pad)
	if p.Y.Max <= p.Y.Min {
		p.Y.Min, p.Y.Max = ymin-pad, ymax+pad
	}

	// Pareto frontier: sort by bits, then recall descending; keep each point
	// that beats the best recall seen at fewer or equal bits.
	order := make([]int, len(pts))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool {
		pa, pb := pts[order[a]], pts[order[b]]
		if pa.x != pb.x {
			return pa.x < pb.x
		}
		return pa.y > pb.y
	})
	var front plotter.XYs
	best := math.Inf(-1)
	for _, i := range order {
		if pts[i].y > best {
			best = pts[i].y
			front = append(front, plotter.XY{X: pts[i].x, Y: pts[i].y})
		}
	}
	var legend []legendItem
	if len(front) > 1 {
		stepped := plotter.XYs{front[0]}
		for _, q := range front[1:] {
			stepped = append(stepped, plotter.XY{X: q.X, Y: stepped[len(stepped)-1].Y}, q)
		}
		if l, err := plotter.NewLine(stepped); err == nil {
			l.LineStyle = draw.LineStyle{Color: grey, Width: vg.Points(0.8), Dashes: []vg.Length{vg.Points(2), vg.Points(2)}}
			p.Add(l)
			legend = append(legend, legendItem{"Pareto frontier", []plot.Thumbnailer{l}})
		}
	}
	for _, q := range pts {
		xy := plotter.XYs{{X: q.x, Y: q.y}}
		eb, err := plotter.NewYErrorBars(errPoints{xy: xy, lo: []float64{q.y - math.Min(q.p10, q.y)}, hi: []float64{math.Max(q.p90, q.y) - q.y}})
		if err == nil {
			eb.LineStyle = draw.LineStyle{Color: st.method[q.v.Method].Color, Width: vg.Points(0.8)}
			eb.CapWidth = vg.Points(4)
			p.Add(eb)
		}
		sc, err := plotter.NewScatter(xy)
		if err != nil {
			continue
		}
		sc.GlyphStyle = st.glyph(q.v)
		sc.GlyphStyle.Radius = vg.Points(2.8)
		p.Add(sc)
		legend = append(legend, legendItem{q.v.Name, []plot.Thumbnailer{sc}})
	}
	cap := fmt.Sprintf("Top-k recall against the auxiliary memory each method keeps besides the KV cache, at sparsity %s× on workload %s (%s). Bars: p10–p90. Dense and oracle are left out: they read the full keys. Up and left is better; the dashed line joins the variants no other variant beats on both.", fmtInt(s), workload, layerScope(layers))
	return plotFigure(fileStem(workload, "pareto", strconv.FormatFloat(s, 'g', -1, 64)), title, cap, p, legend)
}

// errPoints adapts XYs and asymmetric errors for plotter.NewYErrorBars.
type errPoints struct {
	xy     plotter.XYs
	lo, hi []float64
}

func (e errPoints) Len() int                        { return len(e.xy) }
func (e errPoints) XY(i int) (float64, float64)     { return e.xy[i].X, e.xy[i].Y }
func (e errPoints) YError(i int) (float64, float64) { return e.lo[i], e.hi[i] }

// heatGrid is a variants × layers grid of recall for plotter.HeatMap; row 0
// (the first variant) is drawn at the top.
type heatGrid struct {
	z [][]float64 // [variant][layer]
}

func (g heatGrid) Dims() (c, r int)   { return len(g.z[0]), len(g.z) }
func (g heatGrid) Z(c, r int) float64 { return g.z[len(g.z)-1-r][c] }
func (g heatGrid) X(c int) float64    { return float64(c) }
func (g heatGrid) Y(r int) float64    { return float64(r) }

// recallColors is a light-to-dark sequential colour map (ColorBrewer
// YlGnBu) with monotone luminance, so the heatmap reads in greyscale too.
func recallColors() palette.ColorMap {
	ctrl := []color.Color{ // dark to light: moreland wants rising luminance
		color.RGBA{0x08, 0x1d, 0x58, 0xff}, color.RGBA{0x25, 0x34, 0x94, 0xff}, color.RGBA{0x22, 0x5e, 0xa8, 0xff},
		color.RGBA{0x1d, 0x91, 0xc0, 0xff}, color.RGBA{0x41, 0xb6, 0xc4, 0xff}, color.RGBA{0x7f, 0xcd, 0xbb, 0xff},
		color.RGBA{0xc7, 0xe9, 0xb4, 0xff}, color.RGBA{0xed, 0xf8, 0xb1, 0xff}, color.RGBA{0xff, 0xff, 0xd9, 0xff},
	}
	cm, err := moreland.NewLuminance(ctrl)
	if err != nil {
		panic("report: recall colour map: " + err.Error())
	}
	cm.SetMin(0)
	cm.SetMax(1)
	return palette.Reverse(cm) // light for low recall, dark for high
}

// heatmapFigure draws mean top-k recall at sparsity s for each variant
// (rows) and layer (columns), values printed in the cells, with a colour
// bar. Returns nil when the workload has fewer than two layers at s.
func heatmapFigure(cells []*resultfmt.Cell, s float64, workload string) *Figure {
	cells = filter(cells, func(c *resultfmt.Cell) bool { return c.Sparsity == s })
	layers := layersOf(cells)
	vars := variantsOf(cells)
	if len(layers) < 2 || len(vars) == 0 {
		return nil
	}
	z := make([][]float64, len(vars))
	any := false
	for i, v := range vars {
		z[i] = make([]float64, len(layers))
		for j, l := range layers {
			cs := filter(cells, func(c *resultfmt.Cell) bool { return variantName(c) == v.Name && c.Layer == l })
			z[i][j] = math.NaN()
			if stat, ok := pooled(cs, resultfmt.MetricRecall); ok {
				z[i][j] = stat.Mean
				any = true
			}
		}
	}
	if !any {
		return nil
	}
	cm := recallColors()
	title := fmt.Sprintf("Top-k recall by layer at %s× — %s", fmtInt(s), workload)
	p := newPlot(title, "layer", "")
	hm := plotter.NewHeatMap(heatGrid{z}, cm.Palette(256))
	hm.Min, hm.Max = 0, 1
	hm.NaN = color.RGBA{0xee, 0xee, 0xee, 0xff}
	p.Add(hm)
	var xt, yt []plot.Tick
	for j, l := range layers {
		xt = append(xt, plot.Tick{Value: float64(j), Label: strconv.Itoa(l)})
	}
	for i, v := range vars {
		yt = append(yt, plot.Tick{Value: float64(len(vars) - 1 - i), Label: v.Name})
	}
	p.X.Tick.Marker = plot.ConstantTicks(xt)
	p.Y.Tick.Marker = plot.ConstantTicks(yt)
	p.X.Tick.Length, p.Y.Tick.Length = 0, 0
	p.Y.Tick.Label.YAlign = -0.7 // centre the row names on their rows (plot draws them a descent high)
	p.X.LineStyle.Width, p.Y.LineStyle.Width = 0, 0
	// Value labels, dark text on light cells and light text on dark ones.
	for i := range vars {
		for j := range layers {
			v := z[i][j]
			lbl := "–"
			if !math.IsNaN(v) {
				lbl = strconv.FormatFloat(v, 'f', 2, 64)
			}
			labels, err := plotter.NewLabels(plotter.XYLabels{
				XYs:    plotter.XYs{{X: float64(j), Y: float64(len(vars) - 1 - i)}},
				Labels: []string{lbl},
			})
			if err != nil {
				continue
			}
			sty := text.Style{Font: tickFont, Handler: plot.DefaultTextHandler, XAlign: draw.XCenter, YAlign: draw.YCenter, Color: black}
			if !math.IsNaN(v) {
				if bg, err := cm.At(math.Max(0, math.Min(1, v))); err == nil && luminance(bg) < 0.45 {
					sty.Color = white
				}
			}
			labels.TextStyle = []text.Style{sty}
			p.Add(labels)
		}
	}
	// No axis label on the colour bar: in 52 points it collides with the
	// tick labels, and the title already names the quantity.
	bar := newPlot("", "", "")
	bar.Add(&plotter.ColorBar{ColorMap: cm, Vertical: true})
	bar.HideX()
	bar.Y.Min, bar.Y.Max = 0, 1
	rowH := vg.Points(14)
	h := math.Max(float64(plotHeight), float64(vg.Points(60)+rowH*vg.Length(len(vars))))
	cap := fmt.Sprintf("Mean top-k recall of each method (rows) in each layer (columns) at sparsity %s× on workload %s; darker is better.", fmtInt(s), workload)
	return &Figure{
		Name: fileStem(workload, "recall-heatmap", strconv.FormatFloat(s, 'g', -1, 64)), Title: title, Caption: cap,
		Width: FigureWidth, Height: vg.Length(h),
		draw: func(c draw.Canvas) {
			c.SetColor(white)
			c.Fill(c.Rectangle.Path())
			barW, gap := vg.Points(48), vg.Points(6)
			main := c
			main.Max.X -= barW + gap
			main.Min.X += vg.Points(4) // room for the first glyph of long row names
			p.Draw(main)
			data := p.DataCanvas(main)
			side := c
			side.Min.X = c.Max.X - barW
			side.Max.X -= vg.Points(3)
			side.Min.Y, side.Max.Y = data.Min.Y, data.Max.Y
			bar.Draw(side)
		},
	}
}

// qualityFigures makes, for each workload, the three metric-vs-sparsity
// figures, the Pareto view and the layer heatmap at sparsity at.
func qualityFigures(r *Run, st *styles, at float64) []*Figure {
	q := r.quality()
	var out []*Figure
	for _, w := range workloadsOf(q) {
		wc := filter(q, func(c *resultfmt.Cell) bool { return c.Workload == w })
		var figs []*Figure
		for _, m := range qualityMetrics {
			figs = append(figs, sparsityFigure(wc, st, m, w))
		}
		if s, ok := chooseSparsity(wc, at); ok {
			figs = append(figs, paretoFigure(wc, st, s, w), heatmapFigure(wc, s, w))
		}
		for _, f := range figs {
			if f != nil {
				f.Group = "Workload " + w
				out = append(out, f)
			}
		}
	}
	return out
}

// luminance is the relative luminance (0 black … 1 white) of c.
func luminance(c color.Color) float64 {
	lin := func(v uint32) float64 {
		x := float64(v) / 0xffff
		if x <= 0.04045 {
			return x / 12.92
		}
		return math.Pow((x+0.055)/1.055, 2.4)
	}
	r, g, b, _ := c.RGBA()
	return 0.2126*lin(r) + 0.7152*lin(g) + 0.0722*lin(b)
}
