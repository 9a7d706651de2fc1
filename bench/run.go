package bench

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hbench/hbench/gpu"
	"github.com/hbench/hbench/resultfmt"
)

// Options control where a run writes and what it prints.
type Options struct {
	// Root is the results root; the run goes to Root/<name>/<RunID>.
	Root string
	// RunID names the run directory (default: UTC start time).
	RunID string
	// ConfigPath and Raw are the bench file and its bytes (manifest).
	ConfigPath string
	Raw        []byte
	// Commit overrides the build's VCS revision in the manifest.
	Commit string
	// Log receives one progress line per cell (nil: none).
	Log io.Writer
}

// Result is a finished run.
type Result struct {
	Dir      string
	Manifest *resultfmt.Manifest
	Cells    []*resultfmt.Cell
}

// Shape is one point of the sweep's shape axes.
type Shape = gpu.Shape

// Shapes expands the config's shape axes in file order (context
// outermost, so one allocation serves all kernels of a shape).
func (c *Config) Shapes() []Shape {
	var out []Shape
	for _, n := range c.Contexts {
		for _, b := range c.Batch {
			for _, h := range c.Heads {
				for _, kv := range c.KVHeads {
					for _, d := range c.HeadDim {
						for _, dt := range c.DType {
							out = append(out, Shape{Batch: b, Heads: h, KVHeads: kv, HeadDim: d, Context: n, DType: dt})
						}
					}
				}
			}
		}
	}
	return out
}

// Run measures the copy-bandwidth ceiling, then every cell, appending
// each cell to cells.jsonl as it finishes; it then writes summary.csv and
// the finished manifest.
func Run(dev *gpu.Device, cfg *Config, opt Options) (*Result, error) {
	start := time.Now().UTC()
	runID := opt.RunID
	if runID == "" {
		runID = start.Format("20060102T150405Z")
	}
	root := opt.Root
	if root == "" {
		root = "results"
	}
	dir := filepath.Join(root, cfg.Name, runID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	nv, _, _ := gpu.NVRTCVersion()
	p := dev.Props
	sum := sha256.Sum256(opt.Raw)
	var raw any
	yaml.Unmarshal(opt.Raw, &raw)
	m := &resultfmt.Manifest{
		Experiment: cfg.Name, RunID: runID, ConfigPath: opt.ConfigPath, ConfigHash: hex.EncodeToString(sum[:]),
		Config: raw, Commit: opt.Commit, GoVersion: runtime.Version(), Started: start,
		Host: resultfmt.ThisHost(1),
		GPU: &resultfmt.GPU{Name: p.Name, ComputeCapability: fmt.Sprintf("%d.%d", p.Major, p.Minor), Driver: p.DriverVersion(),
			NVRTC: nv, SMs: p.SMs, L2Bytes: p.L2Bytes, MemoryBytes: p.MemoryBytes},
	}
	if m.Commit == "" {
		m.Commit = resultfmt.Commit(".")
	}
	w, err := resultfmt.OpenCellWriter(dir)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	res := &Result{Dir: dir, Manifest: m}
	err = dev.Do(func(c *gpu.Ctx) error {
		ceil, err := c.CopyBandwidth(1<<30, 30)
		if err != nil {
			return fmt.Errorf("copy-bandwidth ceiling: %w", err)
		}
		m.GPU.CopyGBps = ceil
		if opt.Log != nil {
			fmt.Fprintf(opt.Log, "%s: copy bandwidth %.0f GB/s (read+write)\n", p, ceil)
		}
		if err := resultfmt.WriteManifest(dir, m); err != nil {
			return err
		}
		r := &runner{c: c, cfg: cfg, ceil: ceil, opt: opt, w: w, res: res}
		flush, err := c.FlushBuffer()
		if err != nil {
			return err
		}
		defer c.Free(flush)
		r.flush = flush
		if r.s, err = c.NewStream(); err != nil {
			return err
		}
		defer c.DestroyStream(r.s)
		for i, sh := range cfg.Shapes() {
			if err := r.shape(sh, cfg.Seed+uint64(i)*1000); err != nil {
				return fmt.Errorf("shape %+v: %w", sh, err)
			}
		}
		return nil
	})
	m.Finished = time.Now().UTC()
	m.Cells = len(res.Cells)
	if werr := resultfmt.WriteManifest(dir, m); err == nil {
		err = werr
	}
	if serr := resultfmt.WriteSummary(dir, res.Cells); err == nil {
		err = serr
	}
	return res, err
}

type runner struct {
	c     *gpu.Ctx
	cfg   *Config
	ceil  float64
	opt   Options
	w     *resultfmt.CellWriter
	res   *Result
	flush gpu.Buffer
	s     gpu.Stream
	// tuning is the decode kernel tuning of the cells being timed.
	tuning string
}

// shape allocates random inputs for one shape and times every kernel on
// them.
func (r *runner) shape(sh Shape, seed uint64) error {
	c := r.c
	if err := sh.Validate(); err != nil {
		return err
	}
	var in gpu.DecodeInputs
	var err error
	if in.Q, err = c.Alloc(int64(sh.Batch*sh.Heads*sh.HeadDim) * 4); err != nil {
		return err
	}
	defer c.Free(in.Q)
	kv := sh.KVBytes() / 2
	if in.K, err = c.Alloc(kv); err != nil {
		return err
	}
	defer c.Free(in.K)
	if in.V, err = c.Alloc(kv); err != nil {
		return err
	}
	defer c.Free(in.V)
	for i, f := range []func() error{
		func() error { return c.FillF32(in.Q, seed+1) },
		func() error { return c.Fill16(in.K, sh.DType, seed+2) },
		func() error { return c.Fill16(in.V, sh.DType, seed+3) },
	} {
		if err := f(); err != nil {
			return fmt.Errorf("fill input %d: %w", i, err)
		}
	}
	for _, k := range r.cfg.Kernels {
		spec := kernelSpecs[k.Name]
		if spec.plain {
			if err := spec.run(r, sh, k, 0, in); err != nil {
				return err
			}
			continue
		}
		for _, sp := range k.Sparsity {
			if err := spec.run(r, sh, k, sp, in); err != nil {
				return err
			}
		}
	}
	return nil
}

// time measures enqueue in every cache × graph mode and records cells.
func (r *runner) time(sh Shape, k Kernel, sparsity float64, n int, stage string, bytes int64, enqueue func() error) error {
	return r.timeModes(sh, k, sparsity, n, stage, bytes, r.cfg.Graph, enqueue)
}

func (r *runner) timeModes(sh Shape, k Kernel, sparsity float64, n int, stage string, bytes int64, graphs []bool, enqueue func() error) error {
	for _, cache := range r.cfg.Cache {
		for _, graph := range graphs {
			t0 := time.Now()
			us, err := r.c.Time(r.s, gpu.TimeOpts{Warmup: r.cfg.Warmup, Repeats: r.cfg.Repeats, Cold: cache != CacheWarm, Clean: cache == CacheColdClean, Graph: graph, Flush: r.flush}, enqueue)
			if err != nil {
				return fmt.Errorf("%s: %w", k.Variant(), err)
			}
			med, p25, p75 := gpu.Quantiles(us)
			gbps := float64(bytes) / (med * 1e-6) / 1e9
			cell := &resultfmt.Cell{
				ID:   fmt.Sprintf("%s/%s/s%g/N%d/b%d/h%dx%d/d%d/%s/%s/graph=%v", k.Variant(), stage, sparsity, sh.Context, sh.Batch, sh.Heads, sh.KVHeads, sh.HeadDim, sh.DType, cache, graph),
				Kind: resultfmt.KindLatency, Workload: "random", Method: k.Name, Variant: k.Variant(),
				Sparsity: sparsity, Shared: k.Sel() == gpu.PerKVHead,
				Latency: &resultfmt.Latency{
					Stage: stage, Context: sh.Context, Batch: sh.Batch, Heads: sh.Heads, KVHeads: sh.KVHeads, HeadDim: sh.HeadDim,
					DType: sh.DType, Cache: cache, Graph: graph, SamplesUS: us, MedianUS: med, P25US: p25, P75US: p75,
					Bytes: bytes, GBps: gbps, CeilingGBps: r.ceil, FracCeiling: gbps / r.ceil,
				},
				Seconds: time.Since(t0).Seconds(),
			}
			cell.Params = map[string]any{"decode_tuning": r.tuning, "pdl": r.c.PDL()}
			if n > 0 {
				cell.Params["k"] = n
			}
			for name, v := range map[string]int{"bits": k.Bits, "page": k.Page, "channels": k.Channels} {
				if v != 0 {
					cell.Params[name] = v
				}
			}
			if k.Codes != "" {
				cell.Params["codes"] = k.Codes
			}
			if k.selects() {
				cell.Sink, cell.Local = k.Sink, k.Local
			}
			if err := r.w.Append(cell); err != nil {
				return err
			}
			r.res.Cells = append(r.res.Cells, cell)
			if r.opt.Log != nil {
				fmt.Fprintf(r.opt.Log, "%-40s %-6s N=%-8d %s graph=%-5v %9.1f us  [%.1f, %.1f]  %6.0f GB/s  %5.1f%%\n",
					k.Variant(), stage, sh.Context, cache, graph, med, p25, p75, gbps, 100*gbps/r.ceil)
			}
		}
	}
	return nil
}
