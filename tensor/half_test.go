package tensor

import (
	"math"
	"testing"
)

func TestF16RoundTripAll(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := F16ToF32(uint16(h))
		if math.IsNaN(float64(f)) {
			if back := F32ToF16(f); back&0x7c00 != 0x7c00 || back&0x3ff == 0 {
				t.Fatalf("NaN %#04x came back as %#04x", h, back)
			}
			continue
		}
		if back := F32ToF16(f); back != uint16(h) {
			t.Fatalf("f16 %#04x -> %g -> %#04x", h, f, back)
		}
	}
}

func TestF16Known(t *testing.T) {
	cases := []struct {
		h uint16
		f float32
	}{
		{0x3c00, 1}, {0xc000, -2}, {0x7bff, 65504}, {0x0001, 5.960464477539063e-08}, {0x3555, 0.333251953125},
	}
	for _, c := range cases {
		if got := F16ToF32(c.h); got != c.f {
			t.Errorf("F16ToF32(%#04x) = %g, want %g", c.h, got, c.f)
		}
	}
	// Ties round to even; overflow goes to infinity.
	if got := F32ToF16(1 + 1.0/2048); got != 0x3c00 {
		t.Errorf("tie 1+2^-11 rounded to %#04x, want 0x3c00", got)
	}
	if got := F32ToF16(70000); got != 0x7c00 {
		t.Errorf("70000 -> %#04x, want +inf", got)
	}
}

func TestBF16(t *testing.T) {
	for _, f := range []float32{1, -3.5, 0.15625, 1e30, -1e-30} {
		got := BF16ToF32(F32ToBF16(f))
		if rel := math.Abs(float64(got-f)) / math.Abs(float64(f)); rel > 1.0/256 {
			t.Errorf("bf16 round trip of %g gave %g", f, got)
		}
	}
	if F32ToBF16(1) != 0x3f80 {
		t.Errorf("bf16(1) = %#04x", F32ToBF16(1))
	}
}
