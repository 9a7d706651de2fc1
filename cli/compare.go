package cli

import (
	"context"
	"flag"
	"io"

	"github.com/hbench/hbench/report"
)

func init() {
	Register(&Command{
		Name:  "compare",
		Short: "compare two runs cell by cell; latency differences tested for significance",
		Usage: "[--alpha A] [--markdown] RUN_A RUN_B",
		Setup: func(fs *flag.FlagSet) func(context.Context, []string, io.Writer, io.Writer) error {
			alpha := fs.Float64("alpha", 0.05, "significance level `A` of the Mann-Whitney U test on latency repeats")
			conf := fs.Float64("confidence", 0.95, "confidence level of the medians' intervals")
			md := fs.Bool("markdown", false, "print Markdown tables")
			return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
				if len(args) != 2 {
					return Usagef("need two run directories, got %d", len(args))
				}
				if !(*alpha > 0 && *alpha < 1) {
					return Usagef("--alpha: must be in (0, 1), got %g", *alpha)
				}
				if !(*conf > 0 && *conf < 1) {
					return Usagef("--confidence: must be in (0, 1), got %g", *conf)
				}
				return report.CompareRuns(args[0], args[1], stdout, report.CompareOptions{Alpha: *alpha, Confidence: *conf, Markdown: *md})
			}
		},
	})
}
