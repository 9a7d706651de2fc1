package bench

import (
	"strconv"

	"github.com/hbench/hbench/gpu"
)

// KernelLSH is the LSH (SimHash) step (hyperplane codes, counting select).
const KernelLSH = "lsh"

func init() {
	registerKernel(kernelSpec{
		name: KernelLSH, doc: "LSH step: SimHash query codes, XOR+popcount scores, counting select, sparse decode",
		selects: true, takes: []string{"bits"},
		defaults: func(k *Kernel) {
			if k.Bits == 0 {
				k.Bits = 128
			}
		},
		check: func(k Kernel, bad func(field, format string, a ...any)) {
			if k.Bits < 1 {
				bad("bits", "must be >= 1, got %d", k.Bits)
			}
		},
		variant: func(k Kernel) string { return k.Name + "[" + k.Selection + ",bits=" + strconv.Itoa(k.Bits) + "]" },
		run:     (*runner).lsh,
	})
}

// lsh times the LSH step (query codes, counting select, sparse decode:
// stage "step"), its select alone (stage "select": query codes and
// counting select; bytes = the planes and the key codes once) and the
// query codes alone (stage "qcode"; bytes = the planes), with random
// planes (uniform in [-2, 2): the cost does not depend on their
// distribution) and the key codes of the shape's random keys, built once
// before timing (prefill). Codes are per KV head, without MIPS.
func (r *runner) lsh(sh Shape, k Kernel, sparsity float64, in gpu.DecodeInputs) error {
	c := r.c
	b := budgetOf(sh, k, sparsity)
	l, err := gpu.NewLSHStep(c, sh, k.Sel(), k.Bits, false, b)
	if err != nil {
		return err
	}
	defer l.Free(c)
	r.tuning = l.Hash.Dec.Tuning.String()
	if err := c.FillF32(l.P, r.cfg.Seed+21); err != nil {
		return err
	}
	if err := l.EnqueueKeyCodes(c, r.s, in.K); err != nil {
		return err
	}
	if err := c.SyncStream(r.s); err != nil {
		return err
	}
	if err := r.time(sh, k, sparsity, b.Total, "step", l.StepBytes(), func() error { return l.Enqueue(c, r.s, in) }); err != nil {
		return err
	}
	if err := r.timeModes(sh, k, sparsity, b.Total, "select", l.SelectBytes(), []bool{true}, func() error { return l.EnqueueSelect(c, r.s, in.Q) }); err != nil {
		return err
	}
	return r.timeModes(sh, k, sparsity, b.Total, "qcode", l.PlaneBytes(), []bool{true}, func() error { return l.EnqueueQueryCodes(c, r.s, in.Q) })
}
