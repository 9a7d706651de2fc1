package bench

import (
	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/gpu"
)

func init() {
	registerKernel(kernelSpec{
		name: KernelHash, doc: "HashAttention step: query MLP codes, XOR+popcount scores, counting select, sparse decode",
		selects: true, takes: []string{"bits", "codes"},
		defaults: func(k *Kernel) {
			if k.Bits == 0 {
				k.Bits = 32
			}
			if k.Codes == "" {
				k.Codes = "per-head"
			}
		},
		check: func(k Kernel, bad func(field, format string, a ...any)) {
			if k.Codes != "per-head" && k.Codes != "per-kv-head" {
				bad("codes", "must be per-head or per-kv-head, got %q", k.Codes)
			}
			if k.Bits < 32 || k.Bits%32 != 0 {
				bad("bits", "must be a positive multiple of 32, got %d", k.Bits)
			}
		},
		variant: func(k Kernel) string { return k.Name + "[" + k.Selection + ",codes=" + k.Codes + "]" },
		run:     (*runner).hash,
	})
}

// hash times the HashAttention step (query codes, counting select, sparse
// decode: stage "step"), its select alone (stage "select": query codes and
// counting select; bytes = two reads of the key codes), two plain reads of
// the key codes (stage "reads") and the query MLP alone (stage "qcode";
// bytes = the query maps), on random
// key codes and random query maps. The key codes are random words rather
// than the key MLP's output: the step's cost does not depend on their
// values beyond the score histogram, which random codes make binomial.
func (r *runner) hash(sh Shape, k Kernel, sparsity float64, in gpu.DecodeInputs) error {
	c := r.c
	sel := k.Sel()
	codeHeads := sh.Heads
	if k.Codes == "per-kv-head" {
		codeHeads = sh.KVHeads
	}
	b := budget.Spec{Sparsity: sparsity, Sink: k.Sink, Local: k.Local}.Resolve(sh.Context)
	h, err := gpu.NewHashStep(c, sh, sel, k.Bits, codeHeads, b)
	if err != nil {
		return err
	}
	defer h.Free(c)
	r.tuning = h.Dec.Tuning.String() + ";hash:" + gpu.HashTuningString()
	kc, err := c.Alloc(h.KeyCodeBytes())
	if err != nil {
		return err
	}
	defer c.Free(kc)
	qw, err := c.Alloc(int64(sh.Heads) * int64(h.MapFloats()) * 4)
	if err != nil {
		return err
	}
	defer c.Free(qw)
	if err := c.FillU32(kc, r.cfg.Seed+11); err != nil {
		return err
	}
	if err := c.FillF32(qw, r.cfg.Seed+12); err != nil {
		return err
	}
	if err := r.time(sh, k, sparsity, b.Total, "step", h.StepBytes(), func() error { return h.Enqueue(c, r.s, in, qw, kc) }); err != nil {
		return err
	}
	if err := r.timeModes(sh, k, sparsity, b.Total, "select", 2*h.SelectBytes(), []bool{true}, func() error { return h.EnqueueSelect(c, r.s, in.Q, qw, kc) }); err != nil {
		return err
	}
	// two plain reads of the key codes: the measured reference of the
	// select (a counting select needs the scores twice: histogram, then
	// compaction)
	if err := r.timeModes(sh, k, sparsity, b.Total, "reads", 2*h.KeyCodeBytes(), []bool{true}, func() error {
		if err := c.EnqueueRead(kc, r.s); err != nil {
			return err
		}
		return c.EnqueueRead(kc, r.s)
	}); err != nil {
		return err
	}
	qwBytes := int64(sh.Heads) * int64(h.MapFloats()) * 4
	return r.timeModes(sh, k, sparsity, b.Total, "qcode", qwBytes, []bool{true}, func() error { return h.EnqueueQueryCodes(c, r.s, in.Q, qw) })
}
