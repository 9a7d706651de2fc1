package methods

import (
	"slices"
	"strings"
	"testing"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/tensor"
	"gopkg.in/yaml.v3"
)

// TestDoubleSparsityFullIsOracle checks that with r = d channels at full
// precision the approximate score is the exact one, so the selection is
// the oracle's (with windows), per head, for self and workload calibration.
func TestDoubleSparsityFullIsOracle(t *testing.T) {
	g := randGroup(7, 120, 16, 2)
	env := selfCalib(randGroup(8, 50, 16, 2))
	oracle := newMethod(t, "oracle", func(p any) { p.(*OracleParams).Windows = true }, Env{})
	for _, calib := range []string{"self", "calib"} {
		ds := newMethod(t, "doublesparsity", func(p any) {
			dp := p.(*DoubleSparsityParams)
			dp.Calibration, dp.Channels = Names{calib}, 16
		}, env)
		for _, spec := range []budget.Spec{{Sparsity: 4, Sink: 2, Local: 4}, {Tokens: 9}, {Sparsity: 16}} {
			so, _ := oracle.Prepare(g, Options{})
			sd, err := ds.Prepare(g, Options{})
			if err != nil {
				t.Fatal(err)
			}
			for T := 20; T < g.T(); T += 7 {
				want, _ := so.Select(step(spec, T), nil)
				got, err := sd.Select(step(spec, T), nil)
				if err != nil {
					t.Fatal(err)
				}
				for h := range want {
					if !slices.Equal(got[h], want[h]) {
						t.Fatalf("%s %+v T=%d head %d: selected %v, oracle %v", calib, spec, T, h, got[h], want[h])
					}
				}
			}
		}
	}
}

// TestDoubleSparsityChannels checks the calibration statistic and channel
// choice on hand-computed values, and that too few channels lose recall.
func TestDoubleSparsityChannels(t *testing.T) {
	// two positions, d = 3, one query head
	g := &attn.Group{
		K:     &tensor.Mat{Rows: 2, Cols: 3, Data: []float32{3, -1, 0, 1, 1, 10}},
		V:     tensor.NewMat(2, 3),
		Q:     []*tensor.Mat{{Rows: 2, Cols: 3, Data: []float32{1, 2, 0.1, -1, 0.5, 0.1}}},
		Scale: 1, QHeads: []int{0},
	}
	// mean |q⊙k|: c0 (3+1)/2 = 2, c1 (2+0.5)/2 = 1.25, c2 (0+1)/2 = 0.5
	imp := ChannelImportance(g)
	for c, want := range []float64{2, 1.25, 0.5} {
		if d := imp[c] - want; d > 1e-6 || d < -1e-6 {
			t.Errorf("importance[%d] = %g, want %g", c, imp[c], want)
		}
	}
	if ch := topChannels(imp, 2); ch[0] != 0 || ch[1] != 1 || len(ch) != 2 {
		t.Errorf("top 2 channels %v, want [0 1]", ch)
	}
	if ch := topChannels([]float64{1, 3, 3, 2}, 2); ch[0] != 1 || ch[1] != 2 {
		t.Errorf("tied top channels %v, want [1 2]", ch)
	}
	// the label cache holds the chosen channels, and the approximate score
	// is q restricted to them times the labels
	ds := newMethod(t, "doublesparsity", func(p any) {
		p.(*DoubleSparsityParams).Calibration, p.(*DoubleSparsityParams).Channels = Names{"self"}, 1
	}, Env{})
	s, err := ds.Prepare(g, Options{})
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]float32, 2)
	s.(*dsSelector).score(0, 1, 2, dst) // q1 = (-1, .5, .1) on channel 0: -3, -1
	if dst[0] != -3 || dst[1] != -1 {
		t.Errorf("approximate scores %v, want [-3 -1]", dst)
	}
}

func TestDoubleSparsityQuantRow(t *testing.T) {
	x := []float32{0, 1, 0.4, 0.6, 3}
	quantRow(x, 2) // grid 0, 1, 2, 3
	want := []float32{0, 1, 0, 1, 3}
	if !slices.Equal(x, want) {
		t.Errorf("quantRow 2 bits: %v, want %v", x, want)
	}
}

func TestDoubleSparsityErrors(t *testing.T) {
	g := randGroup(1, 10, 8, 1)
	g.Layer = 5
	ds := newMethod(t, "doublesparsity", func(p any) {
		p.(*DoubleSparsityParams).Calibration = Names{"calib"}
		p.(*DoubleSparsityParams).Channels = 4
	}, selfCalib(randGroup(2, 10, 8, 1)))
	if _, err := ds.Prepare(g, Options{}); err == nil || !strings.Contains(err.Error(), "layer 5 KV head 0") {
		t.Errorf("unmatched layer: error %v, want one naming layer 5 KV head 0", err)
	}
	spec, _ := Registry.Lookup("doublesparsity")
	for _, c := range []struct {
		p    DoubleSparsityParams
		env  Env
		want string
	}{
		{DoubleSparsityParams{Channels: 4, Bits: 16}, Env{}, "calibration:"},
		{DoubleSparsityParams{Calibration: Names{"self", "calib"}, Channels: 4, Bits: 16}, Env{}, "self cannot be combined"},
		{DoubleSparsityParams{Calibration: Names{"x"}, Channels: 4, Bits: 16}, Env{}, "no calibration workloads"},
		{DoubleSparsityParams{Calibration: Names{"calib", "x"}, Channels: 4, Bits: 16}, selfCalib(), "no calibration workload x"},
		{DoubleSparsityParams{Calibration: Names{"calib"}, Channels: 9, Bits: 16}, selfCalib(randGroup(2, 10, 8, 1)), "exceeds the head dimension"},
		{DoubleSparsityParams{Calibration: Names{"self"}, Channels: 4, Bits: 0}, Env{}, "bits"},
	} {
		p := c.p
		if _, err := spec.New(&p, c.env); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one containing %q", c.p, err, c.want)
		}
	}
}

// TestNamesYAML checks that calibration takes a name or a list.
func TestNamesYAML(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Names
	}{
		{"calibration: self", Names{"self"}},
		{"calibration: [a, b]", Names{"a", "b"}},
		{"calibration:\n  - a\n", Names{"a"}},
	} {
		var p DoubleSparsityParams
		if err := yaml.Unmarshal([]byte(c.in), &p); err != nil {
			t.Fatalf("%q: %v", c.in, err)
		}
		if p.Calibration.String() != c.want.String() {
			t.Errorf("%q: %v, want %v", c.in, p.Calibration, c.want)
		}
	}
	var p DoubleSparsityParams
	if err := yaml.Unmarshal([]byte("calibration: {a: 1}"), &p); err == nil {
		t.Error("a mapping decoded as calibration names")
	}
}

// TestDoubleSparsityChannelsAccessor checks that Channels returns the
// channels the Selector's label cache uses, for self and workload
// calibration, and that the returned slice is the caller's.
func TestDoubleSparsityChannelsAccessor(t *testing.T) {
	g := randGroup(7, 60, 16, 2)
	env := selfCalib(randGroup(8, 50, 16, 2))
	for _, calib := range []string{"self", "calib"} {
		ds := newMethod(t, "doublesparsity", func(p any) {
			dp := p.(*DoubleSparsityParams)
			dp.Calibration, dp.Channels = Names{calib}, 5
		}, env).(*DoubleSparsity)
		ch, err := ds.Channels(g)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ds.Prepare(g, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if used := s.(*dsSelector).ch; !slices.Equal(ch, used) || len(ch) != 5 {
			t.Fatalf("%s: Channels %v, the Selector uses %v", calib, ch, used)
		}
		if calib == "self" && !slices.Equal(ch, topChannels(ChannelImportance(g), 5)) {
			t.Errorf("self: Channels %v are not g's top channels", ch)
		}
		ch[0] = -1
		if again, _ := ds.Channels(g); again[0] == -1 {
			t.Errorf("%s: Channels returns the method's own slice", calib)
		}
	}
	bad := randGroup(1, 10, 16, 1)
	bad.Layer = 3
	ds := newMethod(t, "doublesparsity", func(p any) { p.(*DoubleSparsityParams).Calibration = Names{"calib"} }, env).(*DoubleSparsity)
	if _, err := ds.Channels(bad); err == nil || !strings.Contains(err.Error(), "layer 3") {
		t.Errorf("unmatched layer: error %v", err)
	}
}
