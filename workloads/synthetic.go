package workloads

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/tensor"
)

// SyntheticParams configures the synthetic workload, a seeded generator
// that plants in exact q·k logits the structure that decides how well a
// sparse-attention selector can do, each part behind its own knob, so that
// a sweep can isolate one regime at a time (the real capture has no sink
// and little long-range structure; see ../shared/data/README.md).
//
// # Model
//
// Every layer is an independent sequence of T positions; each of its KV
// heads is one attn.Group with heads/kv_heads query heads. All strengths
// are stated in logit units (nats of scale·q·k, scale = 1/sqrt(dim)), so
// that "pivotal_strength: 8" means the planted key's logit sits 8 nats
// above the query's typical logit. For one group, in order:
//
//  1. Content (pre-RoPE): key k̃_j = z_j, query q̃_t = noise·z'_t with z
//     i.i.d. N(0, I_dim); the content logit is then ~ N(0, noise²).
//  2. Recency (pre-RoPE): a "topic" process c_t (AR(1) with correlation
//     ρ = exp(-1/recency_window) between neighbours, c_t ~ N(0, I)) is
//     added to both: k̃_j += a·c_j, q̃_t += a·c_t with a² = recency/sqrt(dim).
//     Without RoPE the mean logit bonus of key j for query t is
//     recency·ρ^(t-j); RoPE damps it further with distance (the fast RoPE
//     pairs decorrelate first), as in real models.
//  3. RoPE: both are rotated by their position (Llama / Hugging Face
//     rotate_half layout: dimension i pairs with i+dim/2 at frequency
//     rope_theta^(-2i/dim)) when rope is true.
//  4. Sinks (post-RoPE): a fixed unit direction u is projected out of every
//     key and query, then the first `sinks` keys get α·u and every query
//     γ·u with scale·α·γ = sink_strength: the sink keys' logits are exactly
//     sink_strength above what their content gives, at every position,
//     and no other key is touched.
//  5. Pivotal keys (post-RoPE): query t of head h is given `pivotal` keys
//     drawn at random from positions [sinks, t) (or from a fixed pool of
//     pivotal_pool positions, which makes them heavy hitters shared across
//     queries), a fraction pivotal_shared of them common to the heads of
//     the GQA group. The query gets Σ_p w_p·e_p, with e_p the key's own
//     content (step 1 after RoPE, without the topic it shares with its
//     neighbours) and w_p = pivotal_strength/(scale·e_p·k_p), so each
//     pivotal key's logit rises by exactly pivotal_strength (plus cross
//     terms) and its neighbours' do not. The draws are per position:
//     O(T·pivotal) time and no stored state.
//  6. Shift (post-RoPE, last): keys become S·k + m and queries S⁻¹·q, with
//     S a diagonal scaling constant on each RoPE pair (log-normal factors,
//     log-std skew) and m a fixed offset of norm shift·sqrt(dim). The
//     logits change by q·S⁻¹m, a constant per query, so every softmax is
//     unchanged (to float32 rounding), but queries and keys are now
//     distributed differently and the angle between a raw query and a raw
//     key stops tracking q·k: this is what defeats SimHash / angular LSH
//     and ANN indexes built on raw keys. Measured (TestSyntheticShift,
//     T = 2048, d = 128, 64-bit SimHash, top-64): recall 0.18 plain, 0.04
//     with shift 2 and skew 1, chance 0.03. The offset alone costs little
//     (0.17 at shift 1); the skew does most (0.04 at skew 1).
//
// Heads: with head_spread > 0 each query head multiplies its sink,
// recency and pivotal strengths by its own log-normal factors (mean 1), as
// heads of one layer of a trained model play different roles (the sink
// and recency factors act on the query side: the query's sink component and
// its topic amplitude, so the recency lift is recency·f·ρ^Δ).
//
// Values are i.i.d. N(0, I) rows scaled per token by a log-normal factor
// (log-std value_spread, mean 1); sink values are further scaled by
// sink_value (sinks in trained models are near no-ops).
//
// Defaults, measured at T = 4096 (last 8 positions, 4 query heads on 2 KV
// heads): mass 0.29 on the 4 sinks, 0.23 on the most recent 1% of keys,
// 0.16 on the pivotal keys older than that; the top 1% of keys hold 0.91
// of the mass (real layer 4 of the capture: 0.92). At T = 16384 these are
// 0.24, 0.15, 0.16 and 0.92: strengths are fixed in nats, so the sinks'
// share falls slowly as the context grows.
//
// Note: the cross terms are real and set a limit. A query aligned with P
// pivotal keys has a larger norm, so its logits on the other keys spread
// more: the logit variance grows by about P·pivotal_strength²·(1+a²)/dim.
// Random keys in dim dimensions cannot all be singled out at once: the
// planted lift over that noise tends to sqrt(dim/(P·(1+a²))) standard
// deviations however strong the keys are, so with P near dim/16 they no
// longer top the other keys. At the defaults (d = 128, P = 8, strength 8)
// the pivotal keys hold real mass but are not all in the oracle top-2P;
// TestSyntheticPivotal shows P = 4, strength 10, no recency, where they are.
type SyntheticParams struct {
	Seed    uint64 `yaml:"seed" doc:"random seed; the same parameters give bit-identical tensors"`
	Tokens  int    `yaml:"tokens" doc:"sequence length T (positions 0..T-1)"`
	Heads   int    `yaml:"heads" doc:"query heads per layer"`
	KVHeads int    `yaml:"kv_heads" doc:"key/value heads per layer (GQA: heads/kv_heads query heads share one)"`
	Dim     int    `yaml:"dim" doc:"head dimension d (even when rope is on); scale is 1/sqrt(d)"`
	Layers  int    `yaml:"layers" doc:"independent sequences, reported as layers 0..layers-1"`

	Noise float64 `yaml:"noise" doc:"standard deviation of the random content logit, nats"`

	Sinks        int     `yaml:"sinks" doc:"attention-sink keys at positions 0..sinks-1 (0: none)"`
	SinkStrength float64 `yaml:"sink_strength" doc:"logit added to every sink key for every query, nats"`
	SinkValue    float64 `yaml:"sink_value" doc:"scale of the sink keys' value vectors (trained sinks are near no-ops: small)"`

	Recency       float64 `yaml:"recency" doc:"logit bonus of the query's own position from a shared local topic, nats; decays with distance (0: none)"`
	RecencyWindow float64 `yaml:"recency_window" doc:"correlation length of the topic, positions: the bonus falls by 1/e per recency_window (before RoPE damping)"`

	Pivotal         int     `yaml:"pivotal" doc:"long-range pivotal keys per query, drawn at random from earlier positions (0: none)"`
	PivotalStrength float64 `yaml:"pivotal_strength" doc:"logit added to each of a query's pivotal keys, nats"`
	PivotalShared   float64 `yaml:"pivotal_shared" doc:"fraction of the pivotal keys common to all query heads of a GQA group, 0..1"`
	PivotalPool     int     `yaml:"pivotal_pool" doc:"draw pivotal keys from a fixed random pool of this many positions (heavy hitters shared across queries); 0: from all earlier positions"`

	Shift float64 `yaml:"shift" doc:"norm of a fixed offset added to every key, in units of sqrt(dim) (softmax-invariant; defeats angle-based search on raw vectors)"`
	Skew  float64 `yaml:"skew" doc:"log-std of per-RoPE-pair scale factors, keys ×s and queries ÷s (softmax-invariant; makes queries and keys differently distributed)"`

	Rope      bool    `yaml:"rope" doc:"apply rotary position embedding to queries and keys"`
	RopeTheta float64 `yaml:"rope_theta" doc:"RoPE base"`

	ValueSpread float64 `yaml:"value_spread" doc:"log-std of the per-token value-norm factor (0: all value rows ~ N(0, I))"`

	HeadSpread float64 `yaml:"head_spread" doc:"log-std of per-query-head factors on sink_strength, recency and pivotal_strength (0: all heads alike; 1: heads of very different roles)"`
}

// DefaultSyntheticParams returns the synthetic workload's defaults: 4096
// tokens, 8 query heads on 2 KV heads (GQA group of 4), d = 128, RoPE
// theta 10000, with sinks, recency, pivotal keys and a key offset all on.
func DefaultSyntheticParams() *SyntheticParams {
	return &SyntheticParams{
		Seed: 1, Tokens: 4096, Heads: 8, KVHeads: 2, Dim: 128, Layers: 1,
		Noise: 1,
		Sinks: 4, SinkStrength: 10, SinkValue: 0.1,
		Recency: 10, RecencyWindow: 32,
		Pivotal: 8, PivotalStrength: 8, PivotalShared: 0.5,
		Shift: 1, Skew: 0.5,
		Rope: true, RopeTheta: 10000,
		ValueSpread: 0.5,
	}
}

// syntheticMaxBytes bounds the tensors one synthetic workload may allocate.
const syntheticMaxBytes = 16 << 30

// Validate reports every problem with the parameters, joined.
func (p *SyntheticParams) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	nonneg := func(field string, x float64) {
		if !finite(x) || x < 0 {
			bad(field, "must be a finite number >= 0, got %g", x)
		}
	}
	if p.Tokens < 1 {
		bad("tokens", "must be >= 1, got %d", p.Tokens)
	}
	if p.Heads < 1 {
		bad("heads", "must be >= 1, got %d", p.Heads)
	}
	if p.KVHeads < 1 {
		bad("kv_heads", "must be >= 1, got %d", p.KVHeads)
	} else if p.Heads >= 1 && p.Heads%p.KVHeads != 0 {
		bad("kv_heads", "heads (%d) must be a multiple of kv_heads (%d)", p.Heads, p.KVHeads)
	}
	if p.Dim < 2 {
		bad("dim", "must be >= 2, got %d", p.Dim)
	} else if p.Rope && p.Dim%2 != 0 {
		bad("dim", "must be even with rope on, got %d", p.Dim)
	}
	if p.Layers < 1 {
		bad("layers", "must be >= 1, got %d", p.Layers)
	}
	if !finite(p.Noise) || p.Noise <= 0 {
		bad("noise", "must be a finite number > 0, got %g", p.Noise)
	}
	if p.Sinks < 0 {
		bad("sinks", "must be >= 0, got %d", p.Sinks)
	} else if p.Tokens >= 1 && p.Sinks >= p.Tokens {
		bad("sinks", "must be less than tokens (%d), got %d", p.Tokens, p.Sinks)
	}
	nonneg("sink_strength", p.SinkStrength)
	nonneg("sink_value", p.SinkValue)
	nonneg("recency", p.Recency)
	if !finite(p.RecencyWindow) || p.RecencyWindow <= 0 {
		bad("recency_window", "must be a finite number > 0, got %g", p.RecencyWindow)
	}
	if p.Pivotal < 0 {
		bad("pivotal", "must be >= 0, got %d", p.Pivotal)
	}
	nonneg("pivotal_strength", p.PivotalStrength)
	if !(p.PivotalShared >= 0 && p.PivotalShared <= 1) {
		bad("pivotal_shared", "must be in [0, 1], got %g", p.PivotalShared)
	}
	if p.PivotalPool < 0 {
		bad("pivotal_pool", "must be >= 0, got %d", p.PivotalPool)
	} else if p.PivotalPool > 0 && p.PivotalPool < p.Pivotal {
		bad("pivotal_pool", "must be 0 or at least pivotal (%d), got %d", p.Pivotal, p.PivotalPool)
	} else if p.Tokens >= 1 && p.Sinks >= 0 && p.PivotalPool > p.Tokens-p.Sinks {
		bad("pivotal_pool", "must be at most tokens-sinks (%d), got %d", max(p.Tokens-p.Sinks, 0), p.PivotalPool)
	}
	nonneg("shift", p.Shift)
	nonneg("skew", p.Skew)
	if p.Rope && (!finite(p.RopeTheta) || p.RopeTheta <= 1) {
		bad("rope_theta", "must be a finite number > 1, got %g", p.RopeTheta)
	}
	nonneg("value_spread", p.ValueSpread)
	nonneg("head_spread", p.HeadSpread)
	if p.Tokens >= 1 && p.Heads >= 1 && p.KVHeads >= 1 && p.Dim >= 1 && p.Layers >= 1 {
		n := float64(p.Layers) * float64(p.Tokens) * float64(p.Dim) * float64(p.Heads+2*p.KVHeads) * 4
		if n > syntheticMaxBytes {
			bad("tokens", "layers×tokens×dim×(heads+2·kv_heads) float32s need %.1f GiB, more than the %d GiB limit", n/(1<<30), syntheticMaxBytes>>30)
		}
	}
	return errors.Join(errs...)
}

func init() {
	Register(Spec{
		Name:     "synthetic",
		Doc:      "seeded Q/K/V with planted sinks, recency, pivotal keys, a query/key shift, GQA and RoPE",
		Defaults: func() any { return DefaultSyntheticParams() },
		New: func(p any, env Env) (Workload, error) {
			sp := *p.(*SyntheticParams)
			if err := sp.Validate(); err != nil {
				return nil, fmt.Errorf("synthetic: %w", err)
			}
			return &syntheticWorkload{p: sp, queries: env.Queries}, nil
		},
	})
}

type syntheticWorkload struct {
	p       SyntheticParams
	queries func(T int) []int
}

func (w *syntheticWorkload) Groups() ([]*attn.Group, error) {
	if w.queries == nil {
		return GenerateSynthetic(w.p)
	}
	return GenerateSyntheticAt(w.p, w.queries(w.p.Tokens))
}

// GenerateSyntheticAt is GenerateSynthetic computing the queries at the
// given positions only: those rows are bit-identical to
// GenerateSynthetic's, the other rows of Q are zero, and K and V are the
// same. (The random streams still advance through every position.)
func GenerateSyntheticAt(p SyntheticParams, positions []int) ([]*attn.Group, error) {
	need := make([]bool, max(p.Tokens, 0))
	for _, t := range positions {
		if t >= 0 && t < len(need) {
			need[t] = true
		}
	}
	return generateSyntheticFor(p, runtime.GOMAXPROCS(0), nil, need)
}

// GenerateSynthetic returns the Groups of the synthetic workload: for each
// layer l and KV head g, a Group with Layer l, KVHead g and query heads
// g·G..(g+1)·G-1 (G = heads/kv_heads). Item is "seed<seed>". The work is
// spread over GOMAXPROCS goroutines; the result does not depend on it.
func GenerateSynthetic(p SyntheticParams) ([]*attn.Group, error) {
	return generateSynthetic(p, runtime.GOMAXPROCS(0), nil)
}

// pivotHook, when set (tests only), sees each query's pivotal positions.
// It may be called concurrently.
type pivotHook func(layer, qhead, t int, pivots []int32)

// Random streams: each part of each group draws from its own PCG stream, so
// the output does not depend on scheduling and turning one knob off does
// not change the other parts' draws.
const (
	streamDirs = iota + 1
	streamTopic
	streamKeys
	streamValues
	streamPool
	streamShared
	streamQuery  // + query head
	streamPivots // + query head
	streamHeads  // + query head
)

func rngFor(seed uint64, layer, kv, stream, head int) *rand.Rand {
	h := splitmix64(uint64(layer))
	h = splitmix64(h ^ uint64(kv)<<20)
	h = splitmix64(h ^ uint64(stream)<<40)
	h = splitmix64(h ^ uint64(head))
	return rand.New(rand.NewPCG(seed, h))
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// ropeTable holds cos and sin of t·θ_i for t < T, i < d/2: [T][d/2].
type ropeTable struct {
	half     int
	cos, sin []float64
}

func newRopeTable(T, d int, theta float64) *ropeTable {
	half := d / 2
	rt := &ropeTable{half: half, cos: make([]float64, T*half), sin: make([]float64, T*half)}
	freq := make([]float64, half)
	for i := range freq {
		freq[i] = math.Pow(theta, -2*float64(i)/float64(d))
	}
	for t := 0; t < T; t++ {
		for i, f := range freq {
			rt.sin[t*half+i], rt.cos[t*half+i] = math.Sincos(float64(t) * f)
		}
	}
	return rt
}

// apply rotates x in place to position t (rotate_half layout).
func (rt *ropeTable) apply(x []float64, t int) {
	h := rt.half
	c, s := rt.cos[t*h:(t+1)*h], rt.sin[t*h:(t+1)*h]
	for i := 0; i < h; i++ {
		x1, x2 := x[i], x[i+h]
		x[i] = x1*c[i] - x2*s[i]
		x[i+h] = x2*c[i] + x1*s[i]
	}
}

// synthGroup is the state shared by the query heads of one group.
type synthGroup struct {
	p      *SyntheticParams
	layer  int
	kv     int
	rope   *ropeTable
	topic  *tensor.Mat // [T][d] AR(1) topic rows, nil without recency
	a      float64     // topic amplitude
	sinkU  []float64   // unit sink direction, nil without sinks
	gamma  float64     // query component along sinkU
	scaleS []float64   // per-dimension skew factor s (keys ×s, queries ÷s)
	offset []float64   // key offset m
	k      *tensor.Mat // keys before the shift (true geometry)
	ident  *tensor.Mat // the keys' own content (no topic) that pivotal queries aim at; k without recency
	kInv   []float64   // pivotal weight w_j: scale·w_j·(ident_j·k_j) = pivotal_strength
	pool   []int32     // sorted pivotal pool, nil when drawing from all positions
	nShare int         // pivotal keys shared across the group's heads
	shared []int32     // [T][nShare] shared pivotal draws; valid where the candidates outnumber pivotal
}

func generateSynthetic(p SyntheticParams, workers int, hook pivotHook) ([]*attn.Group, error) {
	return generateSyntheticFor(p, workers, hook, nil)
}

// generateSyntheticFor generates the groups; need, when not nil, marks
// the positions whose queries are computed (the others stay zero).
func generateSyntheticFor(p SyntheticParams, workers int, hook pivotHook, need []bool) ([]*attn.Group, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("synthetic: %w", err)
	}
	var rt *ropeTable
	if p.Rope {
		rt = newRopeTable(p.Tokens, p.Dim, p.RopeTheta)
	}
	groupSize := p.Heads / p.KVHeads
	var out []*attn.Group
	for l := 0; l < p.Layers; l++ {
		for kv := 0; kv < p.KVHeads; kv++ {
			sg := newSynthGroup(&p, l, kv, rt)
			g := &attn.Group{
				Item: fmt.Sprintf("seed%d", p.Seed), Layer: l, KVHead: kv,
				Scale: float32(1 / math.Sqrt(float64(p.Dim))),
			}
			for i := 0; i < groupSize; i++ {
				g.QHeads = append(g.QHeads, kv*groupSize+i)
				g.Q = append(g.Q, tensor.NewMat(p.Tokens, p.Dim))
			}
			// Values and queries are independent given the keys: run them
			// side by side.
			jobs := make([]func(), 0, groupSize+1)
			jobs = append(jobs, func() { g.V = sg.values() })
			for i := range g.Q {
				jobs = append(jobs, func() { sg.queries(g.QHeads[i], g.Q[i], hook, need) })
			}
			parallel(workers, jobs)
			g.K = sg.shiftedKeys()
			out = append(out, g)
		}
	}
	return out, nil
}

// parallel runs jobs on at most workers goroutines.
func parallel(workers int, jobs []func()) {
	workers = max(1, min(workers, len(jobs)))
	if workers == 1 {
		for _, j := range jobs {
			j()
		}
		return
	}
	next := make(chan func())
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				j()
			}
		}()
	}
	for _, j := range jobs {
		next <- j
	}
	close(next)
	wg.Wait()
}

func newSynthGroup(p *SyntheticParams, layer, kv int, rt *ropeTable) *synthGroup {
	T, d := p.Tokens, p.Dim
	sqrtD := math.Sqrt(float64(d))
	sg := &synthGroup{p: p, layer: layer, kv: kv, rope: rt}

	dirs := rngFor(p.Seed, layer, kv, streamDirs, 0)
	unit := func() []float64 {
		u := make([]float64, d)
		var n float64
		for i := range u {
			u[i] = dirs.NormFloat64()
			n += u[i] * u[i]
		}
		n = math.Sqrt(n)
		for i := range u {
			u[i] /= n
		}
		return u
	}
	// Draw every direction whether used or not, so that one knob does not
	// move another's randomness.
	sinkU, offU := unit(), unit()
	skewZ := make([]float64, d)
	for i := range skewZ {
		skewZ[i] = dirs.NormFloat64()
	}
	if p.Sinks > 0 && p.SinkStrength > 0 {
		sg.sinkU = sinkU
		sg.gamma = math.Sqrt(p.SinkStrength * sqrtD)
	}
	sg.scaleS = make([]float64, d)
	for i := range sg.scaleS {
		z := skewZ[i]
		if p.Rope { // one factor per RoPE pair, so the shift commutes with RoPE
			z = skewZ[i%(d/2)]
		}
		sg.scaleS[i] = math.Exp(p.Skew * z)
	}
	sg.offset = make([]float64, d)
	for i := range sg.offset {
		sg.offset[i] = p.Shift * sqrtD * offU[i]
	}

	if p.Recency > 0 {
		sg.a = math.Sqrt(p.Recency / sqrtD) // scale·a²·E[c_t·c_t] = recency
		rho := math.Exp(-1 / p.RecencyWindow)
		innov := math.Sqrt(1 - rho*rho)
		r := rngFor(p.Seed, layer, kv, streamTopic, 0)
		sg.topic = tensor.NewMat(T, d)
		prev := make([]float64, d)
		for i := range prev {
			prev[i] = r.NormFloat64()
		}
		for t := 0; t < T; t++ {
			row := sg.topic.Row(t)
			for i := range prev {
				if t > 0 {
					prev[i] = rho*prev[i] + innov*r.NormFloat64()
				}
				row[i] = float32(prev[i])
			}
		}
	}

	// Keys in the true geometry (before the shift).
	sg.k = tensor.NewMat(T, d)
	sg.kInv = make([]float64, T)
	r := rngFor(p.Seed, layer, kv, streamKeys, 0)
	x := make([]float64, d)
	alpha := 0.0
	if sg.sinkU != nil {
		alpha = p.SinkStrength * sqrtD / sg.gamma
	}
	// A query aims at a pivotal key's own content (its "token identity"),
	// not at the topic it shares with its neighbours: else the bonus would
	// spread over a span of recency_window positions around each pivotal
	// key.
	sg.ident = sg.k
	var y []float64
	if sg.topic != nil && p.Pivotal > 0 {
		sg.ident = tensor.NewMat(T, d)
		y = make([]float64, d)
	}
	for j := 0; j < T; j++ {
		for i := range x {
			x[i] = r.NormFloat64()
		}
		if y != nil {
			copy(y, x)
			sg.place(y, j)
			for i, v := range y {
				sg.ident.Data[j*d+i] = float32(v)
			}
		}
		sg.structure(x, j, 1)
		if j < p.Sinks && sg.sinkU != nil {
			for i := range x {
				x[i] += alpha * sg.sinkU[i]
			}
		}
		row := sg.k.Row(j)
		for i, v := range x {
			row[i] = float32(v)
		}
		// The pivotal weight w_j makes scale·w_j·(ident_j·k_j) exactly
		// pivotal_strength; ident_j·k_j ≈ |ident_j|² ± O(sqrt(d)), floored
		// for safety at tiny d.
		id := sg.ident.Row(j)
		dot, n := tensor.Dot(id, row), tensor.Dot(id, id)
		if n > 0 {
			sg.kInv[j] = p.PivotalStrength * sqrtD / max(dot, n/4) // 1/scale = sqrt(d)
		}
	}

	if p.Pivotal > 0 {
		if p.PivotalPool > 0 {
			pr := rngFor(p.Seed, layer, kv, streamPool, 0)
			perm := pr.Perm(p.Tokens - p.Sinks) // O(T): the pool may be a large share
			sg.pool = make([]int32, p.PivotalPool)
			for i := range sg.pool {
				sg.pool[i] = int32(p.Sinks + perm[i])
			}
			slices.Sort(sg.pool)
		}
		sg.nShare = int(math.Round(p.PivotalShared * float64(p.Pivotal)))
		if sg.nShare > 0 && p.Heads/p.KVHeads > 1 {
			sr := rngFor(p.Seed, layer, kv, streamShared, 0)
			sg.shared = make([]int32, T*sg.nShare)
			var buf []int32
			for t := 0; t < T; t++ {
				n := sg.candidates(t)
				if n <= p.Pivotal {
					continue
				}
				buf = drawDistinct(sr, sg.nShare, n, buf[:0])
				copy(sg.shared[t*sg.nShare:], buf)
			}
		} else {
			sg.nShare = 0 // one head: nothing to share, draw all per head
		}
	}
	return sg
}

// structure adds the topic (its amplitude times f), applies RoPE and
// removes the sink direction: what keys and queries share, on a content
// row x of position t.
func (sg *synthGroup) structure(x []float64, t int, f float64) {
	if sg.topic != nil {
		a := f * sg.a
		for i, c := range sg.topic.Row(t) {
			x[i] += a * float64(c)
		}
	}
	sg.place(x, t)
}

// place applies RoPE for position t and removes the sink direction.
func (sg *synthGroup) place(x []float64, t int) {
	if sg.rope != nil {
		sg.rope.apply(x, t)
	}
	if sg.sinkU != nil {
		var dot float64
		for i, u := range sg.sinkU {
			dot += x[i] * u
		}
		for i, u := range sg.sinkU {
			x[i] -= dot * u
		}
	}
}

// headFactors returns query head h's multipliers of the sink, recency and
// pivotal strengths: log-normal with log-std head_spread and mean 1, all
// 1 when head_spread is 0.
func (sg *synthGroup) headFactors(head int) (sink, recency, pivotal float64) {
	s := sg.p.HeadSpread
	if s == 0 {
		return 1, 1, 1
	}
	r := rngFor(sg.p.Seed, sg.layer, sg.kv, streamHeads, head)
	f := func() float64 { return math.Exp(s*r.NormFloat64() - s*s/2) }
	return f(), f(), f()
}

// candidates returns how many positions query t may take pivotal keys
// from: indices into the pool, or offsets from sinks.
func (sg *synthGroup) candidates(t int) int {
	if sg.pool != nil {
		n, _ := slices.BinarySearch(sg.pool, int32(t))
		return n
	}
	return max(0, t-sg.p.Sinks)
}

func (sg *synthGroup) candidate(i int) int32 {
	if sg.pool != nil {
		return sg.pool[i]
	}
	return int32(sg.p.Sinks + i)
}

// drawDistinct appends k distinct indices in [0, n) to dst, none of them
// already in dst, by rejection. It needs k + len(dst) <= n and costs
// O(k·len(dst)) checks: it is meant for a few pivotal keys per query.
func drawDistinct(r *rand.Rand, k, n int, dst []int32) []int32 {
	start := len(dst)
	for len(dst)-start < k {
		c := int32(r.IntN(n))
		if !slices.Contains(dst, c) {
			dst = append(dst, c)
		}
	}
	return dst
}

// queries fills q (one query head of the group): every row, or with need
// the rows t with need[t] (the random streams advance through all).
func (sg *synthGroup) queries(head int, q *tensor.Mat, hook pivotHook, need []bool) {
	p := sg.p
	d := p.Dim
	r := rngFor(p.Seed, sg.layer, sg.kv, streamQuery, head)
	pr := rngFor(p.Seed, sg.layer, sg.kv, streamPivots, head)
	fSink, fRecency, fPivotal := sg.headFactors(head)
	x := make([]float64, d)
	var idx, pos []int32
	for t := 0; t < p.Tokens; t++ {
		skip := need != nil && !need[t]
		for i := range x {
			x[i] = p.Noise * r.NormFloat64()
		}
		if !skip {
			sg.structure(x, t, fRecency)
			if sg.sinkU != nil {
				for i, u := range sg.sinkU {
					x[i] += fSink * sg.gamma * u
				}
			}
		}
		if p.Pivotal > 0 {
			idx = idx[:0]
			n := sg.candidates(t)
			if n <= p.Pivotal {
				for i := 0; i < n; i++ {
					idx = append(idx, int32(i))
				}
			} else {
				idx = append(idx, sg.shared[t*sg.nShare:(t+1)*sg.nShare]...)
				idx = drawDistinct(pr, p.Pivotal-sg.nShare, n, idx)
			}
			pos = pos[:0]
			for _, i := range idx {
				j := sg.candidate(int(i))
				pos = append(pos, j)
				if !skip {
					axpy(x, fPivotal*sg.kInv[j], sg.ident.Row(int(j)))
				}
			}
			if hook != nil {
				hook(sg.layer, head, t, pos)
			}
		}
		if skip {
			continue
		}
		row := q.Row(t)
		for i, v := range x {
			row[i] = float32(v / sg.scaleS[i])
		}
	}
}

// axpy adds w·y to x (len(x) == len(y)), unrolled by four.
func axpy(x []float64, w float64, y []float32) {
	x = x[:len(y)]
	i := 0
	for ; i+4 <= len(y); i += 4 {
		x[i] += w * float64(y[i])
		x[i+1] += w * float64(y[i+1])
		x[i+2] += w * float64(y[i+2])
		x[i+3] += w * float64(y[i+3])
	}
	for ; i < len(y); i++ {
		x[i] += w * float64(y[i])
	}
}

// values returns the group's value rows.
func (sg *synthGroup) values() *tensor.Mat {
	p := sg.p
	r := rngFor(p.Seed, sg.layer, sg.kv, streamValues, 0)
	v := tensor.NewMat(p.Tokens, p.Dim)
	for t := 0; t < p.Tokens; t++ {
		f := math.Exp(p.ValueSpread*r.NormFloat64() - p.ValueSpread*p.ValueSpread/2)
		if t < p.Sinks {
			f *= p.SinkValue
		}
		for i, row := 0, v.Row(t); i < len(row); i++ {
			row[i] = float32(f * r.NormFloat64())
		}
	}
	return v
}

// shiftedKeys applies the shift to the true keys in place and returns
// them: k ← S·k + m.
func (sg *synthGroup) shiftedKeys() *tensor.Mat {
	k := sg.k
	for j := 0; j < k.Rows; j++ {
		row := k.Row(j)
		for i, v := range row {
			row[i] = float32(float64(v)*sg.scaleS[i] + sg.offset[i])
		}
	}
	sg.k, sg.ident, sg.topic = nil, nil, nil
	return k
}
