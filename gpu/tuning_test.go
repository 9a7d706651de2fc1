package gpu

import (
	"strings"
	"testing"
)

func TestDecodeTuningEnv(t *testing.T) {
	for _, tc := range []struct {
		env   string
		group int
		want  string // DecodeTuning.String(), or an error substring
		isErr bool
	}{
		{"", 4, "threads=256,tile=2,minb=0,prefetch=1,scatter=2,group=0,mma=4,warps=8,stages=3,kt=16,fuse=1,evict=1,trace=0,splits=0,mergers=4", false},
		{"", 8, "threads=128,tile=2,minb=0,prefetch=1,scatter=2,group=0,mma=4,warps=8,stages=3,kt=16,fuse=1,evict=1,trace=0,splits=0,mergers=4", false},
		{"tile=4,scatter=0", 4, "threads=256,tile=4,minb=0,prefetch=1,scatter=0,group=0,mma=4,warps=8,stages=3,kt=16,fuse=1,evict=1,trace=0,splits=0,mergers=4", false},
		{"threads=128,minb=4,prefetch=0,group=1", 1, "threads=128,tile=2,minb=4,prefetch=0,scatter=2,group=1,mma=4,warps=8,stages=3,kt=16,fuse=1,evict=1,trace=0,splits=0,mergers=4", false},
		{"mma=0", 4, "threads=256,tile=2,minb=0,prefetch=1,scatter=2,group=0,mma=0,warps=8,stages=3,kt=16,fuse=1,evict=1,trace=0,splits=0,mergers=4", false},
		{"mma=1,warps=8,stages=2,kt=32,fuse=0,evict=0,trace=1,splits=5,mergers=0", 4, "threads=256,tile=2,minb=0,prefetch=1,scatter=2,group=0,mma=1,warps=8,stages=2,kt=32,fuse=0,evict=0,trace=1,splits=5,mergers=0", false},
		{"tile=3", 4, "bad tuning", true},
		{"kt=8", 4, "bad tuning", true},
		{"stages=1", 4, "bad tuning", true},
		{"splits=-1", 4, "bad tuning", true},
		{"mergers=17", 4, "bad tuning", true},
		{"blocks=4", 4, "unknown key", true},
		{"tile", 4, "not key=integer", true},
	} {
		t.Setenv("HBENCH_DECODE", tc.env)
		got, err := DefaultDecodeTuning(tc.group)
		switch {
		case tc.isErr && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("HBENCH_DECODE=%q: err %v, want one containing %q", tc.env, err, tc.want)
		case !tc.isErr && (err != nil || got.String() != tc.want):
			t.Errorf("HBENCH_DECODE=%q group %d: %v, %v; want %s", tc.env, tc.group, got, err, tc.want)
		}
	}
}

func TestDecodeDefines(t *testing.T) {
	tune := DecodeTuning{Threads: 256, Tile: 4, Prefetch: true, Scatter: 2}
	s := Shape{Batch: 1, Heads: 32, KVHeads: 8, HeadDim: 64, Context: 10, DType: FP16}
	d := DecodeDefines(s, Dense, tune)
	// group 4 × tile 4 = 16 scores > 8 lanes of a d = 64 row: owner softmax
	// does not apply, the broadcast reduce-scatter is used instead.
	if d["GROUP"] != "4" || d["SCATTER"] != "1" || d["DTYPE_BF16"] != "0" || d["HEAD_DIM"] != "64" {
		t.Errorf("defines %v", d)
	}
	if d := DecodeDefines(s, PerHead, tune); d["GROUP"] != "1" || d["SCATTER"] != "2" {
		t.Errorf("per-head defines %v", d)
	}
	tune.Group = 1
	if d := DecodeDefines(s, Dense, tune); d["GROUP"] != "1" {
		t.Errorf("group override ignored: %v", d)
	}
	if d := DecodeDefines(s, PerKVHead, tune); d["GROUP"] != "4" {
		t.Errorf("group override must not apply to per-kv-head lists: %v", d)
	}
	// the L2 evict-first policy: the tensor-core gather only, when asked
	mma := DecodeTuning{MMA: 4, Warps: 8, Stages: 3, KeyTile: 16, Fuse: true, EvictFirst: true}
	for _, tc := range []struct {
		sel   Selection
		evict bool
		want  string
	}{
		{PerKVHead, true, "1"},
		{PerKVHead, false, "0"},
		{Dense, true, "0"},
	} {
		mma.EvictFirst = tc.evict
		if got := DecodeDefines(s, tc.sel, mma)["MMA_EVICT"]; got != tc.want {
			t.Errorf("%v evict=%v: MMA_EVICT %q, want %q", tc.sel, tc.evict, got, tc.want)
		}
	}
}

func TestUsesMMA(t *testing.T) {
	t.Setenv("HBENCH_DECODE", "")
	tune, err := DefaultDecodeTuning(4)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		heads, kv int
		sel       Selection
		tune      DecodeTuning
		want      bool
	}{
		{32, 8, Dense, tune, true},
		{32, 8, PerKVHead, tune, true},
		{32, 8, PerHead, tune, false}, // one query head per block
		{8, 1, Dense, tune, true},
		{6, 3, Dense, tune, false}, // group 2
		{32, 32, Dense, tune, false},
		{32, 8, Dense, DecodeTuning{MMA: 0}, false},
		{32, 8, Dense, DecodeTuning{MMA: 4, Group: 1}, false}, // group override 1
		{6, 3, Dense, DecodeTuning{MMA: 1}, true},
	} {
		s := Shape{Batch: 1, Heads: tc.heads, KVHeads: tc.kv, HeadDim: 128, Context: 100, DType: BF16}
		if got := UsesMMA(s, tc.sel, tc.tune); got != tc.want {
			t.Errorf("%d/%d %v %v: UsesMMA %v, want %v", tc.heads, tc.kv, tc.sel, tc.tune, got, tc.want)
		}
		d := DecodeDefines(s, tc.sel, tc.tune)
		if _, ok := d["MMA_WARPS"]; ok != tc.want || (d["DECODE_MMA"] == "1") != tc.want {
			t.Errorf("%d/%d %v: MMA defines %v, want present=%v", tc.heads, tc.kv, tc.sel, d, tc.want)
		}
	}
	s := Shape{Batch: 1, Heads: 32, KVHeads: 8, HeadDim: 128, Context: 100, DType: BF16}
	// 8 warps × 3 stages × (K + V) × 16 rows × 256 B.
	if got := MMASmem(s, tune); got != 8*3*2*16*256 {
		t.Errorf("MMASmem %d", got)
	}
}

func TestFitMMA(t *testing.T) {
	s := Shape{Batch: 1, Heads: 32, KVHeads: 8, HeadDim: 128, Context: 100, DType: BF16}
	base := DecodeTuning{MMA: 4, Warps: 8, Stages: 3, KeyTile: 16}
	for _, tc := range []struct {
		max                  int
		warps, stages, bytes int
	}{
		{0, 8, 3, 196608},      // no limit known
		{232448, 8, 3, 196608}, // H100/H200: 227 KiB
		{166912, 8, 2, 131072}, // A100: 163 KiB
		{65536, 4, 2, 65536},   // fewer warps once at 2 stages
		{1000, 1, 2, 16384},    // nothing fits: the smallest
	} {
		got := FitMMA(s, base, tc.max)
		if got.Warps != tc.warps || got.Stages != tc.stages || MMASmem(s, got) != tc.bytes {
			t.Errorf("max %d: warps %d stages %d (%d B), want %d %d (%d B)", tc.max, got.Warps, got.Stages, MMASmem(s, got), tc.warps, tc.stages, tc.bytes)
		}
	}
}

func TestPackHashMaps(t *testing.T) {
	const in, bits = 2, 32
	h := HashHidden
	m := HashMap{W1: make([]float32, h*in), B1: make([]float32, h), W2: make([]float32, h*h), B2: make([]float32, h),
		W3: make([]float32, bits*h), B3: make([]float32, bits)}
	for i := range m.W1 {
		m.W1[i] = float32(i)
	}
	for i := range m.W3 {
		m.W3[i] = float32(-i)
	}
	m.B3[5] = 7
	p, err := PackHashMaps([]HashMap{m, m}, in, bits)
	if err != nil {
		t.Fatal(err)
	}
	per := in*h + h + h*h + h + h*bits + bits
	if len(p) != 2*per {
		t.Fatalf("packed %d floats, want %d", len(p), 2*per)
	}
	// W1 is [h][in] row-major; packed transposed: p[j*h+i] = W1[i*in+j].
	if p[1*h+3] != m.W1[3*in+1] || p[0*h+7] != m.W1[7*in+0] {
		t.Errorf("W1 not transposed")
	}
	w3 := in*h + h + h*h + h
	if p[w3+10*bits+5] != m.W3[5*h+10] || p[w3+h*bits+5] != 7 {
		t.Errorf("W3 or b3 misplaced")
	}
	if p[per+1*h+3] != p[1*h+3] {
		t.Errorf("second map misplaced")
	}
	if _, err := PackHashMaps([]HashMap{{W1: make([]float32, 3)}}, in, bits); err == nil {
		t.Errorf("bad shapes accepted")
	}
}
