package bench

import (
	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/gpu"
)

func init() {
	registerKernel(kernelSpec{name: KernelDense, doc: "split-K dense decode over the whole KV cache", plain: true, run: (*runner).decode})
	registerKernel(kernelSpec{name: KernelSparse, doc: "gather decode over random index lists of k = N/sparsity rows (one position per stride)", run: (*runner).decode})
}

// decode times the dense or sparse decode kernel.
func (r *runner) decode(sh Shape, k Kernel, sparsity float64, in gpu.DecodeInputs) error {
	c := r.c
	sel := k.Sel()
	n := 0
	if sel != gpu.Dense {
		n = budget.Spec{Sparsity: sparsity}.TotalFor(sh.Context)
		lists := sh.Batch * sh.Lists(sel)
		idx, err := c.Alloc(int64(lists) * int64(n) * 4)
		if err != nil {
			return err
		}
		defer c.Free(idx)
		if err := c.FillStrideLists(idx, lists, n, sh.Context, r.cfg.Seed+7); err != nil {
			return err
		}
		in.Idx = idx
	}
	dec, err := gpu.NewDecoder(c, sh, sel, n)
	if err != nil {
		return err
	}
	defer dec.Free(c)
	r.tuning = dec.Tuning.String()
	stage := k.Name
	return r.time(sh, k, sparsity, n, stage, sh.DecodeBytes(sel, n), func() error { return dec.Enqueue(c, r.s, in) })
}
