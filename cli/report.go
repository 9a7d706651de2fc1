package cli

import (
	"context"
	"flag"
	"io"

	"github.com/hbench/hbench/report"
)

func init() {
	// hbench run prints its own summary table, so the report it renders at
	// the end only says where it is.
	AfterRun = func(dir string, terminal io.Writer) error {
		return report.WriteWith(dir, terminal, report.Options{Quiet: true})
	}
	Register(&Command{
		Name:  "report",
		Short: "render a run's tables, figures and index.html into RUN_DIR/report/",
		Usage: "[--sparsity S] [--quiet] RUN_DIR...",
		Setup: func(fs *flag.FlagSet) func(context.Context, []string, io.Writer, io.Writer) error {
			sp := fs.Float64("sparsity", 16, "sparsity `S` of the single-budget figures (Pareto, layer heatmap, latency vs context); the nearest present one is used")
			quiet := fs.Bool("quiet", false, "print only where the report is, not the tables")
			return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
				if len(args) == 0 {
					return Usagef("need a run directory")
				}
				if !(*sp > 1) {
					return Usagef("--sparsity: must be > 1, got %g", *sp)
				}
				for _, dir := range args {
					if err := ctx.Err(); err != nil {
						return err
					}
					if err := report.WriteWith(dir, stdout, report.Options{Sparsity: *sp, Quiet: *quiet}); err != nil {
						return err
					}
				}
				return nil
			}
		},
	})
}
