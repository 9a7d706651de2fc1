package gpu

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/methods"
	"github.com/hbench/hbench/tensor"
)

func TestChunkPlan(t *testing.T) {
	for _, tc := range []struct{ n, want, minChunk, align int }{
		{1, 100, 1024, 256}, {0, 4, 512, 16}, {32768, 16, 1024, 256}, {32741, 33, 1024, 256},
		{1048576, 16, 1024, 256}, {5001, 256, 512, 16}, {70001, 132, 512, 16}, {1000, 1, 1, 1},
	} {
		b, c := ChunkPlan(tc.n, tc.want, tc.minChunk, tc.align)
		n := max(tc.n, 1)
		if b < 1 || c%tc.align != 0 || b*c < n || (b-1)*c >= n || b > max(1, tc.want) {
			t.Errorf("ChunkPlan(%+v) = %d blocks of %d", tc, b, c)
		}
	}
}

func TestOracleDefines(t *testing.T) {
	d := OracleDefines(Shape{1, 32, 8, 128, 10, FP16}, PerKVHead)
	if d["GROUP"] != "4" || d["SHARED"] != "1" || d["DTYPE_BF16"] != "0" || d["HEAD_DIM"] != "128" {
		t.Errorf("defines %v", d)
	}
	if d := OracleDefines(Shape{1, 8, 8, 64, 10, BF16}, PerHead); d["GROUP"] != "1" || d["SHARED"] != "0" || d["DTYPE_BF16"] != "1" {
		t.Errorf("defines %v", d)
	}
}

// TestCompileOracleArchs compiles every oracle.cu variant for sm_80 and
// sm_90; it needs NVRTC, not a device.
func TestCompileOracleArchs(t *testing.T) {
	compileSelectionArchs(t, "oracle.cu", oracleSrc, OracleDefines)
}

// compileSelectionArchs compiles src for sm_80 and sm_90 under defines of
// each head dimension, group size, dtype and selection the kernels of
// oracle.cu and h2o.cu specialise on (each define's values at least once;
// a compile takes about a second). It skips without NVRTC.
func compileSelectionArchs(t *testing.T, name, src string, defines func(Shape, Selection) map[string]string) {
	t.Helper()
	if _, _, err := NVRTCVersion(); err != nil {
		t.Skipf("no NVRTC: %v", err)
	}
	t.Setenv("HBENCH_CUBIN_CACHE", t.TempDir())
	for _, arch := range []string{"sm_80", "sm_90"} {
		for _, v := range []struct {
			d, g int
			dt   string
			sel  Selection
		}{{128, 4, BF16, PerKVHead}, {128, 1, BF16, PerHead}, {64, 8, FP16, PerHead}, {64, 2, FP16, PerKVHead}, {128, 8, BF16, PerKVHead}} {
			s := Shape{Batch: 1, Heads: v.g, KVHeads: 1, HeadDim: v.d, Context: 1, DType: v.dt}
			if _, err := Compile(name, src, arch, defines(s, v.sel)); err != nil {
				t.Fatalf("%s %+v %v: %v", arch, s, v.sel, err)
			}
		}
	}
}

// intKV returns keys with small integer values (exact in bf16 and fp16),
// so that every q·k of integer q is exact in fp32 whatever the order of
// summation and ties are frequent.
func intKV(rng *rand.Rand, s Shape, amp int) kvData {
	n := s.Batch * s.KVHeads
	kd := kvData{raw: make([]uint16, n*s.Context*s.HeadDim)}
	for i := 0; i < n; i++ {
		m := tensor.NewMat(s.Context, s.HeadDim)
		for j := range m.Data {
			x := float32(rng.IntN(2*amp+1) - amp)
			var h uint16
			if s.DType == BF16 {
				h = tensor.F32ToBF16(x)
			} else {
				h = tensor.F32ToF16(x)
			}
			m.Data[j] = x
			kd.raw[i*len(m.Data)+j] = h
		}
		kd.mats = append(kd.mats, m)
	}
	return kd
}

// cpuLists runs the CPU method name (with params set by edit) on every
// KV head of the shape and returns the lists in the GPU layout
// [Batch][Lists][Total].
func cpuLists(t *testing.T, name string, edit func(any), s Shape, sel Selection, q []float32, kv, vv kvData, b budget.Budget) [][]int32 {
	t.Helper()
	e, ok := methods.Registry.Lookup(name)
	if !ok {
		t.Fatalf("method %s not registered", name)
	}
	var p any
	if e.Defaults != nil {
		p = e.Defaults()
		if edit != nil {
			edit(p)
		}
	}
	m, err := e.New(p, methods.Env{})
	if err != nil {
		t.Fatal(err)
	}
	g := s.Heads / s.KVHeads
	var out [][]int32
	for bb := 0; bb < s.Batch; bb++ {
		for kh := 0; kh < s.KVHeads; kh++ {
			grp := &attn.Group{K: kv.mats[bb*s.KVHeads+kh], V: vv.mats[bb*s.KVHeads+kh], Scale: float32(1 / math.Sqrt(float64(s.HeadDim)))}
			for h := kh * g; h < (kh+1)*g; h++ {
				qm := tensor.NewMat(1, s.HeadDim)
				o := (bb*s.Heads + h) * s.HeadDim
				copy(qm.Data, q[o:o+s.HeadDim])
				grp.Q = append(grp.Q, qm)
				grp.QHeads = append(grp.QHeads, h)
			}
			selector, err := m.Prepare(grp, methods.Options{Shared: sel == PerKVHead})
			if err != nil {
				t.Fatal(err)
			}
			// The score functions read query row T and keys [0, Budget.N).
			lists, err := selector.Select(methods.Step{T: 0, Budget: b}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if sel == PerKVHead {
				out = append(out, slices.Clone(lists[0]))
			} else {
				for _, l := range lists {
					out = append(out, slices.Clone(l))
				}
			}
		}
	}
	return out
}

// sortedScores returns the scores of positions xs, sorted (nil if a
// position is out of range).
func sortedScores(scores []float32, xs []int32) []float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		if x < 0 || int(x) >= len(scores) {
			return nil
		}
		v[i] = float64(scores[x])
	}
	slices.Sort(v)
	return v
}

// cpuListScores returns the CPU oracle's score of every key for list l
// of batch bb: q·k per query head, or the group's summed softmax
// probabilities (float64).
func cpuListScores(s Shape, sel Selection, q []float32, kv kvData, bb, l int) []float32 {
	g := s.Heads / s.KVHeads
	scale := 1 / math.Sqrt(float64(s.HeadDim))
	dots := func(h int) []float64 {
		k := kv.mats[bb*s.KVHeads+h/g]
		o := (bb*s.Heads + h) * s.HeadDim
		d := make([]float64, s.Context)
		for j := range d {
			for i, x := range k.Row(j) {
				d[j] += float64(q[o+i]) * float64(x)
			}
		}
		return d
	}
	out := make([]float32, s.Context)
	if sel == PerHead {
		for j, x := range dots(l) {
			out[j] = float32(x)
		}
		return out
	}
	acc := make([]float64, s.Context)
	for h := l * g; h < (l+1)*g; h++ {
		d := dots(h)
		m := slices.Max(d)
		var z float64
		for j := range d {
			d[j] = math.Exp((d[j] - m) * scale)
			z += d[j]
		}
		for j := range d {
			acc[j] += d[j] / z
		}
	}
	for j, x := range acc {
		out[j] = float32(x)
	}
	return out
}

func TestOracleStepMatchesReference(t *testing.T) {
	d := device(t)
	rng := rand.New(rand.NewPCG(7, 8))
	for _, tc := range []struct {
		s    Shape
		sel  Selection
		ints bool // integer inputs: exact scores, ties
		zero bool // q = 0: every score ties
		spec budget.Spec
	}{
		{Shape{1, 4, 1, 128, 37, BF16}, PerHead, true, false, budget.Spec{Tokens: 9, Sink: 1, Local: 2}},
		{Shape{2, 8, 2, 128, 5001, BF16}, PerHead, true, false, budget.Spec{Sparsity: 8, Sink: 4, Local: 16}},
		{Shape{1, 4, 4, 64, 777, FP16}, PerHead, true, false, budget.Spec{Sparsity: 4}},
		{Shape{1, 4, 1, 128, 3001, BF16}, PerHead, true, true, budget.Spec{Sparsity: 4, Sink: 3, Local: 5}},
		{Shape{1, 4, 2, 128, 40, BF16}, PerHead, true, false, budget.Spec{Tokens: 8, Sink: 4, Local: 4}}, // heavy 0
		{Shape{1, 8, 1, 128, 100, BF16}, PerKVHead, true, false, budget.Spec{Tokens: 1}},                 // k = 1
		{Shape{1, 32, 8, 128, 70001, BF16}, PerHead, false, false, budget.Spec{Sparsity: 32, Sink: 4, Local: 32}},
		{Shape{2, 8, 2, 128, 3000, BF16}, PerKVHead, false, false, budget.Spec{Sparsity: 8, Sink: 4, Local: 16}},
		{Shape{1, 32, 8, 128, 40000, BF16}, PerKVHead, false, false, budget.Spec{Sparsity: 32, Sink: 4, Local: 32}},
		{Shape{1, 6, 3, 64, 2049, FP16}, PerKVHead, false, false, budget.Spec{Sparsity: 16}},
	} {
		s, sel := tc.s, tc.sel
		b := tc.spec.Resolve(s.Context)
		name := fmt.Sprintf("%+v %v budget %+v ints=%v zero=%v", s, sel, b, tc.ints, tc.zero)
		var kv kvData
		var q []float32
		if tc.ints {
			kv = intKV(rng, s, 8)
			q = make([]float32, s.Batch*s.Heads*s.HeadDim)
			for i := range q {
				if !tc.zero {
					q[i] = float32(rng.IntN(17) - 8)
				}
			}
		} else {
			kv = randKV(rng, s)
			q = randQ(rng, s, 1)
		}
		vv := randKV(rng, s)
		checkOracleStep(t, d, name, s, sel, b, q, kv, vv, tc.ints)
	}
}

// checkOracleStep runs the oracle step on the GPU and checks its scores
// against float64 dot products, its lists against the radix top-k of its
// own list scores (exactly) and against methods.Oracle (exactly when the
// scores are exact, else as a multiset of CPU scores), and its output
// against the float64 reference on its lists.
func checkOracleStep(t *testing.T, d *Device, name string, s Shape, sel Selection, b budget.Budget, q []float32, kv, vv kvData, exact bool) {
	t.Helper()
	lists := s.Batch * s.Lists(sel)
	L := make([]float32, s.Batch*s.Heads*s.Context)
	S := make([]float32, lists*s.Context)
	idx := make([]int32, lists*b.Total)
	out := make([]float32, s.Batch*s.Heads*s.HeadDim)
	var plan string
	err := d.Do(func(c *Ctx) error {
		o, err := NewOracleStep(c, s, sel, b)
		if err != nil {
			return err
		}
		defer o.Free(c)
		plan = fmt.Sprintf("score %d×%d, top-k %d×%d", o.SBlocks, o.SChunk, o.Blocks, o.Chunk)
		in, free, err := uploadInputs(c, q, kv, vv)
		defer free()
		if err != nil {
			return err
		}
		if err := poisonAll(c, o.Idx, o.Dec.Out, o.L, o.S); err != nil {
			return err
		}
		// Twice: the passes must leave their state clean for the next call.
		for i := 0; i < 2; i++ {
			if err := o.Enqueue(c, 0, in); err != nil {
				return err
			}
		}
		if err := c.Sync(); err != nil {
			return err
		}
		return errors.Join(Download(c, L, o.L), Download(c, S, o.S), Download(c, idx, o.Idx), Download(c, out, o.Dec.Out))
	})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	// Raw scores against float64 dot products.
	var worst float64
	for bb := 0; bb < s.Batch; bb++ {
		for h := 0; h < s.Heads; h++ {
			k := kv.mats[bb*s.KVHeads+h/(s.Heads/s.KVHeads)]
			o := (bb*s.Heads + h) * s.HeadDim
			for j := 0; j < s.Context; j++ {
				var dot, mag float64
				for i, x := range k.Row(j) {
					dot += float64(q[o+i]) * float64(x)
					mag += math.Abs(float64(q[o+i]) * float64(x))
				}
				got := float64(L[(bb*s.Heads+h)*s.Context+j])
				e := math.Abs(got - dot)
				if exact && e != 0 || e > 1e-5*mag+1e-30 {
					t.Fatalf("%s: score b%d h%d key %d = %g, want %g", name, bb, h, j, got, dot)
				}
				worst = max(worst, e/max(mag, 1e-30))
			}
		}
	}
	cpu := cpuLists(t, "oracle", func(p any) { p.(*methods.OracleParams).Windows = true }, s, sel, q, kv, vv, b)
	lo, hi := b.MiddleRange()
	for li := 0; li < lists; li++ {
		got := idx[li*b.Total : (li+1)*b.Total]
		// 1. The radix select is exact on the GPU's own list scores.
		gs := S[li*s.Context : (li+1)*s.Context]
		want := b.Fixed(nil)[:b.Sink]
		want, _ = methods.TopKIndices(gs, lo, hi, b.Heavy, want, nil)
		for i := s.Context - b.Local; i < s.Context; i++ {
			want = append(want, int32(i))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s: list %d is not the top-k of the GPU scores\n got %v\nwant %v", name, li, got, want)
		}
		// 2. Against methods.Oracle: exact for exact scores, else the
		// same multiset of CPU scores within rounding.
		if exact && sel == PerHead {
			if !slices.Equal(got, cpu[li]) {
				t.Fatalf("%s: list %d differs from methods.Oracle\n got %v\nwant %v", name, li, got, cpu[li])
			}
			continue
		}
		cs := cpuListScores(s, sel, q, kv, li/s.Lists(sel), li%s.Lists(sel))
		a, w := sortedScores(cs, got), sortedScores(cs, cpu[li])
		if a == nil || len(a) != len(w) {
			t.Fatalf("%s: list %d: bad positions %v", name, li, got)
		}
		top := math.Max(math.Abs(w[0]), math.Abs(w[len(w)-1]))
		for i := range a {
			if math.Abs(a[i]-w[i]) > 1e-5*top {
				t.Fatalf("%s: list %d: score multiset differs from methods.Oracle at %d: %g vs %g", name, li, i, a[i], w[i])
			}
		}
	}
	// Output against the float64 reference on the GPU's lists.
	want := make([]float64, len(out))
	g := s.Heads / s.KVHeads
	scale := float32(1 / math.Sqrt(float64(s.HeadDim)))
	for bb := 0; bb < s.Batch; bb++ {
		for h := 0; h < s.Heads; h++ {
			m := bb*s.KVHeads + h/g
			o := (bb*s.Heads + h) * s.HeadDim
			li := bb*s.KVHeads + h/g
			if sel == PerHead {
				li = bb*s.Heads + h
			}
			logits := attn.Logits(q[o:o+s.HeadDim], kv.mats[m], s.Context, scale, nil)
			copy(want[o:o+s.HeadDim], attn.SparseOutput(logits, idx[li*b.Total:(li+1)*b.Total], vv.mats[m], nil))
		}
	}
	if e := relErr(out, want); !(e < 1e-2) {
		t.Errorf("%s: step output rel err %.2e", name, e)
	} else {
		t.Logf("%s: %s; scores rel err <= %.1e, lists = top-k of GPU scores, = methods.Oracle, output rel err %.1e", name, plan, worst, e)
	}
}

// TestRadixTopKAdversarial runs the top-k alone on hand-made score
// lists: all equal, signed zeros, few distinct values, a wide range,
// values that differ in the last bit only.
func TestRadixTopKAdversarial(t *testing.T) {
	d := device(t)
	rng := rand.New(rand.NewPCG(9, 10))
	s := Shape{1, 4, 4, 128, 4099, BF16}
	gens := map[string]func(j int) float32{
		"equal":     func(int) float32 { return 1.5 },
		"zeros":     func(j int) float32 { return float32(math.Copysign(0, float64(j%2*2-1))) },
		"few":       func(int) float32 { return float32(rng.IntN(5) - 2) },
		"wide":      func(int) float32 { return float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(60)-30))) },
		"last-bit":  func(int) float32 { return math.Float32frombits(0x3f800000 + uint32(rng.IntN(3))) },
		"negatives": func(int) float32 { return -float32(rng.ExpFloat64()) },
	}
	for _, name := range []string{"equal", "zeros", "few", "wide", "last-bit", "negatives"} {
		for _, spec := range []budget.Spec{{Sparsity: 32, Sink: 2, Local: 3}, {Tokens: 1}, {Tokens: s.Context}, {Sparsity: 2}} {
			b := spec.Resolve(s.Context)
			lists := s.Lists(PerHead)
			sc := make([]float32, lists*s.Context)
			for i := range sc {
				sc[i] = gens[name](i)
			}
			idx := make([]int32, lists*b.Total)
			err := d.Do(func(c *Ctx) error {
				o, err := NewOracleStep(c, s, PerHead, b)
				if err != nil {
					return err
				}
				defer o.Free(c)
				if err := CopyTo(c, o.S, sc); err != nil {
					return err
				}
				if err := c.Poison(o.Idx); err != nil {
					return err
				}
				for i := 0; i < 2; i++ {
					if err := o.EnqueueTopK(c, 0); err != nil {
						return err
					}
				}
				if err := c.Sync(); err != nil {
					return err
				}
				return Download(c, idx, o.Idx)
			})
			if err != nil {
				t.Fatalf("%s %+v: %v", name, b, err)
			}
			lo, hi := b.MiddleRange()
			for li := 0; li < lists; li++ {
				want := b.Fixed(nil)[:b.Sink]
				want, _ = methods.TopKIndices(sc[li*s.Context:(li+1)*s.Context], lo, hi, b.Heavy, want, nil)
				for i := s.Context - b.Local; i < s.Context; i++ {
					want = append(want, int32(i))
				}
				if got := idx[li*b.Total : (li+1)*b.Total]; !slices.Equal(got, want) {
					t.Fatalf("%s %+v list %d:\n got %v\nwant %v", name, b, li, got, want)
				}
			}
		}
	}
}

func TestStreamStepMatchesReference(t *testing.T) {
	d := device(t)
	rng := rand.New(rand.NewPCG(11, 12))
	for _, tc := range []struct {
		s    Shape
		sel  Selection
		spec budget.Spec
	}{
		{Shape{1, 32, 8, 128, 70001, BF16}, PerKVHead, budget.Spec{Sparsity: 32, Sink: 4, Local: 32}},
		{Shape{2, 8, 2, 128, 3000, BF16}, PerHead, budget.Spec{Sparsity: 8, Sink: 4}},
		{Shape{1, 4, 4, 64, 77, FP16}, PerKVHead, budget.Spec{Tokens: 1}},
		{Shape{1, 8, 1, 128, 100, BF16}, PerKVHead, budget.Spec{Tokens: 100, Sink: 4}},
	} {
		s, sel := tc.s, tc.sel
		b := tc.spec.Resolve(s.Context)
		kv, vv := randKV(rng, s), randKV(rng, s)
		q := randQ(rng, s, 1)
		checkStreamStep(t, d, s, sel, b, q, kv, vv)
	}
}

// checkStreamStep runs the StreamingLLM step on the GPU and checks its
// lists against methods.Streaming and its output against the float64
// reference.
func checkStreamStep(t *testing.T, d *Device, s Shape, sel Selection, b budget.Budget, q []float32, kv, vv kvData) {
	t.Helper()
	lists := s.Batch * s.Lists(sel)
	idx := make([]int32, lists*b.Total)
	out := make([]float32, s.Batch*s.Heads*s.HeadDim)
	err := d.Do(func(c *Ctx) error {
		st, err := NewStreamStep(c, s, sel, b)
		if err != nil {
			return err
		}
		defer st.Free(c)
		in, free, err := uploadInputs(c, q, kv, vv)
		defer free()
		if err != nil {
			return err
		}
		if err := c.Poison(st.Idx); err != nil {
			return err
		}
		if err := st.Enqueue(c, 0, in); err != nil {
			return err
		}
		if err := c.Sync(); err != nil {
			return err
		}
		if err := Download(c, idx, st.Idx); err != nil {
			return err
		}
		return Download(c, out, st.Dec.Out)
	})
	if err != nil {
		t.Fatalf("%+v: %v", s, err)
	}
	cpu := cpuLists(t, "streaming", nil, s, sel, q, kv, vv, b)
	for li := 0; li < lists; li++ {
		if got := idx[li*b.Total : (li+1)*b.Total]; !slices.Equal(got, cpu[li]) {
			t.Fatalf("%+v %v list %d:\n got %v\nwant %v", s, sel, li, got, cpu[li])
		}
	}
	want := make([]float64, len(out))
	g := s.Heads / s.KVHeads
	scale := float32(1 / math.Sqrt(float64(s.HeadDim)))
	for bb := 0; bb < s.Batch; bb++ {
		for h := 0; h < s.Heads; h++ {
			m := bb*s.KVHeads + h/g
			o := (bb*s.Heads + h) * s.HeadDim
			logits := attn.Logits(q[o:o+s.HeadDim], kv.mats[m], s.Context, scale, nil)
			copy(want[o:o+s.HeadDim], attn.SparseOutput(logits, cpu[0], vv.mats[m], nil))
		}
	}
	if e := relErr(out, want); !(e < 1e-2) {
		t.Errorf("%+v %v: output rel err %.2e", s, sel, e)
	} else {
		t.Logf("%+v %v budget %+v: lists = methods.Streaming, output rel err %.1e", s, sel, b, e)
	}
}

func TestRadixTopKItems(t *testing.T) {
	for _, tc := range []struct{ n, sink, local, div int }{
		{100, 0, 0, 1}, {100, 4, 16, 1}, {100, 4, 16, 16}, {5001, 1, 3, 7}, {10, 0, 0, 16}, {40, 4, 36, 8}, {33, 16, 1, 16},
	} {
		b := budget.Budget{N: tc.n, Sink: tc.sink, Local: tc.local}
		r := &RadixTopK{Budget: b, Div: tc.div}
		lo, hi := b.MiddleRange()
		pages := map[int]bool{}
		for j := lo; j < hi; j++ {
			pages[j/tc.div] = true
		}
		if r.Items() != len(pages) {
			t.Errorf("%+v: Items() = %d, want %d", tc, r.Items(), len(pages))
		}
	}
}

func TestParseTopKTuning(t *testing.T) {
	if tt, err := ParseTopKTuning(""); err != nil || tt != (TopKTuning{4, 4}) {
		t.Errorf("default %+v, %v", tt, err)
	}
	if tt, err := ParseTopKTuning("bps=8, unr=2"); err != nil || tt != (TopKTuning{8, 2}) {
		t.Errorf("override %+v, %v", tt, err)
	}
	for _, bad := range []string{"bps", "bps=0", "unr=x", "blocks=4"} {
		if _, err := ParseTopKTuning(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
