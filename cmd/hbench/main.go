// Command hbench evaluates decode-time sparse attention: which keys each
// method selects, how much of the true attention it keeps, and how fast its
// GPU kernels run. See the README for the commands.
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/hbench/hbench/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
