package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hbench/hbench/workloads"
)

func init() {
	Register(&Command{
		Name:  "cut",
		Short: "write a smaller capture: the first N positions, some KV heads",
		Usage: "[--tokens N] [--kv-heads 0,1] [--dtype F16] --out DIR FILE...",
		Setup: func(fs *flag.FlagSet) func(context.Context, []string, io.Writer, io.Writer) error {
			tokens := fs.Int("tokens", 2048, "keep the first `N` positions")
			heads := fs.String("kv-heads", "", "comma-separated KV heads to keep, with their query heads (default all)")
			dtype := fs.String("dtype", "F16", "output dtype: F16, BF16 or F32")
			out := fs.String("out", "", "output `directory` (file names are kept)")
			return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
				if *out == "" || len(args) == 0 {
					return Usagef("need --out and at least one capture file")
				}
				var kv []int
				if *heads != "" {
					for _, s := range strings.Split(*heads, ",") {
						n, err := strconv.Atoi(strings.TrimSpace(s))
						if err != nil {
							return Usagef("--kv-heads: %q is not an integer", s)
						}
						kv = append(kv, n)
					}
				}
				if err := os.MkdirAll(*out, 0o755); err != nil {
					return err
				}
				for _, in := range args {
					c, err := workloads.ReadCapture(in)
					if err != nil {
						return err
					}
					cut, err := c.Cut(*tokens, kv)
					if err != nil {
						return err
					}
					dst := filepath.Join(*out, filepath.Base(in))
					if err := cut.Write(dst, *dtype); err != nil {
						return fmt.Errorf("write %s: %w", dst, err)
					}
					fmt.Fprintf(stdout, "%s: layer %d, %d query heads, %d KV heads, %d positions\n", dst, cut.Layer, cut.Heads, cut.KVHeads, cut.T)
				}
				return nil
			}
		},
	})
}
