package inspect

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/safetensors"
	"github.com/hbench/hbench/tensor"
	"github.com/hbench/hbench/workloads"
)

// Shares of the visible keys whose mass Concentration reports.
const (
	TopShare1   = 0.01
	TopShare3   = 0.03
	TopShare6   = 0.06
	RecentShare = 0.01
)

// DefaultLast is the default number of query positions measured: the last
// DefaultLast positions of the window.
const DefaultLast = 256

// Options say which query positions are measured.
type Options struct {
	// Last is the number of query positions measured, the window's last
	// ones; 0 means DefaultLast, and a value >= T measures every position.
	Last int
}

// Concentration holds softmax masses averaged over query positions. Every
// field is a share of the total mass (0..1), except Queries.
type Concentration struct {
	Queries int     `json:"queries"` // query positions averaged
	Top1    float64 `json:"top1"`    // mass on the top ceil(1% of n) keys
	Top3    float64 `json:"top3"`    // mass on the top ceil(3% of n) keys
	Top6    float64 `json:"top6"`    // mass on the top ceil(6% of n) keys
	Key0    float64 `json:"key0"`    // mass on key 0
	Recent  float64 `json:"recent"`  // mass on the ceil(1% of n) most recent keys
	Uniform float64 `json:"uniform"` // 1/n
}

// HeadReport is the concentration of one query head.
type HeadReport struct {
	Head   int `json:"head"`    // query head
	KVHead int `json:"kv_head"` // its key/value head
	Concentration
}

// Report is what inspect finds in one capture file.
type Report struct {
	Path     string            `json:"path"`
	Metadata map[string]string `json:"metadata"`
	Layer    int               `json:"layer"`
	Heads    int               `json:"heads"`    // query heads
	KVHeads  int               `json:"kv_heads"` // key/value heads
	T        int               `json:"tokens"`   // positions in the window
	D        int               `json:"head_dim"`
	DTypes   map[string]string `json:"dtypes"` // storage dtype of q, k and v
	Scale    float32           `json:"scale"`  // softmax scale applied to q·k
	// From and To bound the measured query positions: From <= t < To.
	From    int           `json:"from"`
	To      int           `json:"to"`
	PerHead []HeadReport  `json:"per_head"`
	Mean    Concentration `json:"mean"` // the mean over heads
}

// File reads a capture file and reports on it.
func File(path string, opt Options) (*Report, error) {
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	dtypes := map[string]string{}
	for _, t := range []string{"q", "k", "v"} {
		if info, ok := f.Info(t); ok {
			dtypes[t] = info.DType
		}
	}
	c, err := workloads.ReadCapture(path)
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	r := Capture(c, opt)
	r.DTypes = dtypes
	return r, nil
}

// Capture reports on a capture already read. Heads are measured in
// parallel, one goroutine per CPU at most.
func Capture(c *workloads.Capture, opt Options) *Report {
	last := opt.Last
	if last <= 0 {
		last = DefaultLast
	}
	from := max(0, c.T-last)
	r := &Report{
		Path: c.Path, Metadata: c.Metadata, Layer: c.Layer, Heads: c.Heads, KVHeads: c.KVHeads,
		T: c.T, D: c.D, Scale: c.Scale, From: from, To: c.T, PerHead: make([]HeadReport, c.Heads),
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for h := range c.Heads {
		kv := h / c.Group()
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r.PerHead[h] = HeadReport{Head: h, KVHead: kv, Concentration: Head(c.Q[h], c.K[kv], c.Scale, from, c.T)}
		}()
	}
	wg.Wait()
	var ms []Concentration
	for _, h := range r.PerHead {
		ms = append(ms, h.Concentration)
	}
	r.Mean = Mean(ms)
	return r
}

// Head measures one query head: q and k are [T][d], and the query
// positions from <= t < to are measured, each over keys 0..t.
func Head(q, k *tensor.Mat, scale float32, from, to int) Concentration {
	var logits, p, buf []float64
	var sum Concentration
	for t := from; t < to; t++ {
		logits = attn.Logits(q.Row(t), k, t+1, scale, logits)
		p, _ = attn.Softmax(logits, p)
		var m Concentration
		m, buf = Masses(p, buf)
		sum = add(sum, m)
		sum.Queries++
	}
	return divide(sum, sum.Queries)
}

// Masses reads the masses of one query from its probabilities p over the
// n = len(p) visible keys, key n-1 being the most recent. buf is scratch
// space (resized and returned for reuse). The result has Queries = 1.
func Masses(p []float64, buf []float64) (Concentration, []float64) {
	n := len(p)
	if n == 0 {
		return Concentration{}, buf
	}
	buf = append(buf[:0], p...)
	slices.Sort(buf) // ascending: the most probable keys are at the end
	top := func(share float64) float64 {
		var s float64
		for _, x := range buf[n-count(share, n):] {
			s += x
		}
		return s
	}
	var recent float64
	for _, x := range p[n-count(RecentShare, n):] {
		recent += x
	}
	return Concentration{
		Queries: 1,
		Top1:    top(TopShare1),
		Top3:    top(TopShare3),
		Top6:    top(TopShare6),
		Key0:    p[0],
		Recent:  recent,
		Uniform: 1 / float64(n),
	}, buf
}

// count is ceil(share·n), at least 1 and at most n. The product is rounded
// to 1e-9 first so that, e.g., 0.03·100 counts 3 keys, not 4.
func count(share float64, n int) int {
	x := share * float64(n)
	k := int(math.Ceil(x - 1e-9))
	return min(max(k, 1), n)
}

// Mean averages concentrations, weighting each by its Queries; the
// result's Queries is their total.
func Mean(cs []Concentration) Concentration {
	var sum Concentration
	for _, c := range cs {
		sum = add(sum, weigh(c, float64(c.Queries)))
		sum.Queries += c.Queries
	}
	return divide(sum, sum.Queries)
}

// add sums the mass fields of a and b; it leaves Queries to the caller.
func add(a, b Concentration) Concentration {
	return Concentration{
		Queries: a.Queries,
		Top1:    a.Top1 + b.Top1,
		Top3:    a.Top3 + b.Top3,
		Top6:    a.Top6 + b.Top6,
		Key0:    a.Key0 + b.Key0,
		Recent:  a.Recent + b.Recent,
		Uniform: a.Uniform + b.Uniform,
	}
}

// weigh multiplies the mass fields by w.
func weigh(c Concentration, w float64) Concentration {
	return Concentration{
		Queries: c.Queries,
		Top1:    c.Top1 * w,
		Top3:    c.Top3 * w,
		Top6:    c.Top6 * w,
		Key0:    c.Key0 * w,
		Recent:  c.Recent * w,
		Uniform: c.Uniform * w,
	}
}

// divide turns sums over n queries into means, keeping Queries.
func divide(c Concentration, n int) Concentration {
	if n == 0 {
		return c
	}
	return weigh(c, 1/float64(n))
}
