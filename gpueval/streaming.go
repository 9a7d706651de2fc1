package gpueval

import (
	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/gpu"
	"github.com/hbench/hbench/methods"
	"github.com/hbench/hbench/registry"
)

func init() {
	Register(registry.Entry[Adapter]{
		Name: "streaming",
		Doc:  "gpu.StreamStep: sink + recent-window lists",
		New: func(ev *Evaluator, _ any, cpu methods.Method) (methods.Method, error) {
			return &gpuMethod{Method: cpu, ev: ev, name: "streaming",
				step: func(c *gpu.Ctx, s *groupState, sh gpu.Shape, sel gpu.Selection, b budget.Budget, q gpu.Buffer) (gpu.Buffer, func(), error) {
					st, err := gpu.NewStreamStep(c, sh, sel, b)
					if err != nil {
						return gpu.Buffer{}, nil, err
					}
					return st.Idx, func() { st.Free(c) }, st.EnqueueSelect(c, 0)
				}}, nil
		},
	})
}
