package gpu

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/methods"
	"github.com/hbench/hbench/tensor"
)

// cpuQuestScores returns the Quest position scores of list l of batch bb
// in float64: each position gets its page's bound U (summed over the
// group for PerKVHead), the current page +inf.
func cpuQuestScores(s Shape, sel Selection, page int, q []float32, kv kvData, bb, l int) []float64 {
	g := s.Heads / s.KVHeads
	heads := []int{l}
	kh := l / g
	if sel == PerKVHead {
		heads, kh = nil, l
		for h := l * g; h < (l+1)*g; h++ {
			heads = append(heads, h)
		}
	}
	k := kv.mats[bb*s.KVHeads+kh]
	np := (s.Context + page - 1) / page
	out := make([]float64, s.Context)
	for p := 0; p < np; p++ {
		lo, hi := p*page, min((p+1)*page, s.Context)
		u := math.Inf(1)
		if p != np-1 {
			u = 0
			for _, h := range heads {
				o := (bb*s.Heads + h) * s.HeadDim
				for c := 0; c < s.HeadDim; c++ {
					mn, mx := math.Inf(1), math.Inf(-1)
					for j := lo; j < hi; j++ {
						x := float64(k.Row(j)[c])
						mn, mx = min(mn, x), max(mx, x)
					}
					if x := float64(q[o+c]); x >= 0 {
						u += x * mx
					} else {
						u += x * mn
					}
				}
			}
		}
		for j := lo; j < hi; j++ {
			out[j] = u
		}
	}
	return out
}

func TestQuestStepMatchesReference(t *testing.T) {
	d := device(t)
	rng := rand.New(rand.NewPCG(13, 14))
	for _, tc := range []struct {
		s    Shape
		sel  Selection
		page int
		ints bool
		spec budget.Spec
	}{
		{Shape{1, 4, 1, 128, 5001, BF16}, PerHead, 16, true, budget.Spec{Sparsity: 8, Sink: 4, Local: 16}},
		{Shape{2, 8, 2, 128, 3001, BF16}, PerKVHead, 7, true, budget.Spec{Sparsity: 4, Sink: 1, Local: 3}},
		{Shape{1, 4, 4, 64, 777, FP16}, PerHead, 1, true, budget.Spec{Sparsity: 4}},
		{Shape{1, 8, 1, 128, 10, BF16}, PerKVHead, 16, true, budget.Spec{Tokens: 3}}, // one page: all +inf
		{Shape{1, 32, 8, 128, 70001, BF16}, PerKVHead, 16, false, budget.Spec{Sparsity: 32, Sink: 4, Local: 32}},
		{Shape{1, 32, 8, 128, 40000, BF16}, PerHead, 32, false, budget.Spec{Sparsity: 16, Sink: 4, Local: 32}},
		{Shape{1, 6, 3, 64, 2049, FP16}, PerKVHead, 16, false, budget.Spec{Tokens: 100}},
	} {
		s, sel := tc.s, tc.sel
		b := tc.spec.Resolve(s.Context)
		name := fmt.Sprintf("%+v %v page %d budget %+v ints=%v", s, sel, tc.page, b, tc.ints)
		var kv kvData
		var q []float32
		if tc.ints {
			kv = intKV(rng, s, 8)
			q = make([]float32, s.Batch*s.Heads*s.HeadDim)
			for i := range q {
				q[i] = float32(rng.IntN(17) - 8)
			}
		} else {
			kv, q = randKV(rng, s), randQ(rng, s, 1)
		}
		vv := randKV(rng, s)
		checkQuestStep(t, d, name, s, sel, tc.page, b, q, kv, vv, tc.ints)
	}
}

// checkQuestStep runs the Quest step on the GPU and checks its page
// labels (exactly), its page bounds against float64 ones, its lists
// against the radix top-k of its own bounds (exactly) and against
// methods.Quest (exactly when the bounds are exact, else as a multiset of
// CPU scores).
func checkQuestStep(t *testing.T, d *Device, name string, s Shape, sel Selection, page int, b budget.Budget, q []float32, kv, vv kvData, exact bool) {
	t.Helper()
	lists := s.Batch * s.Lists(sel)
	np := (s.Context + page - 1) / page
	pl := make([]uint16, s.Batch*s.KVHeads*np*2*s.HeadDim)
	pu := make([]float32, lists*np)
	idx := make([]int32, lists*b.Total)
	out := make([]float32, s.Batch*s.Heads*s.HeadDim)
	err := d.Do(func(c *Ctx) error {
		qs, err := NewQuestStep(c, s, sel, page, b)
		if err != nil {
			return err
		}
		defer qs.Free(c)
		in, free, err := uploadInputs(c, q, kv, vv)
		defer free()
		if err != nil {
			return err
		}
		if err := poisonAll(c, qs.Idx, qs.Dec.Out, qs.PL, qs.PU); err != nil {
			return err
		}
		if err := qs.EnqueuePages(c, 0, in.K); err != nil {
			return err
		}
		for i := 0; i < 2; i++ {
			if err := qs.Enqueue(c, 0, in); err != nil {
				return err
			}
		}
		if err := c.Sync(); err != nil {
			return err
		}
		return errors.Join(Download(c, pl, qs.PL), Download(c, pu, qs.PU), Download(c, idx, qs.Idx), Download(c, out, qs.Dec.Out))
	})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	// Page labels: exact channel minima and maxima.
	for m := 0; m < s.Batch*s.KVHeads; m++ {
		for p := 0; p < np; p++ {
			for c := 0; c < s.HeadDim; c++ {
				mn, mx := float32(math.Inf(1)), float32(math.Inf(-1))
				for j := p * page; j < min((p+1)*page, s.Context); j++ {
					x := kv.mats[m].Row(j)[c]
					mn, mx = min(mn, x), max(mx, x)
				}
				o := ((m*np+p)*2)*s.HeadDim + c
				if g, h := kvValue(s, pl[o]), kvValue(s, pl[o+s.HeadDim]); g != mn || h != mx {
					t.Fatalf("%s: labels of kv %d page %d channel %d = [%g, %g], want [%g, %g]", name, m, p, c, g, h, mn, mx)
				}
			}
		}
	}
	cpu := cpuLists(t, "quest", func(p any) { p.(*methods.QuestParams).Page = page }, s, sel, q, kv, vv, b)
	lo, hi := b.MiddleRange()
	gs := make([]float32, s.Context)
	for li := 0; li < lists; li++ {
		got := idx[li*b.Total : (li+1)*b.Total]
		for j := range gs {
			gs[j] = pu[li*np+j/page]
		}
		want := b.Fixed(nil)[:b.Sink]
		want, _ = methods.TopKIndices(gs, lo, hi, b.Heavy, want, nil)
		for i := s.Context - b.Local; i < s.Context; i++ {
			want = append(want, int32(i))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s: list %d is not the top-k of the GPU page bounds\n got %v\nwant %v", name, li, got, want)
		}
		cs := cpuQuestScores(s, sel, page, q, kv, li/s.Lists(sel), li%s.Lists(sel))
		for p := 0; p < np; p++ {
			w, g := cs[p*page], float64(pu[li*np+p])
			if exact && g != w || math.Abs(g-w) > 1e-4*math.Max(1, math.Abs(w)) && !math.IsInf(w, 1) || math.IsInf(w, 1) != math.IsInf(g, 1) {
				t.Fatalf("%s: list %d page %d bound %g, want %g", name, li, p, g, w)
			}
		}
		if exact {
			if !slices.Equal(got, cpu[li]) {
				t.Fatalf("%s: list %d differs from methods.Quest\n got %v\nwant %v", name, li, got, cpu[li])
			}
			continue
		}
		a, w := make([]float64, len(got)), make([]float64, len(got))
		for i := range got {
			a[i], w[i] = cs[got[i]], cs[cpu[li][i]]
		}
		slices.Sort(a)
		slices.Sort(w)
		for i := range a {
			if !(a[i] == w[i] || math.Abs(a[i]-w[i]) <= 1e-4*math.Max(1, math.Abs(w[i]))) {
				t.Fatalf("%s: list %d: score multiset differs from methods.Quest at %d: %g vs %g", name, li, i, a[i], w[i])
			}
		}
	}
	t.Logf("%s: %d pages, labels exact, lists = top-k of GPU bounds and = methods.Quest", name, np)
}

// kvValue is the float value of a 16-bit K/V element of the shape's dtype.
func kvValue(s Shape, h uint16) float32 {
	if s.DType == BF16 {
		return tensor.BF16ToF32(h)
	}
	return tensor.F16ToF32(h)
}
