package gpueval

import (
	"fmt"
	"math"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/gpu"
	"github.com/hbench/hbench/metrics"
)

// Reference returns the exact attention of query head h (index into
// g.Q) at position t over keys 0..t, as metrics.NewReference computes it
// on the CPU, with the logits and the dense output computed on the GPU in
// float64 (kernels/ref.cu) from g's uploaded fp16 K and V: on the same
// data it matches the CPU to the rounding of summation order. kmax is the
// largest budget Recall will be asked for.
func (ev *Evaluator) Reference(g *attn.Group, h, t, kmax int) (*metrics.Reference, error) {
	s, err := ev.group(g)
	if err != nil {
		return nil, err
	}
	n, d := t+1, g.D()
	if d > 1024 {
		return nil, fmt.Errorf("gpueval: head dimension %d above 1024", d)
	}
	logits := make([]float64, n)
	var lb gpu.Buffer
	err = ev.Dev.Do(func(c *gpu.Ctx) error {
		qb, err := gpu.Upload(c, g.Q[h].Row(t))
		if err != nil {
			return err
		}
		defer c.Free(qb)
		if lb, err = c.Alloc(int64(n) * 8); err != nil {
			return err
		}
		blocks, chunk := gpu.ChunkPlan(n, (n+2047)/2048, 1, 1)
		if err := c.Launch(ev.logits, gpu.Dim3{X: uint32(blocks)}, gpu.Dim3{X: refThreads}, 0, 0, qb, s.K, n, d, chunk, g.Scale, lb); err != nil {
			return err
		}
		if err := c.Sync(); err != nil {
			return err
		}
		return gpu.Download(c, logits, lb)
	})
	if err != nil {
		ev.Dev.Do(func(c *gpu.Ctx) error { return c.Free(lb) })
		return nil, fmt.Errorf("gpueval: reference logits: %w", err)
	}
	lse := metrics.LogSumExp(logits)
	out := make([]float64, d)
	err = ev.Dev.Do(func(c *gpu.Ctx) error {
		defer c.Free(lb)
		ob, err := c.Alloc(int64(d) * 8)
		if err != nil {
			return err
		}
		defer c.Free(ob)
		if err := c.Fill32(ob, 0, 0); err != nil {
			return err
		}
		blocks, chunk := gpu.ChunkPlan(n, (n+1023)/1024, 1, 1)
		if err := c.Launch(ev.output, gpu.Dim3{X: uint32(blocks)}, gpu.Dim3{X: uint32(d)}, 0, 0, lb, s.V, n, d, chunk, int64(math.Float64bits(lse)), ob); err != nil {
			return err
		}
		if err := c.Sync(); err != nil {
			return err
		}
		return gpu.Download(c, out, ob)
	})
	if err != nil {
		return nil, fmt.Errorf("gpueval: reference output: %w", err)
	}
	return metrics.NewReferenceFrom(logits, out, g.V, kmax)
}
