package methods

import (
	"math"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/tensor"
)

// OracleParams configures the oracle.
type OracleParams struct {
	Windows bool `yaml:"windows" doc:"also keep the sink and local windows (false: pure top-k over all keys, the recall reference)"`
}

// Oracle keeps the keys with the largest exact scores q·k: the best any
// selector can do for top-k recall at the budget. With Shared, the group's
// heads share the keys with the largest summed attention probability.
type Oracle struct{ p OracleParams }

func init() {
	Register(Spec{
		Name:     "oracle",
		Doc:      "top-k keys by the exact score q·k (the upper bound)",
		Defaults: func() any { return &OracleParams{} },
		New: func(p any, _ Env) (Method, error) {
			return &Oracle{p: *p.(*OracleParams)}, nil
		},
	})
}

// Prepare implements Method.
func (o *Oracle) Prepare(g *attn.Group, opt Options) (Selector, error) {
	score := func(i, t, n int, dst []float32) {
		q := g.Q[i].Row(t)
		for j := 0; j < n; j++ {
			dst[j] = tensor.Dot32(q, g.K.Row(j))
		}
		if opt.Shared { // softmax probabilities, so summing over heads is meaningful
			m := float32(math.Inf(-1))
			for _, x := range dst {
				m = max(m, x)
			}
			var z float64
			for j, x := range dst {
				e := math.Exp(float64((x - m) * g.Scale))
				dst[j] = float32(e)
				z += e
			}
			for j := range dst {
				dst[j] = float32(float64(dst[j]) / z)
			}
		}
	}
	ss := NewScoreSelector(len(g.Q), opt.Shared, score)
	if o.p.Windows {
		return ss, nil
	}
	return noWindows{ss}, nil
}

// AuxBits implements Method: the oracle needs the full keys, nothing more.
func (o *Oracle) AuxBits(d, groupSize int) float64 { return 0 }

// noWindows runs a selector with the whole budget given to the heavy part.
type noWindows struct{ inner Selector }

func (w noWindows) Select(st Step, sel [][]int32) ([][]int32, error) {
	b := st.Budget
	b.Heavy, b.Sink, b.Local = b.Total, 0, 0
	return w.inner.Select(Step{T: st.T, Budget: b}, sel)
}
