package gpueval

import (
	_ "embed"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/gpu"
	"github.com/hbench/hbench/tensor"
)

//go:embed kernels/ref.cu
var refSrc string

// refThreads is ref_logits's block size (RT in ref.cu).
const refThreads = 256

// Evaluator holds the device, the reference kernels and the per-group
// device state. Its methods may be called from several goroutines; every
// driver call runs on the device's thread (gpu.Device.Do).
type Evaluator struct {
	Dev            *gpu.Device
	logits, output *gpu.Func

	mu     sync.Mutex
	groups map[*attn.Group]*groupState
}

// groupState is one group's device data: K and V uploaded once, and what
// adapters prepared for the group (freed with it).
type groupState struct {
	once sync.Once
	err  error
	// K and V are fp16 [T][d].
	K, V gpu.Buffer
	// T is the group's length, Scale its softmax scale.
	T     int
	Scale float32

	mu     sync.Mutex
	extras map[any]*extra
}

// extra is an adapter's per-group state, built once.
type extra struct {
	once sync.Once
	err  error
	val  any
	free func(c *gpu.Ctx)
}

// Open opens GPU ordinal and compiles the reference kernels. Where no
// driver loads the error wraps gpu.ErrNoGPU.
func Open(ordinal int) (*Evaluator, error) {
	d, err := gpu.Open(ordinal)
	if err != nil {
		return nil, err
	}
	ev := &Evaluator{Dev: d, groups: map[*attn.Group]*groupState{}}
	err = d.Do(func(c *gpu.Ctx) error {
		cp, err := gpu.Compile("ref.cu", refSrc, d.Props.Arch(), nil)
		if err != nil {
			return err
		}
		m, err := c.Load(cp)
		if err != nil {
			return err
		}
		if ev.logits, err = c.Func(m, "ref_logits"); err != nil {
			return err
		}
		ev.output, err = c.Func(m, "ref_output")
		return err
	})
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("gpueval: %w", err)
	}
	return ev, nil
}

// Close frees every group's device data and closes the device.
func (ev *Evaluator) Close() error {
	ev.mu.Lock()
	var gs []*attn.Group
	for g := range ev.groups {
		gs = append(gs, g)
	}
	ev.mu.Unlock()
	ev.Drop(gs)
	return ev.Dev.Close()
}

// Drop frees the device data of the given groups (after their last cell).
func (ev *Evaluator) Drop(groups []*attn.Group) {
	var states []*groupState
	ev.mu.Lock()
	for _, g := range groups {
		if s, ok := ev.groups[g]; ok {
			states = append(states, s)
			delete(ev.groups, g)
		}
	}
	ev.mu.Unlock()
	if len(states) == 0 {
		return
	}
	ev.Dev.Do(func(c *gpu.Ctx) error {
		for _, s := range states {
			s.mu.Lock()
			for _, x := range s.extras {
				if x.free != nil && x.err == nil {
					x.free(c)
				}
			}
			s.mu.Unlock()
			c.Free(s.K)
			c.Free(s.V)
		}
		return nil
	})
}

// group returns g's device state, uploading K and V on first use.
func (ev *Evaluator) group(g *attn.Group) (*groupState, error) {
	ev.mu.Lock()
	s, ok := ev.groups[g]
	if !ok {
		s = &groupState{extras: map[any]*extra{}}
		ev.groups[g] = s
	}
	ev.mu.Unlock()
	s.once.Do(func() {
		s.T, s.Scale = g.T(), g.Scale
		k, v := toF16(g.K.Data), toF16(g.V.Data)
		s.err = ev.Dev.Do(func(c *gpu.Ctx) error {
			var err error
			if s.K, err = gpu.Upload(c, k); err != nil {
				return err
			}
			s.V, err = gpu.Upload(c, v)
			return err
		})
		if s.err != nil {
			s.err = fmt.Errorf("gpueval: upload K/V of %s layer %d KV head %d: %w", g.Workload, g.Layer, g.KVHead, s.err)
		}
	})
	return s, s.err
}

// prepared returns the value an adapter built for (key, g) with build
// (once per group and key), freed by free when the group is dropped.
func (ev *Evaluator) prepared(key any, g *attn.Group, build func(c *gpu.Ctx, s *groupState) (any, func(c *gpu.Ctx), error)) (any, error) {
	s, err := ev.group(g)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	x, ok := s.extras[key]
	if !ok {
		x = &extra{}
		s.extras[key] = x
	}
	s.mu.Unlock()
	x.once.Do(func() {
		x.err = ev.Dev.Do(func(c *gpu.Ctx) error {
			var err error
			x.val, x.free, err = build(c, s)
			return err
		})
	})
	return x.val, x.err
}

// built returns the value an adapter prepared for key in s
// (Evaluator.prepared), or an error saying that what (the adapter's
// metadata, as "key codes") was not prepared or failed to build.
func (s *groupState) built(key any, what string) (any, error) {
	s.mu.Lock()
	x := s.extras[key]
	s.mu.Unlock()
	if x == nil || x.err != nil || x.val == nil {
		return nil, fmt.Errorf("%s not prepared", what)
	}
	return x.val, nil
}

// RoundFP16 rounds the K and V of every group to fp16 in place (the
// values the kernels read), and fails on a value outside fp16's range.
// Values that are fp16 already (captures) are unchanged.
func RoundFP16(groups []*attn.Group) error {
	var mats []*tensor.Mat
	seen := map[*tensor.Mat]bool{}
	for _, g := range groups {
		for _, m := range []*tensor.Mat{g.K, g.V} {
			if !seen[m] {
				seen[m] = true
				mats = append(mats, m)
			}
		}
	}
	for _, m := range mats {
		var bad error
		var mu sync.Mutex
		parallelRange(len(m.Data), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				x := m.Data[i]
				r := tensor.F16ToF32(tensor.F32ToF16(x))
				if math.IsInf(float64(r), 0) || r != r {
					mu.Lock()
					bad = fmt.Errorf("gpueval: value %g at row %d does not fit fp16 (|x| <= 65504): run this workload with device: cpu", x, i/max(m.Cols, 1))
					mu.Unlock()
					return
				}
				m.Data[i] = r
			}
		})
		if bad != nil {
			return bad
		}
	}
	return nil
}

// toF16 converts fp16-representable float32s to fp16 bits.
func toF16(x []float32) []uint16 {
	out := make([]uint16, len(x))
	parallelRange(len(x), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			out[i] = tensor.F32ToF16(x[i])
		}
	})
	return out
}

// parallelRange runs f over [0, n) split among GOMAXPROCS goroutines.
func parallelRange(n int, f func(lo, hi int)) {
	w := max(1, min(runtime.GOMAXPROCS(0), n/(1<<16)))
	if w == 1 {
		f(0, n)
		return
	}
	var wg sync.WaitGroup
	chunk := (n + w - 1) / w
	for lo := 0; lo < n; lo += chunk {
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			f(lo, hi)
		}(lo, min(lo+chunk, n))
	}
	wg.Wait()
}

// cloneBuffers copies each device buffer into a new allocation of its
// size (a step's prefill state the step itself frees) and waits for the
// copies; on an error it frees what it allocated.
func cloneBuffers(c *gpu.Ctx, srcs ...gpu.Buffer) ([]gpu.Buffer, error) {
	out := make([]gpu.Buffer, 0, len(srcs))
	fail := func(err error) ([]gpu.Buffer, error) {
		for _, b := range out {
			c.Free(b)
		}
		return nil, err
	}
	for _, src := range srcs {
		b, err := c.Alloc(src.Size)
		if err != nil {
			return fail(err)
		}
		out = append(out, b)
		if err := c.CopyDtoD(b, src, src.Size, 0); err != nil {
			return fail(err)
		}
	}
	if err := c.Sync(); err != nil {
		return fail(err)
	}
	return out, nil
}
