package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/hbench/hbench/config"
	"github.com/hbench/hbench/runner"
)

// AfterRun, when set, is called with the run directory after a successful
// run (the report package renders the report there).
var AfterRun func(dir string, terminal io.Writer) error

func init() {
	Register(&Command{
		Name:  "run",
		Short: "run an experiment: selection quality of methods across budgets",
		Usage: "[flags] EXPERIMENT.yaml",
		Setup: func(fs *flag.FlagSet) func(context.Context, []string, io.Writer, io.Writer) error {
			out := fs.String("out", "results", "results `root`: the run goes to ROOT/<experiment>/<run-id>")
			runID := fs.String("run-id", "", "run directory name (default: the experiment's content hash, so a rerun resumes)")
			workers := fs.Int("workers", 0, "cells evaluated in parallel (default: number of CPUs)")
			fresh := fs.Bool("fresh", false, "discard finished cells of an earlier run of the same experiment")
			quiet := fs.Bool("quiet", false, "no progress bar")
			noReport := fs.Bool("no-report", false, "do not render the report at the end")
			device := fs.String("device", "", "evaluate on `cpu`, gpu (fails without a GPU) or auto (the GPU where one loads, else the CPU); overrides the file's device key")
			return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
				if len(args) != 1 {
					return Usagef("need exactly one experiment file")
				}
				x, err := config.Load(args[0])
				if err != nil {
					return err
				}
				if *device != "" {
					if err := x.SetDevice(*device); err != nil {
						return Usagef("--%v", err)
					}
				}
				opt := runner.Options{Root: *out, RunID: *runID, Workers: *workers, Fresh: *fresh, Log: stderr}
				if !*quiet {
					opt.Progress = stderr
				}
				start := time.Now()
				res, err := runner.Run(ctx, x, opt)
				if err != nil {
					return err
				}
				if err := PrintQualityTable(stdout, res.Cells); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "%d cells (%d already finished, skipped) in %.1fs; results in %s\n", len(res.Cells), res.Skipped, time.Since(start).Seconds(), res.Dir)
				if AfterRun != nil && !*noReport {
					if err := AfterRun(res.Dir, stdout); err != nil {
						return fmt.Errorf("report: %w", err)
					}
				}
				return nil
			}
		},
	})
	Register(&Command{
		Name:  "validate",
		Short: "check an experiment file (and load its data) without running it",
		Usage: "EXPERIMENT.yaml...",
		Setup: func(fs *flag.FlagSet) func(context.Context, []string, io.Writer, io.Writer) error {
			root := fs.String("out", "results", "results `root` (trained weights are cached under ROOT/.cache)")
			return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
				if len(args) == 0 {
					return Usagef("need at least one experiment file")
				}
				for _, a := range args {
					x, err := config.Load(a)
					if err != nil {
						return err
					}
					if _, err := runner.Load(x); err != nil {
						return err
					}
					if _, err := runner.BuildMethods(ctx, x, *root, stderr, true); err != nil {
						if !errors.Is(err, runner.ErrNotTrained) {
							return err
						}
						fmt.Fprintf(stdout, "note: %v\n", err)
					}
					fmt.Fprintf(stdout, "%s: ok: %s\n", a, x.Summary())
				}
				return nil
			}
		},
	})
}
