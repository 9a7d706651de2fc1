package methods

import (
	"errors"
	"fmt"
	"math"
	"math/bits"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/tensor"
)

// LSHParams configures SimHash.
type LSHParams struct {
	Bits int   `yaml:"bits" doc:"number of random hyperplanes = code bits per key (1..4096; 8 to 1024 is the useful range)"`
	MIPS bool  `yaml:"mips" doc:"asymmetric MIPS transform: append sqrt(M²-|k|²) to keys and 0 to queries (M = largest key norm of the Group)"`
	Seed int64 `yaml:"seed" doc:"hyperplane seed, mixed with the run's seed, the layer and the KV head"`
}

// Validate implements the config check.
func (p *LSHParams) Validate() error {
	if p.Bits < 1 || p.Bits > 4096 {
		return fmt.Errorf("bits: must be in 1..4096, got %d", p.Bits)
	}
	return nil
}

// LSH is SimHash (Charikar, "Similarity estimation techniques from rounding
// algorithms", STOC 2002, §3): b hyperplanes r_1..r_b drawn i.i.d. from a
// standard Gaussian; a vector x gets the code bit i = [r_i·x > 0], and the
// probability that q and k agree on a bit is 1 − θ(q,k)/π, so the number of
// matching bits b − popcount(code(q) xor code(k)) estimates the angle and
// ranks keys by cosine as b grows. With mips the keys are first lifted by
// the asymmetric transform of Neyshabur and Srebro ("On symmetric and
// asymmetric LSHs for inner product search", ICML 2015, §4, "simple-LSH"):
// k → [k, sqrt(M²−|k|²)], q → [q, 0], which makes every key norm M so that
// angle ranking becomes inner-product ranking. Keys with the most matching
// bits fill the heavy budget; sink and local as every method. It is the
// untrained ablation of HashAttention: same scoring, random instead of
// learned maps. Hyperplanes are shared by a KV head's query heads, so one
// key code serves the group. Note: M is the largest norm over the whole
// Group (future keys included); only a scalar is looked ahead.
type LSH struct {
	p     LSHParams
	cache prepCache[*lshPrep]
}

// lshPrep is the per-Group part of an lshSelector.
type lshPrep struct {
	planes *tensor.Mat // [bits][d or d+1]
	keys   []uint64    // [T][words] key codes
}

func init() {
	Register(Spec{
		Name:     "lsh",
		Doc:      "SimHash: random-hyperplane bit codes, Hamming scoring (untrained HashAttention)",
		Defaults: func() any { return &LSHParams{Bits: 64} },
		New: func(p any, _ Env) (Method, error) {
			lp := *p.(*LSHParams)
			if err := lp.Validate(); err != nil {
				return nil, fmt.Errorf("lsh: %w", err)
			}
			return &LSH{p: lp}, nil
		},
	})
}

// AuxBits implements Method: one b-bit code per key, shared by the group.
func (l *LSH) AuxBits(d, groupSize int) float64 { return float64(l.p.Bits) }

// Prepare implements Method.
func (l *LSH) Prepare(g *attn.Group, opt Options) (Selector, error) {
	if g.T() == 0 {
		return nil, errors.New("lsh: empty group")
	}
	d := g.D()
	in := d
	if l.p.MIPS {
		in = d + 1
	}
	words := (l.p.Bits + 63) / 64
	pre, _ := l.cache.get(prepKey{g: g, seed: opt.Seed}, func() (*lshPrep, error) {
		p := &lshPrep{planes: l.Planes(g, opt), keys: make([]uint64, g.T()*words)}
		var m2 float64
		if l.p.MIPS {
			for j := 0; j < g.T(); j++ {
				m2 = max(m2, tensor.Dot(g.K.Row(j), g.K.Row(j)))
			}
		}
		x := make([]float32, in)
		for j := 0; j < g.T(); j++ {
			copy(x, g.K.Row(j))
			if l.p.MIPS {
				x[d] = float32(math.Sqrt(max(0, m2-tensor.Dot(g.K.Row(j), g.K.Row(j)))))
			}
			simhash(p.planes, x, p.keys[j*words:(j+1)*words])
		}
		return p, nil
	})
	s := &lshSelector{lshPrep: pre, bits: l.p.Bits, g: g, x: make([]float32, in), qc: make([]uint64, words)}
	s.ScoreSelector = NewScoreSelector(len(g.Q), opt.Shared, s.score)
	return s, nil
}

// Params returns the method's parameters.
func (l *LSH) Params() LSHParams { return l.p }

// Planes returns the hyperplanes Prepare draws for g and opt: [Bits][d],
// or [Bits][d+1] with MIPS (the GPU pipeline uploads them).
func (l *LSH) Planes(g *attn.Group, opt Options) *tensor.Mat {
	in := g.D()
	if l.p.MIPS {
		in++
	}
	rng := newRand(l.p.Seed, opt.Seed, int64(g.Layer), int64(g.KVHead))
	m := tensor.NewMat(l.p.Bits, in)
	for i := range m.Data {
		m.Data[i] = float32(rng.NormFloat64())
	}
	return m
}

// simhash writes the sign bits of planes·x into dst (bit i of word i/64).
func simhash(planes *tensor.Mat, x []float32, dst []uint64) {
	clear(dst)
	for i := 0; i < planes.Rows; i++ {
		if tensor.Dot32(planes.Row(i), x) > 0 {
			dst[i/64] |= 1 << (i % 64)
		}
	}
}

type lshSelector struct {
	*ScoreSelector
	*lshPrep
	bits int
	g    *attn.Group
	x    []float32
	qc   []uint64
}

func (s *lshSelector) score(i, t, n int, dst []float32) {
	clear(s.x)
	copy(s.x, s.g.Q[i].Row(t)) // with mips the appended coordinate stays 0
	simhash(s.planes, s.x, s.qc)
	hamming(s.qc, s.keys, s.bits, n, dst)
}

// hamming writes bits − popcount(q xor key_j) for the n first codes of
// keys ([n][len(q)] words) into dst.
func hamming(q, keys []uint64, nbits, n int, dst []float32) {
	w := len(q)
	if w == 1 {
		q0 := q[0]
		for j := 0; j < n; j++ {
			dst[j] = float32(nbits - bits.OnesCount64(q0^keys[j]))
		}
		return
	}
	for j := 0; j < n; j++ {
		k := keys[j*w : (j+1)*w]
		d := 0
		for i, x := range q {
			d += bits.OnesCount64(x ^ k[i])
		}
		dst[j] = float32(nbits - d)
	}
}
