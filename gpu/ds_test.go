package gpu

import (
	"errors"
	"fmt"
	"math"
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

// quantLabels is methods' per-token min-max quantisation of x to bits.
func quantLabels(x []float32, bits int) {
	a, b := x[0], x[0]
	for _, v := range x {
		a, b = min(a, v), max(b, v)
	}
	step := (float64(b) - float64(a)) / float64(int(1)<<bits-1)
	if step == 0 {
		return
	}
	for i, v := range x {
		x[i] = float32(float64(a) + math.Round((float64(v)-float64(a))/step)*step)
	}
}

// randCalibration returns one random calibration group per KV head
// (layer, KV head as the evaluated groups; T positions of Q and K).
func randCalibration(rng *rand.Rand, s Shape, layer, T int) []*attn.Group {
	g := s.Heads / s.KVHeads
	var out []*attn.Group
	rm := func() *tensor.Mat {
		m := tensor.NewMat(T, s.HeadDim)
		for i := range m.Data {
			m.Data[i] = float32(rng.NormFloat64() * (1 + float64(i%s.HeadDim)/float64(s.HeadDim)))
		}
		return m
	}
	for kh := 0; kh < s.KVHeads; kh++ {
		grp := &attn.Group{Layer: layer, KVHead: kh, K: rm(), V: rm(), Scale: 1}
		for h := kh * g; h < (kh+1)*g; h++ {
			grp.Q = append(grp.Q, rm())
			grp.QHeads = append(grp.QHeads, h)
		}
		out = append(out, grp)
	}
	return out
}

func TestDSStepMatchesReference(t *testing.T) {
	d := device(t)
	rng := rand.New(rand.NewPCG(31, 32))
	for _, tc := range []struct {
		s       Shape
		sel     Selection
		r, bits int
		spec    budget.Spec
	}{
		{Shape{2, 8, 2, 128, 3001, BF16}, PerKVHead, 16, 16, budget.Spec{Sparsity: 8, Sink: 4, Local: 16}},
		{Shape{2, 8, 2, 128, 3001, BF16}, PerHead, 16, 4, budget.Spec{Sparsity: 8, Sink: 4, Local: 16}},
		{Shape{1, 8, 2, 128, 5001, BF16}, PerHead, 13, 16, budget.Spec{Sparsity: 32, Sink: 4, Local: 32}}, // r not a multiple of 4
		{Shape{1, 4, 4, 64, 777, FP16}, PerHead, 8, 16, budget.Spec{Sparsity: 4, Sink: 1, Local: 3}},
		{Shape{1, 8, 8, 128, 2049, BF16}, PerKVHead, 32, 8, budget.Spec{Sparsity: 16, Sink: 2, Local: 5}}, // group 1
		{Shape{2, 4, 1, 128, 1000, BF16}, PerKVHead, 6, 3, budget.Spec{Sparsity: 4}},                      // group 4, no sink/local
		{Shape{1, 32, 8, 128, 40000, BF16}, PerKVHead, 16, 16, budget.Spec{Sparsity: 32, Sink: 4, Local: 32}},
		{Shape{1, 4, 2, 128, 40, BF16}, PerHead, 128, 16, budget.Spec{Tokens: 1}}, // k = 1, r = d
		{Shape{1, 8, 2, 64, 333, FP16}, PerKVHead, 1, 16, budget.Spec{Tokens: 1}}, // k = 1, r = 1
	} {
		s := tc.s
		b := tc.spec.Resolve(s.Context)
		kv, vv := randKV(rng, s), randKV(rng, s)
		q := randQ(rng, s, 1)
		cal := randCalibration(rng, s, 0, 64)
		name := fmt.Sprintf("%+v %v r=%d bits=%d budget %+v", s, tc.sel, tc.r, tc.bits, b)
		checkDSStep(t, d, name, s, tc.sel, tc.r, tc.bits, 0, cal, b, q, kv, vv)
	}
}

// TestDSStepOnRealCapture runs the Double Sparsity step on the shipped
// real capture sample at several query positions, calibrated on the
// whole capture file (as calibration: self on the full sequence).
func TestDSStepOnRealCapture(t *testing.T) {
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
		var cal []*attn.Group
		for kh := 0; kh < c.KVHeads; kh++ {
			grp := &attn.Group{Layer: c.Layer, KVHead: kh, K: c.K[kh], V: c.V[kh], Scale: c.Scale}
			for h := kh * c.Group(); h < (kh+1)*c.Group(); h++ {
				grp.Q, grp.QHeads = append(grp.Q, c.Q[h]), append(grp.QHeads, h)
			}
			cal = append(cal, grp)
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
				r, bits int
				spec    budget.Spec
			}{{16, 16, budget.Spec{Sparsity: 8, Sink: 4, Local: 16}}, {16, 4, budget.Spec{Sparsity: 32}}} {
				b := v.spec.Resolve(n)
				for _, sel := range []Selection{PerHead, PerKVHead} {
					name := fmt.Sprintf("%s pos %d %v r=%d bits=%d budget %+v", filepath.Base(f), pos, sel, v.r, v.bits, b)
					checkDSStep(t, d, name, s, sel, v.r, v.bits, c.Layer, cal, b, q, kv, vv)
				}
			}
		}
	}
}

// checkDSStep runs the Double Sparsity step with the channels calibrated
// on cal (one group per KV head) and checks its labels (exactly), its
// scores against the CPU's Dot32 scores (exactly), its lists against
// methods.DoubleSparsity (exactly; on a mismatch it reports whether the
// multiset of CPU scores agrees) and its output against the float64
// reference on its lists.
func checkDSStep(t *testing.T, d *Device, name string, s Shape, sel Selection, r, nbits, layer int, cal []*attn.Group, b budget.Budget, q []float32, kv, vv kvData) {
	t.Helper()
	m := newMethod(t, "doublesparsity", func(p any) {
		dp := p.(*methods.DoubleSparsityParams)
		dp.Calibration, dp.Channels, dp.Bits = methods.Names{"cal"}, r, nbits
	}, methods.Env{Calibration: func(string) ([]*attn.Group, error) { return cal, nil }})
	groups := methodGroups(s, layer, q, kv, vv)
	ch := make([][]int, s.KVHeads)
	for kh := range ch { // groups[kh]: batch 0, KV head kh (calibrated on cal[kh])
		var err error
		if ch[kh], err = m.(*methods.DoubleSparsity).Channels(groups[kh]); err != nil {
			t.Fatalf("%s: channels: %v", name, err)
		}
	}
	lists := s.Batch * s.Lists(sel)
	lw := 1 // label words of 16 bits
	if nbits < 16 {
		lw = 2
	}
	lb := make([]uint16, s.Batch*s.KVHeads*s.Context*r*lw)
	S := make([]float32, lists*s.Context)
	idx := make([]int32, lists*b.Total)
	out := make([]float32, s.Batch*s.Heads*s.HeadDim)
	err := d.Do(func(c *Ctx) error {
		ds, err := NewDSStep(c, s, sel, r, nbits, b)
		if err != nil {
			return err
		}
		defer ds.Free(c)
		if err := ds.SetChannels(c, ch); err != nil {
			return err
		}
		in, free, err := uploadInputs(c, q, kv, vv)
		defer free()
		if err != nil {
			return err
		}
		if err := poisonAll(c, ds.Idx, ds.Dec.Out, ds.LB, ds.S); err != nil {
			return err
		}
		if err := ds.EnqueueLabels(c, 0, in.K); err != nil {
			return err
		}
		for i := 0; i < 2; i++ {
			if err := ds.Enqueue(c, 0, in); err != nil {
				return err
			}
		}
		if err := c.Sync(); err != nil {
			return err
		}
		return errors.Join(Download(c, lb, ds.LB), Download(c, S, ds.S), Download(c, idx, ds.Idx), Download(c, out, ds.Dec.Out))
	})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	label := func(i int) float32 {
		if nbits < 16 {
			return math.Float32frombits(uint32(lb[2*i]) | uint32(lb[2*i+1])<<16)
		}
		return kvValue(s, lb[i])
	}
	g := s.Heads / s.KVHeads
	cpuScores := make([][]float32, lists)
	row := make([]float32, r)
	qs := make([]float32, r)
	for bb := 0; bb < s.Batch; bb++ {
		for kh := 0; kh < s.KVHeads; kh++ {
			mi := bb*s.KVHeads + kh
			labels := tensor.NewMat(s.Context, r)
			for j := 0; j < s.Context; j++ {
				for i, c := range ch[kh] {
					row[i] = kv.mats[mi].Row(j)[c]
				}
				if nbits < 16 {
					quantLabels(row, nbits)
				}
				copy(labels.Row(j), row)
				for i, want := range row {
					if got := label((mi*s.Context+j)*r + i); got != want {
						t.Fatalf("%s: label of kv %d key %d channel %d = %g, want %g", name, mi, j, ch[kh][i], got, want)
					}
				}
			}
			for h := kh * g; h < (kh+1)*g; h++ {
				o := (bb*s.Heads + h) * s.HeadDim
				for i, c := range ch[kh] {
					qs[i] = q[o+c]
				}
				li := bb*s.Lists(sel) + kh
				if sel == PerHead {
					li = bb*s.Heads + h
				}
				if cpuScores[li] == nil {
					cpuScores[li] = make([]float32, s.Context)
				}
				for j := range s.Context {
					cpuScores[li][j] += tensor.Dot32(qs, labels.Row(j))
				}
			}
		}
	}
	var bad int
	for li := 0; li < lists; li++ {
		for j, want := range cpuScores[li] {
			if got := S[li*s.Context+j]; got != want {
				if bad == 0 {
					t.Errorf("%s: list %d key %d score %g, want %g (Dot32)", name, li, j, got, want)
				}
				bad++
			}
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d scores differ from the CPU's", name, bad, lists*s.Context)
	}
	cpu := methodLists(t, m, groups, sel, b)
	for li := 0; li < lists; li++ {
		got := idx[li*b.Total : (li+1)*b.Total]
		if slices.Equal(got, cpu[li]) {
			continue
		}
		a, w := sortedScores(cpuScores[li], got), sortedScores(cpuScores[li], cpu[li])
		if a == nil || !slices.Equal(a, w) {
			t.Fatalf("%s: list %d differs from methods.DoubleSparsity as a multiset of scores\n got %v\nwant %v", name, li, got, cpu[li])
		}
		t.Errorf("%s: list %d: same score multiset as methods.DoubleSparsity but not its tie-break", name, li)
	}
	if e := relErr(out, decodeRef(s, sel, b.Total, q, kv, vv, idx)); !(e < 1e-2) {
		t.Errorf("%s: step output rel err %.2e", name, e)
	} else {
		t.Logf("%s: labels exact, %d/%d scores differ, lists = methods.DoubleSparsity, output rel err %.1e", name, bad, lists*s.Context, e)
	}
}

// TestCompileLSHDSArchs compiles lsh.cu and ds.cu variants for sm_80 and
// sm_90; it needs NVRTC, not a device.
func TestCompileLSHDSArchs(t *testing.T) {
	if _, _, err := NVRTCVersion(); err != nil {
		t.Skipf("no NVRTC: %v", err)
	}
	t.Setenv("HBENCH_CUBIN_CACHE", t.TempDir())
	for _, arch := range []string{"sm_80", "sm_90"} {
		for _, v := range []struct {
			d, g    int
			dt      string
			sel     Selection
			bits    int
			mips    bool
			r, qbit int
		}{
			{128, 4, BF16, PerKVHead, 128, false, 16, 16},
			{128, 1, BF16, PerHead, 64, true, 13, 4},
			{64, 8, FP16, PerHead, 40, true, 8, 8},
			{64, 2, FP16, PerKVHead, 32, false, 1, 15},
		} {
			s := Shape{Batch: 1, Heads: v.g, KVHeads: 1, HeadDim: v.d, Context: 1, DType: v.dt}
			if _, err := Compile("lsh.cu", lshSrc, arch, LSHDefines(s, v.bits, v.mips)); err != nil {
				t.Fatalf("lsh %s %+v: %v", arch, v, err)
			}
			if _, err := Compile("ds.cu", dsSrc, arch, DSDefines(s, v.sel, v.r, v.qbit)); err != nil {
				t.Fatalf("ds %s %+v: %v", arch, v, err)
			}
		}
	}
}

func TestPackLSHPlanes(t *testing.T) {
	m := tensor.NewMat(40, 3)
	for i := range m.Data {
		m.Data[i] = float32(i + 1)
	}
	p, err := PackLSHPlanes([]*tensor.Mat{m, m}, 3, 40)
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 2*3*64 {
		t.Fatalf("len %d, want %d", len(p), 2*3*64)
	}
	for h := 0; h < 2; h++ {
		for c := 0; c < 3; c++ {
			for b := 0; b < 64; b++ {
				want := float32(0)
				if b < 40 {
					want = m.Row(b)[c]
				}
				if got := p[(h*3+c)*64+b]; got != want {
					t.Fatalf("head %d channel %d plane %d = %g, want %g", h, c, b, got, want)
				}
			}
		}
	}
	if _, err := PackLSHPlanes([]*tensor.Mat{m}, 4, 40); err == nil {
		t.Error("wrong plane width accepted")
	}
}
