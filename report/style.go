package report

import (
	"fmt"
	"image/color"
	"sort"
	"strings"

	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Colours: the Okabe–Ito palette (safe for colour-blind readers and in
// greyscale print) plus a few from Paul Tol's palettes, without yellow,
// which vanishes on white.
var (
	black      = color.RGBA{0x00, 0x00, 0x00, 0xff}
	grey       = color.RGBA{0x77, 0x77, 0x77, 0xff}
	orange     = color.RGBA{0xe6, 0x9f, 0x00, 0xff}
	skyBlue    = color.RGBA{0x56, 0xb4, 0xe9, 0xff}
	green      = color.RGBA{0x00, 0x9e, 0x73, 0xff}
	blue       = color.RGBA{0x00, 0x72, 0xb2, 0xff}
	vermillion = color.RGBA{0xd5, 0x5e, 0x00, 0xff}
	purple     = color.RGBA{0xcc, 0x79, 0xa7, 0xff}
	wine       = color.RGBA{0x88, 0x22, 0x55, 0xff}
	teal       = color.RGBA{0x44, 0xaa, 0x99, 0xff}
	olive      = color.RGBA{0x99, 0x99, 0x33, 0xff}
	indigo     = color.RGBA{0x33, 0x22, 0x88, 0xff}
	white      = color.RGBA{0xff, 0xff, 0xff, 0xff}
	grey20     = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
)

// methodStyle is the look of one method in every figure: its colour, and
// the marker and line of its first variant (further variants keep the
// colour and take other dashes and markers).
type methodStyle struct {
	Color color.Color
	Glyph draw.GlyphDrawer
	// Dashed methods (the references) are drawn with a dashed line.
	Dashed bool
}

// fixedStyles gives the methods hbench ships a style that is the same in
// every run, so that figures of different runs can sit side by side. Keys
// are normalised names (lower case, no '_' or '-').
var fixedStyles = map[string]methodStyle{
	"dense":          {black, draw.SquareGlyph{}, true},
	"oracle":         {grey, draw.RingGlyph{}, true},
	"streaming":      {orange, draw.TriangleGlyph{}, false},
	"hashattention":  {vermillion, draw.CircleGlyph{}, false},
	"quest":          {blue, draw.BoxGlyph{}, false},
	"doublesparsity": {green, draw.PyramidGlyph{}, false},
	"h2o":            {purple, draw.CrossGlyph{}, false},
	"lsh":            {skyBlue, draw.PlusGlyph{}, false},
	"random":         {wine, draw.CircleGlyph{}, false},
	// GPU kernels of hbench bench: the HashAttention step, and the sparse
	// (gather) decode that any selection method feeds.
	"hash":   {vermillion, draw.CircleGlyph{}, false},
	"sparse": {teal, draw.SquareGlyph{}, false},
}

// spareStyles serve methods without a fixed style, in name order.
var spareStyles = []methodStyle{
	{olive, draw.TriangleGlyph{}, false},
	{indigo, draw.BoxGlyph{}, false},
	{purple, draw.RingGlyph{}, false},
	{green, draw.CrossGlyph{}, false},
	{blue, draw.PlusGlyph{}, false},
}

func normName(s string) string {
	return strings.NewReplacer("_", "", "-", "", " ", "").Replace(strings.ToLower(s))
}

// dashes distinguish the variants of one method (same colour and marker).
var dashes = [][]vg.Length{nil, {vg.Points(4), vg.Points(2)}, {vg.Points(1), vg.Points(1.5)}, {vg.Points(5), vg.Points(1.5), vg.Points(1), vg.Points(1.5)}}

// styles assigns every method and variant of a run its look: a method keeps
// its fixed style, other methods take the spare styles in name order, and
// the k-th variant of a method (in run order) takes the k-th dash pattern.
type styles struct {
	method  map[string]methodStyle
	variant map[string]int // variant name → index within its method
}

func newStyles(vars []variant) *styles {
	s := &styles{method: map[string]methodStyle{}, variant: map[string]int{}}
	var others []string
	count := map[string]int{}
	for _, v := range vars {
		if _, seen := count[v.Method]; !seen {
			if st, ok := fixedStyles[normName(v.Method)]; ok {
				s.method[v.Method] = st
			} else {
				others = append(others, v.Method)
			}
		}
		s.variant[v.Name] = count[v.Method]
		count[v.Method]++
	}
	sort.Strings(others)
	for i, m := range others {
		s.method[m] = spareStyles[i%len(spareStyles)]
	}
	return s
}

// line returns the line style of a variant.
func (s *styles) line(v variant) draw.LineStyle {
	st := s.method[v.Method]
	ls := draw.LineStyle{Color: st.Color, Width: vg.Points(1.1)}
	k := s.variant[v.Name]
	switch {
	case k > 0:
		ls.Dashes = dashes[k%len(dashes)]
	case st.Dashed:
		ls.Dashes = []vg.Length{vg.Points(3), vg.Points(2)}
	}
	return ls
}

// variantGlyphs give the second and later variants of a method their own
// marker (the colour stays the method's), so that variants can be told
// apart in scatter plots, where there are no dashes.
var variantGlyphs = []draw.GlyphDrawer{draw.RingGlyph{}, draw.PyramidGlyph{}, draw.PlusGlyph{}, draw.SquareGlyph{}, draw.CrossGlyph{}, draw.TriangleGlyph{}, draw.CircleGlyph{}, draw.BoxGlyph{}}

// glyph returns the marker style of a variant: the method's marker for
// its first variant, another marker for each further one.
func (s *styles) glyph(v variant) draw.GlyphStyle {
	st := s.method[v.Method]
	shape := st.Glyph
	if k := s.variant[v.Name]; k > 0 {
		var alts []draw.GlyphDrawer
		for _, g := range variantGlyphs {
			if fmt.Sprintf("%T", g) != fmt.Sprintf("%T", st.Glyph) {
				alts = append(alts, g)
			}
		}
		shape = alts[(k-1)%len(alts)]
	}
	return draw.GlyphStyle{Color: st.Color, Shape: shape, Radius: vg.Points(2.2)}
}

// band returns the fill colour of a variant's p10–p90 band.
func (s *styles) band(v variant) color.Color {
	r, g, b, _ := s.method[v.Method].Color.RGBA()
	return color.NRGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), 0x30}
}
