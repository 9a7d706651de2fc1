package bench

import (
	"github.com/hbench/hbench/gpu"
)

func init() {
	registerKernel(kernelSpec{name: KernelStreaming, doc: "StreamingLLM step: sink + recent window lists, sparse decode", selects: true, run: (*runner).streaming})
}

// streaming times the StreamingLLM step (the lists of the sink and the
// recent window, sparse decode).
func (r *runner) streaming(sh Shape, k Kernel, sparsity float64, in gpu.DecodeInputs) error {
	c := r.c
	b := budgetOf(sh, k, sparsity)
	st, err := gpu.NewStreamStep(c, sh, k.Sel(), b)
	if err != nil {
		return err
	}
	defer st.Free(c)
	r.tuning = st.Dec.Tuning.String()
	return r.time(sh, k, sparsity, b.Total, "step", sh.DecodeBytes(k.Sel(), b.Total), func() error { return st.Enqueue(c, r.s, in) })
}
