package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/hbench/hbench/bench"
	"github.com/hbench/hbench/gpu"
)

func init() {
	Register(&Command{
		Name:  "bench",
		Short: "time the GPU decode kernels over a sweep (latency cells)",
		Usage: "[--out ROOT] [--run-id ID] [--check] FILE.yaml",
		Long:  func() string { return "Kernels (a bench file's kernels[i].name):\n" + bench.KernelDocs() },
		Setup: func(fs *flag.FlagSet) func(context.Context, []string, io.Writer, io.Writer) error {
			out := fs.String("out", "results", "results `root`: the run goes to ROOT/<name>/<run-id>")
			runID := fs.String("run-id", "", "run directory name (default: the UTC start time)")
			check := fs.Bool("check", false, "only load and validate the file")
			ord := fs.Int("device", 0, "CUDA device `ordinal`")
			commit := fs.String("commit", "", "source revision for the manifest (default: the build's VCS stamp)")
			return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
				if len(args) != 1 {
					return Usagef("need exactly one bench file")
				}
				cfg, raw, err := bench.Load(args[0])
				if err != nil {
					return err
				}
				if *check {
					fmt.Fprintf(stdout, "%s: ok: %d shapes × %d kernels\n", args[0], len(cfg.Shapes()), len(cfg.Kernels))
					return nil
				}
				d, err := gpu.Open(*ord)
				if err != nil {
					return err
				}
				defer d.Close()
				start := time.Now()
				res, err := bench.Run(d, cfg, bench.Options{Root: *out, RunID: *runID, ConfigPath: args[0], Raw: raw, Commit: *commit, Log: stderr})
				if res != nil && len(res.Cells) > 0 {
					if terr := bench.PrintTable(stdout, res.Cells); err == nil {
						err = terr
					}
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "%d cells in %.1fs; results in %s\n", len(res.Cells), time.Since(start).Seconds(), res.Dir)
				if AfterRun != nil {
					if err := AfterRun(res.Dir, stdout); err != nil {
						return fmt.Errorf("report: %w", err)
					}
				}
				return nil
			}
		},
	})
}
