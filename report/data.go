package report

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"sort"
	"strconv"

	"github.com/hbench/hbench/resultfmt"
)

// Run is a finished (or partly finished) run read back from its files.
type Run struct {
	// Dir is the run directory.
	Dir string
	// Manifest is nil when the run has no manifest.json.
	Manifest *resultfmt.Manifest
	// Cells are the records of cells.jsonl in file order.
	Cells []*resultfmt.Cell
}

// Load reads the run in dir. A missing manifest.json is tolerated (the
// report then has no run summary); a missing cells.jsonl is an error.
func Load(dir string) (*Run, error) {
	cells, err := resultfmt.ReadCells(dir)
	if err != nil {
		return nil, fmt.Errorf("read run %s: %w", dir, err)
	}
	r := &Run{Dir: dir, Cells: cells}
	m, err := resultfmt.ReadManifest(dir)
	switch {
	case err == nil:
		r.Manifest = m
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, fmt.Errorf("read run %s: %w", dir, err)
	}
	r.sortCells()
	return r, nil
}

// sortCells puts the cells in a canonical order, because a parallel
// runner appends them as they finish: quality before latency; workloads
// and methods in the order of the experiment config (when the manifest
// has it; in order of first appearance otherwise); then layer, variant (numbers in names
// compared as numbers: quest[page=8] before quest[page=16]), budget, stage
// and context. Every list the report derives (rows, lines, legends) takes
// its order from here.
func (r *Run) sortCells() {
	wRank, mRank := configOrder(r.Manifest)
	for _, c := range r.Cells { // names not in the config: first appearance
		if _, ok := wRank[c.Workload]; !ok {
			wRank[c.Workload] = len(wRank)
		}
		if _, ok := mRank[c.Method]; !ok {
			mRank[c.Method] = len(mRank)
		}
	}
	rank := func(m map[string]int, k string) int { return m[k] }
	kindRank := func(k string) int {
		switch k {
		case resultfmt.KindQuality:
			return 0
		case resultfmt.KindLatency:
			return 1
		}
		return 2
	}
	sort.SliceStable(r.Cells, func(i, j int) bool {
		a, b := r.Cells[i], r.Cells[j]
		if ka, kb := kindRank(a.Kind), kindRank(b.Kind); ka != kb {
			return ka < kb
		}
		if ra, rb := rank(wRank, a.Workload), rank(wRank, b.Workload); ra != rb {
			return ra < rb
		}
		if a.Workload != b.Workload {
			return a.Workload < b.Workload
		}
		if a.Layer != b.Layer {
			return a.Layer < b.Layer
		}
		if ra, rb := rank(mRank, a.Method), rank(mRank, b.Method); ra != rb {
			return ra < rb
		}
		if a.Method != b.Method {
			return a.Method < b.Method
		}
		if va, vb := variantName(a), variantName(b); va != vb {
			return naturalLess(va, vb)
		}
		if ba, bb := budgetOf(a), budgetOf(b); ba != bb {
			return budgetLess(ba, bb)
		}
		if a.Latency != nil && b.Latency != nil {
			if a.Latency.Stage != b.Latency.Stage {
				return a.Latency.Stage < b.Latency.Stage
			}
			return a.Latency.Context < b.Latency.Context
		}
		return false
	})
}

// configOrder reads the order of workloads and methods from the manifest's
// copy of the experiment config: workloads[].name, and methods[] entries
// that are a method name or a map holding one method key (besides label
// and grid). Missing or unexpected shapes give empty maps.
func configOrder(m *resultfmt.Manifest) (workloads, methods map[string]int) {
	workloads, methods = map[string]int{}, map[string]int{}
	if m == nil {
		return
	}
	cfg, ok := m.Config.(map[string]any)
	if !ok {
		return
	}
	if ws, ok := cfg["workloads"].([]any); ok {
		for _, w := range ws {
			if wm, ok := w.(map[string]any); ok {
				if n, ok := wm["name"].(string); ok {
					if _, dup := workloads[n]; !dup {
						workloads[n] = len(workloads)
					}
				}
			}
		}
	}
	add := func(n string) {
		if _, dup := methods[n]; !dup {
			methods[n] = len(methods)
		}
	}
	if ms, ok := cfg["methods"].([]any); ok {
		for _, e := range ms {
			switch e := e.(type) {
			case string:
				add(e)
			case map[string]any:
				var keys []string
				for k := range e {
					if k != "label" && k != "grid" {
						keys = append(keys, k)
					}
				}
				sort.Strings(keys)
				for _, k := range keys {
					add(k)
				}
			}
		}
	}
	return
}

// naturalLess compares strings with runs of digits compared as numbers.
func naturalLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digitRun(a), digitRun(b)
		if da > 0 && db > 0 {
			na, _ := strconv.ParseFloat(a[:da], 64)
			nb, _ := strconv.ParseFloat(b[:db], 64)
			if na != nb {
				return na < nb
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func digitRun(s string) int {
	n := 0
	for n < len(s) && (s[n] >= '0' && s[n] <= '9' || s[n] == '.' && n > 0) {
		n++
	}
	return n
}

// Budget identifies a budget column: a sparsity ratio, or (when Sparsity is
// 0) a fixed token count.
type Budget struct {
	Sparsity float64
	Tokens   int
}

func budgetOf(c *resultfmt.Cell) Budget { return Budget{Sparsity: c.Sparsity, Tokens: c.Tokens} }

// Label is the budget's column label: "16×" for a sparsity, "256 tok" for
// a token count.
func (b Budget) Label() string {
	if b.Sparsity > 0 {
		return strconv.FormatFloat(b.Sparsity, 'g', 4, 64) + "×"
	}
	return strconv.Itoa(b.Tokens) + " tok"
}

// budgetLess orders sparsity budgets by ascending sparsity, then token
// budgets by descending token count (also from dense to sparse).
func budgetLess(a, b Budget) bool {
	if (a.Sparsity > 0) != (b.Sparsity > 0) {
		return a.Sparsity > 0
	}
	if a.Sparsity != b.Sparsity {
		return a.Sparsity < b.Sparsity
	}
	return a.Tokens > b.Tokens
}

// quality returns the run's quality cells.
func (r *Run) quality() []*resultfmt.Cell { return r.kind(resultfmt.KindQuality) }

// latency returns the run's latency cells that carry a Latency block.
func (r *Run) latency() []*resultfmt.Cell {
	var out []*resultfmt.Cell
	for _, c := range r.kind(resultfmt.KindLatency) {
		if c.Latency != nil {
			out = append(out, c)
		}
	}
	return out
}

func (r *Run) kind(k string) []*resultfmt.Cell {
	var out []*resultfmt.Cell
	for _, c := range r.Cells {
		if c.Kind == k {
			out = append(out, c)
		}
	}
	return out
}

// variantName is the display name of a cell's method variant.
func variantName(c *resultfmt.Cell) string {
	if c.Variant != "" {
		return c.Variant
	}
	return c.Method
}

// variant is one method variant of a run, in first-appearance order (the
// config's method order).
type variant struct {
	Name   string // display name, e.g. "quest[page=16]"
	Method string // registry name, e.g. "quest"
}

func variantsOf(cells []*resultfmt.Cell) []variant {
	var out []variant
	seen := map[string]bool{}
	for _, c := range cells {
		n := variantName(c)
		if !seen[n] {
			seen[n] = true
			out = append(out, variant{Name: n, Method: c.Method})
		}
	}
	return out
}

// workloadsOf lists workload names in first-appearance order.
func workloadsOf(cells []*resultfmt.Cell) []string {
	var out []string
	seen := map[string]bool{}
	for _, c := range cells {
		if !seen[c.Workload] {
			seen[c.Workload] = true
			out = append(out, c.Workload)
		}
	}
	return out
}

// layersOf lists the layers present, ascending.
func layersOf(cells []*resultfmt.Cell) []int {
	seen := map[int]bool{}
	var out []int
	for _, c := range cells {
		if !seen[c.Layer] {
			seen[c.Layer] = true
			out = append(out, c.Layer)
		}
	}
	sort.Ints(out)
	return out
}

// budgetsOf lists the budgets present, from dense to sparse.
func budgetsOf(cells []*resultfmt.Cell) []Budget {
	seen := map[Budget]bool{}
	var out []Budget
	for _, c := range cells {
		b := budgetOf(c)
		if !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
	}
	sort.Slice(out, func(i, j int) bool { return budgetLess(out[i], out[j]) })
	return out
}

func filter(cells []*resultfmt.Cell, keep func(*resultfmt.Cell) bool) []*resultfmt.Cell {
	var out []*resultfmt.Cell
	for _, c := range cells {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}

// pooled combines one metric over several cells (the layers of a workload):
// the mean is the sample-weighted mean of the cell means, which is exactly
// the mean over all pooled samples; the median, p10 and p90 are the
// sample-weighted means of the per-cell quantiles, an approximation (the
// raw samples are not stored). ok is false when no cell has the metric.
func pooled(cells []*resultfmt.Cell, metric string) (s resultfmt.Stat, ok bool) {
	var w float64
	for _, c := range cells {
		st, has := c.Metrics[metric]
		if !has || math.IsNaN(st.Mean) {
			continue
		}
		n := float64(st.Count)
		if n <= 0 {
			n = float64(c.Samples)
		}
		if n <= 0 {
			n = 1
		}
		s.Mean += n * st.Mean
		s.Median += n * st.Median
		s.P10 += n * st.P10
		s.P90 += n * st.P90
		s.Count += int(n)
		if !ok || st.Min < s.Min {
			s.Min = st.Min
		}
		if !ok || st.Max > s.Max {
			s.Max = st.Max
		}
		w += n
		ok = true
	}
	if !ok {
		return s, false
	}
	s.Mean /= w
	s.Median /= w
	s.P10 /= w
	s.P90 /= w
	return s, true
}

// chooseSparsity picks the sparsity for the single-budget views (Pareto,
// heatmap): want when it is present, else the present sparsity nearest to
// want on a log scale (ties to the sparser). want <= 0 means 16. ok is false
// when no cell has a sparsity budget.
func chooseSparsity(cells []*resultfmt.Cell, want float64) (float64, bool) {
	if want <= 0 {
		want = 16
	}
	best, bestD := 0.0, math.Inf(1)
	for _, b := range budgetsOf(cells) {
		if b.Sparsity <= 0 {
			continue
		}
		d := math.Abs(math.Log(b.Sparsity / want))
		if d < bestD-1e-12 || (math.Abs(d-bestD) <= 1e-12 && b.Sparsity > best) {
			best, bestD = b.Sparsity, d
		}
	}
	return best, best > 0
}

// metricInfo describes how a quality metric is shown.
type metricInfo struct {
	Name   string // key in Cell.Metrics
	Title  string // human name
	Unit   string // axis label
	Higher bool   // higher is better
	Log    bool   // plot on a log axis
}

var qualityMetrics = []metricInfo{
	{resultfmt.MetricRecall, "Top-k recall", "top-k recall (fraction of oracle keys)", true, false},
	{resultfmt.MetricMassRecall, "Attention-mass recall", "attention mass recalled (fraction)", true, false},
	{resultfmt.MetricOutputError, "Output error", "relative output error ‖ô − o‖ / ‖o‖", false, true},
}

// isReference reports whether a method is a reference (dense attention, or
// the oracle top-k that defines recall) rather than a contender; references
// are never marked best.
func isReference(method string) bool { return method == "dense" || method == "oracle" }
