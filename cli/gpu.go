package cli

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/hbench/hbench/gpu"
)

func init() {
	Register(&Command{
		Name:  "gpu",
		Short: "print the CUDA device and its measured copy bandwidth",
		Usage: "[--device N] [--copy-mib M]",
		Setup: func(fs *flag.FlagSet) func(context.Context, []string, io.Writer, io.Writer) error {
			ord := fs.Int("device", 0, "CUDA device `ordinal`")
			mib := fs.Int("copy-mib", 1024, "size of the timed device-to-device copy in `MiB`")
			return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
				if len(args) != 0 {
					return Usagef("no arguments expected")
				}
				if *mib < 1 {
					return Usagef("--copy-mib must be >= 1")
				}
				d, err := gpu.Open(*ord)
				if err != nil {
					return err
				}
				defer d.Close()
				p := d.Props
				fmt.Fprintf(stdout, "device %d: %s\n", *ord, p.Name)
				fmt.Fprintf(stdout, "  compute capability %d.%d (%s), %d SMs, %d threads/SM max\n", p.Major, p.Minor, p.Arch(), p.SMs, p.MaxThreadsPerSM)
				fmt.Fprintf(stdout, "  memory %.1f GiB, bus %d bits, L2 %.0f MiB, shared memory opt-in %d KiB/block\n",
					float64(p.MemoryBytes)/(1<<30), p.BusWidthBits, float64(p.L2Bytes)/(1<<20), p.MaxSharedOptin/1024)
				fmt.Fprintf(stdout, "  clocks: SM %d MHz, memory %d MHz (as reported by the driver; 0 = not reported)\n", p.ClockKHz/1000, p.MemClockKHz/1000)
				fmt.Fprintf(stdout, "  CUDA driver %s\n", p.DriverVersion())
				if v, path, err := gpu.NVRTCVersion(); err != nil {
					fmt.Fprintf(stdout, "  NVRTC: %v\n", err)
				} else {
					fmt.Fprintf(stdout, "  NVRTC %s (%s), CUBIN cache %s\n", v, path, gpu.CacheDir())
				}
				var bw float64
				if err := d.Do(func(c *gpu.Ctx) error {
					bw, err = c.CopyBandwidth(int64(*mib)<<20, 30)
					return err
				}); err != nil {
					return fmt.Errorf("copy bandwidth: %w", err)
				}
				fmt.Fprintf(stdout, "  device-to-device copy: %.0f GB/s (bytes read + written, median of 30 copies of %d MiB)\n", bw, *mib)
				return nil
			}
		},
	})
}
