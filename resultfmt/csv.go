package resultfmt

import (
	"bytes"
	"encoding/csv"
	"path/filepath"
	"strconv"
)

// SummaryColumns returns the summary.csv header for the given cells: the
// identity columns, then the quality columns if any cell is a quality cell
// ({metric}_{mean,median,p10,p90} for each metric), then the latency
// columns if any cell is a latency cell.
func SummaryColumns(cells []*Cell) []string {
	cols := []string{"id", "kind", "workload", "layer", "method", "variant", "sparsity", "tokens", "sink", "local", "shared", "aux_bits", "seconds"}
	var q, l bool
	for _, c := range cells {
		q = q || c.Kind == KindQuality
		l = l || c.Kind == KindLatency
	}
	if q {
		cols = append(cols, "samples")
		for _, m := range QualityMetrics {
			cols = append(cols, m+"_mean", m+"_median", m+"_p10", m+"_p90")
		}
	}
	if l {
		cols = append(cols, "stage", "context", "batch", "heads", "kv_heads", "head_dim", "dtype", "cache", "graph",
			"median_us", "p25_us", "p75_us", "repeats", "bytes", "gbps", "ceiling_gbps", "frac_ceiling")
	}
	return cols
}

func ftoa(x float64) string { return strconv.FormatFloat(x, 'g', 8, 64) }

// SummaryRow returns the cell's values for the given columns ("" where a
// column does not apply).
func SummaryRow(c *Cell, cols []string) []string {
	v := map[string]string{
		"id": c.ID, "kind": c.Kind, "workload": c.Workload, "layer": strconv.Itoa(c.Layer),
		"method": c.Method, "variant": c.Variant, "sparsity": ftoa(c.Sparsity), "tokens": strconv.Itoa(c.Tokens),
		"sink": strconv.Itoa(c.Sink), "local": strconv.Itoa(c.Local), "shared": strconv.FormatBool(c.Shared),
		"aux_bits": ftoa(c.AuxBits), "seconds": ftoa(c.Seconds),
	}
	if c.Kind == KindQuality {
		v["samples"] = strconv.Itoa(c.Samples)
		for _, m := range QualityMetrics {
			s, ok := c.Metrics[m]
			if !ok {
				continue
			}
			v[m+"_mean"], v[m+"_median"], v[m+"_p10"], v[m+"_p90"] = ftoa(s.Mean), ftoa(s.Median), ftoa(s.P10), ftoa(s.P90)
		}
	}
	if l := c.Latency; l != nil {
		for k, x := range map[string]string{
			"stage": l.Stage, "context": strconv.Itoa(l.Context), "batch": strconv.Itoa(l.Batch), "heads": strconv.Itoa(l.Heads),
			"kv_heads": strconv.Itoa(l.KVHeads), "head_dim": strconv.Itoa(l.HeadDim), "dtype": l.DType, "cache": l.Cache,
			"graph": strconv.FormatBool(l.Graph), "median_us": ftoa(l.MedianUS), "p25_us": ftoa(l.P25US), "p75_us": ftoa(l.P75US),
			"repeats": strconv.Itoa(len(l.SamplesUS)), "bytes": strconv.FormatInt(l.Bytes, 10), "gbps": ftoa(l.GBps),
			"ceiling_gbps": ftoa(l.CeilingGBps), "frac_ceiling": ftoa(l.FracCeiling),
		} {
			v[k] = x
		}
	}
	row := make([]string, len(cols))
	for i, c := range cols {
		row[i] = v[c]
	}
	return row
}

// WriteSummary writes dir/summary.csv atomically from cells.
func WriteSummary(dir string, cells []*Cell) error {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	cols := SummaryColumns(cells)
	w.Write(cols)
	for _, c := range cells {
		w.Write(SummaryRow(c, cols))
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, SummaryFile), buf.Bytes())
}
