package gpueval

import (
	"fmt"

	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/gpu"
	"github.com/hbench/hbench/methods"
	"github.com/hbench/hbench/registry"
)

func init() {
	Register(registry.Entry[Adapter]{
		Name: "quest",
		Doc:  "gpu.QuestStep: page labels, page bounds, page top-k (16-bit labels only)",
		New: func(ev *Evaluator, params any, cpu methods.Method) (methods.Method, error) {
			p := params.(*methods.QuestParams)
			if p.Bits != 16 {
				return nil, fmt.Errorf("%w: quest bits %d (the GPU step keeps 16-bit labels)", ErrUnsupported, p.Bits)
			}
			page := p.Page
			return &gpuMethod{Method: cpu, ev: ev, name: "quest",
				step: func(c *gpu.Ctx, s *groupState, sh gpu.Shape, sel gpu.Selection, b budget.Budget, q gpu.Buffer) (gpu.Buffer, func(), error) {
					qs, err := gpu.NewQuestStep(c, sh, sel, page, b)
					if err != nil {
						return gpu.Buffer{}, nil, err
					}
					free := func() { qs.Free(c) }
					// Labels of the prefix's pages (the current page's bound
					// is +inf whatever its label).
					if err := qs.EnqueuePages(c, 0, s.K); err != nil {
						return gpu.Buffer{}, free, err
					}
					return qs.Idx, free, qs.EnqueueSelect(c, 0, gpu.DecodeInputs{Q: q, K: s.K, V: s.V, Scale: s.Scale})
				}}, nil
		},
	})
}
