package bench

import (
	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/gpu"
)

func init() {
	registerKernel(kernelSpec{name: KernelDense, doc: "split-K dense decode over the whole KV cache", plain: true, run: (*runner).decode})
	registerKernel(kernelSpec{name: KernelSparse, doc: "gather decode over random index lists of k = N/sparsity rows (one position per stride)", run: (*runner).decode})
	registerKernel(kernelSpec{name: KernelRows, doc: "reads only the K/V rows of the sparse kernel's index lists (the same lists; no softmax, no partials): what reading those random rows alone costs", run: (*runner).rows})
}

// decode times the dense or sparse decode kernel.
func (r *runner) decode(sh Shape, k Kernel, sparsity float64, in gpu.DecodeInputs) error {
	c := r.c
	sel := k.Sel()
	n := 0
	if sel != gpu.Dense {
		var idx gpu.Buffer
		var err error
		if idx, n, err = r.strideLists(sh, sel, sparsity); err != nil {
			return err
		}
		defer c.Free(idx)
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

// strideLists allocates and fills the sparse kernels' index lists: k =
// N/sparsity positions per list, one per stride, the same for a seed.
func (r *runner) strideLists(sh Shape, sel gpu.Selection, sparsity float64) (gpu.Buffer, int, error) {
	n := budget.Spec{Sparsity: sparsity}.TotalFor(sh.Context)
	lists := sh.Batch * sh.Lists(sel)
	idx, err := r.c.Alloc(int64(lists) * int64(n) * 4)
	if err != nil {
		return gpu.Buffer{}, 0, err
	}
	if err := r.c.FillStrideLists(idx, lists, n, sh.Context, r.cfg.Seed+7); err != nil {
		r.c.Free(idx)
		return gpu.Buffer{}, 0, err
	}
	return idx, n, nil
}

// rows times the read of the sparse kernel's K/V rows alone.
func (r *runner) rows(sh Shape, k Kernel, sparsity float64, in gpu.DecodeInputs) error {
	c := r.c
	sel := k.Sel()
	idx, n, err := r.strideLists(sh, sel, sparsity)
	if err != nil {
		return err
	}
	defer c.Free(idx)
	out, err := c.Alloc(4)
	if err != nil {
		return err
	}
	defer c.Free(out)
	r.tuning = ""
	return r.time(sh, k, sparsity, n, KernelRows, gpu.GatherRowBytes(sh, sel, n), func() error {
		return c.EnqueueGatherRows(r.s, sh, sel, n, in.K, in.V, idx, out)
	})
}
