package gpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hbench/hbench/attn"
)

// decodeRef is the float64 reference of a decode call: dense attention of
// each query head over its KV head, or attention over the head's index
// list.
func decodeRef(s Shape, sel Selection, k int, q []float32, kv, vv kvData, idx []int32) []float64 {
	want := make([]float64, s.Batch*s.Heads*s.HeadDim)
	scale := float32(1 / math.Sqrt(float64(s.HeadDim)))
	g := s.Heads / s.KVHeads
	for b := 0; b < s.Batch; b++ {
		for h := 0; h < s.Heads; h++ {
			m := b*s.KVHeads + h/g
			o := (b*s.Heads + h) * s.HeadDim
			if sel == Dense {
				copy(want[o:o+s.HeadDim], attn.Decode(q[o:o+s.HeadDim], kv.mats[m], vv.mats[m], s.Context-1, scale))
				continue
			}
			list := b*s.KVHeads + h/g
			if sel == PerHead {
				list = b*s.Heads + h
			}
			logits := attn.Logits(q[o:o+s.HeadDim], kv.mats[m], s.Context, scale, nil)
			copy(want[o:o+s.HeadDim], attn.SparseOutput(logits, idx[list*k:(list+1)*k], vv.mats[m], nil))
		}
	}
	return want
}

// decodeCase is a decode problem of the tests: a shape, a selection and
// the list length k (0 for Dense).
type decodeCase struct {
	s   Shape
	sel Selection
	k   int
}

// TestDecodeMMATunings runs the tensor-core kernel under tunings other
// than the default (every group size with mma=1, 32-key tiles, 1 and 8
// warps, 2 and 4 stages, with and without the fused merge) against the float64 reference; the default
// tuning is covered by TestDecodeDenseMatchesReference and
// TestDecodeSparseMatchesReference.
func TestDecodeMMATunings(t *testing.T) {
	d := device(t)
	cases := []decodeCase{
		{Shape{2, 8, 2, 128, 5000, BF16}, Dense, 0},
		{Shape{1, 8, 1, 64, 3001, FP16}, Dense, 0},  // group 8, d = 64, fp16
		{Shape{2, 6, 3, 128, 2049, FP16}, Dense, 0}, // group 2 (mma only with mma=1)
		{Shape{1, 4, 4, 128, 777, BF16}, Dense, 0},  // group 1 (mma only with mma=1)
		{Shape{1, 32, 8, 128, 40000, BF16}, PerKVHead, 1250},
		{Shape{1, 4, 1, 128, 100, BF16}, PerKVHead, 1}, // k = 1
		{Shape{2, 4, 4, 64, 3000, FP16}, PerKVHead, 2999},
	}
	rng := rand.New(rand.NewPCG(5, 6))
	type input struct {
		q      []float32
		kv, vv kvData
		idx    []int32
		want   []float64
	}
	ins := make([]input, len(cases))
	for i, tc := range cases {
		in := input{kv: randKV(rng, tc.s), vv: randKV(rng, tc.s), q: randQ(rng, tc.s, 2)}
		if tc.sel != Dense {
			in.idx = randLists(rng, tc.s, tc.sel, tc.k)
		}
		in.want = decodeRef(tc.s, tc.sel, tc.k, in.q, in.kv, in.vv, in.idx)
		ins[i] = in
	}
	for _, env := range []string{"mma=1", "mma=1,kt=32,stages=2,fuse=0", "mma=1,warps=8,stages=2", "mma=1,warps=1,stages=4,kt=32,fuse=0"} {
		t.Setenv("HBENCH_DECODE", env)
		for i, tc := range cases {
			in := ins[i]
			got, dec := runDecode(t, d, tc.s, tc.sel, tc.k, in.q, in.kv, in.vv, in.idx)
			if !dec.MMA {
				t.Fatalf("%s %+v: tensor-core kernel not selected", env, tc.s)
			}
			for j, x := range got {
				if math.IsNaN(float64(x)) {
					t.Fatalf("%s %+v %v: output %d not written (NaN)", env, tc.s, tc.sel, j)
				}
			}
			if e := relErr(got, in.want); !(e < 1e-2) {
				t.Errorf("%s %+v %v k=%d: rel err %.2e (%d splits)", env, tc.s, tc.sel, tc.k, e, dec.Splits)
			} else {
				t.Logf("%s %+v %v k=%d: rel err %.2e, %d splits of %d; %d regs, %d B smem, %d blocks/SM", env, tc.s, tc.sel, tc.k, e, dec.Splits, dec.Chunk, dec.partial.Regs, dec.Smem, dec.Occ)
			}
		}
	}
}

// TestDecodeMergersMatchesReference runs the tagged merge (mergers=K: a
// relaxed count elects the last K blocks of a head block, which merge a
// share of the outputs each, loading the partial slots until every one
// carries the call's parity) at 2 to 16 splits, and the count's merge
// (mergers=0), against the float64 reference. runDecode calls three
// times, so the parity flips both ways.
func TestDecodeMergersMatchesReference(t *testing.T) {
	d := device(t)
	cases := []decodeCase{
		{Shape{1, 32, 8, 128, 40000, BF16}, PerKVHead, 1250},
		{Shape{2, 8, 2, 128, 5000, BF16}, Dense, 0}, // 20 splits: the count's merge
		{Shape{1, 8, 1, 64, 3001, FP16}, Dense, 0},  // group 8, d = 64
		{Shape{2, 8, 2, 128, 5000, BF16}, PerKVHead, 333},
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for _, tc := range cases {
		q, kv, vv := randQ(rng, tc.s, 2), randKV(rng, tc.s), randKV(rng, tc.s)
		var idx []int32
		if tc.sel != Dense {
			idx = randLists(rng, tc.s, tc.sel, tc.k)
		}
		ref := decodeRef(tc.s, tc.sel, tc.k, q, kv, vv, idx)
		for _, v := range []struct {
			env string
			m   int
		}{{"mergers=0", 0}, {"mergers=1", 1}, {"mergers=2", 2}, {"mergers=4", 4}, {"mergers=4,splits=3", 4}, {"mergers=3,splits=16", 3}, {"mergers=16,splits=7", 16}, {"mergers=2,splits=2", 2}} {
			t.Setenv("HBENCH_DECODE", v.env)
			got, dec := runDecode(t, d, tc.s, tc.sel, tc.k, q, kv, vv, idx)
			want := 0
			if dec.Splits > 1 && dec.Splits <= 16 {
				want = min(v.m, dec.Splits)
			}
			if dec.Mergers != want {
				t.Fatalf("%s %+v: %d splits, %d mergers, want %d", v.env, tc.s, dec.Splits, dec.Mergers, want)
			}
			for j, x := range got {
				if math.IsNaN(float64(x)) {
					t.Fatalf("%s %+v %v: output %d not written (NaN)", v.env, tc.s, tc.sel, j)
				}
			}
			if e := relErr(got, ref); !(e < 1e-2) {
				t.Errorf("%s %+v %v k=%d: rel err %.2e (%d splits, %d mergers)", v.env, tc.s, tc.sel, tc.k, e, dec.Splits, dec.Mergers)
			} else {
				t.Logf("%s %+v %v k=%d: rel err %.2e, %d splits of %d, %d mergers", v.env, tc.s, tc.sel, tc.k, e, dec.Splits, dec.Chunk, dec.Mergers)
			}
		}
	}
}
