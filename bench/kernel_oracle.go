package bench

import (
	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/gpu"
)

func init() {
	registerKernel(kernelSpec{name: KernelOracle, doc: "oracle step: exact q·k scores of every key, radix top-k, sparse decode", selects: true, run: (*runner).oracle})
}

// budgetOf resolves a selecting kernel's budget at sparsity for shape sh.
func budgetOf(sh Shape, k Kernel, sparsity float64) budget.Budget {
	return budget.Spec{Sparsity: sparsity, Sink: k.Sink, Local: k.Local}.Resolve(sh.Context)
}

// oracle times the oracle step (exact scores of every key, radix top-k,
// sparse decode: stage "step"), its select alone (stage "select": scores
// and top-k) and the top-k alone (stage "topk": bytes = the list scores
// read once; on the scores the step left, so the same distribution).
func (r *runner) oracle(sh Shape, k Kernel, sparsity float64, in gpu.DecodeInputs) error {
	c := r.c
	b := budgetOf(sh, k, sparsity)
	o, err := gpu.NewOracleStep(c, sh, k.Sel(), b)
	if err != nil {
		return err
	}
	defer o.Free(c)
	r.tuning = o.Dec.Tuning.String()
	if err := r.time(sh, k, sparsity, b.Total, "step", o.StepBytes(), func() error { return o.Enqueue(c, r.s, in) }); err != nil {
		return err
	}
	selBytes := o.StepBytes() - sh.DecodeBytes(k.Sel(), b.Total)
	if err := r.timeModes(sh, k, sparsity, b.Total, "select", selBytes, []bool{true}, func() error { return o.EnqueueSelect(c, r.s, in) }); err != nil {
		return err
	}
	return r.timeModes(sh, k, sparsity, b.Total, "topk", o.TopKBytes(), []bool{true}, func() error { return o.EnqueueTopK(c, r.s) })
}
