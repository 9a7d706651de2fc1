package gpu

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/hbench/hbench/budget"
)

// BenchmarkHashSelectPhases times the fused counting select's phases from
// its in-kernel %globaltimer stamps (HBENCH_HASH=trace=1, set here for
// it): random codes, 32 query / 8 KV heads, sparsity 32 (sink 4, local
// 32), shape (b) (a list and a code per KV head) at 128K and 1M keys and
// (c) (a list and a code per query head) at 1M, L2 flushed by reads
// before each call, the select launched alone. For each point of
// HashTracePoints after the entry it reports the median over calls of the
// median over blocks of (the block's stamp - the grid's first entry), in
// µs, with NAME-max-us the same for the latest block at that point,
// last-us, the latest block's end, and the select's registers per thread
// and blocks per list.
func BenchmarkHashSelectPhases(b *testing.B) {
	d := device(b)
	old := hashTuning
	defer func() { hashTuning = old }()
	hashTuning.trace = 1
	names := [HashTracePoints - 1]string{"wait", "query", "scored", "published", "barrier", "threshold", "bases", "done"}
	for _, bc := range []struct {
		name      string
		sel       Selection
		codeHeads int
		n         int
	}{
		{"b-128K", PerKVHead, 8, 128 << 10},
		{"b-1M", PerKVHead, 8, 1 << 20},
		{"c-1M", PerHead, 32, 1 << 20},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := Shape{1, 32, 8, 128, bc.n, BF16}
			bud := budget.Spec{Sparsity: 32, Sink: 4, Local: 32}.Resolve(s.Context)
			rng := rand.New(rand.NewPCG(7, uint64(bc.n)))
			var per [HashTracePoints][]float64      // per point after the entry, then the last end
			var most [HashTracePoints - 1][]float64 // per point after the entry: the latest block
			var regs, blocks int
			err := d.Do(func(c *Ctx) error {
				h, err := NewHashStep(c, s, bc.sel, 32, bc.codeHeads, bud)
				if err != nil {
					return err
				}
				defer h.Free(c)
				if !h.Fused {
					return fmt.Errorf("%s: the fused select does not fit", bc.name)
				}
				regs, blocks = h.fused.Regs, h.FusedBlocks
				kc := make([]uint32, h.KeyCodeBytes()/4)
				for i := range kc {
					kc[i] = rng.Uint32()
				}
				kcb, err := Upload(c, kc)
				if err != nil {
					return err
				}
				defer c.Free(kcb)
				qc := make([]uint32, s.Batch*s.Heads)
				for i := range qc {
					qc[i] = rng.Uint32()
				}
				if err := CopyTo(c, h.QC, qc); err != nil {
					return err
				}
				return coldCalls(c, b, func() error { return h.EnqueueSelectCodes(c, 0, kcb) }, func() error {
					tr, err := h.SelectTrace(c)
					if err != nil {
						return err
					}
					t0, last := tr[0][0], tr[0][HashTracePoints-1]
					for _, r := range tr {
						t0, last = min(t0, r[0]), max(last, r[HashTracePoints-1])
					}
					v := make([]float64, len(tr))
					for p := 1; p < HashTracePoints; p++ {
						for j, r := range tr {
							v[j] = float64(r[p]-t0) / 1e3
						}
						m, _, _ := Quantiles(v)
						per[p-1] = append(per[p-1], m)
						most[p-1] = append(most[p-1], slices.Max(v))
					}
					per[HashTracePoints-1] = append(per[HashTracePoints-1], float64(last-t0)/1e3)
					return nil
				})
			})
			if err != nil {
				b.Fatal(err)
			}
			for p, name := range names {
				m, _, _ := Quantiles(per[p])
				b.ReportMetric(m, name+"-us")
				m, _, _ = Quantiles(most[p])
				b.ReportMetric(m, name+"-max-us")
			}
			m, _, _ := Quantiles(per[HashTracePoints-1])
			b.ReportMetric(m, "last-us")
			b.ReportMetric(float64(regs), "regs")
			b.ReportMetric(float64(blocks), "blocks/list")
		})
	}
}
