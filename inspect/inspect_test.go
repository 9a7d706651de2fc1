package inspect

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"testing"

	"github.com/hbench/hbench/tensor"
	"github.com/hbench/hbench/workloads"
)

const tol = 1e-12

func near(a, b float64) bool { return math.Abs(a-b) <= tol }

func TestCount(t *testing.T) {
	for _, c := range []struct {
		share float64
		n     int
		want  int
	}{
		{0.01, 1, 1},      // at least one key
		{0.01, 100, 1},    // exactly 1%
		{0.01, 101, 2},    // ceil(1.01)
		{0.03, 100, 3},    // 0.03*100 is 3.0000000000000004 in float64: still 3
		{0.06, 50, 3},     // exactly 3
		{0.06, 4, 1},      // ceil(0.24)
		{0.01, 8192, 82},  // ceil(81.92)
		{0.06, 8192, 492}, // ceil(491.52)
		{1.5, 10, 10},     // at most n
	} {
		if got := count(c.share, c.n); got != c.want {
			t.Errorf("count(%g, %d) = %d, want %d", c.share, c.n, got, c.want)
		}
	}
}

// TestMassesHandComputed: 100 keys; key 99 (the most recent) holds 0.30,
// key 50 0.20, key 0 0.10, keys 1..5 0.05 each, and the other 92 keys share
// 0.15. The top 1 key holds 0.30, the top 3 0.60, the top 6 0.75.
func TestMassesHandComputed(t *testing.T) {
	p := make([]float64, 100)
	for i := range p {
		p[i] = 0.15 / 92
	}
	p[99], p[50], p[0] = 0.30, 0.20, 0.10
	for i := 1; i <= 5; i++ {
		p[i] = 0.05
	}
	got, _ := Masses(p, nil)
	want := Concentration{Queries: 1, Top1: 0.30, Top3: 0.60, Top6: 0.75, Key0: 0.10, Recent: 0.30, Uniform: 0.01}
	if got.Queries != 1 || !near(got.Top1, want.Top1) || !near(got.Top3, want.Top3) || !near(got.Top6, want.Top6) ||
		!near(got.Key0, want.Key0) || !near(got.Recent, want.Recent) || !near(got.Uniform, want.Uniform) {
		t.Fatalf("Masses = %+v, want %+v", got, want)
	}
	// 250 keys, uniform: the top 1% is ceil(2.5) = 3 keys, 3% is 8, 6% is 15.
	u := make([]float64, 250)
	for i := range u {
		u[i] = 1.0 / 250
	}
	got, _ = Masses(u, nil)
	if !near(got.Top1, 3.0/250) || !near(got.Top3, 8.0/250) || !near(got.Top6, 15.0/250) || !near(got.Recent, 3.0/250) {
		t.Fatalf("uniform 250: %+v", got)
	}
}

// TestHeadHandComputed builds q and k so that scale·q_t·k_j = ln(j+1): the
// attention of query t is p_j = (j+1) / Σ_{i<=t} (i+1). For t = 3 that is
// (0.1, 0.2, 0.3, 0.4); for t = 2 it is (1, 2, 3)/6.
func TestHeadHandComputed(t *testing.T) {
	const T = 4
	q, k := tensor.NewMat(T, 2), tensor.NewMat(T, 2)
	for i := 0; i < T; i++ {
		q.Row(i)[0] = 2 // scale 0.5 below
		k.Row(i)[0] = float32(math.Log(float64(i + 1)))
	}
	// One query (t = 3, n = 4): each share rounds up to one key.
	c := Head(q, k, 0.5, 3, 4)
	if c.Queries != 1 || !approx(c.Top1, 0.4) || !approx(c.Top6, 0.4) || !approx(c.Key0, 0.1) || !approx(c.Recent, 0.4) || !approx(c.Uniform, 0.25) {
		t.Fatalf("t=3: %+v", c)
	}
	// Two queries: the mean of t = 2 (top 0.5, key 0 1/6, uniform 1/3) and t = 3.
	c = Head(q, k, 0.5, 2, 4)
	if c.Queries != 2 || !approx(c.Top1, 0.45) || !approx(c.Key0, (1.0/6+0.1)/2) || !approx(c.Recent, 0.45) || !approx(c.Uniform, (1.0/3+0.25)/2) {
		t.Fatalf("t=2..3: %+v", c)
	}
}

// approx allows for the float32 rounding of ln(j+1) in k.
func approx(a, b float64) bool { return math.Abs(a-b) <= 1e-6 }

func TestMeanWeighsByQueries(t *testing.T) {
	m := Mean([]Concentration{{Queries: 1, Top1: 1, Key0: 0.5}, {Queries: 3, Top1: 0, Key0: 0.1}})
	if m.Queries != 4 || !near(m.Top1, 0.25) || !near(m.Key0, (0.5+0.3)/4) {
		t.Fatalf("Mean = %+v", m)
	}
}

// TestFileSample inspects the shipped sample: shapes, metadata and the
// properties every concentration must have, plus one head's numbers checked
// against a brute-force recomputation.
func TestFileSample(t *testing.T) {
	paths, err := filepath.Glob("../testdata/persuasion/*.safetensors")
	if err != nil || len(paths) != 3 {
		t.Fatalf("sample files: %v %v", paths, err)
	}
	for _, path := range paths {
		r, err := File(path, Options{Last: 32})
		if err != nil {
			t.Fatal(err)
		}
		if r.Heads != 2 || r.KVHeads != 1 || r.T != 2048 || r.D != 128 || r.From != 2016 || r.To != 2048 {
			t.Fatalf("%s: shapes %+v", path, r)
		}
		if r.DTypes["q"] != "F16" || r.DTypes["k"] != "F16" || r.DTypes["v"] != "F16" || r.Metadata["format"] != "qkv-capture/1" {
			t.Fatalf("%s: dtypes %v, format %q", path, r.DTypes, r.Metadata["format"])
		}
		if len(r.PerHead) != 2 || r.Mean.Queries != 64 {
			t.Fatalf("%s: %d heads, mean over %d queries", path, len(r.PerHead), r.Mean.Queries)
		}
		var uniform float64
		for q := 2016; q < 2048; q++ {
			uniform += 1 / float64(q+1)
		}
		uniform /= 32
		for _, h := range append(r.PerHead, HeadReport{Head: -1, Concentration: r.Mean}) {
			c := h.Concentration
			// The ordering holds for every query, hence for the means: the most
			// recent 1% and key 0 are sets no heavier than the top 1% of keys.
			if !(0 <= c.Key0 && c.Key0 <= c.Top1+tol && c.Recent <= c.Top1+tol && c.Top1 <= c.Top3 && c.Top3 <= c.Top6 && c.Top6 <= 1+tol) {
				t.Errorf("%s head %d: masses out of order: %+v", path, h.Head, c)
			}
			if !near(c.Uniform, uniform) {
				t.Errorf("%s head %d: uniform %g, want %g", path, h.Head, c.Uniform, uniform)
			}
			if c.Top1 < 10*c.Uniform {
				t.Errorf("%s head %d: top 1%% holds %g, no more than uniform attention would", path, h.Head, c.Top1)
			}
		}
	}

	// Brute force for layer 4, head 1, the last query: softmax written out
	// here, the top 1% as the tail of an ascending sort.
	r, err := File("../testdata/persuasion/persuasion-L4.safetensors", Options{Last: 1})
	if err != nil {
		t.Fatal(err)
	}
	got := r.PerHead[1].Concentration
	f, err := workloads.ReadCapture("../testdata/persuasion/persuasion-L4.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	qt := f.Q[1].Row(2047)
	p := make([]float64, 2048)
	var z float64
	for j := range p {
		var s float64
		for c, x := range qt {
			s += float64(x) * float64(f.K[0].Row(j)[c])
		}
		p[j] = math.Exp(s * float64(float32(1/math.Sqrt(128)))) // the capture's scale is a float32
		z += p[j]
	}
	for j := range p {
		p[j] /= z
	}
	sorted := append([]float64(nil), p...)
	sort.Float64s(sorted)
	var top1 float64
	for _, x := range sorted[len(sorted)-21:] { // ceil(20.48) = 21 keys
		top1 += x
	}
	var recent float64
	for _, x := range p[2048-21:] {
		recent += x
	}
	if math.Abs(got.Top1-top1) > 1e-9 || math.Abs(got.Recent-recent) > 1e-9 || math.Abs(got.Key0-p[0]) > 1e-12 {
		t.Fatalf("L4 head 1, t=2047: got top1 %g recent %g key0 %g; brute force %g %g %g", got.Top1, got.Recent, got.Key0, top1, recent, p[0])
	}
}

func TestFileErrors(t *testing.T) {
	if _, err := File("../testdata/persuasion/missing.safetensors", Options{}); err == nil {
		t.Fatal("missing file: no error")
	}
	if _, err := File("doc.go", Options{}); err == nil {
		t.Fatal("not a safetensors file: no error")
	}
}

// BenchmarkHead measures one head's concentration at 8K keys, d = 128, for
// the last 64 query positions, on fixed random data.
func BenchmarkHead(b *testing.B) {
	const T, d, last = 8192, 128, 64
	rng := rand.New(rand.NewPCG(1, 2))
	q, k := tensor.NewMat(T, d), tensor.NewMat(T, d)
	for i := range q.Data {
		q.Data[i] = float32(rng.NormFloat64())
		k.Data[i] = float32(rng.NormFloat64())
	}
	b.ResetTimer()
	for b.Loop() {
		Head(q, k, float32(1/math.Sqrt(d)), T-last, T)
	}
	keys := float64(last) * (T - float64(last-1)/2) // keys scored per call
	b.ReportMetric(keys*float64(b.N)/b.Elapsed().Seconds(), "keys/s")
}
