package methods

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/tensor"
)

// HashAttentionParams configures HashAttention inference.
type HashAttentionParams struct {
	Weights    string `yaml:"weights" doc:"hashattention-weights/1 file (relative to the experiment file) with the learned maps of every evaluated (layer, query head)"`
	Trained    string `yaml:"trained" doc:"name of a training in the experiment's train block: its weights (trained once, then cached)"`
	Init       string `yaml:"init" doc:"with no weights file: random builds untrained random maps (an ablation, not HashAttention: label the variant so)"`
	Seed       int64  `yaml:"seed" doc:"seed of the random maps (init: random)"`
	Bits       int    `yaml:"bits" doc:"code bits of the random maps (init: random); a weights file states its own"`
	Hidden     []int  `yaml:"hidden" doc:"hidden widths of the random maps (init: random); [] for a linear map"`
	Activation string `yaml:"activation" doc:"activation of the random maps (init: random): silu, relu, tanh or identity"`
}

// Validate implements the config check.
func (p *HashAttentionParams) Validate() error {
	var errs []error
	given := 0
	for _, s := range []string{p.Weights, p.Init, p.Trained} {
		if s != "" {
			given++
		}
	}
	switch {
	case given > 1:
		errs = append(errs, errors.New("give one of weights, trained and init: random"))
	case given == 0:
		errs = append(errs, errors.New("weights: give a hashattention-weights/1 file, trained: a training of the experiment, or init: random for untrained maps"))
	case p.Init != "" && p.Init != "random":
		errs = append(errs, fmt.Errorf("init: must be random, got %q", p.Init))
	}
	if p.Init == "random" {
		if p.Bits < 1 || p.Bits > 4096 {
			errs = append(errs, fmt.Errorf("bits: must be in 1..4096, got %d", p.Bits))
		}
		for i, h := range p.Hidden {
			if h < 1 {
				errs = append(errs, fmt.Errorf("hidden[%d]: must be > 0, got %d", i, h))
			}
		}
		switch p.Activation {
		case "silu", "relu", "tanh", "identity":
		default:
			errs = append(errs, fmt.Errorf("activation: must be silu, relu, tanh or identity, got %q", p.Activation))
		}
	}
	return errors.Join(errs...)
}

// HashAttention is the inference side of HashAttention (Desai et al.,
// "HashAttention: Semantic Sparsity for Faster Inference", arXiv 2412.14468,
// §4): for each (layer, query head) a learned query map φ_q and key map φ_k
// (by default MLPs d→128→128→32 with SiLU) followed by sign turn every
// query and key into a b-bit code; a key's score is the number of matching
// bits, b − popcount(φ_q(q) xor φ_k(k)), a learned proxy of its attention
// weight; the heavy budget takes the top-scoring keys, plus sink and local
// (the authors use 128 + 128; here they come from the experiment budget).
// Key codes are computed per query head (keys repeated across the GQA
// group, as the authors do), so the auxiliary memory is b bits per token
// per query head. With Options.Shared the group's heads share the keys
// with the largest summed score. Untrained random maps (init: random, the
// same map for queries and keys, weights N(0, 1/fan-in), zero biases) give
// a nonlinear SimHash: an ablation, not HashAttention.
type HashAttention struct {
	p     HashAttentionParams
	w     *HashWeights // nil with init: random
	cache prepCache[*hashPrep]
}

// hashPrep is the per-Group part of a hashSelector: the query maps and
// every query head's key codes.
type hashPrep struct {
	act   string
	qmaps []*MLP
	keys  [][]uint64 // per query head: [T][words] key codes
}

func init() {
	Register(Spec{
		Name: "hashattention",
		Doc:  "HashAttention: learned bit codes of queries and keys, Hamming scoring (weights file or untrained random maps)",
		Defaults: func() any {
			return &HashAttentionParams{Bits: 32, Hidden: []int{128, 128}, Activation: "silu"}
		},
		New: newHashAttention,
	})
}

func newHashAttention(p any, env Env) (Method, error) {
	hp := *p.(*HashAttentionParams)
	if err := hp.Validate(); err != nil {
		return nil, fmt.Errorf("hashattention: %w", err)
	}
	h := &HashAttention{p: hp}
	if hp.Trained != "" {
		if env.Trained == nil {
			return nil, fmt.Errorf("hashattention: trained: %q, but the experiment has no train block", hp.Trained)
		}
		path, err := env.Trained(hp.Trained)
		if err != nil {
			return nil, fmt.Errorf("hashattention: %w", err)
		}
		hp.Weights, h.p.Weights = path, path
	}
	if hp.Weights != "" {
		path := hp.Weights
		if !filepath.IsAbs(path) {
			path = filepath.Join(env.Dir, path)
		}
		w, err := LoadHashWeights(path)
		if err != nil {
			return nil, fmt.Errorf("hashattention: %w", err)
		}
		h.w = w
	}
	return h, nil
}

// bits returns the code width.
func (h *HashAttention) bits() int {
	if h.w != nil {
		return h.w.Bits
	}
	return h.p.Bits
}

// AuxBits implements Method: b bits per token per query head.
func (h *HashAttention) AuxBits(d, groupSize int) float64 {
	return float64(h.bits() * groupSize)
}

// maps returns the maps and activation for query head qh of layer.
func (h *HashAttention) maps(layer, qh, d int) (*HeadMaps, string, error) {
	if h.w == nil {
		return randomHeadMaps(h.p, layer, qh, d), h.p.Activation, nil
	}
	if h.w.Dim != d {
		return nil, "", fmt.Errorf("hashattention: weights %s are for head dimension %d, the data has %d", h.p.Weights, h.w.Dim, d)
	}
	m := h.w.Maps[[2]int{layer, qh}]
	if m == nil {
		return nil, "", fmt.Errorf("hashattention: weights %s have no maps for layer %d query head %d (they cover %s)", h.p.Weights, layer, qh, mapKeys(h.w.Maps))
	}
	return m, h.w.Activation, nil
}

func mapKeys(m map[[2]int]*HeadMaps) string {
	keys := make([][2]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortPairs(keys)
	s := ""
	for i, k := range keys {
		if i == 8 {
			return s + fmt.Sprintf(", ... (%d maps)", len(keys))
		}
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("L%d.H%d", k[0], k[1])
	}
	if s == "" {
		return "nothing"
	}
	return s
}

// randomHeadMaps builds an untrained map, the same for queries and keys,
// seeded by (seed, layer, head).
func randomHeadMaps(p HashAttentionParams, layer, qh, d int) *HeadMaps {
	rng := newRand(p.Seed, int64(layer), int64(qh))
	widths := append(append([]int{d}, p.Hidden...), p.Bits)
	m := &MLP{}
	for i := 0; i+1 < len(widths); i++ {
		w := tensor.NewMat(widths[i+1], widths[i])
		sd := 1 / math.Sqrt(float64(widths[i]))
		for j := range w.Data {
			w.Data[j] = float32(rng.NormFloat64() * sd)
		}
		m.W = append(m.W, w)
		m.B = append(m.B, make([]float32, widths[i+1]))
	}
	return &HeadMaps{Q: m, K: m}
}

// Prepare implements Method: it computes every key's code for every query
// head of the group (once per Group: the Selectors of several budgets share
// them).
func (h *HashAttention) Prepare(g *attn.Group, opt Options) (Selector, error) {
	nb := h.bits()
	words := (nb + 63) / 64
	pre, err := h.cache.get(prepKey{g: g}, func() (*hashPrep, error) {
		p := &hashPrep{}
		for _, qh := range g.QHeads {
			m, act, err := h.maps(g.Layer, qh, g.D())
			if err != nil {
				return nil, err
			}
			p.act = act
			p.qmaps = append(p.qmaps, m.Q)
			p.keys = append(p.keys, hashCodes(m.K, act, g.K, words))
		}
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	s := &hashSelector{hashPrep: pre, g: g, bits: nb, qc: make([]uint64, 0, words)}
	s.buf = mlpBuf(s.qmaps[0])
	s.ScoreSelector = NewScoreSelector(len(g.Q), opt.Shared, s.score)
	return s, nil
}

// mlpBuf returns scratch wide enough for m.Forward.
func mlpBuf(m *MLP) [2][]float32 {
	w := 0
	for _, l := range m.W {
		w = max(w, l.Rows)
	}
	return [2][]float32{make([]float32, 0, w), make([]float32, 0, w)}
}

// hashCodes returns the codes of the rows of x under m: [rows][words].
func hashCodes(m *MLP, act string, x *tensor.Mat, words int) []uint64 {
	buf := mlpBuf(m)
	codes := make([]uint64, x.Rows*words)
	one := make([]uint64, 0, words)
	for j := 0; j < x.Rows; j++ {
		one = m.Code(x.Row(j), act, buf, one)
		copy(codes[j*words:(j+1)*words], one)
	}
	return codes
}

type hashSelector struct {
	*ScoreSelector
	*hashPrep
	g    *attn.Group
	bits int
	buf  [2][]float32
	qc   []uint64
}

func (s *hashSelector) score(i, t, n int, dst []float32) {
	s.qc = s.qmaps[i].Code(s.g.Q[i].Row(t), s.act, s.buf, s.qc)
	hamming(s.qc, s.keys[i], s.bits, n, dst)
}
