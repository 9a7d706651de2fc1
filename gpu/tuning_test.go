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
		{"", 4, "threads=256,tile=2,minb=0,prefetch=1,scatter=2,group=0", false},
		{"", 8, "threads=128,tile=2,minb=0,prefetch=1,scatter=2,group=0", false},
		{"tile=4,scatter=0", 4, "threads=256,tile=4,minb=0,prefetch=1,scatter=0,group=0", false},
		{"threads=128,minb=4,prefetch=0,group=1", 1, "threads=128,tile=2,minb=4,prefetch=0,scatter=2,group=1", false},
		{"tile=3", 4, "bad tuning", true},
		{"warps=4", 4, "unknown key", true},
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
