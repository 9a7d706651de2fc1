package train

import (
	"math/bits"
	"slices"

	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/methods"
)

// Recall is the validation quality of hard (sign) codes at the configured
// sparsities, averaged over the validation queries.
type Recall struct {
	// Sparsity are the sparsities measured (Config.ValidSparsity).
	Sparsity []float64 `json:"sparsity"`
	// TopK[s] is the mean top-k recall at Sparsity[s]: the share of the
	// oracle's heavy keys (the exact top keys by q·k outside the sink and
	// local windows, as many as the budget's heavy part) that the codes'
	// selection also keeps.
	TopK []float64 `json:"topk_recall"`
	// Mass[s] is the mean attention mass recall at Sparsity[s]: the exact
	// softmax mass of the keys kept (sink and local windows included).
	Mass []float64 `json:"mass_recall"`
	// Queries is the number of validation queries averaged.
	Queries int `json:"queries"`
}

// Score is the early-stopping criterion: the mean top-k recall over the
// sparsities.
func (r Recall) Score() float64 {
	var s float64
	for _, x := range r.TopK {
		s += x
	}
	return s / float64(max(len(r.TopK), 1))
}

// coder returns the packed sign codes of rows [0, n) of keys, or of the
// given query positions, of one item.
type coder interface {
	keyCodes(it *item, n int) []uint64
	queryCodes(it *item, ts []int) []uint64
}

// evaluate measures the hard codes of c on the validation queries of items.
func evaluate(cfg *Config, items []*item, c coder) Recall {
	nb := cfg.Bits
	words := (nb + 63) / 64
	ns := len(cfg.ValidSparsity)
	r := Recall{Sparsity: cfg.ValidSparsity, TopK: make([]float64, ns), Mass: make([]float64, ns)}
	counts := make([]int, ns)
	var scores []float32
	var sel, scratch []int32
	for _, it := range items {
		if len(it.valid) == 0 {
			continue
		}
		kc := c.keyCodes(it, slices.Max(it.valid)+1)
		qc := c.queryCodes(it, it.valid)
		for vi, vq := range it.vq {
			q := qc[vi*words : (vi+1)*words]
			scores = resize(scores, vq.t+1)
			for j := range scores {
				k := kc[j*words : (j+1)*words]
				diff := 0
				for w := range q {
					diff += bits.OnesCount64(q[w] ^ k[w])
				}
				scores[j] = float32(nb - diff)
			}
			for si := range cfg.ValidSparsity {
				if vq.oracle[si] == nil {
					continue
				}
				b := budgetAt(cfg, si, vq.t)
				sel, scratch = methods.TopK(scores, methods.Step{T: vq.t, Budget: b}, sel, scratch)
				hits := intersect(sel, vq.oracle[si]) - b.Sink - b.Local
				r.TopK[si] += float64(hits) / float64(b.Heavy)
				var mass float64
				for _, j := range sel {
					mass += float64(vq.prob[j])
				}
				r.Mass[si] += mass
				counts[si]++
			}
		}
	}
	for si := range counts {
		if counts[si] > 0 {
			r.TopK[si] /= float64(counts[si])
			r.Mass[si] /= float64(counts[si])
		}
		r.Queries = max(r.Queries, counts[si])
	}
	return r
}

// budgetAt resolves the validation budget at cfg.ValidSparsity[si] for the
// query at position t (which sees t+1 keys).
func budgetAt(cfg *Config, si, t int) budget.Budget {
	return budget.Spec{Sparsity: cfg.ValidSparsity[si], Sink: cfg.Sink, Local: cfg.Local}.Resolve(t + 1)
}

// intersect returns the size of the intersection of two ascending lists.
func intersect(a, b []int32) int {
	n, i, j := 0, 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] == b[j]:
			n++
			i++
			j++
		case a[i] < b[j]:
			i++
		default:
			j++
		}
	}
	return n
}

// packSigns appends the codes of the rows of y ([n][nb]) to dst: bit b of
// a row's code is set when y[b] > 0, in words of 64 bits (as methods.MLP.Code).
func packSigns(y []float32, n, nb int, dst []uint64) []uint64 {
	for i := 0; i < n; i++ {
		row := y[i*nb : (i+1)*nb]
		for w := 0; w < nb; w += 64 {
			var word uint64
			for b := 0; b < 64 && w+b < nb; b++ {
				if row[w+b] > 0 {
					word |= 1 << b
				}
			}
			dst = append(dst, word)
		}
	}
	return dst
}

// modelCoder codes with the training model (standardised inputs, batched).
type modelCoder struct {
	m      *model[float32]
	act    activation
	qn, kn *norm
	tp     tape[float32]
	x      []float32
}

const codeChunk = 256

func (c *modelCoder) run(m *mlp[float32], nm *norm, n int, row func(i int) []float32) []uint64 {
	d := m.Layers[0].In
	nb := m.Layers[len(m.Layers)-1].Out
	var out []uint64
	for s := 0; s < n; s += codeChunk {
		k := min(codeChunk, n-s)
		c.x = resize(c.x, k*d)
		for i := 0; i < k; i++ {
			nm.apply(c.x[i*d:(i+1)*d], row(s+i))
		}
		y := m.forward(c.x, k, c.act, &c.tp)
		out = packSigns(y, k, nb, out)
	}
	return out
}

func (c *modelCoder) keyCodes(it *item, n int) []uint64 {
	return c.run(&c.m.K, c.kn, n, it.g.K.Row)
}

func (c *modelCoder) queryCodes(it *item, ts []int) []uint64 {
	q := it.g.Q[it.qi]
	return c.run(&c.m.Q, c.qn, len(ts), func(i int) []float32 { return q.Row(ts[i]) })
}

// mapsCoder codes with exported maps through methods.MLP.Code, exactly as
// HashAttention inference does.
type mapsCoder struct {
	hm  *methods.HeadMaps
	act string
}

func (c *mapsCoder) code(m *methods.MLP, n int, row func(i int) []float32) []uint64 {
	w := 0
	for _, l := range m.W {
		w = max(w, l.Rows)
	}
	buf := [2][]float32{make([]float32, 0, w), make([]float32, 0, w)}
	var out, tmp []uint64
	for i := 0; i < n; i++ {
		tmp = m.Code(row(i), c.act, buf, tmp)
		out = append(out, tmp...)
	}
	return out
}

func (c *mapsCoder) keyCodes(it *item, n int) []uint64 { return c.code(c.hm.K, n, it.g.K.Row) }

func (c *mapsCoder) queryCodes(it *item, ts []int) []uint64 {
	q := it.g.Q[it.qi]
	return c.code(c.hm.Q, len(ts), func(i int) []float32 { return q.Row(ts[i]) })
}
