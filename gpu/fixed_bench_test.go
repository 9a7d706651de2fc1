package gpu

import (
	"testing"
)

// BenchmarkColdFixedCost looks for what a short cold-clean call pays
// beyond its bytes (issue 6: the 256K gather is its byte floor plus a
// constant): an empty kernel of one block; an empty kernel of the
// gather's grid holding the gather's 192 KiB of shared memory per block;
// the gather decode and the plain row reader at 256K (32/8 heads, d 128,
// bf16, one list per KV head, k = N/32). Each is timed as in hbench bench
// (graph, L2 flushed by reading before each call, 60 calls) twice: with
// the flush kernel's shared-memory carveout left to the driver, and with
// it preferring the largest carveout (so that no SM changes its L1/shared
// split between the flush and the timed call). Metrics: medians in µs,
// NAME-us for the driver's carveout, NAME-max-us for the largest.
func BenchmarkColdFixedCost(b *testing.B) {
	d := device(b)
	s := Shape{1, 32, 8, 128, 256 << 10, BF16}
	k := s.Context / 32
	res := map[string]float64{}
	err := d.Do(func(c *Ctx) error {
		in := DecodeInputs{}
		var err error
		if in.Q, err = c.Alloc(int64(s.Heads*s.HeadDim) * 4); err != nil {
			return err
		}
		defer c.Free(in.Q)
		if in.K, err = c.Alloc(s.KVBytes() / 2); err != nil {
			return err
		}
		defer c.Free(in.K)
		if in.V, err = c.Alloc(s.KVBytes() / 2); err != nil {
			return err
		}
		defer c.Free(in.V)
		if in.Idx, err = c.Alloc(int64(s.Lists(PerKVHead)*k) * 4); err != nil {
			return err
		}
		defer c.Free(in.Idx)
		out, err := c.Alloc(4)
		if err != nil {
			return err
		}
		defer c.Free(out)
		for i, f := range []func() error{
			func() error { return c.FillF32(in.Q, 1) },
			func() error { return c.Fill16(in.K, s.DType, 2) },
			func() error { return c.Fill16(in.V, s.DType, 3) },
			func() error { return c.FillStrideLists(in.Idx, s.Lists(PerKVHead), k, s.Context, 4) },
		} {
			if err := f(); err != nil {
				b.Fatalf("fill %d: %v", i, err)
			}
		}
		dec, err := NewDecoder(c, s, PerKVHead, k)
		if err != nil {
			return err
		}
		defer dec.Free(c)
		// a second copy of util.cu (its own module), so that its noop may
		// take the decoder's shared memory without changing the plain noop
		m, err := c.module("util.cu", utilSrc, map[string]string{"HBENCH_WIDE_NOOP": "1"})
		if err != nil {
			return err
		}
		wide, err := c.Func(m, "noop")
		if err != nil {
			return err
		}
		if err := c.SetMaxDynamicSmem(wide, dec.Smem); err != nil {
			return err
		}
		fl, err := c.utilFunc("flush_read")
		if err != nil {
			return err
		}
		flush, err := c.FlushBuffer()
		if err != nil {
			return err
		}
		defer c.Free(flush)
		st, err := c.NewStream() // the legacy stream cannot be captured in a graph
		if err != nil {
			return err
		}
		defer c.DestroyStream(st)
		grid := Dim3{uint32(dec.Splits), uint32(s.Heads / dec.group), 1}
		calls := []struct {
			name string
			f    func() error
		}{
			{"noop", func() error { return c.EnqueueNoop(st) }},
			{"noop192K", func() error { return c.Launch(wide, grid, Dim3{X: uint32(dec.Threads)}, uint32(dec.Smem), st) }},
			{"gather", func() error { return dec.Enqueue(c, st, in) }},
			{"rows", func() error { return c.EnqueueGatherRows(st, s, PerKVHead, k, in.K, in.V, in.Idx, out) }},
		}
		const carveout = 9 // CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT
		for _, cv := range []struct {
			suffix string
			pct    int32
		}{{"", -1}, {"-max", 100}, {"", -1}, {"-max", 100}} {
			if err := cuErr("cuFuncSetAttribute", cu.FuncSetAttribute(fl.h, carveout, cv.pct)); err != nil {
				return err
			}
			for _, cl := range calls {
				us, err := c.Time(st, TimeOpts{Warmup: 10, Repeats: 60, Cold: true, Clean: true, Graph: true, Flush: flush}, cl.f)
				if err != nil {
					return err
				}
				m, _, _ := Quantiles(us)
				b.Logf("%s%s %.2f us", cl.name, cv.suffix, m)
				res[cl.name+cv.suffix] = m // the second round's
			}
		}
		return cuErr("cuFuncSetAttribute", cu.FuncSetAttribute(fl.h, carveout, -1))
	})
	if err != nil {
		b.Fatal(err)
	}
	for name, us := range res {
		b.ReportMetric(us, name+"-us")
	}
}
