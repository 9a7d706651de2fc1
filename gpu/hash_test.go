package gpu

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/methods"
	"github.com/hbench/hbench/tensor"
)

// randMLP returns a random in -> 128 -> 128 -> nbits map as the CPU
// methods.MLP and as the kernels' HashMap.
func randMLP(rng *rand.Rand, in, nbits int) (*methods.MLP, HashMap) {
	m := &methods.MLP{}
	var hm HashMap
	dims := []int{in, HashHidden, HashHidden, nbits}
	for l := 0; l < 3; l++ {
		w := tensor.NewMat(dims[l+1], dims[l])
		sd := 1 / math.Sqrt(float64(dims[l]))
		for i := range w.Data {
			w.Data[i] = float32(sd * rng.NormFloat64())
		}
		b := make([]float32, dims[l+1])
		for i := range b {
			b[i] = float32(0.1 * rng.NormFloat64())
		}
		m.W = append(m.W, w)
		m.B = append(m.B, b)
	}
	hm = HashMap{W1: m.W[0].Data, B1: m.B[0], W2: m.W[1].Data, B2: m.B[1], W3: m.W[2].Data, B3: m.B[2]}
	return m, hm
}

// cpuCode is methods.MLP.Code as uint32 words.
func cpuCode(m *methods.MLP, x []float32) []uint32 {
	buf := [2][]float32{make([]float32, 0, HashHidden), make([]float32, 0, HashHidden)}
	c := m.Code(x, "silu", buf, nil)
	out := make([]uint32, 0, 2*len(c))
	for _, w := range c {
		out = append(out, uint32(w), uint32(w>>32))
	}
	return out[:m.Out()/32]
}

// withHashTuning runs f under each select variant (fused: one launch,
// with the query MLP before it, beside it through programmatic dependent
// launch or not, its weights preloaded or not, scores in shared memory or
// the scratch buffer; or inside it; three kernels), restoring the tuning
// after.
func withHashTuning(t *testing.T, f func(t *testing.T)) {
	old := hashTuning
	defer func() { hashTuning = old }()
	for _, v := range []struct{ fused, mlp, pdl, preload, smem int }{
		{1, 0, 1, 1, 1}, {1, 0, 1, 0, 0}, {1, 0, 0, 1, 1}, {1, 1, 0, 0, 0}, {0, 0, 0, 0, 0},
	} {
		hashTuning.fused, hashTuning.mlp, hashTuning.pdl, hashTuning.preload, hashTuning.smem = v.fused, v.mlp, v.pdl, v.preload, v.smem
		t.Run(fmt.Sprintf("fused=%d,mlp=%d,pdl=%d,preload=%d,smem=%d", v.fused, v.mlp, v.pdl, v.preload, v.smem), f)
	}
}

func TestHashStepMatchesReference(t *testing.T) {
	withHashTuning(t, testHashStepMatchesReference)
}

func testHashStepMatchesReference(t *testing.T) {
	d := device(t)
	rng := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []struct {
		s         Shape
		sel       Selection
		nbits     int
		codeHeads int // 0: Heads
		spec      budget.Spec
	}{
		{Shape{2, 8, 2, 128, 3000, BF16}, PerKVHead, 32, 0, budget.Spec{Sparsity: 8, Sink: 4, Local: 16}},
		{Shape{2, 8, 2, 128, 3000, BF16}, PerKVHead, 32, 2, budget.Spec{Sparsity: 8, Sink: 4, Local: 16}},
		{Shape{1, 8, 2, 128, 5001, BF16}, PerHead, 32, 0, budget.Spec{Sparsity: 32, Sink: 4, Local: 32}},
		{Shape{1, 4, 4, 64, 777, FP16}, PerHead, 64, 0, budget.Spec{Sparsity: 4, Sink: 1, Local: 3}},
		{Shape{1, 8, 1, 128, 100, BF16}, PerKVHead, 64, 1, budget.Spec{Sparsity: 4, Sink: 0, Local: 0}},
		{Shape{1, 4, 2, 128, 40, BF16}, PerHead, 32, 0, budget.Spec{Tokens: 1}}, // k = 1
		{Shape{1, 8, 2, 128, 70001, BF16}, PerKVHead, 32, 2, budget.Spec{Sparsity: 32, Sink: 4, Local: 32}},
		{Shape{2, 4, 4, 128, 40000, FP16}, PerHead, 32, 0, budget.Spec{Sparsity: 16, Sink: 4, Local: 32}},
	} {
		s := tc.s
		ch := tc.codeHeads
		if ch == 0 {
			ch = s.Heads
		}
		b := tc.spec.Resolve(s.Context)
		words := tc.nbits / 32
		kv, vv := randKV(rng, s), randKV(rng, s)
		q := randQ(rng, s, 1)
		var kmaps, qmaps []HashMap
		var kcpu, qcpu []*methods.MLP
		for i := 0; i < ch; i++ {
			m, hm := randMLP(rng, s.HeadDim, tc.nbits)
			kcpu, kmaps = append(kcpu, m), append(kmaps, hm)
		}
		for i := 0; i < s.Heads; i++ {
			m, hm := randMLP(rng, s.HeadDim, tc.nbits)
			qcpu, qmaps = append(qcpu, m), append(qmaps, hm)
		}
		kw, err := PackHashMaps(kmaps, s.HeadDim, tc.nbits)
		if err != nil {
			t.Fatal(err)
		}
		qw, err := PackHashMaps(qmaps, s.HeadDim, tc.nbits)
		if err != nil {
			t.Fatal(err)
		}
		lists := s.Batch * s.Lists(tc.sel)
		kc := make([]uint32, s.Batch*ch*s.Context*words)
		qc := make([]uint32, s.Batch*s.Heads*words)
		idx := make([]int32, lists*b.Total)
		out := make([]float32, s.Batch*s.Heads*s.HeadDim)
		err = d.Do(func(c *Ctx) error {
			h, err := NewHashStep(c, s, tc.sel, tc.nbits, ch, b)
			if err != nil {
				return err
			}
			defer h.Free(c)
			in, free, err := uploadInputs(c, q, kv, vv)
			defer free()
			if err != nil {
				return err
			}
			var kwb, qwb, kcb Buffer
			for _, u := range []struct {
				dst *Buffer
				up  func() (Buffer, error)
			}{
				{&kwb, func() (Buffer, error) { return Upload(c, kw) }},
				{&qwb, func() (Buffer, error) { return Upload(c, qw) }},
				{&kcb, func() (Buffer, error) { return c.Alloc(h.KeyCodeBytes()) }},
			} {
				if *u.dst, err = u.up(); err != nil {
					return err
				}
				defer c.Free(*u.dst)
			}
			if err := poisonAll(c, h.Idx, h.Dec.Out, h.QC, kcb); err != nil {
				return err
			}
			if err := h.EnqueueKeyCodes(c, 0, in.K, kwb, kcb); err != nil {
				return err
			}
			// Twice directly, then twice through a graph: the fused
			// select must leave its barrier and histograms reset.
			for range 2 {
				if err := h.Enqueue(c, 0, in, qwb, kcb); err != nil {
					return err
				}
			}
			if err := c.Sync(); err != nil {
				return err
			}
			if err := c.Poison(h.Idx); err != nil {
				return err
			}
			st, err := c.NewStream()
			if err != nil {
				return err
			}
			defer c.DestroyStream(st)
			g, err := c.Capture(st, func() error { return h.Enqueue(c, st, in, qwb, kcb) })
			if err != nil {
				return fmt.Errorf("capture the step (fused=%v): %w", h.Fused, err)
			}
			defer c.DestroyGraph(g)
			for range 2 {
				if err := c.LaunchGraph(g, st); err != nil {
					return err
				}
			}
			if err := c.Sync(); err != nil {
				return err
			}
			return errors.Join(Download(c, kc, kcb), Download(c, qc, h.QC), Download(c, idx, h.Idx), Download(c, out, h.Dec.Out))
		})
		if err != nil {
			t.Fatalf("%+v: %v", s, err)
		}
		name := func() string { return fmt.Sprintf("%+v %s", s, tc.sel) }
		// Codes against the CPU HashAttention MLP (methods.MLP.Code).
		var diff, total int
		g := s.Heads / s.KVHeads
		for bb := 0; bb < s.Batch; bb++ {
			for c := 0; c < ch; c++ {
				m := kv.mats[bb*s.KVHeads+c/(ch/s.KVHeads)]
				for j := 0; j < s.Context; j++ {
					want := cpuCode(kcpu[c], m.Row(j))
					for w := 0; w < words; w++ {
						diff += bits.OnesCount32(want[w] ^ kc[((bb*ch+c)*s.Context+j)*words+w])
						total += 32
					}
				}
			}
			for h := 0; h < s.Heads; h++ {
				o := (bb*s.Heads + h) * s.HeadDim
				want := cpuCode(qcpu[h], q[o:o+s.HeadDim])
				for w := 0; w < words; w++ {
					diff += bits.OnesCount32(want[w] ^ qc[(bb*s.Heads+h)*words+w])
					total += 32
				}
			}
		}
		if float64(diff) > 1e-3*float64(total) {
			t.Errorf("%s: %d of %d code bits differ from methods.MLP.Code", name(), diff, total)
		}
		// Selection against the CPU top-k on the same codes.
		selHeads := 1
		if tc.sel == PerKVHead {
			selHeads = g
		}
		scores := make([]float32, s.Context)
		for bb := 0; bb < s.Batch; bb++ {
			for l := 0; l < s.Lists(tc.sel); l++ {
				clear(scores)
				for gg := 0; gg < selHeads; gg++ {
					h := l*selHeads + gg
					c := h / (s.Heads / ch)
					for j := range scores {
						for w := 0; w < words; w++ {
							scores[j] += float32(32 - bits.OnesCount32(qc[(bb*s.Heads+h)*words+w]^kc[((bb*ch+c)*s.Context+j)*words+w]))
						}
					}
				}
				want := b.Fixed(nil)[:b.Sink]
				lo, hi := b.MiddleRange()
				want, _ = methods.TopKIndices(scores, lo, hi, b.Heavy, want, nil)
				for i := s.Context - b.Local; i < s.Context; i++ {
					want = append(want, int32(i))
				}
				li := bb*s.Lists(tc.sel) + l
				got := idx[li*b.Total : (li+1)*b.Total]
				if !slices.Equal(got, want) {
					ms := func(xs []int32) []float32 {
						v := make([]float32, len(xs))
						for i, x := range xs {
							if x < 0 || int(x) >= s.Context {
								return nil
							}
							v[i] = scores[x]
						}
						slices.Sort(v)
						return v
					}
					a, w := ms(got), ms(want)
					if a == nil || !slices.Equal(a, w) {
						t.Fatalf("%s batch %d list %d: selection differs as a multiset of scores\n got %v\nwant %v", name(), bb, l, got, want)
					}
					t.Errorf("%s batch %d list %d: same score multiset but not the deterministic tie-break order", name(), bb, l)
				}
			}
		}
		// Output of the step against the float64 reference on its lists.
		want := make([]float64, len(out))
		scale := float32(1 / math.Sqrt(float64(s.HeadDim)))
		for bb := 0; bb < s.Batch; bb++ {
			for h := 0; h < s.Heads; h++ {
				m := bb*s.KVHeads + h/g
				o := (bb*s.Heads + h) * s.HeadDim
				li := bb*s.Lists(tc.sel) + h/selHeads
				if tc.sel == PerHead {
					li = bb*s.Heads + h
				}
				logits := attn.Logits(q[o:o+s.HeadDim], kv.mats[m], s.Context, scale, nil)
				copy(want[o:o+s.HeadDim], attn.SparseOutput(logits, idx[li*b.Total:(li+1)*b.Total], vv.mats[m], nil))
			}
		}
		if e := relErr(out, want); !(e < 1e-2) {
			t.Errorf("%s: step output rel err %.2e", name(), e)
		} else {
			t.Logf("%+v %s bits=%d codes=%d budget=%+v: %d/%d code bits differ, lists exact, output rel err %.1e", s, tc.sel, tc.nbits, ch, b, diff, total, e)
		}
	}
}

// TestHashSelectTies runs the counting select alone on hand-made codes
// whose scores take few values (all equal; two values; a staircase), so
// the threshold bin holds many tied keys and the tie-break decides:
// lists must equal methods.TopKIndices exactly.
func TestHashSelectTies(t *testing.T) {
	withHashTuning(t, testHashSelectTies)
}

func testHashSelectTies(t *testing.T) {
	d := device(t)
	for _, tc := range []struct {
		name  string
		s     Shape
		sel   Selection
		nbits int
		spec  budget.Spec
		code  func(j int) uint32 // key code word of position j (every word)
		zeroQ bool               // query codes 0 (else spread)
	}{
		{"all equal", Shape{1, 4, 1, 128, 9000, BF16}, PerKVHead, 32, budget.Spec{Sparsity: 8, Sink: 4, Local: 16}, func(j int) uint32 { return 0x0f0f0f0f }, false},
		{"two values", Shape{1, 4, 1, 128, 20011, BF16}, PerKVHead, 64, budget.Spec{Sparsity: 32, Sink: 2, Local: 8}, func(j int) uint32 {
			if j%3 == 0 {
				return 0xffffffff
			}
			return 0
		}, false},
		{"staircase", Shape{2, 2, 2, 64, 33333, FP16}, PerHead, 32, budget.Spec{Sparsity: 4, Sink: 0, Local: 0}, func(j int) uint32 { return 1<<(j%33) - 1 }, false},
		{"all equal, k = 1", Shape{1, 8, 1, 128, 4097, BF16}, PerKVHead, 32, budget.Spec{Tokens: 1}, func(j int) uint32 { return 7 }, false},
		// the threshold at the ends of the score range (T = SMAX, T = 0),
		// with byte scores up to 128 and 16-bit scores up to 512
		{"all at the top", Shape{1, 4, 1, 128, 9000, BF16}, PerKVHead, 32, budget.Spec{Sparsity: 8, Sink: 4, Local: 16}, func(j int) uint32 { return 0 }, true},
		{"all at zero", Shape{1, 4, 1, 128, 9000, BF16}, PerKVHead, 32, budget.Spec{Sparsity: 8, Sink: 4, Local: 16}, func(j int) uint32 { return ^uint32(0) }, true},
		{"a fifth at the top, T = SMAX", Shape{1, 8, 2, 128, 20000, BF16}, PerKVHead, 32, budget.Spec{Sparsity: 8, Sink: 4, Local: 32}, fifthAtTop, true},
		{"a fifth at the top, T = 0", Shape{1, 8, 2, 128, 20000, BF16}, PerKVHead, 32, budget.Spec{Sparsity: 4, Sink: 4, Local: 32}, fifthAtTop, true},
		{"16-bit scores, T = SMAX", Shape{1, 8, 1, 128, 5000, BF16}, PerKVHead, 64, budget.Spec{Sparsity: 8, Sink: 4, Local: 16}, fifthAtTop, true},
		{"16-bit scores, T = 0", Shape{1, 8, 1, 128, 5000, BF16}, PerKVHead, 64, budget.Spec{Sparsity: 4, Sink: 4, Local: 16}, fifthAtTop, true},
		// blocks whose own scores lie far from the list's threshold
		{"the top third first", Shape{1, 4, 1, 128, 30000, BF16}, PerKVHead, 32, budget.Spec{Sparsity: 8, Sink: 4, Local: 16}, func(j int) uint32 {
			if j < 10000 {
				return 0
			}
			return ^uint32(0)
		}, true},
	} {
		s, b, words := tc.s, tc.spec.Resolve(tc.s.Context), tc.nbits/32
		qc := make([]uint32, s.Batch*s.Heads*words)
		for i := range qc {
			if !tc.zeroQ {
				qc[i] = uint32(i) * 0x9e3779b9
			}
		}
		kc := make([]uint32, s.Batch*s.KVHeads*s.Context*words)
		for i := range kc {
			kc[i] = tc.code(i / words % s.Context)
		}
		lists := s.Batch * s.Lists(tc.sel)
		idx := make([]int32, lists*b.Total)
		err := d.Do(func(c *Ctx) error {
			h, err := NewHashStep(c, s, tc.sel, tc.nbits, s.KVHeads, b)
			if err != nil {
				return err
			}
			defer h.Free(c)
			kcb, err := Upload(c, kc)
			if err != nil {
				return err
			}
			defer c.Free(kcb)
			qcb, err := Upload(c, qc)
			if err != nil {
				return err
			}
			defer c.Free(qcb)
			if err := c.CopyDtoD(h.QC, qcb, qcb.Size, 0); err != nil {
				return err
			}
			if err := c.Poison(h.Idx); err != nil {
				return err
			}
			for range 3 {
				if err := h.EnqueueSelectCodes(c, 0, kcb); err != nil {
					return err
				}
			}
			if err := c.Sync(); err != nil {
				return err
			}
			return Download(c, idx, h.Idx)
		})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		g := s.Heads / s.KVHeads
		selHeads := 1
		if tc.sel == PerKVHead {
			selHeads = g
		}
		scores := make([]float32, s.Context)
		for bb := 0; bb < s.Batch; bb++ {
			for l := 0; l < s.Lists(tc.sel); l++ {
				clear(scores)
				for gg := 0; gg < selHeads; gg++ {
					h := l*selHeads + gg
					for j := range scores {
						for w := 0; w < words; w++ {
							scores[j] += float32(32 - bits.OnesCount32(qc[(bb*s.Heads+h)*words+w]^kc[((bb*s.KVHeads+h/g)*s.Context+j)*words+w]))
						}
					}
				}
				want := b.Fixed(nil)[:b.Sink]
				lo, hi := b.MiddleRange()
				want, _ = methods.TopKIndices(scores, lo, hi, b.Heavy, want, nil)
				for i := s.Context - b.Local; i < s.Context; i++ {
					want = append(want, int32(i))
				}
				li := bb*s.Lists(tc.sel) + l
				if got := idx[li*b.Total : (li+1)*b.Total]; !slices.Equal(got, want) {
					t.Errorf("%s batch %d list %d: lists differ\n got %v\nwant %v", tc.name, bb, l, head(got), head(want))
				}
			}
		}
	}
}

func head(x []int32) []int32 { return x[:min(len(x), 40)] }

// fifthAtTop is a key code that matches a zero query code at every fifth
// position and nowhere else.
func fifthAtTop(j int) uint32 {
	if j%5 == 0 {
		return 0
	}
	return ^uint32(0)
}

func TestSelVF(t *testing.T) {
	spec := budget.Spec{Sparsity: 32, Sink: 4, Local: 32}
	for _, tc := range []struct {
		s    Shape
		sel  Selection
		sms  int
		want int
	}{
		{Shape{1, 32, 8, 128, 128 << 10, BF16}, PerKVHead, 132, 8}, // 32 blocks of 4096 keys per list
		{Shape{1, 32, 8, 128, 256 << 10, BF16}, PerKVHead, 132, 8}, // 64 (of 66 that fit)
		{Shape{1, 32, 8, 128, 1 << 20, BF16}, PerKVHead, 132, 4},   // 66 blocks of 15.9K keys
		{Shape{1, 32, 8, 128, 128 << 10, BF16}, PerHead, 132, 4},   // 32 lists: 16 blocks of 8K keys
		{Shape{1, 32, 8, 128, 128 << 10, BF16}, PerKVHead, 108, 8}, // A100: 54 blocks fit
		{Shape{4, 32, 8, 128, 128 << 10, BF16}, PerKVHead, 132, 4}, // batch 4: 16 blocks of 8K keys
	} {
		if got := selVF(tc.s, tc.sel, spec.Resolve(tc.s.Context), tc.sms); got != tc.want {
			t.Errorf("%+v %v on %d SMs: SEL_VF %d, want %d", tc.s, tc.sel, tc.sms, got, tc.want)
		}
	}
}
