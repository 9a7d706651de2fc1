package gpueval

import (
	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/gpu"
	"github.com/hbench/hbench/methods"
	"github.com/hbench/hbench/registry"
)

func init() {
	Register(registry.Entry[Adapter]{
		Name: "oracle",
		Doc:  "gpu.OracleStep: exact scores and a radix top-k",
		New: func(ev *Evaluator, params any, cpu methods.Method) (methods.Method, error) {
			windows := params.(*methods.OracleParams).Windows
			return &gpuMethod{Method: cpu, ev: ev, name: "oracle",
				step: func(c *gpu.Ctx, s *groupState, sh gpu.Shape, sel gpu.Selection, b budget.Budget, q gpu.Buffer) (gpu.Buffer, func(), error) {
					if !windows { // the whole budget is the top-k (methods.Oracle)
						b.Heavy, b.Sink, b.Local = b.Total, 0, 0
					}
					o, err := gpu.NewOracleStep(c, sh, sel, b)
					if err != nil {
						return gpu.Buffer{}, nil, err
					}
					free := func() { o.Free(c) }
					return o.Idx, free, o.EnqueueSelect(c, 0, gpu.DecodeInputs{Q: q, K: s.K, V: s.V, Scale: s.Scale})
				}}, nil
		},
	})
}
