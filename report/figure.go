package report

import (
	"bytes"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/hbench/hbench/resultfmt"
)

// Figure geometry: one paper column wide, printed at 200 dpi as PNG.
const (
	// FigureWidth is the width of every figure (a paper column).
	FigureWidth = 3.5 * vg.Inch
	// plotHeight is the height of the plot proper, legend excluded.
	plotHeight = 2.4 * vg.Inch
	// DPI is the resolution of the PNG files.
	DPI = 200
)

// Font sizes, chosen to stay readable when the figure is printed at
// FigureWidth (the usual 8–9 pt of a paper's body text, a little less for
// ticks and legends).
var (
	sans       = font.Font{Typeface: "Liberation", Variant: "Sans"}
	titleFont  = font.From(sans, 8.5)
	labelFont  = font.From(sans, 7.5)
	tickFont   = font.From(sans, 6.5)
	legendFont = font.From(sans, 6.5)
)

// Figure is one rendered figure of a report.
type Figure struct {
	// Name is the file stem: figures/<Name>.png and figures/<Name>.svg.
	Name string
	// Group is the report section the figure belongs to (a workload, or
	// the latency setup).
	Group string
	// Title is the figure's title (also drawn in the image).
	Title string
	// Caption says what is plotted and how to read it.
	Caption string
	// Width and Height are the figure's size.
	Width, Height vg.Length
	// draw paints the whole figure onto a canvas of Width × Height.
	draw func(c draw.Canvas)
	// retitle changes the title drawn in the image (nil: fixed).
	retitle func(string)
}

// setTitle sets the figure's title, in the image too.
func (f *Figure) setTitle(t string) {
	f.Title = t
	if f.retitle != nil {
		f.retitle(t)
	}
}

// PNG and SVG are the figure's file names relative to the report folder.
func (f *Figure) PNG() string { return "figures/" + f.Name + ".png" }

// SVG is the figure's SVG file name relative to the report folder.
func (f *Figure) SVG() string { return "figures/" + f.Name + ".svg" }

// PixelSize is the size in pixels of the figure's PNG.
func (f *Figure) PixelSize() (w, h int) {
	px := func(l vg.Length) int { return int(float64(l/vg.Inch)*DPI + 0.5) } // as vgimg sizes its image
	return px(f.Width), px(f.Height)
}

// save writes the figure's PNG and SVG under reportDir.
func (f *Figure) save(reportDir string) error {
	img := vgimg.NewWith(vgimg.UseWH(f.Width, f.Height), vgimg.UseDPI(DPI))
	f.draw(draw.New(img))
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return fmt.Errorf("figure %s: png: %w", f.Name, err)
	}
	if err := resultfmt.WriteFileAtomic(filepath.Join(reportDir, f.PNG()), buf.Bytes()); err != nil {
		return err
	}
	svg := vgsvg.New(f.Width, f.Height)
	f.draw(draw.New(svg))
	buf.Reset()
	if _, err := svg.WriteTo(&buf); err != nil {
		return fmt.Errorf("figure %s: svg: %w", f.Name, err)
	}
	return resultfmt.WriteFileAtomic(filepath.Join(reportDir, f.SVG()), buf.Bytes())
}

// newPlot returns a plot with the report's fonts, a white background and
// light grid lines.
func newPlot(title, xlabel, ylabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font = titleFont
	p.Title.Padding = vg.Points(4)
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font = labelFont
		a.Tick.Label.Font = tickFont
		a.Label.Padding = vg.Points(2)
		a.LineStyle.Width = vg.Points(0.6)
		a.Tick.LineStyle.Width = vg.Points(0.6)
		a.Tick.Length = vg.Points(3)
	}
	p.X.Label.Text = xlabel
	p.Y.Label.Text = ylabel
	g := plotter.NewGrid()
	g.Vertical.Color = gridColor
	g.Horizontal.Color = gridColor
	g.Vertical.Width = vg.Points(0.4)
	g.Horizontal.Width = vg.Points(0.4)
	p.Add(g)
	return p
}

var gridColor = grey20

// legendItem is one entry of a figure legend.
type legendItem struct {
	Label  string
	Thumbs []plot.Thumbnailer
}

// legendLayout places legend entries in columns below the plot.
type legendLayout struct {
	items  []legendItem
	cols   int
	rows   int
	rowH   vg.Length
	height vg.Length
}

var legendStyle = text.Style{Font: legendFont, Handler: plot.DefaultTextHandler, Color: black}

const (
	legendThumb = 16 // points
	legendPad   = 3  // points, around the legend block
)

func layoutLegend(items []legendItem, width vg.Length) legendLayout {
	l := legendLayout{items: items}
	if len(items) == 0 {
		return l
	}
	var wmax vg.Length
	for _, it := range items {
		if w := legendStyle.Rectangle(" " + it.Label).Max.X; w > wmax {
			wmax = w
		}
	}
	colW := vg.Points(legendThumb) + wmax + vg.Points(8)
	l.cols = int((width - 2*vg.Points(legendPad)) / colW)
	l.cols = max(1, min(l.cols, len(items), 4))
	l.rows = (len(items) + l.cols - 1) / l.cols
	l.rowH = legendStyle.Rectangle("Mg").Max.Y * 1.35
	l.height = vg.Length(l.rows)*l.rowH + 2*vg.Points(legendPad)
	return l
}

// draw paints the legend in c, filling columns top to bottom.
func (l legendLayout) draw(c draw.Canvas) {
	if len(l.items) == 0 {
		return
	}
	colW := (c.Max.X - c.Min.X - 2*vg.Points(legendPad)) / vg.Length(l.cols)
	for i, it := range l.items {
		col, row := i/l.rows, i%l.rows
		x0 := c.Min.X + vg.Points(legendPad) + vg.Length(col)*colW
		ytop := c.Max.Y - vg.Points(legendPad) - vg.Length(row)*l.rowH
		icon := draw.Canvas{Canvas: c.Canvas, Rectangle: vg.Rectangle{
			Min: vg.Point{X: x0, Y: ytop - l.rowH},
			Max: vg.Point{X: x0 + vg.Points(legendThumb), Y: ytop},
		}}
		for _, t := range it.Thumbs {
			t.Thumbnail(&icon)
		}
		sty := legendStyle
		sty.YAlign = draw.YCenter
		c.FillText(sty, vg.Point{X: x0 + vg.Points(legendThumb+3), Y: ytop - l.rowH/2}, it.Label)
	}
}

// plotFigure makes a Figure of a plot with its legend below the data area,
// so the legend never covers data.
//
// Note: the y-axis label is drawn here, not by gonum/plot, because plot
// v0.17 places a vertical label at the data midpoint (Min+Max)/2, which on
// a log axis sits near the top and makes padY shrink the data area.
func plotFigure(name, title, caption string, p *plot.Plot, legend []legendItem) *Figure {
	l := layoutLegend(legend, FigureWidth)
	ylabel := p.Y.Label.Text
	p.Y.Label.Text = ""
	return &Figure{
		Name: name, Title: title, Caption: caption,
		Width: FigureWidth, Height: plotHeight + l.height,
		retitle: func(t string) { p.Title.Text = t },
		draw: func(c draw.Canvas) {
			c.SetColor(white)
			c.Fill(c.Rectangle.Path())
			top := c
			top.Min.Y += l.height
			if ylabel != "" {
				sty := text.Style{Font: labelFont, Handler: plot.DefaultTextHandler, Color: black,
					Rotation: math.Pi / 2, XAlign: draw.XCenter, YAlign: draw.YCenter}
				lh := sty.FontExtents().Height
				lw := lh + vg.Points(3)
				yTitle := vg.Length(0)
				if p.Title.Text != "" {
					yTitle = p.Title.TextStyle.Rectangle(p.Title.Text).Size().Y + p.Title.Padding
				}
				xAxis := p.X.Label.TextStyle.Rectangle(p.X.Label.Text).Size().Y + p.X.Tick.Label.Rectangle("0").Size().Y + vg.Points(8)
				mid := (top.Min.Y + xAxis + top.Max.Y - yTitle) / 2
				c.FillText(sty, vg.Point{X: top.Min.X + vg.Points(1) + lh/2, Y: mid}, ylabel)
				top.Min.X += lw
			}
			top.Max.X -= vg.Points(5) // room for the last x tick label
			p.Draw(top)
			bottom := c
			bottom.Max.Y = c.Min.Y + l.height
			l.draw(bottom)
		},
	}
}

// linTicks labels 4–7 evenly spaced round values (steps of 1, 2, 2.5 or 5
// times a power of ten) with a minor tick between each pair.
func linTicks() plot.Ticker {
	return plot.TickerFunc(func(lo, hi float64) []plot.Tick {
		min, max := lo, hi
		span := max - min
		if !(span > 0) {
			return []plot.Tick{{Value: min, Label: fmtTick(min)}}
		}
		e := math.Pow(10, math.Floor(math.Log10(span)))
		step := e
		for _, m := range []float64{0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10} {
			if span/(m*e) <= 6 {
				step = m * e
				break
			}
		}
		var ts []plot.Tick
		prec := maxInt(0, -int(math.Floor(math.Log10(step)+1e-9)))
		if math.Mod(step/math.Pow(10, math.Floor(math.Log10(step)+1e-9)), 1) != 0 {
			prec++ // 0.25, 2.5
		}
		for v := math.Ceil(min/step-1e-9) * step; v <= max+1e-9*span; v += step {
			ts = append(ts, plot.Tick{Value: v, Label: strconv.FormatFloat(v+0, 'f', prec, 64)})
			if h := v + step/2; h <= max {
				ts = append(ts, plot.Tick{Value: h})
			}
		}
		return ts
	})
}

// log2Ticks labels the powers of two within [min, max] (and the ends when
// there are fewer than two), for a log-2 axis of sparsities or sizes.
func log2Ticks(format func(float64) string) plot.Ticker {
	return plot.TickerFunc(func(min, max float64) []plot.Tick {
		var ts []plot.Tick
		lo, hi := math.Ceil(math.Log2(min)-1e-9), math.Floor(math.Log2(max)+1e-9) // powers of two inside
		step := 1.0
		for (hi-lo)/step > 7 {
			step++
		}
		for e := lo; e <= hi; e += step {
			v := math.Exp2(e)
			if v < min*(1-1e-9) || v > max*(1+1e-9) {
				continue
			}
			ts = append(ts, plot.Tick{Value: v, Label: format(v)})
		}
		if len(ts) < 2 {
			ts = append(ts[:0], plot.Tick{Value: min, Label: format(min)}, plot.Tick{Value: max, Label: format(max)})
		}
		return ts
	})
}

// logTicks labels powers of ten (with 2× and 5× steps when the range is
// under two decades), for log axes of errors, latencies and bandwidths.
func logTicks() plot.Ticker {
	return plot.TickerFunc(func(min, max float64) []plot.Tick {
		var ts []plot.Tick
		lo, hi := math.Floor(math.Log10(min)), math.Ceil(math.Log10(max))
		mults := []float64{1}
		if math.Log10(max/min) <= 2.5 {
			mults = []float64{1, 2, 5}
		}
		for e := lo; e <= hi; e++ {
			for _, m := range mults {
				v := m * math.Pow(10, e)
				if v >= min*(1-1e-9) && v <= max*(1+1e-9) {
					ts = append(ts, plot.Tick{Value: v, Label: fmtTick(v)})
				}
			}
			for k := 2; k <= 9; k++ {
				v := float64(k) * math.Pow(10, e)
				if v >= min && v <= max {
					ts = append(ts, plot.Tick{Value: v}) // minor
				}
			}
		}
		if countMajor(ts) < 2 {
			ts = append(ts, plot.Tick{Value: min, Label: fmtTick(min)}, plot.Tick{Value: max, Label: fmtTick(max)})
		}
		return ts
	})
}

func countMajor(ts []plot.Tick) int {
	n := 0
	for _, t := range ts {
		if t.Label != "" {
			n++
		}
	}
	return n
}

func fmtTick(v float64) string {
	if v >= 1 && v < 1e6 && v == math.Trunc(v) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	if v >= 1e-4 && v < 1e5 {
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	return strconv.FormatFloat(v, 'e', 0, 64)
}

func fmtInt(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }

// valueTicks labels the distinct given values (the budgets a run has),
// for axes with few data positions.
func valueTicks(vals []float64, format func(float64) string) plot.Ticker {
	seen := map[float64]bool{}
	var ts []plot.Tick
	for _, v := range vals {
		if !seen[v] {
			seen[v] = true
			ts = append(ts, plot.Tick{Value: v, Label: format(v)})
		}
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Value < ts[j].Value })
	return plot.ConstantTicks(ts)
}

// fmtTokens prints a context length: 4096 → "4K", 131072 → "128K".
func fmtTokens(v float64) string {
	switch {
	case v >= 1<<20 && math.Mod(v, 1<<20) == 0:
		return fmtInt(v/(1<<20)) + "M"
	case v >= 1<<10 && math.Mod(v, 1<<10) == 0:
		return fmtInt(v/(1<<10)) + "K"
	}
	return fmtInt(v)
}

// padRange widens [lo, hi] on a log axis by a fraction of its span, so
// markers at the ends are not cut by the frame.
func padLog(lo, hi, frac float64) (float64, float64) {
	if lo <= 0 || hi <= 0 {
		return lo, hi
	}
	if lo == hi {
		return lo / 1.5, hi * 1.5
	}
	f := math.Pow(hi/lo, frac)
	return lo / f, hi * f
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}
