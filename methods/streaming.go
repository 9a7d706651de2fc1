package methods

import "github.com/hbench/hbench/attn"

// Streaming is StreamingLLM (Xiao et al., "Efficient Streaming Language
// Models with Attention Sinks", ICLR 2024, §3.2): keep the first Sink
// tokens (attention sinks) and fill the rest of the budget with the most
// recent tokens. It looks at no content, so it is the sliding-window
// baseline a content-based selector must beat.
type Streaming struct{}

func init() {
	Register(Spec{
		Name: "streaming",
		Doc:  "StreamingLLM: sink tokens + the most recent tokens (sliding window)",
		New:  func(any, Env) (Method, error) { return Streaming{}, nil },
	})
}

// Prepare implements Method.
func (Streaming) Prepare(g *attn.Group, opt Options) (Selector, error) {
	return streamingSelector{heads: len(g.Q)}, nil
}

// AuxBits implements Method.
func (Streaming) AuxBits(d, groupSize int) float64 { return 0 }

type streamingSelector struct{ heads int }

func (s streamingSelector) Select(st Step, sel [][]int32) ([][]int32, error) {
	b := st.Budget
	b.Local += b.Heavy // the whole non-sink budget is the recent window
	b.Heavy = 0
	sel = ensureHeads(sel, s.heads)
	for i := range sel {
		sel[i] = b.Fixed(sel[i][:0])
	}
	return sel, nil
}
