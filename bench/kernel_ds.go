package bench

import (
	"strconv"

	"github.com/hbench/hbench/gpu"
)

// KernelDoubleSparsity is the Double Sparsity step (label scores, radix
// top-k).
const KernelDoubleSparsity = "doublesparsity"

func init() {
	registerKernel(kernelSpec{
		name: KernelDoubleSparsity, doc: "Double Sparsity step: label-cache scores of r channels, radix top-k, sparse decode",
		selects: true, takes: []string{"channels"},
		check: func(k Kernel, bad func(field, format string, a ...any)) {
			if k.Channels < 0 {
				bad("channels", "must be >= 1 (0: head_dim/8), got %d", k.Channels)
			}
		},
		variant: func(k Kernel) string {
			r := "d/8"
			if k.Channels > 0 {
				r = strconv.Itoa(k.Channels)
			}
			return k.Name + "[" + k.Selection + ",r=" + r + "]"
		},
		run: (*runner).doubleSparsity,
	})
}

// doubleSparsity times the Double Sparsity step (label scores, radix
// top-k, sparse decode: stage "step"), its select alone (stage "select";
// bytes = the labels read, the scores written and read once), the label
// scores alone (stage "scores"; bytes = the labels read, the scores
// written) and the top-k alone (stage "topk"; bytes = the scores read
// once). The labels
// (16-bit, r = channels, default head_dim/8, channels spread evenly over
// the head) are built once before timing (prefill).
func (r *runner) doubleSparsity(sh Shape, k Kernel, sparsity float64, in gpu.DecodeInputs) error {
	c := r.c
	b := budgetOf(sh, k, sparsity)
	ch := k.Channels
	if ch == 0 {
		ch = sh.HeadDim / 8
	}
	d, err := gpu.NewDSStep(c, sh, k.Sel(), ch, 16, b)
	if err != nil {
		return err
	}
	defer d.Free(c)
	r.tuning = d.Dec.Tuning.String()
	chans := make([][]int, sh.KVHeads)
	for h := range chans {
		for i := 0; i < ch; i++ {
			chans[h] = append(chans[h], (i*sh.HeadDim/ch+h)%sh.HeadDim)
		}
	}
	if err := d.SetChannels(c, chans); err != nil {
		return err
	}
	if err := d.EnqueueLabels(c, r.s, in.K); err != nil {
		return err
	}
	if err := c.SyncStream(r.s); err != nil {
		return err
	}
	if err := r.time(sh, k, sparsity, b.Total, "step", d.StepBytes(), func() error { return d.Enqueue(c, r.s, in) }); err != nil {
		return err
	}
	if err := r.timeModes(sh, k, sparsity, b.Total, "select", d.SelectBytes(), []bool{true}, func() error { return d.EnqueueSelect(c, r.s, in.Q) }); err != nil {
		return err
	}
	if err := r.timeModes(sh, k, sparsity, b.Total, "scores", d.LabelBytes()+d.S.Size, []bool{true}, func() error { return d.EnqueueScores(c, r.s, in.Q) }); err != nil {
		return err
	}
	return r.timeModes(sh, k, sparsity, b.Total, "topk", d.TopKBytes(), []bool{true}, func() error { return d.EnqueueTopKOf(c, r.s, d.S, sh.Context) })
}
