package gpu

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/methods"
	"github.com/hbench/hbench/tensor"
	"github.com/hbench/hbench/workloads"
)

// methodGroups returns one attn.Group per (batch, KV head) of the shape
// (KVHead set, layer as given; batch items share the KV heads' layer and
// index, as sequences of one model do), each query head's one row the
// step's query.
func methodGroups(s Shape, layer int, q []float32, kv, vv kvData) []*attn.Group {
	g := s.Heads / s.KVHeads
	var out []*attn.Group
	for bb := 0; bb < s.Batch; bb++ {
		for kh := 0; kh < s.KVHeads; kh++ {
			grp := &attn.Group{Layer: layer, KVHead: kh, K: kv.mats[bb*s.KVHeads+kh], V: vv.mats[bb*s.KVHeads+kh], Scale: float32(1 / math.Sqrt(float64(s.HeadDim)))}
			for h := kh * g; h < (kh+1)*g; h++ {
				qm := tensor.NewMat(1, s.HeadDim)
				o := (bb*s.Heads + h) * s.HeadDim
				copy(qm.Data, q[o:o+s.HeadDim])
				grp.Q = append(grp.Q, qm)
				grp.QHeads = append(grp.QHeads, h)
			}
			out = append(out, grp)
		}
	}
	return out
}

// methodLists runs m's selector on each group at the step's query (row 0,
// keys [0, Budget.N)) and returns the lists in the GPU layout
// [Batch][Lists][Total].
func methodLists(t *testing.T, m methods.Method, groups []*attn.Group, sel Selection, b budget.Budget) [][]int32 {
	t.Helper()
	var out [][]int32
	for _, grp := range groups {
		selector, err := m.Prepare(grp, methods.Options{Shared: sel == PerKVHead})
		if err != nil {
			t.Fatal(err)
		}
		lists, err := selector.Select(methods.Step{T: 0, Budget: b}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if sel == PerKVHead {
			out = append(out, slices.Clone(lists[0]))
			continue
		}
		for _, l := range lists {
			out = append(out, slices.Clone(l))
		}
	}
	return out
}

// newMethod builds a registered method with params set by edit.
func newMethod(t *testing.T, name string, edit func(any), env methods.Env) methods.Method {
	t.Helper()
	e, ok := methods.Registry.Lookup(name)
	if !ok {
		t.Fatalf("method %s not registered", name)
	}
	p := e.Defaults()
	edit(p)
	m, err := e.New(p, env)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// cpuSimHash is methods.LSH's code of x (sign bits of planes·x in
// tensor.Dot32) as uint32 words, zero padded to words.
func cpuSimHash(planes *tensor.Mat, x []float32, words int) []uint32 {
	out := make([]uint32, words)
	for p := 0; p < planes.Rows; p++ {
		if tensor.Dot32(planes.Row(p), x) > 0 {
			out[p/32] |= 1 << (p % 32)
		}
	}
	return out
}

// cpuLSHCodes returns the CPU key codes of a group ([T][words], with
// MIPS on the lifted keys, M² over the group's keys) and its query codes
// ([heads][words]).
func cpuLSHCodes(grp *attn.Group, planes *tensor.Mat, mips bool, words int) (keys, queries [][]uint32) {
	d := grp.D()
	x := make([]float32, planes.Cols)
	var m2 float64
	if mips {
		for j := 0; j < grp.T(); j++ {
			m2 = max(m2, tensor.Dot(grp.K.Row(j), grp.K.Row(j)))
		}
	}
	for j := 0; j < grp.T(); j++ {
		copy(x, grp.K.Row(j))
		if mips {
			x[d] = float32(math.Sqrt(max(0, m2-tensor.Dot(grp.K.Row(j), grp.K.Row(j)))))
		}
		keys = append(keys, cpuSimHash(planes, x, words))
	}
	for _, qm := range grp.Q {
		clear(x)
		copy(x, qm.Row(0))
		queries = append(queries, cpuSimHash(planes, x, words))
	}
	return keys, queries
}

func TestLSHStepMatchesReference(t *testing.T) {
	d := device(t)
	rng := rand.New(rand.NewPCG(21, 22))
	for _, tc := range []struct {
		s     Shape
		sel   Selection
		nbits int
		mips  bool
		spec  budget.Spec
	}{
		{Shape{2, 8, 2, 128, 3001, BF16}, PerKVHead, 64, false, budget.Spec{Sparsity: 8, Sink: 4, Local: 16}},
		{Shape{2, 8, 2, 128, 3001, BF16}, PerHead, 64, true, budget.Spec{Sparsity: 8, Sink: 4, Local: 16}},
		{Shape{1, 8, 2, 128, 5001, BF16}, PerHead, 128, true, budget.Spec{Sparsity: 32, Sink: 4, Local: 32}},
		{Shape{1, 4, 4, 64, 777, FP16}, PerHead, 40, false, budget.Spec{Sparsity: 4, Sink: 1, Local: 3}},      // bits padded
		{Shape{1, 8, 8, 128, 2049, BF16}, PerKVHead, 32, false, budget.Spec{Sparsity: 16, Sink: 2, Local: 5}}, // group 1
		{Shape{2, 4, 1, 128, 1000, BF16}, PerKVHead, 100, true, budget.Spec{Sparsity: 4}},                     // group 4, no sink/local
		{Shape{1, 32, 8, 128, 40000, BF16}, PerKVHead, 128, false, budget.Spec{Sparsity: 32, Sink: 4, Local: 32}},
		{Shape{1, 4, 2, 128, 40, BF16}, PerHead, 32, false, budget.Spec{Tokens: 1}},  // k = 1
		{Shape{1, 8, 2, 64, 333, FP16}, PerKVHead, 16, true, budget.Spec{Tokens: 1}}, // k = 1 per KV head
	} {
		s := tc.s
		b := tc.spec.Resolve(s.Context)
		kv, vv := randKV(rng, s), randKV(rng, s)
		q := randQ(rng, s, 1)
		name := fmt.Sprintf("%+v %v bits=%d mips=%v budget %+v", s, tc.sel, tc.nbits, tc.mips, b)
		checkLSHStep(t, d, name, s, tc.sel, tc.nbits, tc.mips, 0, b, q, kv, vv)
	}
}

// TestLSHStepOnRealCapture runs the LSH step on the shipped real capture
// sample at several query positions (K of the first pos+1 positions).
func TestLSHStepOnRealCapture(t *testing.T) {
	d := device(t)
	files, _ := filepath.Glob("../testdata/persuasion/*.safetensors")
	if len(files) == 0 {
		t.Skip("no testdata/persuasion capture")
	}
	for _, f := range files {
		c, err := workloads.ReadCapture(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, pos := range []int{c.T - 1, 1000, 99} {
			n := pos + 1
			s := Shape{Batch: 1, Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.D, Context: n, DType: FP16}
			kv, vv := captureKV(c.K, n), captureKV(c.V, n)
			var q []float32
			for h := 0; h < c.Heads; h++ {
				q = append(q, c.Q[h].Row(pos)...)
			}
			for _, v := range []struct {
				nbits int
				mips  bool
				spec  budget.Spec
			}{{64, false, budget.Spec{Sparsity: 8, Sink: 4, Local: 16}}, {128, true, budget.Spec{Sparsity: 32}}} {
				b := v.spec.Resolve(n)
				for _, sel := range []Selection{PerHead, PerKVHead} {
					name := fmt.Sprintf("%s pos %d %v bits=%d mips=%v budget %+v", filepath.Base(f), pos, sel, v.nbits, v.mips, b)
					checkLSHStep(t, d, name, s, sel, v.nbits, v.mips, c.Layer, b, q, kv, vv)
				}
			}
		}
	}
}

// checkLSHStep runs the LSH step with methods.LSH's planes and checks its
// key and query codes against the CPU's bit for bit, its lists against
// methods.LSH (exactly; on a mismatch it reports whether the multiset of
// CPU scores agrees) and its output against the float64 reference on its
// lists.
func checkLSHStep(t *testing.T, d *Device, name string, s Shape, sel Selection, nbits int, mips bool, layer int, b budget.Budget, q []float32, kv, vv kvData) {
	t.Helper()
	m := newMethod(t, "lsh", func(p any) {
		lp := p.(*methods.LSHParams)
		lp.Bits, lp.MIPS, lp.Seed = nbits, mips, 3
	}, methods.Env{})
	groups := methodGroups(s, layer, q, kv, vv)
	planes := make([]*tensor.Mat, s.KVHeads)
	for kh := range planes {
		planes[kh] = m.(*methods.LSH).Planes(groups[kh], methods.Options{})
	}
	words := lshWords(nbits)
	lists := s.Batch * s.Lists(sel)
	kc := make([]uint32, s.Batch*s.KVHeads*s.Context*words)
	qc := make([]uint32, s.Batch*s.Heads*words)
	idx := make([]int32, lists*b.Total)
	out := make([]float32, s.Batch*s.Heads*s.HeadDim)
	err := d.Do(func(c *Ctx) error {
		l, err := NewLSHStep(c, s, sel, nbits, mips, b)
		if err != nil {
			return err
		}
		defer l.Free(c)
		if err := l.SetPlanes(c, planes); err != nil {
			return err
		}
		in, free, err := uploadInputs(c, q, kv, vv)
		defer free()
		if err != nil {
			return err
		}
		if err := poisonAll(c, l.Hash.Idx, l.Hash.Dec.Out, l.Hash.QC, l.KC, l.M2); err != nil {
			return err
		}
		if err := l.EnqueueKeyCodes(c, 0, in.K); err != nil {
			return err
		}
		for i := 0; i < 2; i++ {
			if err := l.Enqueue(c, 0, in); err != nil {
				return err
			}
		}
		if err := c.Sync(); err != nil {
			return err
		}
		return errors.Join(Download(c, kc, l.KC), Download(c, qc, l.Hash.QC), Download(c, idx, l.Hash.Idx), Download(c, out, l.Hash.Dec.Out))
	})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	// Codes: bit for bit.
	var diff, total int
	g := s.Heads / s.KVHeads
	cpuScores := make([][]float32, lists) // the CPU's list scores
	for bb := 0; bb < s.Batch; bb++ {
		for kh := 0; kh < s.KVHeads; kh++ {
			grp := groups[bb*s.KVHeads+kh]
			keys, queries := cpuLSHCodes(grp, planes[kh], mips, words)
			for j, want := range keys {
				for w := range words {
					diff += bits.OnesCount32(want[w] ^ kc[((bb*s.KVHeads+kh)*s.Context+j)*words+w])
					total += 32
				}
			}
			for i, want := range queries {
				h := kh*g + i
				for w := range words {
					diff += bits.OnesCount32(want[w] ^ qc[(bb*s.Heads+h)*words+w])
					total += 32
				}
				li := bb*s.Lists(sel) + kh
				if sel == PerHead {
					li = bb*s.Heads + h
				}
				if cpuScores[li] == nil {
					cpuScores[li] = make([]float32, s.Context)
				}
				for j, k := range keys {
					var dist int
					for w := range words {
						dist += bits.OnesCount32(want[w] ^ k[w])
					}
					cpuScores[li][j] += float32(nbits - dist)
				}
			}
		}
	}
	if diff != 0 {
		t.Errorf("%s: %d of %d code bits differ from methods.LSH's", name, diff, total)
	}
	cpu := methodLists(t, m, groups, sel, b)
	for li := 0; li < lists; li++ {
		got := idx[li*b.Total : (li+1)*b.Total]
		if slices.Equal(got, cpu[li]) {
			continue
		}
		a, w := sortedScores(cpuScores[li], got), sortedScores(cpuScores[li], cpu[li])
		if a == nil || !slices.Equal(a, w) {
			t.Fatalf("%s: list %d differs from methods.LSH as a multiset of scores\n got %v\nwant %v", name, li, got, cpu[li])
		}
		t.Errorf("%s: list %d: same score multiset as methods.LSH but not its tie-break", name, li)
	}
	if e := relErr(out, decodeRef(s, sel, b.Total, q, kv, vv, idx)); !(e < 1e-2) {
		t.Errorf("%s: step output rel err %.2e", name, e)
	} else {
		t.Logf("%s: %d/%d code bits differ, lists = methods.LSH, output rel err %.1e", name, diff, total, e)
	}
}
