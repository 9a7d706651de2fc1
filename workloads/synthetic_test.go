package workloads

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/registry"
	"github.com/hbench/hbench/tensor"
)

// small returns fast test parameters: T = 2048, 4 query heads on 2 KV
// heads, d = 64, every knob at its default, then mod applied.
func small(mod func(p *SyntheticParams)) SyntheticParams {
	p := DefaultSyntheticParams()
	p.Tokens, p.Heads, p.KVHeads, p.Dim = 2048, 4, 2, 64
	if mod != nil {
		mod(p)
	}
	return *p
}

func mustGenerate(t *testing.T, p SyntheticParams) []*attn.Group {
	t.Helper()
	gs, err := GenerateSynthetic(p)
	if err != nil {
		t.Fatal(err)
	}
	return gs
}

// pivotsOf generates with a hook and returns the groups and the pivotal
// positions of every (layer, query head, position).
func pivotsOf(t *testing.T, p SyntheticParams) ([]*attn.Group, map[[3]int][]int32) {
	t.Helper()
	var mu sync.Mutex
	piv := map[[3]int][]int32{}
	gs, err := generateSynthetic(p, 2, func(layer, h, pos int, pv []int32) {
		mu.Lock()
		piv[[3]int{layer, h, pos}] = slices.Clone(pv)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	return gs, piv
}

// lastQueries calls f for the last n positions of every query head of every
// group with the exact logits and softmax probabilities over keys 0..t.
func lastQueries(gs []*attn.Group, n int, f func(g *attn.Group, i, t int, logits, probs []float64)) {
	queriesAt(gs, func(T int) []int { return QueryPlan{Last: n}.Positions(T) }, f)
}

// lateQueries is lastQueries at n positions spread over the second half of
// the sequence, so that they see different topics (which persist over
// about recency_window positions).
func lateQueries(gs []*attn.Group, n int, f func(g *attn.Group, i, t int, logits, probs []float64)) {
	queriesAt(gs, func(T int) []int { return QueryPlan{Last: n, Stride: T / 2 / n}.Positions(T) }, f)
}

func queriesAt(gs []*attn.Group, plan func(T int) []int, f func(g *attn.Group, i, t int, logits, probs []float64)) {
	for _, g := range gs {
		for i := range g.Q {
			for _, t := range plan(g.T()) {
				l := attn.Logits(g.Q[i].Row(t), g.K, t+1, g.Scale, nil)
				p, _ := attn.Softmax(l, nil)
				f(g, i, t, l, p)
			}
		}
	}
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func TestSyntheticRegistered(t *testing.T) {
	e, ok := Registry.Lookup("synthetic")
	if !ok {
		t.Fatal("workload synthetic is not registered")
	}
	d, ok := e.Defaults().(*SyntheticParams)
	if !ok || *d != *DefaultSyntheticParams() {
		t.Fatalf("Defaults() = %#v, want DefaultSyntheticParams()", e.Defaults())
	}
	if err := d.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	params := registry.Params(d)
	if len(params) != 22 {
		t.Errorf("registry.Params lists %d parameters, want 22", len(params))
	}
	for _, p := range params {
		if p.Doc == "" {
			t.Errorf("parameter %s has no doc tag", p.Name)
		}
	}
	p := small(func(p *SyntheticParams) { p.Tokens = 64 })
	w, err := e.New(&p, Env{})
	if err != nil {
		t.Fatal(err)
	}
	gs, err := w.Groups()
	if err != nil || len(gs) != 2 {
		t.Fatalf("Groups() = %d groups, %v; want 2, nil", len(gs), err)
	}
	bad := small(func(p *SyntheticParams) { p.Tokens = 0 })
	if _, err := e.New(&bad, Env{}); err == nil || !strings.Contains(err.Error(), "tokens") {
		t.Errorf("New with tokens 0: err %v, want one naming tokens", err)
	}
}

func TestSyntheticShapes(t *testing.T) {
	cases := []struct {
		tokens, heads, kv, dim, layers int
		rope                           bool
	}{
		{1, 1, 1, 2, 1, true},
		{37, 8, 2, 16, 3, true},
		{100, 6, 3, 7, 2, false},
		{64, 4, 4, 32, 1, true},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("T%d_h%d_kv%d_d%d_l%d", c.tokens, c.heads, c.kv, c.dim, c.layers), func(t *testing.T) {
			p := small(func(p *SyntheticParams) {
				p.Tokens, p.Heads, p.KVHeads, p.Dim, p.Layers, p.Rope = c.tokens, c.heads, c.kv, c.dim, c.layers, c.rope
				p.Sinks = min(p.Sinks, c.tokens-1)
			})
			gs := mustGenerate(t, p)
			if len(gs) != c.layers*c.kv {
				t.Fatalf("%d groups, want %d", len(gs), c.layers*c.kv)
			}
			size := c.heads / c.kv
			for n, g := range gs {
				if err := g.Validate(); err != nil {
					t.Fatal(err)
				}
				if g.Layer != n/c.kv || g.KVHead != n%c.kv {
					t.Errorf("group %d is layer %d kv %d, want %d, %d", n, g.Layer, g.KVHead, n/c.kv, n%c.kv)
				}
				if g.T() != c.tokens || g.D() != c.dim || len(g.Q) != size {
					t.Errorf("group %d: T %d d %d with %d heads, want %d %d %d", n, g.T(), g.D(), len(g.Q), c.tokens, c.dim, size)
				}
				for i, h := range g.QHeads {
					if h != g.KVHead*size+i {
						t.Errorf("group %d: QHeads %v, want %d..%d", n, g.QHeads, g.KVHead*size, g.KVHead*size+size-1)
						break
					}
				}
				if want := float32(1 / math.Sqrt(float64(c.dim))); g.Scale != want {
					t.Errorf("scale %g, want %g", g.Scale, want)
				}
				for _, m := range append([]*tensor.Mat{g.K, g.V}, g.Q...) {
					for _, x := range m.Data {
						if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
							t.Fatalf("group %d holds %g", n, x)
						}
					}
				}
			}
		})
	}
}

func equalGroups(a, b []*attn.Group) bool {
	if len(a) != len(b) {
		return false
	}
	for n := range a {
		ms := append([]*tensor.Mat{a[n].K, a[n].V}, a[n].Q...)
		ns := append([]*tensor.Mat{b[n].K, b[n].V}, b[n].Q...)
		if len(ms) != len(ns) {
			return false
		}
		for i := range ms {
			if !slices.Equal(ms[i].Data, ns[i].Data) {
				return false
			}
		}
	}
	return true
}

func TestSyntheticDeterministic(t *testing.T) {
	p := small(func(p *SyntheticParams) { p.Tokens, p.Layers, p.PivotalPool = 512, 2, 64 })
	a, err := generateSynthetic(p, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := generateSynthetic(p, 7, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !equalGroups(a, b) {
		t.Error("1 and 7 workers give different tensors")
	}
	if c := mustGenerate(t, p); !equalGroups(a, c) {
		t.Error("two runs with the same parameters differ")
	}
	p.Seed++
	if equalGroups(a, mustGenerate(t, p)) {
		t.Error("seeds 1 and 2 give identical tensors")
	}
	if slices.Equal(a[0].K.Data, a[2].K.Data) || slices.Equal(a[0].K.Data, a[1].K.Data) {
		t.Error("layers or KV heads share their keys")
	}
}

// TestSyntheticStreams checks that each part draws from its own random
// stream: turning pivotal keys off leaves keys and values bit-identical,
// and the query and key offset leave the values alone.
func TestSyntheticStreams(t *testing.T) {
	a := mustGenerate(t, small(func(p *SyntheticParams) { p.Tokens = 256 }))
	b := mustGenerate(t, small(func(p *SyntheticParams) { p.Tokens, p.Pivotal, p.Shift = 256, 0, 3 }))
	if !slices.Equal(a[0].V.Data, b[0].V.Data) {
		t.Error("values changed with pivotal and shift")
	}
	c := mustGenerate(t, small(func(p *SyntheticParams) { p.Tokens, p.Pivotal = 256, 0 }))
	if !slices.Equal(a[0].K.Data, c[0].K.Data) {
		t.Error("keys changed with pivotal")
	}
	if slices.Equal(a[0].Q[0].Data, c[0].Q[0].Data) {
		t.Error("queries did not change with pivotal")
	}
}

func TestSyntheticValidate(t *testing.T) {
	cases := []struct {
		name string
		mod  func(p *SyntheticParams)
		want []string
	}{
		{"defaults", nil, nil},
		{"tokens", func(p *SyntheticParams) { p.Tokens = 0 }, []string{"tokens: must be >= 1"}},
		{"gqa", func(p *SyntheticParams) { p.Heads, p.KVHeads = 6, 4 }, []string{"kv_heads: heads (6) must be a multiple of kv_heads (4)"}},
		{"odd dim with rope", func(p *SyntheticParams) { p.Dim = 63 }, []string{"dim: must be even"}},
		{"odd dim without rope", func(p *SyntheticParams) { p.Dim, p.Rope = 63, false }, nil},
		{"sinks", func(p *SyntheticParams) { p.Sinks = 2048 }, []string{"sinks: must be less than tokens"}},
		{"negatives", func(p *SyntheticParams) {
			p.Layers, p.SinkStrength, p.Recency, p.Pivotal, p.Shift, p.Skew, p.ValueSpread, p.SinkValue = 0, -1, -1, -1, -1, -1, -1, -1
		}, []string{"layers:", "sink_strength:", "recency:", "pivotal:", "shift:", "skew:", "value_spread:", "sink_value:"}},
		{"nan", func(p *SyntheticParams) {
			p.Noise, p.PivotalShared, p.RecencyWindow = math.NaN(), math.NaN(), math.Inf(1)
		},
			[]string{"noise:", "pivotal_shared:", "recency_window:"}},
		{"pool", func(p *SyntheticParams) { p.PivotalPool = 3 }, []string{"pivotal_pool: must be 0 or at least pivotal (8)"}},
		{"pool too big", func(p *SyntheticParams) { p.PivotalPool = 2045 }, []string{"pivotal_pool: must be at most tokens-sinks (2044)"}},
		{"theta", func(p *SyntheticParams) { p.RopeTheta = 1 }, []string{"rope_theta:"}},
		{"theta without rope", func(p *SyntheticParams) { p.RopeTheta, p.Rope = 0, false }, nil},
		{"huge", func(p *SyntheticParams) { p.Tokens, p.Layers = 1<<22, 64 }, []string{"GiB limit"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := small(c.mod)
			err := p.Validate()
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if n := len(strings.Split(err.Error(), "\n")); n != len(c.want) {
				t.Errorf("%d problems reported, want %d: %v", n, len(c.want), err)
			}
		})
	}
}

// TestSyntheticSinks: the sink keys' logits sit sink_strength above the
// median logit, so they hold a large share of the mass at late positions;
// without sinks the first keys get about a uniform share.
func TestSyntheticSinks(t *testing.T) {
	for _, c := range []struct {
		sinks    int
		strength float64
		minMass  float64
		maxMass  float64
	}{
		{4, 10, 0.4, 1},
		{1, 6, 0.01, 0.15},
		{0, 10, 0, 0.005}, // a uniform share of 4 keys is 0.002
	} {
		t.Run(fmt.Sprintf("sinks%d_strength%g", c.sinks, c.strength), func(t *testing.T) {
			// Several layers and spread-out queries: the sink's and the
			// query's topics add a term that is shared by nearby queries.
			// No pivotal keys: their cross terms add logit noise of
			// several nats (see TestSyntheticPivotal).
			p := small(func(p *SyntheticParams) { p.Sinks, p.SinkStrength, p.Layers, p.Pivotal = c.sinks, c.strength, 8, 0 })
			var mass, lift []float64
			lateQueries(mustGenerate(t, p), 16, func(g *attn.Group, i, t int, l, pr []float64) {
				var m float64
				for j := 0; j < 4; j++ {
					m += pr[j]
				}
				mass = append(mass, m)
				rest := median(l[4:])
				for j := 0; j < c.sinks; j++ {
					lift = append(lift, l[j]-rest)
				}
			})
			if m := mean(mass); m < c.minMass || m > c.maxMass {
				t.Errorf("mean mass on keys 0..3 at late positions = %.4f, want in [%g, %g]", m, c.minMass, c.maxMass)
			}
			if c.sinks > 0 {
				if d := mean(lift); math.Abs(d-c.strength) > 0.3 {
					t.Errorf("sink logit - median logit = %.3f nats, want %g ± 0.3", d, c.strength)
				}
			}
		})
	}
}

// TestSyntheticPivotal: every query's pivotal keys are distinct earlier
// non-sink positions whose logits sit pivotal_strength above the median and
// which the oracle top-k finds; with pivotal keys on, the top keys lie far
// from the query, without them they are local.
func TestSyntheticPivotal(t *testing.T) {
	// Few strong pivotal keys: the cross terms of P keys add about
	// P·strength²·(1+a²)/dim to the logit variance (see synthetic.go), and
	// the recency topic adds its own: the ranks are checked without it.
	for _, recency := range []float64{10, 0} {
		p := small(func(p *SyntheticParams) { p.Dim, p.Pivotal, p.PivotalStrength, p.Recency = 128, 4, 10, recency })
		gs, piv := pivotsOf(t, p)
		for k, pv := range piv {
			want := min(p.Pivotal, max(0, k[2]-p.Sinks))
			if len(pv) != want {
				t.Fatalf("head %d position %d: %d pivotal keys, want %d", k[1], k[2], len(pv), want)
			}
			s := slices.Clone(pv)
			slices.Sort(s)
			if len(slices.Compact(s)) != len(pv) || (len(s) > 0 && (s[0] < int32(p.Sinks) || s[len(s)-1] >= int32(k[2]))) {
				t.Fatalf("head %d position %d: pivotal keys %v are not distinct in [%d, %d)", k[1], k[2], pv, p.Sinks, k[2])
			}
		}
		var lift []float64
		var found, total int
		const local = 64 // recency lifts the last keys as high: rank the others
		lateQueries(gs, 16, func(g *attn.Group, i, t int, l, _ []float64) {
			m := median(l[p.Sinks:])
			order := make([]int, 0, len(l))
			for j := p.Sinks; j <= t-local; j++ {
				order = append(order, j)
			}
			sort.Slice(order, func(a, b int) bool { return l[order[a]] > l[order[b]] })
			top := order[:2*p.Pivotal]
			for _, j := range piv[[3]int{g.Layer, g.QHeads[i], t}] {
				lift = append(lift, l[j]-m)
				if int(j) <= t-local {
					if slices.Contains(top, int(j)) {
						found++
					}
					total++
				}
			}
		})
		t.Logf("recency %g: pivotal lift %.3f, %d/%d ranked", recency, mean(lift), found, total)
		if d := mean(lift); math.Abs(d-p.PivotalStrength) > 0.75 {
			t.Errorf("recency %g: pivotal logit - median logit = %.3f nats, want %g ± 0.75", recency, d, p.PivotalStrength)
		}
		if r := float64(found) / float64(total); recency == 0 && r < 0.9 {
			t.Errorf("%.3f of the pivotal keys are among the top 2·pivotal non-sink keys older than %d positions, want >= 0.9", r, local)
		}
	}

	// How far the top-8 non-sink keys lie from the query.
	far := func(p SyntheticParams) float64 {
		var n, farN int
		lastQueries(mustGenerate(t, p), 16, func(_ *attn.Group, _, t int, l, _ []float64) {
			order := make([]int, 0, len(l))
			for j := p.Sinks; j < len(l); j++ {
				order = append(order, j)
			}
			sort.Slice(order, func(a, b int) bool { return l[order[a]] > l[order[b]] })
			for _, j := range order[:8] {
				if t-j > 256 {
					farN++
				}
				n++
			}
		})
		return float64(farN) / float64(n)
	}
	on, off := far(small(nil)), far(small(func(p *SyntheticParams) { p.Pivotal = 0 }))
	t.Logf("far share of top-8: %.3f with pivotal keys, %.3f without", on, off)
	if on < 0.6 || off > 0.2 {
		t.Errorf("share of the top-8 keys more than 256 positions back: %.3f with pivotal keys (want >= 0.6), %.3f without (want <= 0.2)", on, off)
	}
}

// TestSyntheticPivotalSharing: pivotal_shared sets how many pivotal keys
// the heads of a GQA group have in common; pivotal_pool confines them to a
// fixed set of positions.
func TestSyntheticPivotalSharing(t *testing.T) {
	for _, c := range []struct {
		shared  float64
		pool    int
		minComm int // common keys of heads 0 and 1 at each late position
		maxComm int
	}{
		{1, 0, 8, 8},
		{0.5, 0, 4, 5},
		{0, 0, 0, 1},
		{0, 16, 0, 8},
	} {
		t.Run(fmt.Sprintf("shared%g_pool%d", c.shared, c.pool), func(t *testing.T) {
			p := small(func(p *SyntheticParams) { p.Tokens, p.PivotalShared, p.PivotalPool = 512, c.shared, c.pool })
			_, piv := pivotsOf(t, p)
			var comm []float64
			pool := map[int32]bool{}
			for pos := 0; pos < p.Tokens; pos++ {
				a, b := piv[[3]int{0, 0, pos}], piv[[3]int{0, 1, pos}]
				for _, j := range append(slices.Clone(a), b...) {
					pool[j] = true
				}
				if pos < p.Tokens-128 {
					continue
				}
				n := 0
				for _, j := range a {
					if slices.Contains(b, j) {
						n++
					}
				}
				if n < c.minComm || n > c.maxComm {
					t.Fatalf("position %d: heads 0 and 1 share %d pivotal keys, want %d..%d", pos, n, c.minComm, c.maxComm)
				}
				comm = append(comm, float64(n))
			}
			if c.pool > 0 {
				if len(pool) > c.pool {
					t.Errorf("%d distinct pivotal positions, want at most the pool of %d", len(pool), c.pool)
				}
				if mean(comm) < 2 { // 8 of at most 16 each: they must overlap
					t.Errorf("heads drawing from a pool of 16 share %.2f keys on average, want >= 2", mean(comm))
				}
			} else if len(pool) < p.Tokens/2 {
				t.Errorf("only %d distinct pivotal positions over %d queries", len(pool), p.Tokens)
			}
		})
	}
}

// TestSyntheticRecency: without RoPE the mean logit of key t-Δ for query t
// exceeds the far mean by recency·exp(-Δ/recency_window); with or without
// RoPE the local window's mass rises with recency.
func TestSyntheticRecency(t *testing.T) {
	const R, W = 6.0, 16.0
	base := func(p *SyntheticParams) { p.Sinks, p.Pivotal, p.Recency, p.RecencyWindow, p.Rope = 0, 0, R, W, false }
	gs := mustGenerate(t, small(base))
	deltas := []int{0, 8, 16, 48}
	lift := make([][]float64, len(deltas))
	lastQueries(gs, 64, func(_ *attn.Group, _, t int, l, _ []float64) {
		far := mean(l[:t-512])
		for n, d := range deltas {
			lift[n] = append(lift[n], l[t-d]-far)
		}
	})
	for n, d := range deltas {
		want := R * math.Exp(-float64(d)/W)
		t.Logf("distance %d: lift %.3f, want %.3f", d, mean(lift[n]), want)
		if got := mean(lift[n]); math.Abs(got-want) > 0.3 {
			t.Errorf("mean logit lift at distance %d = %.3f, want %.3f ± 0.3", d, got, want)
		}
	}

	local := func(mod func(p *SyntheticParams)) float64 {
		var m []float64
		lastQueries(mustGenerate(t, small(func(p *SyntheticParams) { base(p); mod(p) })), 16, func(_ *attn.Group, _, t int, _, pr []float64) {
			var s float64
			for j := t - 63; j <= t; j++ {
				s += pr[j]
			}
			m = append(m, s)
		})
		return mean(m)
	}
	for _, rope := range []bool{false, true} {
		on := local(func(p *SyntheticParams) { p.Rope = rope })
		off := local(func(p *SyntheticParams) { p.Rope, p.Recency = rope, 0 })
		t.Logf("rope %v: local mass %.3f with recency, %.3f without", rope, on, off)
		if on < 0.3 || off > 0.1 {
			t.Errorf("rope %v: mass on the last 64 keys %.3f with recency (want >= 0.3), %.3f without (want <= 0.1)", rope, on, off)
		}
	}
}

// TestSyntheticHeadSpread: with head_spread each query head's sink and
// pivotal logit lifts are the strengths times that head's own factors.
func TestSyntheticHeadSpread(t *testing.T) {
	p := small(func(p *SyntheticParams) {
		p.Dim, p.Layers, p.HeadSpread, p.Recency, p.Pivotal, p.PivotalStrength, p.SinkStrength = 128, 2, 1, 0, 4, 10, 8
	})
	gs, piv := pivotsOf(t, p)
	type key struct{ layer, head int }
	sinkLift, pivLift := map[key][]float64{}, map[key][]float64{}
	lateQueries(gs, 32, func(g *attn.Group, i, t int, l, _ []float64) {
		m := median(l[p.Sinks:])
		k := key{g.Layer, g.QHeads[i]}
		for j := 0; j < p.Sinks; j++ {
			sinkLift[k] = append(sinkLift[k], l[j]-m)
		}
		for _, j := range piv[[3]int{g.Layer, g.QHeads[i], t}] {
			pivLift[k] = append(pivLift[k], l[j]-m)
		}
	})
	lo, hi := math.Inf(1), math.Inf(-1)
	for k, lifts := range sinkLift {
		sg := &synthGroup{p: &p, layer: k.layer, kv: k.head / (p.Heads / p.KVHeads)}
		fs, _, fp := sg.headFactors(k.head)
		lo, hi = min(lo, fs), max(hi, fs)
		if got, want := mean(lifts), p.SinkStrength*fs; math.Abs(got-want) > 0.1*want+0.3 {
			t.Errorf("layer %d head %d: sink lift %.3f, want %.3f (factor %.3f)", k.layer, k.head, got, want, fs)
		}
		if got, want := mean(pivLift[k]), p.PivotalStrength*fp; math.Abs(got-want) > 0.1*want+0.3 {
			t.Errorf("layer %d head %d: pivotal lift %.3f, want %.3f (factor %.3f)", k.layer, k.head, got, want, fp)
		}
	}
	if hi/lo < 1.5 {
		t.Errorf("sink factors span %.3f..%.3f: head_spread 1 should spread them more", lo, hi)
	}
}

// TestSyntheticDefaults pins the regime the defaults give (documented on
// SyntheticParams): at T = 4096 a share of the mass on each of the sinks,
// the recent keys and the older pivotal keys, and a concentrated softmax.
func TestSyntheticDefaults(t *testing.T) {
	p := *DefaultSyntheticParams()
	p.Heads = 4 // 2 per KV head, as in the capture; faster
	gs, piv := pivotsOf(t, p)
	var sinks, recent, pivotal, top1 []float64
	lastQueries(gs, 8, func(g *attn.Group, i, t int, _, pr []float64) {
		w := (t + 1) / 100
		var s, r, pv float64
		for j := 0; j < p.Sinks; j++ {
			s += pr[j]
		}
		for j := t - w + 1; j <= t; j++ {
			r += pr[j]
		}
		for _, j := range piv[[3]int{g.Layer, g.QHeads[i], t}] {
			if t-int(j) >= w {
				pv += pr[j]
			}
		}
		sorted := slices.Clone(pr)
		slices.Sort(sorted)
		var top float64
		for _, x := range sorted[len(sorted)-w:] {
			top += x
		}
		sinks, recent, pivotal, top1 = append(sinks, s), append(recent, r), append(pivotal, pv), append(top1, top)
	})
	for _, c := range []struct {
		name   string
		got    float64
		lo, hi float64
	}{
		{"sinks", mean(sinks), 0.2, 0.4},
		{"most recent 1%", mean(recent), 0.15, 0.35},
		{"older pivotal keys", mean(pivotal), 0.1, 0.25},
		{"top 1%", mean(top1), 0.85, 0.97},
	} {
		t.Logf("mass on %s: %.3f", c.name, c.got)
		if c.got < c.lo || c.got > c.hi {
			t.Errorf("mass on %s = %.3f, want in [%g, %g]", c.name, c.got, c.lo, c.hi)
		}
	}
}

// simhashRecall returns the mean top-k recall, at the last 8 positions of
// every query head, of ranking keys by the Hamming distance between
// 64-bit SimHash signatures of the raw query and raw keys (ties toward
// lower positions), against the top-k by exact logit.
func simhashRecall(gs []*attn.Group, k int) float64 {
	const nbits = 64
	r := rand.New(rand.NewPCG(1, 2))
	planes := tensor.NewMat(nbits, gs[0].D())
	for i := range planes.Data {
		planes.Data[i] = float32(r.NormFloat64())
	}
	sig := func(x []float32) uint64 {
		var s uint64
		for b := 0; b < nbits; b++ {
			if tensor.Dot(planes.Row(b), x) > 0 {
				s |= 1 << b
			}
		}
		return s
	}
	var rec []float64
	for _, g := range gs {
		ks := make([]uint64, g.T())
		for j := range ks {
			ks[j] = sig(g.K.Row(j))
		}
		lastQueries([]*attn.Group{g}, 8, func(g *attn.Group, i, t int, l, _ []float64) {
			qs := sig(g.Q[i].Row(t))
			byL, byH := make([]int, t+1), make([]int, t+1)
			for j := range byL {
				byL[j], byH[j] = j, j
			}
			sort.SliceStable(byL, func(a, b int) bool { return l[byL[a]] > l[byL[b]] })
			sort.SliceStable(byH, func(a, b int) bool {
				return bits.OnesCount64(qs^ks[byH[a]]) < bits.OnesCount64(qs^ks[byH[b]])
			})
			n := 0
			for _, j := range byH[:k] {
				if slices.Contains(byL[:k], j) {
					n++
				}
			}
			rec = append(rec, float64(n)/float64(k))
		})
	}
	return mean(rec)
}

// TestSyntheticShift: the shift leaves every softmax unchanged, but
// angle-based search on the raw vectors (SimHash) loses the top keys.
func TestSyntheticShift(t *testing.T) {
	mod := func(shift, skew float64) func(p *SyntheticParams) {
		return func(p *SyntheticParams) { p.Dim, p.Sinks, p.Shift, p.Skew = 128, 0, shift, skew }
	}
	plain := mustGenerate(t, small(mod(0, 0)))
	shifted := mustGenerate(t, small(mod(2, 1)))
	var maxDiff float64
	lastQueries(plain, 8, func(g *attn.Group, i, t int, _, pa []float64) {
		s := shifted[g.KVHead]
		l := attn.Logits(s.Q[i].Row(t), s.K, t+1, s.Scale, nil)
		pb, _ := attn.Softmax(l, nil)
		for j := range pa {
			maxDiff = max(maxDiff, math.Abs(pa[j]-pb[j]))
		}
	})
	if maxDiff > 1e-4 {
		t.Errorf("shift changed a softmax probability by %.3g, want <= 1e-4", maxDiff)
	}
	// Chance level is 64/2048 = 0.031.
	a, b := simhashRecall(plain, 64), simhashRecall(shifted, 64)
	t.Logf("max softmax change %.3g; SimHash recall %.3f plain, %.3f shifted", maxDiff, a, b)
	if a < 0.15 || b > 0.07 {
		t.Errorf("SimHash top-64 recall: %.3f without shift (want >= 0.15), %.3f with shift 2, skew 1 (want <= 0.07)", a, b)
	}
}

// TestSyntheticRope: with RoPE, each (i, i+d/2) pair of key j is the
// no-RoPE pair rotated by j·theta^(-2i/d).
func TestSyntheticRope(t *testing.T) {
	const d, theta = 16, 10000.0
	mod := func(rope bool) func(p *SyntheticParams) {
		return func(p *SyntheticParams) {
			p.Tokens, p.Dim, p.Sinks, p.Pivotal, p.Shift, p.Skew, p.Rope, p.RopeTheta = 1100, d, 0, 0, 0, 0, rope, theta
		}
	}
	on, off := mustGenerate(t, small(mod(true))), mustGenerate(t, small(mod(false)))
	for _, j := range []int{0, 1, 7, 1099} {
		for _, m := range []struct {
			name   string
			a, b   *tensor.Mat
			scaleB float64
		}{{"key", on[0].K, off[0].K, 1}, {"query", on[0].Q[1], off[0].Q[1], 1}} {
			a, b := m.a.Row(j), m.b.Row(j)
			for i := 0; i < d/2; i++ {
				ang := float64(j) * math.Pow(theta, -2*float64(i)/d)
				s, c := math.Sincos(ang)
				x1, x2 := float64(b[i]), float64(b[i+d/2])
				w1, w2 := x1*c-x2*s, x2*c+x1*s
				if math.Abs(float64(a[i])-w1) > 1e-4 || math.Abs(float64(a[i+d/2])-w2) > 1e-4 {
					t.Fatalf("%s %d pair %d: (%g, %g), want (%g, %g)", m.name, j, i, a[i], a[i+d/2], w1, w2)
				}
			}
		}
	}
	// Hand-computed: at position 1 the first pair turns by exactly 1 rad.
	b := off[0].K.Row(1)
	if got, want := float64(on[0].K.Row(1)[0]), float64(b[0])*math.Cos(1)-float64(b[d/2])*math.Sin(1); math.Abs(got-want) > 1e-5 {
		t.Errorf("key 1 dim 0 = %g, want %g", got, want)
	}
}

// TestSyntheticValues checks the value norms: log-normal spread around
// sqrt(d) per token, sinks scaled by sink_value.
func TestSyntheticValues(t *testing.T) {
	for _, spread := range []float64{0, 1} {
		p := small(func(p *SyntheticParams) { p.Tokens, p.ValueSpread, p.SinkValue = 4096, spread, 0.1 })
		v := mustGenerate(t, p)[0].V
		var logs []float64
		for j := p.Sinks; j < v.Rows; j++ {
			logs = append(logs, math.Log(math.Sqrt(tensor.Dot(v.Row(j), v.Row(j))/float64(p.Dim))))
		}
		m := mean(logs)
		var sd float64
		for _, x := range logs {
			sd += (x - m) * (x - m)
		}
		sd = math.Sqrt(sd / float64(len(logs)))
		// The norm of a N(0, I_64) row alone has a log-std of about 0.09.
		t.Logf("spread %g: log-norm std %.3f", spread, sd)
		if want := math.Hypot(spread, 0.09); math.Abs(sd-want) > 0.05 {
			t.Errorf("spread %g: log-norm std %.3f, want %.3f ± 0.05", spread, sd, want)
		}
		for j := 0; j < p.Sinks; j++ {
			if n := math.Sqrt(tensor.Dot(v.Row(j), v.Row(j)) / float64(p.Dim)); spread == 0 && math.Abs(n-0.1) > 0.03 {
				t.Errorf("sink %d value RMS %.3f, want 0.1 ± 0.03", j, n)
			}
		}
	}
}

// BenchmarkSynthetic generates one workload per iteration at named sizes,
// with every knob at its default (d = 128, 8 query heads on 2 KV heads).
func BenchmarkSynthetic(b *testing.B) {
	for _, T := range []int{4096, 65536} {
		b.Run(fmt.Sprintf("T=%dK/d=128/h=8/kv=2", T/1024), func(b *testing.B) {
			p := DefaultSyntheticParams()
			p.Tokens = T
			b.ReportAllocs()
			for b.Loop() {
				if _, err := GenerateSynthetic(*p); err != nil {
					b.Fatal(err)
				}
			}
			s := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(float64(T)/s, "tokens/s")
			bytes := float64(T) * float64(p.Dim) * float64(p.Heads+2*p.KVHeads) * 4
			b.ReportMetric(bytes/s/1e6, "MB/s")
		})
	}
}
