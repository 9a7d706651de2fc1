package bench

import (
	"fmt"
	"io"
	"strconv"

	"github.com/olekukonko/tablewriter"

	"github.com/hbench/hbench/resultfmt"
)

// PrintTable prints one row per latency cell: kernel, shape, mode, median
// and IQR in µs, achieved GB/s over the byte floor and the fraction of the
// copy-bandwidth ceiling.
func PrintTable(w io.Writer, cells []*resultfmt.Cell) error {
	t := tablewriter.NewWriter(w)
	t.Header("kernel", "N", "batch", "heads", "d", "dtype", "k", "cache", "graph", "median µs", "IQR µs", "GB/s", "% ceiling")
	for _, c := range cells {
		l := c.Latency
		if c.Kind != resultfmt.KindLatency || l == nil {
			continue
		}
		k := ""
		if v, ok := c.Params["k"]; ok {
			k = fmt.Sprint(v)
		}
		if err := t.Append(c.Variant, strconv.Itoa(l.Context), strconv.Itoa(l.Batch), fmt.Sprintf("%d/%d", l.Heads, l.KVHeads),
			strconv.Itoa(l.HeadDim), l.DType, k, l.Cache, strconv.FormatBool(l.Graph),
			fmt.Sprintf("%.1f", l.MedianUS), fmt.Sprintf("%.1f", l.P75US-l.P25US), fmt.Sprintf("%.0f", l.GBps),
			fmt.Sprintf("%.1f", 100*l.FracCeiling)); err != nil {
			return err
		}
	}
	return t.Render()
}
