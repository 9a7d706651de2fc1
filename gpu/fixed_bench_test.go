package gpu

import (
	"fmt"
	"os"
	"slices"
	"strings"
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
	res := map[string]float64{}
	err := d.Do(func(c *Ctx) error {
		g, free, err := newGatherCase(c)
		defer free()
		if err != nil {
			return err
		}
		s, k, in, out, dec, flush, st := g.s, g.k, g.in, g.out, g.dec, g.flush, g.st
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

// BenchmarkGatherPhases times the tensor-core gather's phases from its
// in-kernel %globaltimer stamps (HBENCH_DECODE=trace=1, set here for it):
// 32 query / 8 KV heads, d 128, bf16, one list per KV head of k = N/32
// random positions (one per stride), the gather launched alone after an
// L2 flush (coldCalls). For each point of DecodeTracePoints, the start
// included, it reports the median over calls of the median over warps of
// (the warp's stamp - the grid's first start), in µs, and NAME-max-us the
// same for the latest warp. HBENCH_TRACE_FLUSH and HBENCH_TRACE_PRE choose
// what the call finds in L2 and in the SMs' instruction caches
// (diagnostics).
func BenchmarkGatherPhases(b *testing.B) {
	d := device(b)
	b.Setenv("HBENCH_DECODE", strings.TrimPrefix(os.Getenv("HBENCH_DECODE")+",trace=1", ","))
	names := [DecodeTracePoints]string{"start", "issued", "first", "lasttile", "computed", "partials", "counted", "merged", "loaded", "synced"}
	for _, n := range []int{4 << 10, 256 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			s := Shape{1, 32, 8, 128, n, BF16}
			k := n / 32
			var per, most [DecodeTracePoints][]float64
			err := d.Do(func(c *Ctx) error {
				in, free, err := deviceInputs(c, s, k)
				defer free()
				if err != nil {
					return err
				}
				dec, err := NewDecoder(c, s, PerKVHead, k)
				if err != nil {
					return err
				}
				defer dec.Free(c)
				// diagnostics of the start (HBENCH_TRACE_PRE): "data" reads
				// q and the lists back into L2 after the flush; "code" runs
				// the same decoder on inputs of its own before the flush, so
				// that the SMs' instruction caches hold its code while L2
				// holds neither its code nor its data
				pre := func() error { return nil }
				before := func() error { return nil }
				switch os.Getenv("HBENCH_TRACE_PRE") {
				case "data":
					pre = func() error {
						if err := c.EnqueueRead(in.Q, 0); err != nil {
							return err
						}
						return c.EnqueueRead(in.Idx, 0)
					}
				case "code":
					oin, ofree, err := deviceInputs(c, s, k)
					defer ofree()
					if err != nil {
						return err
					}
					before = func() error {
						if err := dec.Enqueue(c, 0, oin); err != nil {
							return err
						}
						return c.Sync()
					}
				}
				if err := before(); err != nil {
					return err
				}
				return coldCalls(c, b, func() error {
					if err := pre(); err != nil {
						return err
					}
					return dec.Enqueue(c, 0, in)
				}, func() error {
					tr, err := dec.Trace(c)
					if err != nil {
						return err
					}
					if err := before(); err != nil {
						return err
					}
					if dump := os.Getenv("HBENCH_TRACE_DUMP"); dump != "" { // diagnostic: the raw stamps of the last call
						var sb strings.Builder
						for i, blk := range tr {
							for j, w := range blk {
								fmt.Fprintln(&sb, i, j, w)
							}
						}
						if err := os.WriteFile(fmt.Sprintf("%s-%d.txt", dump, n), []byte(sb.String()), 0o644); err != nil {
							return err
						}
					}
					t0 := uint64(0)
					for _, blk := range tr {
						for _, w := range blk {
							if w[0] != 0 && (t0 == 0 || w[0] < t0) {
								t0 = w[0]
							}
						}
					}
					for p := range DecodeTracePoints {
						var v []float64
						for _, blk := range tr {
							for _, w := range blk {
								if w[p] != 0 {
									v = append(v, float64(w[p]-t0)/1e3)
								}
							}
						}
						if len(v) == 0 {
							continue
						}
						m, _, _ := Quantiles(v)
						per[p] = append(per[p], m)
						most[p] = append(most[p], slices.Max(v))
					}
					return nil
				})
			})
			if err != nil {
				b.Fatal(err)
			}
			for p, name := range names {
				if len(per[p]) == 0 {
					continue
				}
				m, _, _ := Quantiles(per[p])
				b.ReportMetric(m, name+"-us")
				m, _, _ = Quantiles(most[p])
				b.ReportMetric(m, name+"-max-us")
			}
		})
	}
}

// gatherCase is the 256K gather per KV head that the fixed-cost
// benchmarks time (32/8 heads, d 128, bf16, k = N/32): its inputs, a
// 4-byte output for the row reader, its decoder, a flush buffer and a
// stream (the legacy stream cannot be captured in a graph).
type gatherCase struct {
	s     Shape
	k     int
	in    DecodeInputs
	out   Buffer
	dec   *Decoder
	flush Buffer
	st    Stream
}

// newGatherCase allocates a gatherCase; free releases what it holds, also
// after an error.
func newGatherCase(c *Ctx) (g *gatherCase, free func(), err error) {
	g = &gatherCase{s: Shape{1, 32, 8, 128, 256 << 10, BF16}}
	g.k = g.s.Context / 32
	var undo []func()
	free = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	in, freeIn, err := deviceInputs(c, g.s, g.k)
	undo = append(undo, freeIn)
	if err != nil {
		return nil, free, err
	}
	g.in = in
	if g.out, err = c.Alloc(4); err != nil {
		return nil, free, err
	}
	undo = append(undo, func() { c.Free(g.out) })
	if g.dec, err = NewDecoder(c, g.s, PerKVHead, g.k); err != nil {
		return nil, free, err
	}
	undo = append(undo, func() { g.dec.Free(c) })
	if g.flush, err = c.FlushBuffer(); err != nil {
		return nil, free, err
	}
	undo = append(undo, func() { c.Free(g.flush) })
	if g.st, err = c.NewStream(); err != nil {
		return nil, free, err
	}
	undo = append(undo, func() { c.DestroyStream(g.st) })
	return g, free, nil
}

// deviceInputs allocates random device inputs of a gather decode: q, K, V
// filled on the device, and one list per KV head of k positions, one per
// stride of N/k (ascending, distinct).
func deviceInputs(c *Ctx, s Shape, k int) (DecodeInputs, func(), error) {
	var in DecodeInputs
	var bufs []Buffer
	free := func() {
		for _, b := range bufs {
			c.Free(b)
		}
	}
	for _, a := range []struct {
		dst  *Buffer
		size int64
	}{
		{&in.Q, int64(s.Batch*s.Heads*s.HeadDim) * 4},
		{&in.K, s.KVBytes() / 2},
		{&in.V, s.KVBytes() / 2},
		{&in.Idx, int64(s.Batch*s.Lists(PerKVHead)*k) * 4},
	} {
		buf, err := c.Alloc(a.size)
		if err != nil {
			return in, free, err
		}
		bufs = append(bufs, buf)
		*a.dst = buf
	}
	for i, f := range []func() error{
		func() error { return c.FillF32(in.Q, 1) },
		func() error { return c.Fill16(in.K, s.DType, 2) },
		func() error { return c.Fill16(in.V, s.DType, 3) },
		func() error { return c.FillStrideLists(in.Idx, s.Batch*s.Lists(PerKVHead), k, s.Context, 4) },
	} {
		if err := f(); err != nil {
			return in, free, fmt.Errorf("fill %d: %w", i, err)
		}
	}
	return in, free, nil
}

// coldCalls runs b.N calls of enqueue on the legacy stream, each after an
// L2 flush by reads (HBENCH_TRACE_FLUSH=write: by writes; =none: no
// flush), and calls after once each call has finished (to read its
// in-kernel trace). The benchmark timer starts here.
func coldCalls(c *Ctx, b *testing.B, enqueue, after func() error) error {
	flush, err := c.FlushBuffer()
	if err != nil {
		return err
	}
	defer c.Free(flush)
	mode := os.Getenv("HBENCH_TRACE_FLUSH") // diagnostics: write (the cold protocol's dirty L2) or none
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if mode == "none" {
			// the call finds its code and data where the last call left them
		} else if err := c.FlushL2(flush, mode != "write", uint32(i), 0); err != nil {
			return err
		}
		if err := enqueue(); err != nil {
			return err
		}
		if err := c.Sync(); err != nil {
			return err
		}
		if err := after(); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkFlushSettle asks what the cold protocols charge to the timed
// call for the flush's own traffic: the empty call, the 256K gather per
// KV head (32/8 heads, d 128, bf16, k = N/32), its plain row reader, and
// a sequential read of as many bytes (32 MiB in one buffer: what any
// reader of those bytes needs at least), timed as in hbench bench (graph,
// 60 calls after a write or read flush) with the GPU left idle for 0-50
// µs between the flush and the timed call (TimeOpts.Settle). Metrics:
// medians in µs, NAME-FLUSH-SETTLE-us.
func BenchmarkFlushSettle(b *testing.B) {
	d := device(b)
	res := map[string]float64{}
	err := d.Do(func(c *Ctx) error {
		g, free, err := newGatherCase(c)
		defer free()
		if err != nil {
			return err
		}
		s, k, in, out, dec, flush, st := g.s, g.k, g.in, g.out, g.dec, g.flush, g.st
		seq, err := c.Alloc(int64(s.KVHeads*k) * 2 * int64(s.HeadDim) * 2) // the K and V rows' bytes
		if err != nil {
			return err
		}
		defer c.Free(seq)
		if err := c.FillU32(seq, 7); err != nil {
			return err
		}
		wide, err := c.utilFunc("read_wide")
		if err != nil {
			return err
		}
		calls := []struct {
			name string
			f    func() error
		}{
			{"noop", func() error { return c.EnqueueNoop(st) }},
			{"gather", func() error { return dec.Enqueue(c, st, in) }},
			{"rows", func() error { return c.EnqueueGatherRows(st, s, PerKVHead, k, in.K, in.V, in.Idx, out) }},
			{"seqread", func() error {
				return c.Launch(wide, Dim3{X: uint32(c.d.Props.SMs * 4)}, Dim3{X: 256}, 0, st, seq, seq.Size/16, uintptr(0))
			}},
		}
		for _, clean := range []bool{false, true} {
			for _, settle := range []float64{0, 2, 10, 50} {
				for _, cl := range calls {
					us, err := c.Time(st, TimeOpts{Warmup: 10, Repeats: 60, Cold: true, Clean: clean, Graph: true, Flush: flush, Settle: settle}, cl.f)
					if err != nil {
						return err
					}
					m, _, _ := Quantiles(us)
					fl := "write"
					if clean {
						fl = "read"
					}
					name := fmt.Sprintf("%s-%s-%g", cl.name, fl, settle)
					b.Logf("%s %.2f us", name, m)
					res[name] = m
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	for name, us := range res {
		b.ReportMetric(us, name+"-us")
	}
}
