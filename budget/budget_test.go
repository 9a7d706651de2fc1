package budget

import "testing"

func TestResolve(t *testing.T) {
	cases := []struct {
		name string
		spec Spec
		n    int
		want Budget
	}{
		{"sparsity", Spec{Sparsity: 8, Sink: 4, Local: 16}, 1000, Budget{N: 1000, Total: 125, Sink: 4, Local: 16, Heavy: 105}},
		{"ceil", Spec{Sparsity: 8}, 1001, Budget{N: 1001, Total: 126, Heavy: 126}},
		{"tokens", Spec{Tokens: 64, Sink: 1, Local: 8}, 100, Budget{N: 100, Total: 64, Sink: 1, Local: 8, Heavy: 55}},
		{"tokens capped", Spec{Tokens: 64}, 10, Budget{N: 10, Total: 10, Heavy: 10}},
		{"windows clipped", Spec{Sparsity: 10, Sink: 8, Local: 8}, 100, Budget{N: 100, Total: 10, Sink: 8, Local: 2}},
		{"at least one", Spec{Sparsity: 64}, 3, Budget{N: 3, Total: 1, Heavy: 1}},
		{"empty", Spec{Sparsity: 4}, 0, Budget{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := c.spec.Resolve(c.n)
			if got != c.want {
				t.Fatalf("Resolve(%d) = %+v, want %+v", c.n, got, c.want)
			}
			if got.Sink+got.Local+got.Heavy != got.Total || got.Total > c.n {
				t.Fatalf("inconsistent budget %+v", got)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	bad := []Spec{{}, {Sparsity: 1}, {Sparsity: 0.5}, {Sparsity: 4, Tokens: 3}, {Tokens: -1}, {Sparsity: 4, Sink: -1}}
	for _, s := range bad {
		if s.Validate() == nil {
			t.Errorf("Validate(%+v) = nil, want an error", s)
		}
	}
	if err := (Spec{Sparsity: 2, Sink: 1, Local: 1}).Validate(); err != nil {
		t.Errorf("valid spec rejected: %v", err)
	}
}

func TestCheckFitsAndFixed(t *testing.T) {
	if err := (Spec{Tokens: 200}).CheckFits(100); err == nil {
		t.Error("budget larger than context accepted")
	}
	if err := (Spec{Sparsity: 64, Sink: 128, Local: 128}).CheckFits(8192); err == nil {
		t.Error("windows eating the whole budget accepted")
	}
	b := Spec{Sparsity: 4, Sink: 2, Local: 3}.Resolve(20)
	got := b.Fixed(nil)
	want := []int32{0, 1, 17, 18, 19}
	if len(got) != len(want) {
		t.Fatalf("Fixed = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Fixed = %v, want %v", got, want)
		}
	}
	if lo, hi := b.MiddleRange(); lo != 2 || hi != 17 {
		t.Fatalf("MiddleRange = %d,%d", lo, hi)
	}
}
