package cli

import (
	"fmt"
	"io"
	"sort"

	"github.com/olekukonko/tablewriter"

	"github.com/hbench/hbench/resultfmt"
)

// qualityRow aggregates quality cells over layers: the sample-weighted
// mean of each metric's mean.
type qualityRow struct {
	workload, variant string
	budget            float64
	tokens            int
	aux               float64
	samples           int
	sum               map[string]float64
	order             int
}

// PrintQualityTable prints one row per workload × method variant × budget,
// averaged over layers (sample-weighted), with each quality metric's mean.
func PrintQualityTable(w io.Writer, cells []*resultfmt.Cell) error {
	rows := map[string]*qualityRow{}
	var list []*qualityRow
	for _, c := range cells {
		if c.Kind != resultfmt.KindQuality {
			continue
		}
		key := fmt.Sprintf("%s\x00%s\x00%g\x00%d", c.Workload, c.Variant, c.Sparsity, c.Tokens)
		r, ok := rows[key]
		if !ok {
			r = &qualityRow{workload: c.Workload, variant: c.Variant, budget: c.Sparsity, tokens: c.Tokens, aux: c.AuxBits, sum: map[string]float64{}, order: len(list)}
			rows[key] = r
			list = append(list, r)
		}
		for _, m := range resultfmt.QualityMetrics {
			r.sum[m] += c.Metrics[m].Mean * float64(c.Samples)
		}
		r.samples += c.Samples
	}
	if len(list) == 0 {
		return nil
	}
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if a.workload != b.workload {
			return a.order < b.order
		}
		if a.variant != b.variant {
			return a.order < b.order
		}
		return a.budget < b.budget || a.tokens < b.tokens
	})
	t := tablewriter.NewWriter(w)
	t.Header("workload", "method", "budget", "recall", "mass recall", "output error", "density", "aux bits/token", "samples")
	for _, r := range list {
		n := float64(max(r.samples, 1))
		budget := fmt.Sprintf("%gx", r.budget)
		if r.tokens > 0 {
			budget = fmt.Sprintf("%d tok", r.tokens)
		}
		t.Append(r.workload, r.variant, budget,
			fmt.Sprintf("%.3f", r.sum[resultfmt.MetricRecall]/n),
			fmt.Sprintf("%.3f", r.sum[resultfmt.MetricMassRecall]/n),
			fmt.Sprintf("%.3g", r.sum[resultfmt.MetricOutputError]/n),
			fmt.Sprintf("%.4f", r.sum[resultfmt.MetricDensity]/n),
			fmt.Sprintf("%g", r.aux), fmt.Sprint(r.samples))
	}
	return t.Render()
}
