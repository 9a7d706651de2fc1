package bench

import (
	"strconv"

	"github.com/hbench/hbench/gpu"
)

func init() {
	registerKernel(kernelSpec{
		name: KernelQuest, doc: "Quest step: page min/max bounds, page top-k, index expansion, sparse decode",
		selects: true, takes: []string{"page"},
		defaults: func(k *Kernel) {
			if k.Page == 0 {
				k.Page = 16
			}
		},
		check: func(k Kernel, bad func(field, format string, a ...any)) {
			if k.Page < 1 {
				bad("page", "must be >= 1, got %d", k.Page)
			}
		},
		variant: func(k Kernel) string { return k.Name + "[" + k.Selection + ",page=" + strconv.Itoa(k.Page) + "]" },
		run:     (*runner).quest,
	})
}

// quest times the Quest step (page bounds, radix top-k of the positions
// by their page's bound, sparse decode: stage "step") and its select
// alone (stage "select"; bytes = the page labels). The page labels are
// built once before timing (prefill).
func (r *runner) quest(sh Shape, k Kernel, sparsity float64, in gpu.DecodeInputs) error {
	c := r.c
	b := budgetOf(sh, k, sparsity)
	q, err := gpu.NewQuestStep(c, sh, k.Sel(), k.Page, b)
	if err != nil {
		return err
	}
	defer q.Free(c)
	if err := q.EnqueuePages(c, r.s, in.K); err != nil {
		return err
	}
	if err := c.SyncStream(r.s); err != nil {
		return err
	}
	r.tuning = q.Dec.Tuning.String()
	if err := r.time(sh, k, sparsity, b.Total, "step", q.StepBytes(), func() error { return q.Enqueue(c, r.s, in) }); err != nil {
		return err
	}
	return r.timeModes(sh, k, sparsity, b.Total, "select", q.LabelBytes(), []bool{true}, func() error { return q.EnqueueSelect(c, r.s, in) })
}
