package report

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hbench/hbench/resultfmt"
)

// writeReport copies a fixture run to a temp dir, writes its report and
// returns the run dir and the rendered report.
func writeReport(t *testing.T, fixture string) (string, *Rendered, string) {
	t.Helper()
	dir := copyRun(t, fixture)
	var term bytes.Buffer
	if err := Write(dir, &term); err != nil {
		t.Fatal(err)
	}
	r, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, Render(r, Options{}), term.String()
}

// checkFigureFiles decodes every figure's PNG (checking its pixel size)
// and parses its SVG as XML (checking the root and its size).
func checkFigureFiles(t *testing.T, reportDir string, figs []*Figure) {
	t.Helper()
	for _, f := range figs {
		b, err := os.ReadFile(filepath.Join(reportDir, f.PNG()))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", f.PNG(), err)
		}
		w, h := f.PixelSize()
		if got := img.Bounds().Size(); got.X != w || got.Y != h {
			t.Errorf("%s: %dx%d pixels, want %dx%d", f.PNG(), got.X, got.Y, w, h)
		}
		if w != 700 { // 3.5 in at 200 dpi: one paper column
			t.Errorf("%s: width %d px, want 700", f.PNG(), w)
		}
		if h < 400 || h > 1200 {
			t.Errorf("%s: height %d px out of the expected range", f.PNG(), h)
		}
		checkSVG(t, filepath.Join(reportDir, f.SVG()))
	}
}

func checkSVG(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	var root *xml.StartElement
	elems, texts := 0, 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: not well-formed XML: %v", path, err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			elems++
			if root == nil {
				e := e.Copy()
				root = &e
			}
			if e.Name.Local == "text" {
				texts++
			}
		}
	}
	if root == nil || root.Name.Local != "svg" {
		t.Fatalf("%s: root element is not <svg>", path)
	}
	attrs := map[string]string{}
	for _, a := range root.Attr {
		attrs[a.Name.Local] = a.Value
	}
	if attrs["width"] == "" || attrs["height"] == "" {
		t.Errorf("%s: <svg> without width/height: %v", path, root.Attr)
	}
	if elems < 20 || texts < 5 {
		t.Errorf("%s: only %d elements, %d texts: an empty figure?", path, elems, texts)
	}
}

func figureNames(figs []*Figure) []string {
	var out []string
	for _, f := range figs {
		out = append(out, f.Name)
	}
	return out
}

func TestQualityReport(t *testing.T) {
	dir, rep, term := writeReport(t, qualityFixture)
	wantFigs := []string{
		"persuasion-recall", "persuasion-mass_recall", "persuasion-output_error", "persuasion-pareto-16", "persuasion-recall-heatmap-16",
		"needle-recall", "needle-mass_recall", "needle-output_error", "needle-pareto-16", "needle-recall-heatmap-16",
	}
	if got := figureNames(rep.Figures); !slices.Equal(got, wantFigs) {
		t.Errorf("figures %v, want %v", got, wantFigs)
	}
	checkFigureFiles(t, filepath.Join(dir, Dir), rep.Figures)
	// 2 workloads × (all layers + 2 layers) × 3 metrics.
	if len(rep.Tables) != 18 {
		t.Fatalf("%d tables, want 18", len(rep.Tables))
	}
	for _, tab := range rep.Tables {
		if len(tab.Header) != 6 || len(tab.RowNames) != 5 || len(tab.Values) != 5 {
			t.Errorf("%s: %d columns, %d rows; want 6 and 5", tab.Title, len(tab.Header), len(tab.RowNames))
		}
		md, err := tab.Markdown()
		if err != nil {
			t.Fatal(err)
		}
		var rows []string
		for _, l := range strings.Split(md, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "|") {
				rows = append(rows, l)
			}
		}
		if len(rows) != 7 { // header, separator, 5 methods
			t.Errorf("%s: %d Markdown table lines, want 7:\n%s", tab.Title, len(rows), md)
		}
		for _, r := range rows {
			if n := strings.Count(r, "|"); n != 7 {
				t.Errorf("%s: Markdown row with %d bars, want 7: %q", tab.Title, n, r)
			}
		}
		if !strings.Contains(term, tab.Title) {
			t.Errorf("terminal output lacks table %q", tab.Title)
		}
	}
	// The pooled all-layers recall is the sample-weighted mean of the two
	// layers' cells (equal counts here: the plain mean).
	tab := rep.Tables[0]
	if tab.Metric != resultfmt.MetricRecall || !strings.Contains(tab.Title, "persuasion, all layers (1, 4)") {
		t.Fatalf("first table is %q", tab.Title)
	}
	r, _ := Load(dir)
	want := func(layer int) float64 {
		for _, c := range r.Cells {
			if c.Workload == "persuasion" && c.Layer == layer && c.Method == "quest" && c.Sparsity == 16 {
				return c.Metrics[resultfmt.MetricRecall].Mean
			}
		}
		t.Fatal("fixture cell missing")
		return 0
	}
	if got, w := tab.Values[3][2], (want(1)+want(4))/2; math.Abs(got-w) > 1e-12 {
		t.Errorf("pooled quest recall at 16× = %v, want %v", got, w)
	}
	// hashattention is the best contender in the fixture at every sparsity.
	for j := range tab.Values[0] {
		for i, name := range tab.RowNames {
			if tab.Best[i][j] != (name == "hashattention[bits=32]") {
				t.Errorf("column %s: best[%s] = %v", tab.Header[j+1], name, tab.Best[i][j])
			}
		}
	}
	for _, f := range []string{"report.md", "index.html"} {
		if _, err := os.Stat(filepath.Join(dir, Dir, f)); err != nil {
			t.Error(err)
		}
	}
	// A second rendering drops figures it no longer makes, and only those.
	stale, other := filepath.Join(dir, Dir, "figures", "old.png"), filepath.Join(dir, Dir, "figures", "notes.txt")
	os.WriteFile(stale, []byte("x"), 0o644)
	os.WriteFile(other, []byte("x"), 0o644)
	if err := Write(dir, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale figure kept: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("non-figure file removed: %v", err)
	}
	page, _ := os.ReadFile(filepath.Join(dir, Dir, "index.html"))
	for _, tag := range []string{"details", "table", "figure", "div", "dl", "html", "body"} {
		if o, c := bytes.Count(page, []byte("<"+tag)), bytes.Count(page, []byte("</"+tag+">")); o != c || o == 0 {
			t.Errorf("index.html: %d <%s> opened, %d closed", o, tag, c)
		}
	}
	md, _ := os.ReadFile(filepath.Join(dir, Dir, "report.md"))
	for _, f := range rep.Figures {
		if !bytes.Contains(md, []byte("]("+f.PNG()+")")) {
			t.Errorf("report.md does not show %s", f.PNG())
		}
	}
}

func TestLatencyReport(t *testing.T) {
	dir, rep, _ := writeReport(t, latencyFixture)
	want := []string{"latency-context", "speedup-sparsity", "bandwidth-context"}
	if got := figureNames(rep.Figures); !slices.Equal(got, want) {
		t.Errorf("figures %v, want %v", got, want)
	}
	checkFigureFiles(t, filepath.Join(dir, Dir), rep.Figures)
	if len(rep.Tables) != 1 {
		t.Fatalf("%d tables, want 1", len(rep.Tables))
	}
	// With one sparsity, speedup is drawn against context length instead.
	_, cells := genLatencyRun()
	one := filter(cells, func(c *resultfmt.Cell) bool { return c.Method == "dense" || c.Sparsity == 16 })
	rep1 := Render(&Run{Dir: "one", Cells: one}, Options{})
	if got, want := figureNames(rep1.Figures), []string{"latency-context", "speedup-context", "bandwidth-context"}; !slices.Equal(got, want) {
		t.Errorf("one-sparsity figures %v, want %v", got, want)
	}
	// Two setups (cold and warm L2): figures numbered, titles tagged.
	var two []*resultfmt.Cell
	for _, c := range one {
		w := *c
		l := *c.Latency
		w.ID, l.Cache, w.Latency = c.ID+"/warm", "warm", &l
		two = append(two, c, &w)
	}
	rep2 := Render(&Run{Dir: "two", Cells: two}, Options{})
	if len(rep2.Figures) != 6 || rep2.Figures[3].Name != "latency-context-2" || !strings.HasSuffix(rep2.Figures[3].Title, "(warm L2, stream)") {
		t.Errorf("two setups: %v, title %q", figureNames(rep2.Figures), rep2.Figures[3].Title)
	}

	tab := rep.Tables[0]
	// dense, then 3 series × 3 sparsities; 6 context lengths.
	if len(tab.RowNames) != 10 || len(tab.Header) != 7 {
		t.Errorf("latency table %d rows × %d columns, want 10 × 7: %v %v", len(tab.RowNames), len(tab.Header), tab.RowNames, tab.Header)
	}
	if tab.RowNames[0] != "dense" || tab.Header[1] != "4K" || tab.Header[6] != "128K" {
		t.Errorf("latency table rows %v, header %v", tab.RowNames, tab.Header)
	}
}

// TestSkipsFiguresWithoutData: a run of one layer has no heatmap, a run
// of token budgets has no sparsity figures, and a run without cells is an
// error.
func TestSkipsFiguresWithoutData(t *testing.T) {
	_, cells := genQualityRun()
	one := filter(cells, func(c *resultfmt.Cell) bool { return c.Workload == "persuasion" && c.Layer == 1 })
	dir := filepath.Join(t.TempDir(), "one")
	writeRun(t, dir, &resultfmt.Manifest{Experiment: "one"}, one)
	if err := Write(dir, io.Discard); err != nil {
		t.Fatal(err)
	}
	r, _ := Load(dir)
	rep := Render(r, Options{})
	want := []string{"persuasion-recall", "persuasion-mass_recall", "persuasion-output_error", "persuasion-pareto-16"}
	if got := figureNames(rep.Figures); !slices.Equal(got, want) {
		t.Errorf("one-layer figures %v, want %v", got, want)
	}
	if len(rep.Tables) != 3 {
		t.Errorf("one-layer run: %d tables, want 3", len(rep.Tables))
	}

	refs := filter(one, func(c *resultfmt.Cell) bool {
		return c.Method == "dense" || c.Method == "oracle" || c.Method == "streaming"
	})
	rep = Render(&Run{Dir: "refs", Cells: refs}, Options{})
	if got := figureNames(rep.Figures); !slices.Equal(got, want[:3]) {
		t.Errorf("one contender: figures %v, want no Pareto view", got)
	}

	var tok []*resultfmt.Cell
	for _, c := range one {
		c2 := *c
		c2.Tokens, c2.Sparsity = int(4096/c.Sparsity), 0
		tok = append(tok, &c2)
	}
	rep = Render(&Run{Dir: "tok", Cells: tok}, Options{})
	if len(rep.Figures) != 0 {
		t.Errorf("token-budget run drew %v", figureNames(rep.Figures))
	}
	if len(rep.Tables) != 3 || rep.Tables[0].Header[1] != "1024 tok" {
		t.Errorf("token-budget tables: %d, header %v", len(rep.Tables), rep.Tables[0].Header)
	}

	empty := t.TempDir()
	writeRun(t, empty, &resultfmt.Manifest{}, nil)
	if err := Write(empty, io.Discard); err == nil {
		t.Error("empty run: no error")
	}
	if err := Write(t.TempDir(), io.Discard); err == nil {
		t.Error("missing cells.jsonl: no error")
	}
}

func TestMarkBest(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		name   string
		vals   [][]float64
		refs   []bool
		higher bool
		want   [][]bool
	}{
		{"higher, reference excluded", [][]float64{{1}, {0.5}, {0.7}}, []bool{true, false, false}, true, [][]bool{{false}, {false}, {true}}},
		{"lower is better", [][]float64{{0}, {0.5}, {0.7}}, []bool{true, false, false}, false, [][]bool{{false}, {true}, {false}}},
		{"ties as printed are all marked", [][]float64{{0.8001}, {0.8004}, {0.7}}, []bool{false, false, false}, true, [][]bool{{true}, {true}, {false}}},
		{"NaN never best", [][]float64{{nan, 0.1}, {0.2, nan}}, []bool{false, false}, true, [][]bool{{false, true}, {true, false}}},
		{"only references", [][]float64{{1}}, []bool{true}, true, [][]bool{{false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := markBest(tc.vals, tc.refs, tc.higher, fmtFrac)
			if !slices.EqualFunc(got, tc.want, slices.Equal) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPooled(t *testing.T) {
	cells := []*resultfmt.Cell{
		{Metrics: map[string]resultfmt.Stat{"m": {Mean: 1, Median: 1, P10: 0, P90: 2, Min: 0, Max: 3, Count: 1}}},
		{Metrics: map[string]resultfmt.Stat{"m": {Mean: 4, Median: 5, P10: 3, P90: 5, Min: -1, Max: 6, Count: 3}}},
		{Metrics: map[string]resultfmt.Stat{"other": {Mean: 100, Count: 5}}},
	}
	s, ok := pooled(cells, "m")
	want := resultfmt.Stat{Mean: 13.0 / 4, Median: 16.0 / 4, P10: 9.0 / 4, P90: 17.0 / 4, Min: -1, Max: 6, Count: 4}
	if !ok || s != want {
		t.Errorf("pooled = %+v, %v; want %+v", s, ok, want)
	}
	if _, ok := pooled(cells, "absent"); ok {
		t.Error("pooled of an absent metric is ok")
	}
}

func TestChooseSparsity(t *testing.T) {
	mk := func(ss ...float64) []*resultfmt.Cell {
		var out []*resultfmt.Cell
		for _, s := range ss {
			out = append(out, &resultfmt.Cell{Sparsity: s})
		}
		return out
	}
	for _, tc := range []struct {
		cells []*resultfmt.Cell
		want  float64
		ok    bool
	}{
		{mk(4, 8, 16, 32), 16, true},
		{mk(4, 8, 32, 64), 32, true}, // log-distance tie between 8 and 32: the sparser
		{mk(4, 10), 10, true},
		{mk(100), 100, true},
		{[]*resultfmt.Cell{{Tokens: 64}}, 0, false},
	} {
		got, ok := chooseSparsity(tc.cells, 0)
		if got != tc.want || ok != tc.ok {
			t.Errorf("chooseSparsity(%v) = %v, %v; want %v, %v", budgetsOf(tc.cells), got, ok, tc.want, tc.ok)
		}
	}
}

// TestStyles: a method keeps its colour and marker whatever else is in
// the run; unknown methods get distinct spare styles; variants of a
// method share the colour and differ in dashes.
func TestStyles(t *testing.T) {
	a := newStyles([]variant{{"dense", "dense"}, {"quest[page=8]", "quest"}, {"quest[page=16]", "quest"}, {"zeta", "zeta"}, {"alpha", "alpha"}})
	b := newStyles([]variant{{"quest", "quest"}, {"alpha", "alpha"}, {"zeta", "zeta"}})
	if a.method["quest"] != b.method["quest"] || a.method["quest"].Color != blue {
		t.Error("quest's style depends on the run")
	}
	if a.method["alpha"] != b.method["alpha"] || a.method["zeta"] != b.method["zeta"] || a.method["alpha"].Color == a.method["zeta"].Color {
		t.Errorf("spare styles: %+v %+v", a.method, b.method)
	}
	l8, l16 := a.line(variant{"quest[page=8]", "quest"}), a.line(variant{"quest[page=16]", "quest"})
	if l8.Color != l16.Color || slices.Equal(l8.Dashes, l16.Dashes) {
		t.Errorf("quest variants: %+v vs %+v", l8, l16)
	}
	if a.line(variant{"dense", "dense"}).Dashes == nil {
		t.Error("dense (a reference) is not dashed")
	}
}

func TestTicks(t *testing.T) {
	for _, r := range [][2]float64{{0, 1}, {0.43, 0.97}, {0, 4200}, {-4, 270}} {
		ts := linTicks().Ticks(r[0], r[1])
		if countMajor(ts) < 3 || countMajor(ts) > 8 {
			t.Errorf("linTicks%v: %v", r, ts)
		}
		for _, tk := range ts {
			if tk.Value < r[0]-1e-9 || tk.Value > r[1]+1e-9 {
				t.Errorf("linTicks%v: tick %v out of range", r, tk.Value)
			}
		}
	}
	for _, r := range [][2]float64{{0.003, 1.1}, {4, 200}, {1, 40}, {2e-6, 3e-6}} {
		ts := logTicks().Ticks(r[0], r[1])
		if countMajor(ts) < 2 {
			t.Errorf("logTicks%v: %v", r, ts)
		}
	}
	ts := log2Ticks(fmtTokens).Ticks(4096, 131072)
	var labels []string
	for _, tk := range ts {
		labels = append(labels, tk.Label)
	}
	if !slices.Equal(labels, []string{"4K", "8K", "16K", "32K", "64K", "128K"}) {
		t.Errorf("log2Ticks labels %v", labels)
	}
}

// mixedRun writes one run holding both fixtures' cells.
func mixedRun(t *testing.T) string {
	mq, q := genQualityRun()
	_, l := genLatencyRun()
	dir := filepath.Join(t.TempDir(), "mixed")
	writeRun(t, dir, mq, append(q, l...))
	return dir
}

// TestIndexHTMLInChromium loads index.html from disk in headless Chromium
// and checks that nothing logged an error and every image loaded.
func TestIndexHTMLInChromium(t *testing.T) {
	bin := findChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := mixedRun(t)
	if err := Write(dir, io.Discard); err != nil {
		t.Fatal(err)
	}
	r, _ := Load(dir)
	rep := Render(r, Options{})

	b := startBrowser(ctx, t, bin)
	for _, m := range []string{"Runtime.enable", "Log.enable", "Page.enable"} {
		if _, err := b.call(m, map[string]any{}); err != nil {
			t.Fatal(err)
		}
	}
	type imgState struct {
		Src          string `json:"src"`
		Complete     bool   `json:"complete"`
		NaturalWidth int    `json:"naturalWidth"`
	}
	type pageState struct {
		Images  []imgState `json:"images"`
		Tables  int        `json:"tables"`
		Figures int        `json:"figures"`
	}
	load := func(path string) pageState {
		t.Helper()
		b.events = nil
		abs, _ := filepath.Abs(path)
		if _, err := b.call("Page.navigate", map[string]any{"url": "file://" + abs}); err != nil {
			t.Fatal(err)
		}
		if err := b.waitEvent("Page.loadEventFired"); err != nil {
			t.Fatal(err)
		}
		res, err := b.call("Runtime.evaluate", map[string]any{
			"expression": `JSON.stringify({
				images: Array.from(document.images).map(i => ({src: i.currentSrc || i.src, complete: i.complete, naturalWidth: i.naturalWidth})),
				tables: document.querySelectorAll("table").length,
				figures: document.querySelectorAll("figure").length})`,
			"returnByValue": true,
		})
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			Result struct {
				Value string `json:"value"`
			} `json:"result"`
		}
		var st pageState
		if err := json.Unmarshal(res, &v); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(v.Result.Value), &st); err != nil {
			t.Fatalf("page state %q: %v", v.Result.Value, err)
		}
		return st
	}

	// The checker must catch a broken page, or passing means nothing.
	bad := filepath.Join(t.TempDir(), "bad.html")
	os.WriteFile(bad, []byte(`<!DOCTYPE html><html><body><img src="missing.png"><script>console.error("boom")</script></body></html>`), 0o644)
	st := load(bad)
	if p := b.problems(); len(p) < 2 || len(st.Images) != 1 || st.Images[0].NaturalWidth != 0 {
		t.Fatalf("the checker missed a broken page: problems %q, images %+v", p, st.Images)
	}

	st = load(filepath.Join(dir, Dir, "index.html"))
	if p := b.problems(); len(p) > 0 {
		t.Errorf("index.html logged problems:\n%s", strings.Join(p, "\n"))
	}
	if len(st.Images) != len(rep.Figures) || st.Figures != len(rep.Figures) {
		t.Errorf("%d images, %d figures in the page; the report has %d figures", len(st.Images), st.Figures, len(rep.Figures))
	}
	for _, im := range st.Images {
		if !im.Complete || im.NaturalWidth != 700 {
			t.Errorf("image %s: complete %v, naturalWidth %d (want 700)", im.Src, im.Complete, im.NaturalWidth)
		}
	}
	if st.Tables != len(rep.Tables) {
		t.Errorf("%d tables in the page, want %d", st.Tables, len(rep.Tables))
	}
}

func TestNaturalLess(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"quest[page=8]", "quest[page=16]", true},
		{"quest[page=16]", "quest[page=8]", false},
		{"a", "b", true},
		{"x2y", "x2z", true},
		{"same", "same", false},
		{"ab", "abc", true},
		{"q[r=0.5]", "q[r=0.25]", false},
	} {
		if got := naturalLess(tc.a, tc.b); got != tc.want {
			t.Errorf("naturalLess(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
}

// TestCanonicalOrder: cells appended in completion order by a parallel
// runner come out in config order (methods, workloads), then layer,
// variant (natural order) and budget.
func TestCanonicalOrder(t *testing.T) {
	cfg := map[string]any{
		"workloads": []any{map[string]any{"name": "w2"}, map[string]any{"name": "w1"}},
		"methods":   []any{"streaming", map[string]any{"label": "q", "quest": map[string]any{}, "grid": map[string]any{}}, "dense"},
	}
	mk := func(w string, l int, m, v string, s float64) *resultfmt.Cell {
		return &resultfmt.Cell{ID: fmt.Sprint(w, l, v, s), Kind: resultfmt.KindQuality, Workload: w, Layer: l, Method: m, Variant: v, Sparsity: s}
	}
	cells := []*resultfmt.Cell{
		mk("w1", 0, "dense", "dense", 8),
		mk("w2", 1, "quest", "q[page=16]", 8),
		mk("w2", 1, "quest", "q[page=8]", 8),
		mk("w2", 0, "dense", "dense", 16),
		mk("w2", 0, "dense", "dense", 8),
		mk("w2", 1, "streaming", "streaming", 8),
		mk("w2", 1, "zzz", "zzz", 8),
	}
	dir := t.TempDir()
	writeRun(t, dir, &resultfmt.Manifest{Config: cfg}, cells)
	r, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range r.Cells {
		got = append(got, c.ID)
	}
	want := []string{"w20dense8", "w20dense16", "w21streaming8", "w21q[page=8]8", "w21q[page=16]8", "w21zzz8", "w10dense8"}
	if !slices.Equal(got, want) {
		t.Errorf("order %v\nwant  %v", got, want)
	}
}

// BenchmarkWrite renders the whole quality fixture report (2 workloads ×
// 2 layers × 5 methods × 5 sparsities: 18 tables, 10 figures as PNG and
// SVG).
func BenchmarkWrite(b *testing.B) {
	m, cells := genQualityRun()
	dir := filepath.Join(b.TempDir(), "run")
	writeRun(b, dir, m, cells)
	b.ResetTimer()
	for b.Loop() {
		if err := Write(dir, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Seconds())/float64(b.N)*1e3/10, "ms/figure")
}

func TestWholeStepsDropsStagesOfSteppedKernels(t *testing.T) {
	_, cells := genLatencyRun()
	var score, steps, dense int
	for _, c := range wholeSteps(cells) {
		switch {
		case c.Latency.Stage == "score":
			score++
		case c.Latency.Stage == "step":
			steps++
		case c.Method == "dense":
			dense++
		}
	}
	// The fixture times hashattention's "score" stage beside its step:
	// the stage must go, every step and the dense cells stay.
	if score != 0 || steps != 2*6*3 || dense != 6 {
		t.Errorf("score stages %d (want 0), steps %d (want 36), dense %d (want 6)", score, steps, dense)
	}
	// A kernel without a step keeps its cells.
	lone := []*resultfmt.Cell{{Variant: "sparse", Latency: &resultfmt.Latency{Stage: "sparse"}}}
	if got := wholeSteps(lone); len(got) != 1 {
		t.Errorf("a kernel without steps lost its cells: %d", len(got))
	}
}
