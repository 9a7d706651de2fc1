package train

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/methods"
	"github.com/hbench/hbench/tensor"
)

// item is the data of one query head in one Group (one sequence): the
// sampled training and validation positions with their labels and oracle
// selections.
type item struct {
	g  *attn.Group
	qi int // index into g.Q
	// train are the training query positions (ascending); pos[i] are the
	// top-k keys of train[i] (ascending) and mid[i] the number of keys in
	// its labelled range [Sink, t+1-Local).
	train []int
	pos   [][]int32
	mid   []int
	// valid are the held-out positions and vq their oracle data.
	valid []int
	vq    []validQuery
}

// validQuery is the exact reference of one validation query.
type validQuery struct {
	t int
	// oracle[s] is the exact selection (sink + local + top-heavy by q·k) at
	// cfg.ValidSparsity[s], nil when that budget has no heavy part.
	oracle [][]int32
	// prob are the exact attention probabilities over keys 0..t.
	prob []float32
}

// sampleItem draws the positions of query head qi of g, and computes the
// labels and validation references.
func sampleItem(cfg *Config, g *attn.Group, qi int, rng *rand.Rand) (*item, error) {
	T := g.T()
	hi := T
	if cfg.To > 0 {
		hi = min(cfg.To, T)
	}
	// A query needs more than TopK keys in its labelled range to have
	// negatives: t+1-Local-Sink > TopK.
	lo := max(cfg.From, cfg.Sink+cfg.Local+cfg.TopK)
	if hi-lo < 2 {
		return nil, fmt.Errorf("group %s/%s layer %d head %d: no query positions in [%d, %d) (from %d, to %d, %d positions; a query needs more than sink+local+top_k = %d keys)",
			g.Workload, g.Item, g.Layer, g.QHeads[qi], lo, hi, cfg.From, cfg.To, T, cfg.Sink+cfg.Local+cfg.TopK)
	}
	excl := map[int]bool{}
	for _, t := range cfg.Exclude.Positions(T) {
		excl[t] = true
	}
	cand := make([]int, 0, hi-lo)
	for t := lo; t < hi; t++ {
		if !excl[t] {
			cand = append(cand, t)
		}
	}
	if len(cand) < 2 {
		return nil, fmt.Errorf("group %s/%s layer %d head %d: every query position in [%d, %d) is excluded", g.Workload, g.Item, g.Layer, g.QHeads[qi], lo, hi)
	}
	perm := rng.Perm(len(cand))
	nv := min(cfg.Valid, len(cand)/4+1)
	nt := min(cfg.Queries, len(cand)-nv)
	it := &item{g: g, qi: qi}
	for _, p := range perm[:nv] {
		it.valid = append(it.valid, cand[p])
	}
	for _, p := range perm[nv : nv+nt] {
		it.train = append(it.train, cand[p])
	}
	slices.Sort(it.valid)
	slices.Sort(it.train)
	it.pos, it.mid = labels(cfg, g.Q[qi], g.K, it.train)
	it.vq = validRefs(cfg, g, qi, it.valid)
	return it, nil
}

// scoreRows computes exact scores q_t·k_j for the positions ts against keys
// 0..max(ts), in chunks, calling f(i, scores) with scores indexed by key
// position (valid up to ts[i]).
func scoreRows(q, k *tensor.Mat, ts []int, f func(i int, scores []float32)) {
	if len(ts) == 0 {
		return
	}
	const chunk = 64
	d := k.Cols
	n := slices.Max(ts) + 1
	xq := make([]float32, chunk*d)
	out := make([]float32, chunk*n)
	for c := 0; c < len(ts); c += chunk {
		m := min(chunk, len(ts)-c)
		for i := 0; i < m; i++ {
			copy(xq[i*d:(i+1)*d], q.Row(ts[c+i]))
		}
		gemm(false, true, m, n, d, 1, xq, d, k.Data[:n*d], d, 0, out, n)
		for i := 0; i < m; i++ {
			f(c+i, out[i*n:(i+1)*n])
		}
	}
}

// labels returns, for each position t in ts, its top-k keys by q·k within
// [Sink, t+1-Local) (ties toward lower positions, as methods.TopKIndices),
// and the size of that range.
func labels(cfg *Config, q, k *tensor.Mat, ts []int) ([][]int32, []int) {
	pos := make([][]int32, len(ts))
	mid := make([]int, len(ts))
	var scratch []int32
	scoreRows(q, k, ts, func(i int, s []float32) {
		lo, hi := cfg.Sink, ts[i]+1-cfg.Local
		mid[i] = hi - lo
		pos[i], scratch = methods.TopKIndices(s, lo, hi, cfg.TopK, nil, scratch)
	})
	return pos, mid
}

// validRefs computes the oracle selections and exact probabilities of the
// validation positions ts of query head qi.
func validRefs(cfg *Config, g *attn.Group, qi int, ts []int) []validQuery {
	out := make([]validQuery, len(ts))
	var scratch []int32
	scoreRows(g.Q[qi], g.K, ts, func(i int, s []float32) {
		t := ts[i]
		s = s[:t+1]
		vq := validQuery{t: t, oracle: make([][]int32, len(cfg.ValidSparsity)), prob: make([]float32, t+1)}
		for si := range cfg.ValidSparsity {
			b := budgetAt(cfg, si, t)
			if b.Heavy == 0 {
				continue
			}
			vq.oracle[si], scratch = methods.TopK(s, methods.Step{T: t, Budget: b}, nil, scratch)
		}
		m := float32(math.Inf(-1))
		for _, x := range s {
			m = max(m, x)
		}
		var z float64
		p := make([]float64, t+1)
		for j, x := range s {
			p[j] = math.Exp(float64((x - m) * g.Scale))
			z += p[j]
		}
		for j := range p {
			vq.prob[j] = float32(p[j] / z)
		}
		out[i] = vq
	})
	return out
}

// norm is a per-dimension standardisation x' = (x - Mean) / Std applied to
// a map's inputs during training and folded into its first layer on export.
type norm struct {
	Mean, Std []float64
}

// normOf returns the standardisation of the given rows.
func normOf(d int, rows func(yield func([]float32))) norm {
	sum := make([]float64, d)
	sq := make([]float64, d)
	var n float64
	rows(func(r []float32) {
		for i, x := range r {
			sum[i] += float64(x)
			sq[i] += float64(x) * float64(x)
		}
		n++
	})
	nm := norm{Mean: make([]float64, d), Std: make([]float64, d)}
	for i := range sum {
		if n == 0 {
			nm.Std[i] = 1
			continue
		}
		mu := sum[i] / n
		v := max(sq[i]/n-mu*mu, 0)
		nm.Mean[i] = mu
		nm.Std[i] = math.Sqrt(v + 1e-6)
	}
	return nm
}

// apply writes the standardised row x into dst.
func (nm *norm) apply(dst []float32, x []float32) {
	for i, v := range x {
		dst[i] = float32((float64(v) - nm.Mean[i]) / nm.Std[i])
	}
}

// headData is everything one head trains on.
type headData struct {
	layer, head int
	items       []*item
	qn, kn      norm
}

// newHeadData samples the items of one head and computes the input
// standardisation from the training queries and the keys they see.
func newHeadData(cfg *Config, layer, head int, srcs []headSrc, rng *rand.Rand) (*headData, error) {
	hd := &headData{layer: layer, head: head}
	for _, s := range srcs {
		it, err := sampleItem(cfg, s.g, s.qi, rng)
		if err != nil {
			return nil, err
		}
		hd.items = append(hd.items, it)
	}
	d := srcs[0].g.D()
	hd.qn = normOf(d, func(yield func([]float32)) {
		for _, it := range hd.items {
			for _, t := range it.train {
				yield(it.g.Q[it.qi].Row(t))
			}
		}
	})
	hd.kn = normOf(d, func(yield func([]float32)) {
		for _, it := range hd.items {
			for j := 0; j <= slices.Max(it.train); j++ {
				yield(it.g.K.Row(j))
			}
		}
	})
	return hd, nil
}

// headSrc is one (Group, query head index) a head trains on.
type headSrc struct {
	g  *attn.Group
	qi int
}

// batcher builds minibatches of one head, reusing its buffers.
type batcher struct {
	cfg   *Config
	hd    *headData
	slot  map[*attn.Group][]int32 // key position -> pool index, -1 if absent
	pool  []int32
	bt    batch[float32]
	pairs []int32
}

// build fills b.bt with the queries it.train[idx] and their key pool.
func (b *batcher) build(it *item, idx []int, rng *rand.Rand) *batch[float32] {
	cfg := b.cfg
	g := it.g
	slot := b.slot[g]
	if slot == nil {
		slot = make([]int32, g.T())
		for i := range slot {
			slot[i] = -1
		}
		b.slot[g] = slot
	}
	pool := b.pool[:0]
	add := func(j int32) {
		if slot[j] < 0 {
			slot[j] = int32(len(pool))
			pool = append(pool, j)
		}
	}
	tmax := 0
	for _, i := range idx {
		for _, j := range it.pos[i] {
			add(j)
		}
		tmax = max(tmax, it.train[i])
	}
	if hi := tmax + 1 - cfg.Local; hi > cfg.Sink {
		for n := 0; n < cfg.Negatives; n++ {
			add(int32(cfg.Sink + rng.IntN(hi-cfg.Sink)))
		}
	}
	d := g.D()
	B, P := len(idx), len(pool)
	bt := &b.bt
	bt.B, bt.P = B, P
	bt.XQ = resize(bt.XQ, B*d)
	bt.XK = resize(bt.XK, P*d)
	bt.Y = resize(bt.Y, B*P)
	bt.W = resize(bt.W, B*P)
	clear(bt.Y)
	clear(bt.W)
	for r, i := range idx {
		b.hd.qn.apply(bt.XQ[r*d:(r+1)*d], it.g.Q[it.qi].Row(it.train[i]))
	}
	for r, j := range pool {
		b.hd.kn.apply(bt.XK[r*d:(r+1)*d], g.K.Row(int(j)))
	}
	for r, i := range idx {
		t := it.train[i]
		y := bt.Y[r*P : (r+1)*P]
		w := bt.W[r*P : (r+1)*P]
		wp := float32(cfg.Alpha + cfg.Beta*float64(t+1))
		for _, j := range it.pos[i] {
			y[slot[j]] = 1
			w[slot[j]] = wp
		}
		// Negatives: the pool keys in the query's labelled range that are
		// not its positives, importance-weighted so that together they
		// weigh as much as all its negatives in the full context.
		lo, hi := int32(cfg.Sink), int32(t+1-cfg.Local)
		b.pairs = b.pairs[:0]
		for p, j := range pool {
			if j >= lo && j < hi && y[p] == 0 {
				b.pairs = append(b.pairs, int32(p))
			}
		}
		if len(b.pairs) > 0 {
			wn := float32(float64(it.mid[i]-len(it.pos[i])) / float64(len(b.pairs)))
			for _, p := range b.pairs {
				w[p] = wn
			}
		}
	}
	for _, j := range pool {
		slot[j] = -1
	}
	b.pool = pool
	return bt
}
