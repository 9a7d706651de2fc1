package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"sort"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"

	"github.com/hbench/hbench/inspect"
)

func init() {
	Register(&Command{
		Name:  "inspect",
		Short: "metadata, shapes and attention concentration of qkv-capture/1 files",
		Usage: "[--last N] [--json] FILE...",
		Setup: func(fs *flag.FlagSet) func(context.Context, []string, io.Writer, io.Writer) error {
			last := fs.Int("last", inspect.DefaultLast, "measure the last `N` query positions of each window")
			asJSON := fs.Bool("json", false, "print the reports as JSON instead of tables")
			return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
				if len(args) == 0 {
					return Usagef("give at least one capture file")
				}
				if *last <= 0 {
					return Usagef("--last %d: must be > 0", *last)
				}
				var reports []*inspect.Report
				for _, path := range args {
					if err := ctx.Err(); err != nil {
						return err
					}
					r, err := inspect.File(path, inspect.Options{Last: *last})
					if err != nil {
						return err
					}
					reports = append(reports, r)
				}
				if *asJSON {
					enc := json.NewEncoder(stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(reports)
				}
				printInspect(stdout, reports)
				return nil
			}
		},
	})
}

func printInspect(w io.Writer, reports []*inspect.Report) {
	for _, r := range reports {
		fmt.Fprintf(w, "%s: layer %d, %d query heads over %d KV heads (GQA group %d), %d positions, head dim %d, scale %.6g\n",
			r.Path, r.Layer, r.Heads, r.KVHeads, r.Heads/max(r.KVHeads, 1), r.T, r.D, r.Scale)
		fmt.Fprintf(w, "  q [%d %d %d] %s, k [%d %d %d] %s, v [%d %d %d] %s\n",
			r.Heads, r.T, r.D, r.DTypes["q"], r.KVHeads, r.T, r.D, r.DTypes["k"], r.KVHeads, r.T, r.D, r.DTypes["v"])
		fmt.Fprintf(w, "  measured query positions: %d..%d\n", r.From, r.To-1)
		keys := make([]string, 0, len(r.Metadata))
		for k := range r.Metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "  %s: %s\n", k, r.Metadata[k])
		}
	}
	if len(reports) == 0 {
		return
	}
	fmt.Fprintln(w, "\nSoftmax mass, mean over the measured query positions t (each over keys 0..t):")
	cols := 10
	align := tw.CellAlignment{Global: tw.AlignRight, PerColumn: make([]tw.Align, cols)}
	for i := range align.PerColumn {
		align.PerColumn[i] = tw.AlignRight
	}
	align.PerColumn[0] = tw.AlignLeft
	t := tablewriter.NewTable(w,
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithRowAlignmentConfig(align),
		tablewriter.WithHeaderAlignmentConfig(align))
	t.Header("file", "layer", "head", "kv head", "top 1%", "top 3%", "top 6%", "key 0", "recent 1%", "uniform")
	f := func(x float64) string { return fmt.Sprintf("%.4f", x) }
	row := func(file string, layer int, head, kv string, c inspect.Concentration) {
		t.Append(file, fmt.Sprint(layer), head, kv, f(c.Top1), f(c.Top3), f(c.Top6), fmt.Sprintf("%.5f", c.Key0), f(c.Recent), fmt.Sprintf("%.5f", c.Uniform))
	}
	for _, r := range reports {
		name := filepath.Base(r.Path)
		for _, h := range r.PerHead {
			row(name, r.Layer, fmt.Sprint(h.Head), fmt.Sprint(h.KVHead), h.Concentration)
		}
		row(name, r.Layer, "mean", "", r.Mean)
	}
	t.Render()
	fmt.Fprintln(w, "top p%: mass on the ceil(p% of n) most probable of the n visible keys; recent 1%: on the ceil(1% of n) most recent; uniform: 1/n.")
}
