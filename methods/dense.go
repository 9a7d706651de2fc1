package methods

import "github.com/hbench/hbench/attn"

// Dense keeps every visible key: the exact attention every other method is
// measured against (recall 1, output error 0, density 1).
type Dense struct{}

func init() {
	Register(Spec{
		Name: "dense",
		Doc:  "exact attention over every visible key (density 1)",
		New:  func(any, Env) (Method, error) { return Dense{}, nil },
	})
}

// Prepare implements Method.
func (Dense) Prepare(g *attn.Group, opt Options) (Selector, error) {
	return denseSelector{heads: len(g.Q)}, nil
}

// Unbudgeted implements Unbudgeted: dense keeps every key.
func (Dense) Unbudgeted() {}

// AuxBits implements Method: dense keeps nothing beyond the KV cache.
func (Dense) AuxBits(d, groupSize int) float64 { return 0 }

type denseSelector struct{ heads int }

func (s denseSelector) Select(st Step, sel [][]int32) ([][]int32, error) {
	sel = ensureHeads(sel, s.heads)
	for i := range sel {
		sel[i] = sel[i][:0]
		for j := 0; j <= st.T; j++ {
			sel[i] = append(sel[i], int32(j))
		}
	}
	return sel, nil
}
