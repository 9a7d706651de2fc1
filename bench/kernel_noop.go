package bench

import "github.com/hbench/hbench/gpu"

func init() {
	registerKernel(kernelSpec{
		name: "noop", plain: true, doc: "an empty kernel: the protocol's fixed cost per call (launch, events, cold-L2 state)",
		run: func(r *runner, sh Shape, k Kernel, _ float64, _ gpu.DecodeInputs) error {
			r.tuning = ""
			return r.time(sh, k, 0, 0, "noop", 0, func() error { return r.c.EnqueueNoop(r.s) })
		},
	})
}
