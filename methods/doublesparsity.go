package methods

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/tensor"
	"gopkg.in/yaml.v3"
)

// DoubleSparsityParams configures Double Sparsity.
type DoubleSparsityParams struct {
	Calibration Names `yaml:"calibration" doc:"workload(s) of the experiment's calibration block the channels are calibrated on (a name or a list; groups are matched by layer and KV head); self calibrates on the evaluated data itself (optimistic: it sees the test queries)"`
	Channels    int   `yaml:"channels" doc:"r: channels of K kept in the label cache"`
	Bits        int   `yaml:"bits" doc:"bits per label value: 16 keeps them at the KV cache precision (no quantisation); 1..15 quantises each token's r labels with its own min-max uniform grid"`
}

// Validate implements the config check.
func (p *DoubleSparsityParams) Validate() error {
	var errs []error
	switch {
	case len(p.Calibration) == 0:
		errs = append(errs, errors.New("calibration: name a workload of the experiment's calibration block, or self"))
	case len(p.Calibration) > 1 && slices.Contains(p.Calibration, "self"):
		errs = append(errs, errors.New("calibration: self cannot be combined with workloads"))
	}
	for i, n := range p.Calibration {
		if n == "" {
			errs = append(errs, fmt.Errorf("calibration[%d]: empty name", i))
		}
	}
	if p.Channels < 1 {
		errs = append(errs, fmt.Errorf("channels: must be > 0, got %d", p.Channels))
	}
	if p.Bits < 1 || p.Bits > 16 {
		errs = append(errs, fmt.Errorf("bits: must be in 1..16, got %d", p.Bits))
	}
	return errors.Join(errs...)
}

func (p *DoubleSparsityParams) self() bool {
	return len(p.Calibration) == 1 && p.Calibration[0] == "self"
}

// Names is a list of names that YAML may also give as one scalar
// ("calibration: calib" or "calibration: [a, b]").
type Names []string

// UnmarshalYAML implements yaml.Unmarshaler.
func (n *Names) UnmarshalYAML(v *yaml.Node) error {
	if v.Kind == yaml.ScalarNode {
		*n = Names{v.Value}
		return nil
	}
	var s []string
	if err := v.Decode(&s); err != nil {
		return err
	}
	*n = s
	return nil
}

// String returns the names, comma-separated.
func (n Names) String() string { return strings.Join(n, ",") }

// DoubleSparsity is Double Sparsity (Yang et al., "Post-Training Sparse
// Attention with Double Sparsity", arXiv 2408.07092, §3): offline, each
// channel c of a head is ranked by its importance, the mean over
// calibration tokens of |q_c·k_c| (query and key of the same position);
// the r most important channels of K form a label cache (optionally
// quantised); at a decode step the approximate score of key j is
// Σ_{c∈ch} q_c·K[j][c] and the top-scoring keys fill the heavy budget,
// plus sink and local. Channels are chosen per (layer, KV head), the
// importance summed over the group's query heads, so one label cache serves
// the group (r·bits bits per token per KV head). Calibration groups are
// matched to the evaluated group by layer and KV head; with several
// calibration workloads, groups of one (layer, KV head) add their
// importances. With quantisation
// (bits < 16) each token's r labels are stored on their own min-max
// uniform grid (as the authors' per-token quantiser; the two grid values
// per token are not counted in AuxBits). With Options.Shared the group's
// heads share the keys with the largest summed approximate score.
type DoubleSparsity struct {
	p DoubleSparsityParams
	// channels maps [layer, kvHead] to the calibrated channel set.
	channels map[[2]int][]int
}

func init() {
	Register(Spec{
		Name:     "doublesparsity",
		Doc:      "Double Sparsity: approximate scores from r offline-calibrated channels of K",
		Defaults: func() any { return &DoubleSparsityParams{Channels: 16, Bits: 16} },
		New:      newDoubleSparsity,
	})
}

func newDoubleSparsity(p any, env Env) (Method, error) {
	dp := *p.(*DoubleSparsityParams)
	if err := dp.Validate(); err != nil {
		return nil, fmt.Errorf("doublesparsity: %w", err)
	}
	ds := &DoubleSparsity{p: dp, channels: map[[2]int][]int{}}
	if dp.self() {
		return ds, nil
	}
	if env.Calibration == nil {
		return nil, fmt.Errorf("doublesparsity: calibration %s: the experiment has no calibration workloads", dp.Calibration)
	}
	var groups []*attn.Group
	for _, name := range dp.Calibration {
		gs, err := env.Calibration(name)
		if err != nil {
			return nil, fmt.Errorf("doublesparsity: calibration %q: %w", name, err)
		}
		groups = append(groups, gs...)
	}
	imp := map[[2]int][]float64{}
	for _, g := range groups {
		key := [2]int{g.Layer, g.KVHead}
		if imp[key] == nil {
			imp[key] = make([]float64, g.D())
		}
		if len(imp[key]) != g.D() {
			return nil, fmt.Errorf("doublesparsity: calibration %s: layer %d KV head %d has head dimensions %d and %d", dp.Calibration, g.Layer, g.KVHead, len(imp[key]), g.D())
		}
		addImportance(g, imp[key])
	}
	for key, v := range imp {
		if dp.Channels > len(v) {
			return nil, fmt.Errorf("doublesparsity: channels %d exceeds the head dimension %d", dp.Channels, len(v))
		}
		ds.channels[key] = topChannels(v, dp.Channels)
	}
	return ds, nil
}

// ChannelImportance returns, per channel, Σ over query heads of the mean
// over positions t of |q_t[c]·k_t[c]|: the Double Sparsity calibration
// statistic of one Group.
func ChannelImportance(g *attn.Group) []float64 {
	v := make([]float64, g.D())
	addImportance(g, v)
	return v
}

// addImportance adds g's per-channel importance to v. Each Group
// contributes its own mean over positions, so groups of unequal lengths
// weigh equally.
func addImportance(g *attn.Group, v []float64) {
	n := float64(g.T())
	for _, q := range g.Q {
		for t := 0; t < g.T(); t++ {
			k, qt := g.K.Row(t), q.Row(t)
			for c := range v {
				v[c] += math.Abs(float64(qt[c])*float64(k[c])) / n
			}
		}
	}
}

// topChannels returns the r channels of largest importance (ties to the
// lower channel), ascending.
func topChannels(imp []float64, r int) []int {
	idx := make([]int, len(imp))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case imp[a] > imp[b]:
			return -1
		case imp[a] < imp[b]:
			return 1
		}
		return 0
	})
	ch := idx[:r]
	slices.Sort(ch)
	return ch
}

// AuxBits implements Method: r labels of bits bits per token per KV head.
func (ds *DoubleSparsity) AuxBits(d, groupSize int) float64 {
	return float64(min(ds.p.Channels, d) * ds.p.Bits)
}

// Channels returns the label channels Prepare uses for g (ascending, r of
// them): calibrated on g itself with calibration self, else those of g's
// layer and KV head in the calibration workloads. The GPU pipeline
// uploads them. The slice is the caller's.
func (ds *DoubleSparsity) Channels(g *attn.Group) ([]int, error) {
	ch, err := ds.channelsFor(g)
	return slices.Clone(ch), err
}

// channelsFor returns the channels of g (shared with ds for calibrated
// ones: read only).
func (ds *DoubleSparsity) channelsFor(g *attn.Group) ([]int, error) {
	if ds.p.self() {
		if ds.p.Channels > g.D() {
			return nil, fmt.Errorf("doublesparsity: channels %d exceeds the head dimension %d", ds.p.Channels, g.D())
		}
		return topChannels(ChannelImportance(g), ds.p.Channels), nil
	}
	ch := ds.channels[[2]int{g.Layer, g.KVHead}]
	if ch == nil {
		return nil, fmt.Errorf("doublesparsity: calibration %s has no data for layer %d KV head %d", ds.p.Calibration, g.Layer, g.KVHead)
	}
	if ch[len(ch)-1] >= g.D() {
		return nil, fmt.Errorf("doublesparsity: calibration %s channels are for a larger head dimension than %d", ds.p.Calibration, g.D())
	}
	return ch, nil
}

// Prepare implements Method: it builds the label cache of the group.
func (ds *DoubleSparsity) Prepare(g *attn.Group, opt Options) (Selector, error) {
	ch, err := ds.channelsFor(g)
	if err != nil {
		return nil, err
	}
	r := len(ch)
	labels := tensor.NewMat(g.T(), r)
	for j := 0; j < g.T(); j++ {
		row, k := labels.Row(j), g.K.Row(j)
		for i, c := range ch {
			row[i] = k[c]
		}
		if ds.p.Bits < 16 {
			quantRow(row, ds.p.Bits)
		}
	}
	s := &dsSelector{g: g, ch: ch, labels: labels, q: make([]float32, r)}
	s.ScoreSelector = NewScoreSelector(len(g.Q), opt.Shared, s.score)
	return s, nil
}

// quantRow replaces x by its round-to-nearest value on the uniform grid of
// 2^bits levels spanning [min x, max x].
func quantRow(x []float32, bits int) {
	a, b := x[0], x[0]
	for _, v := range x {
		a, b = min(a, v), max(b, v)
	}
	levels := float64(int(1)<<bits - 1)
	step := (float64(b) - float64(a)) / levels
	if step == 0 {
		return
	}
	for i, v := range x {
		x[i] = float32(float64(a) + math.Round((float64(v)-float64(a))/step)*step)
	}
}

type dsSelector struct {
	*ScoreSelector
	g      *attn.Group
	ch     []int
	labels *tensor.Mat // [T][r]
	q      []float32
}

func (s *dsSelector) score(i, t, n int, dst []float32) {
	qt := s.g.Q[i].Row(t)
	for k, c := range s.ch {
		s.q[k] = qt[c]
	}
	for j := 0; j < n; j++ {
		dst[j] = tensor.Dot32(s.q, s.labels.Row(j))
	}
}
