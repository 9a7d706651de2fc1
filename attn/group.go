package attn

import (
	"fmt"
	"math"

	"github.com/hbench/hbench/tensor"
)

// Group is one key/value head of one layer of one workload item, with the
// queries of every query head that attends to it (GQA group). Queries,
// keys and values are post-RoPE, as they enter the attention computation.
type Group struct {
	// Workload names the source (a workload name plus item, e.g. a file).
	Workload string
	// Item distinguishes several sequences of one workload (file stem or
	// synthetic sequence index).
	Item string
	// Layer is the 0-based layer index (0 for synthetic data).
	Layer int
	// KVHead is the key/value head index within the layer.
	KVHead int
	// QHeads are the layer's query-head indices that share this KV head.
	QHeads []int
	// Q[i] holds the queries of query head QHeads[i]: [T][d], row t is the
	// query at position t.
	Q []*tensor.Mat
	// K and V are the keys and values: [T][d].
	K, V *tensor.Mat
	// Scale is the softmax scale, usually 1/sqrt(d).
	Scale float32
}

// T returns the sequence length (number of positions).
func (g *Group) T() int { return g.K.Rows }

// D returns the head dimension.
func (g *Group) D() int { return g.K.Cols }

// Validate checks shapes and the scale.
func (g *Group) Validate() error {
	if g.K == nil || g.V == nil {
		return fmt.Errorf("group %s/%s layer %d kv %d: missing keys or values", g.Workload, g.Item, g.Layer, g.KVHead)
	}
	if g.K.Rows != g.V.Rows || g.K.Cols != g.V.Cols {
		return fmt.Errorf("group %s layer %d kv %d: K is %dx%d but V is %dx%d", g.Workload, g.Layer, g.KVHead, g.K.Rows, g.K.Cols, g.V.Rows, g.V.Cols)
	}
	if len(g.Q) == 0 || len(g.Q) != len(g.QHeads) {
		return fmt.Errorf("group %s layer %d kv %d: %d query matrices for %d query heads", g.Workload, g.Layer, g.KVHead, len(g.Q), len(g.QHeads))
	}
	for i, q := range g.Q {
		if q.Rows != g.K.Rows || q.Cols != g.K.Cols {
			return fmt.Errorf("group %s layer %d kv %d: query head %d is %dx%d, keys are %dx%d", g.Workload, g.Layer, g.KVHead, g.QHeads[i], q.Rows, q.Cols, g.K.Rows, g.K.Cols)
		}
	}
	if !(g.Scale > 0) || math.IsInf(float64(g.Scale), 0) {
		return fmt.Errorf("group %s layer %d kv %d: scale %g must be positive", g.Workload, g.Layer, g.KVHead, g.Scale)
	}
	return nil
}
