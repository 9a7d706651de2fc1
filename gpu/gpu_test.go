package gpu

import (
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"unsafe"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/tensor"
)

var (
	testDevOnce sync.Once
	testDev     *Device
	testDevErr  error
)

// device opens device 0 once for the package's tests, or skips the test
// with the reason no GPU is usable.
func device(t testing.TB) *Device {
	t.Helper()
	testDevOnce.Do(func() { testDev, testDevErr = Open(0) })
	if testDevErr != nil {
		if errors.Is(testDevErr, ErrNoGPU) {
			t.Skipf("no GPU: %v", testDevErr)
		}
		t.Fatalf("open device: %v", testDevErr)
	}
	return testDev
}

func TestDeviceProps(t *testing.T) {
	d := device(t)
	if d.Props.SMs <= 0 || d.Props.Major < 7 || d.Props.MemoryBytes <= 0 || d.Props.L2Bytes <= 0 {
		t.Errorf("implausible props %+v", d.Props)
	}
	t.Logf("%s", d.Props)
}

func TestCUDAErrorHasName(t *testing.T) {
	d := device(t)
	err := d.Do(func(c *Ctx) error {
		_, err := c.Alloc(1 << 62) // more than any device has
		return err
	})
	var ce *Error
	if !errors.As(err, &ce) || ce.Name != "CUDA_ERROR_OUT_OF_MEMORY" {
		t.Fatalf("huge alloc: got %v, want a CUDA_ERROR_OUT_OF_MEMORY *Error", err)
	}
}

func TestCopyRoundTripAndGraph(t *testing.T) {
	d := device(t)
	err := d.Do(func(c *Ctx) error {
		src := make([]float32, 1000)
		for i := range src {
			src[i] = float32(i) + 0.5
		}
		a, err := Upload(c, src)
		if err != nil {
			return err
		}
		defer c.Free(a)
		b, err := c.Alloc(a.Size)
		if err != nil {
			return err
		}
		defer c.Free(b)
		if err := c.Poison(b); err != nil {
			return err
		}
		s, err := c.NewStream()
		if err != nil {
			return err
		}
		defer c.DestroyStream(s)
		g, err := c.Capture(s, func() error { return c.CopyDtoD(b, a, a.Size, s) })
		if err != nil {
			return err
		}
		defer c.DestroyGraph(g)
		if err := c.LaunchGraph(g, s); err != nil {
			return err
		}
		if err := c.SyncStream(s); err != nil {
			return err
		}
		got := make([]float32, len(src))
		if err := Download(c, got, b); err != nil {
			return err
		}
		for i := range got {
			if got[i] != src[i] {
				t.Fatalf("element %d: got %g want %g", i, got[i], src[i])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestIdleWaits checks that the settle kernel of TimeOpts.Settle keeps
// the stream busy for at least the time asked (a lower bound on the
// events' elapsed time, not a speed measurement).
func TestIdleWaits(t *testing.T) {
	d := device(t)
	err := d.Do(func(c *Ctx) error {
		s, err := c.NewStream()
		if err != nil {
			return err
		}
		defer c.DestroyStream(s)
		for _, us := range []float64{20, 200} {
			got, err := c.Time(s, TimeOpts{Warmup: 1, Repeats: 3}, func() error { return c.EnqueueIdle(us, s) })
			if err != nil {
				return err
			}
			for _, g := range got {
				if g < us {
					t.Errorf("idle %g µs: the events measured %.2f µs", us, g)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestQuantiles(t *testing.T) {
	for _, tc := range []struct {
		xs            []float64
		med, p25, p75 float64
	}{
		{[]float64{3, 1, 2}, 2, 1.5, 2.5},
		{[]float64{4, 1, 3, 2}, 2.5, 1.75, 3.25},
		{[]float64{7}, 7, 7, 7},
	} {
		m, a, b := Quantiles(tc.xs)
		if m != tc.med || a != tc.p25 || b != tc.p75 {
			t.Errorf("Quantiles(%v) = %g, %g, %g; want %g, %g, %g", tc.xs, m, a, b, tc.med, tc.p25, tc.p75)
		}
	}
}

func TestSplitPlan(t *testing.T) {
	for _, tc := range []struct{ n, hb, sms, d int }{
		{1, 8, 132, 128}, {37, 8, 132, 128}, {4096, 8, 132, 128}, {1 << 20, 8, 132, 128},
		{1 << 20, 32, 132, 64}, {5000, 2, 108, 64}, {65, 1, 1, 128},
	} {
		step := 256 / (tc.d / 8) * 4
		s, c := splitPlan(tc.n, tc.hb, 2*tc.sms, step)
		if s < 1 || c%step != 0 || s*c < tc.n || (s-1)*c >= tc.n {
			t.Errorf("splitPlan(%v) = %d splits of %d: must cover n exactly with no empty split", tc, s, c)
		}
		if s*tc.hb > 2*tc.sms && s > 1 {
			t.Errorf("splitPlan(%v) = %d splits: %d blocks exceed one wave of %d", tc, s, s*tc.hb, 2*tc.sms)
		}
	}
}

// kvData is random K/V data with its float32 values after rounding.
type kvData struct {
	raw  []uint16      // [B][HKV][N][D]
	mats []*tensor.Mat // [B*HKV] of [N][D], the rounded values
}

// uploadInputs uploads q and the raw K (kv) and V (vv) as a decode's
// inputs; free releases whatever was uploaded, also after an error, so the
// caller defers it at once.
func uploadInputs(c *Ctx, q []float32, kv, vv kvData) (DecodeInputs, func(), error) {
	var in DecodeInputs
	free := func() {
		for _, b := range []Buffer{in.Q, in.K, in.V} {
			c.Free(b)
		}
	}
	var err error
	if in.Q, err = Upload(c, q); err != nil {
		return in, free, err
	}
	if in.K, err = Upload(c, kv.raw); err != nil {
		return in, free, err
	}
	in.V, err = Upload(c, vv.raw)
	return in, free, err
}

// poisonAll poisons every buffer (Ctx.Poison), so that whatever a kernel
// fails to write shows.
func poisonAll(c *Ctx, bufs ...Buffer) error {
	for _, b := range bufs {
		if err := c.Poison(b); err != nil {
			return err
		}
	}
	return nil
}

func randKV(rng *rand.Rand, s Shape) kvData {
	n := s.Batch * s.KVHeads
	kd := kvData{raw: make([]uint16, n*s.Context*s.HeadDim)}
	for i := 0; i < n; i++ {
		m := tensor.NewMat(s.Context, s.HeadDim)
		for j := range m.Data {
			x := float32(rng.NormFloat64())
			if x == 0 {
				x = 0.25
			}
			var h uint16
			if s.DType == BF16 {
				h = tensor.F32ToBF16(x)
				m.Data[j] = tensor.BF16ToF32(h)
			} else {
				h = tensor.F32ToF16(x)
				m.Data[j] = tensor.F16ToF32(h)
			}
			kd.raw[i*len(m.Data)+j] = h
		}
		kd.mats = append(kd.mats, m)
	}
	return kd
}

func randQ(rng *rand.Rand, s Shape, amp float64) []float32 {
	q := make([]float32, s.Batch*s.Heads*s.HeadDim)
	for i := range q {
		q[i] = float32(amp * rng.NormFloat64())
	}
	return q
}

// randLists draws k distinct positions in [0, N) per list.
func randLists(rng *rand.Rand, s Shape, sel Selection, k int) []int32 {
	lists := s.Batch * s.Lists(sel)
	out := make([]int32, 0, lists*k)
	for i := 0; i < lists; i++ {
		perm := rng.Perm(s.Context)[:k]
		for _, p := range perm {
			out = append(out, int32(p))
		}
	}
	return out
}

func relErr(got []float32, want []float64) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - want[i]
		num += d * d
		den += want[i] * want[i]
	}
	return math.Sqrt(num / den)
}

// runDecode uploads the inputs, poisons the output, runs the decoder
// (three times) and downloads the output.
func runDecode(t *testing.T, d *Device, s Shape, sel Selection, k int, q []float32, kv, vv kvData, idx []int32) ([]float32, *Decoder) {
	t.Helper()
	out := make([]float32, s.Batch*s.Heads*s.HeadDim)
	var dec *Decoder
	err := d.Do(func(c *Ctx) error {
		var err error
		dec, err = NewDecoder(c, s, sel, k)
		if err != nil {
			return err
		}
		defer dec.Free(c)
		in, free, err := uploadInputs(c, q, kv, vv)
		defer free()
		if err != nil {
			return err
		}
		if sel != Dense {
			if in.Idx, err = Upload(c, idx); err != nil {
				return err
			}
			defer c.Free(in.Idx)
		}
		// Three calls, each on a poisoned output: the later ones check
		// that per-call state (the fused merge's counters, the tagged
		// merge's parity, which flips every call) carries over.
		for range 3 {
			if err := c.Poison(dec.Out); err != nil {
				return err
			}
			if err := dec.Enqueue(c, 0, in); err != nil {
				return err
			}
			if err := c.Sync(); err != nil {
				return err
			}
		}
		return Download(c, out, dec.Out)
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, dec
}

func TestDecodeDenseMatchesReference(t *testing.T) {
	d := device(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, s := range []Shape{
		{Batch: 1, Heads: 4, KVHeads: 1, HeadDim: 128, Context: 1, DType: BF16},    // N = 1
		{Batch: 1, Heads: 4, KVHeads: 1, HeadDim: 128, Context: 37, DType: BF16},   // N < one block step
		{Batch: 2, Heads: 8, KVHeads: 2, HeadDim: 128, Context: 5000, DType: BF16}, // batch > 1, N not a tile multiple
		{Batch: 1, Heads: 32, KVHeads: 8, HeadDim: 128, Context: 70001, DType: BF16},
		{Batch: 3, Heads: 4, KVHeads: 4, HeadDim: 64, Context: 999, DType: BF16},  // MHA, d = 64
		{Batch: 1, Heads: 8, KVHeads: 1, HeadDim: 64, Context: 3001, DType: FP16}, // group 8, fp16
		{Batch: 2, Heads: 6, KVHeads: 3, HeadDim: 128, Context: 2049, DType: FP16},
	} {
		kv, vv := randKV(rng, s), randKV(rng, s)
		q := randQ(rng, s, 2)
		got, dec := runDecode(t, d, s, Dense, 0, q, kv, vv, nil)
		want := make([]float64, len(got))
		scale := float32(1 / math.Sqrt(float64(s.HeadDim)))
		g := s.Heads / s.KVHeads
		for b := 0; b < s.Batch; b++ {
			for h := 0; h < s.Heads; h++ {
				m := b*s.KVHeads + h/g
				o := (b*s.Heads + h) * s.HeadDim
				copy(want[o:o+s.HeadDim], attn.Decode(q[o:o+s.HeadDim], kv.mats[m], vv.mats[m], s.Context-1, scale))
			}
		}
		for i, x := range got {
			if math.IsNaN(float64(x)) {
				t.Fatalf("%+v: output %d not written (NaN)", s, i)
			}
		}
		if e := relErr(got, want); !(e < 1e-2) {
			t.Errorf("%+v: rel err %.2e (splits %d)", s, e, dec.Splits)
		} else {
			t.Logf("%+v: rel err %.2e, %d splits of %d keys; mma %v, %d regs, %d B local, %d B smem, %d blocks/SM (%v)", s, e, dec.Splits, dec.Chunk, dec.MMA, dec.partial.Regs, dec.partial.LocalSize, dec.Smem, dec.Occ, dec.Tuning)
		}
	}
}

func TestDecodeSparseMatchesReference(t *testing.T) {
	d := device(t)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []decodeCase{
		{Shape{1, 4, 1, 128, 100, BF16}, PerKVHead, 1},
		{Shape{1, 4, 1, 128, 100, BF16}, PerHead, 1},
		{Shape{2, 8, 2, 128, 5000, BF16}, PerKVHead, 333},
		{Shape{2, 8, 2, 128, 5000, BF16}, PerHead, 157},
		{Shape{1, 32, 8, 128, 40000, BF16}, PerKVHead, 1250},
		{Shape{1, 32, 8, 128, 40000, BF16}, PerHead, 1250},
		{Shape{1, 32, 8, 128, 65536, BF16}, PerKVHead, 4096},  // 16 splits: every partial slot used
		{Shape{1, 32, 8, 128, 100000, BF16}, PerKVHead, 5000}, // 14 splits
		{Shape{2, 4, 4, 64, 3000, FP16}, PerKVHead, 2999},
		{Shape{1, 8, 1, 64, 3000, FP16}, PerHead, 64},
	} {
		s := tc.s
		kv, vv := randKV(rng, s), randKV(rng, s)
		q := randQ(rng, s, 2)
		idx := randLists(rng, s, tc.sel, tc.k)
		got, dec := runDecode(t, d, s, tc.sel, tc.k, q, kv, vv, idx)
		want := make([]float64, len(got))
		scale := float32(1 / math.Sqrt(float64(s.HeadDim)))
		g := s.Heads / s.KVHeads
		for b := 0; b < s.Batch; b++ {
			for h := 0; h < s.Heads; h++ {
				m := b*s.KVHeads + h/g
				o := (b*s.Heads + h) * s.HeadDim
				list := b*s.KVHeads + h/g
				if tc.sel == PerHead {
					list = b*s.Heads + h
				}
				sel := idx[list*tc.k : (list+1)*tc.k]
				logits := attn.Logits(q[o:o+s.HeadDim], kv.mats[m], s.Context, scale, nil)
				copy(want[o:o+s.HeadDim], attn.SparseOutput(logits, sel, vv.mats[m], nil))
			}
		}
		for i, x := range got {
			if math.IsNaN(float64(x)) {
				t.Fatalf("%+v %v k=%d: output %d not written (NaN)", s, tc.sel, tc.k, i)
			}
		}
		if e := relErr(got, want); !(e < 1e-2) {
			t.Errorf("%+v %v k=%d: rel err %.2e", s, tc.sel, tc.k, e)
		} else {
			t.Logf("%+v %v k=%d: rel err %.2e, %d splits (chunk %d); mma %v, %d regs", s, tc.sel, tc.k, e, dec.Splits, dec.Chunk, dec.MMA, dec.partial.Regs)
		}
	}
}

// TestCompileAllArchs compiles every kernel variant for sm_80 (A100) and
// sm_90 (H100/H200) through NVRTC; it needs NVRTC, not a device.
func TestCompileAllArchs(t *testing.T) {
	if _, _, err := NVRTCVersion(); err != nil {
		t.Skipf("no NVRTC: %v", err)
	}
	t.Setenv("HBENCH_CUBIN_CACHE", t.TempDir())
	for _, arch := range []string{"sm_80", "sm_90"} {
		for _, d := range []int{64, 128} {
			for _, g := range []int{1, 2, 4, 8} {
				for _, dt := range []string{BF16, FP16} {
					s := Shape{Batch: 1, Heads: g, KVHeads: 1, HeadDim: d, Context: 1, DType: dt}
					tune, err := DefaultDecodeTuning(g)
					if err != nil {
						t.Fatal(err)
					}
					for _, rs := range []int{0, 1, 2} {
						tune.Scatter = rs
						c, err := Compile("decode.cu", decodeSrc, arch, DecodeDefines(s, Dense, tune))
						if err != nil {
							t.Fatalf("%s: %v", arch, err)
						}
						if len(c.CUBIN) == 0 {
							t.Fatalf("%s %v: empty CUBIN", arch, c.Options)
						}
					}
				}
			}
		}
		// The tensor-core module (group >= 4 by default; every group with
		// mma=1), both key tiles, the L2 policy on (kt 16) and off (kt 32).
		for _, d := range []int{64, 128} {
			for _, g := range []int{1, 4, 8} {
				for _, dt := range []string{BF16, FP16} {
					for _, kt := range []int{16, 32} {
						if kt == 32 && (g != 4 || dt != BF16) {
							continue
						}
						s := Shape{Batch: 1, Heads: g, KVHeads: 1, HeadDim: d, Context: 1, DType: dt}
						tune := DecodeTuning{Threads: 256, Tile: 2, Prefetch: true, Scatter: 1, MMA: 1, Warps: 4, Stages: 3, KeyTile: kt, EvictFirst: kt == 16}
						if _, err := Compile("decode.cu", MMASource(), arch, DecodeDefines(s, Dense, tune)); err != nil {
							t.Fatalf("mma %s d=%d g=%d %s kt=%d: %v", arch, d, g, dt, kt, err)
						}
					}
				}
			}
		}
		for name, src := range Sources() {
			if name == "decode.cu" {
				continue
			}
			if _, err := Compile(name, src, arch, nil); err != nil {
				t.Fatalf("%s %s: %v", name, arch, err)
			}
		}
	}
}

// TestLaunchStructLayout checks the Go mirrors of CUlaunchConfig and
// CUlaunchAttribute against cuda.h's layout on 64-bit Linux.
func TestLaunchStructLayout(t *testing.T) {
	var cfg launchConfig
	var at launchAttr
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"sizeof(CUlaunchConfig)", unsafe.Sizeof(cfg), 56},
		{"offsetof(hStream)", unsafe.Offsetof(cfg.stream), 32},
		{"offsetof(attrs)", unsafe.Offsetof(cfg.attrs), 40},
		{"offsetof(numAttrs)", unsafe.Offsetof(cfg.numAttrs), 48},
		{"sizeof(CUlaunchAttribute)", unsafe.Sizeof(at), 72},
		{"offsetof(value)", unsafe.Offsetof(at.val), 8},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
}
