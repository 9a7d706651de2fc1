package gpu

import (
	"fmt"
	"sort"
)

// TimeOpts is the timing protocol of one measurement.
type TimeOpts struct {
	Warmup  int  // untimed calls first
	Repeats int  // timed calls
	Cold    bool // flush L2 (write Flush) before each timed call
	Graph   bool // capture the call once in a CUDA graph and time graph launches
	// Flush is the buffer written to evict L2 (at least twice the L2 size);
	// required when Cold.
	Flush Buffer
}

// Time measures enqueue (which must enqueue work only on s) under the
// protocol o and returns the raw samples in microseconds, one per repeat.
// Each repeat is bracketed by its own pair of events; the L2 flush runs
// before the first event. Nothing synchronises between repeats, so a
// sample holds the device time plus any launch gap the host leaves.
func (c *Ctx) Time(s Stream, o TimeOpts, enqueue func() error) ([]float64, error) {
	if o.Repeats < 1 {
		return nil, fmt.Errorf("gpu: repeats %d must be >= 1", o.Repeats)
	}
	if o.Cold && o.Flush.Ptr == 0 {
		return nil, fmt.Errorf("gpu: cold timing needs a flush buffer")
	}
	call := enqueue
	if o.Graph {
		g, err := c.Capture(s, enqueue)
		if err != nil {
			return nil, fmt.Errorf("capture graph: %w", err)
		}
		defer c.DestroyGraph(g)
		call = func() error { return c.LaunchGraph(g, s) }
	}
	for i := 0; i < o.Warmup; i++ {
		if o.Cold {
			if err := c.Fill32(o.Flush, uint32(i), s); err != nil {
				return nil, err
			}
		}
		if err := call(); err != nil {
			return nil, err
		}
	}
	if err := c.SyncStream(s); err != nil {
		return nil, err
	}
	ev := make([]Event, 2*o.Repeats)
	for i := range ev {
		e, err := c.NewEvent()
		if err != nil {
			return nil, err
		}
		ev[i] = e
	}
	defer func() {
		for _, e := range ev {
			c.DestroyEvent(e)
		}
	}()
	for i := 0; i < o.Repeats; i++ {
		if o.Cold {
			if err := c.Fill32(o.Flush, uint32(i), s); err != nil {
				return nil, err
			}
		}
		if err := c.Record(ev[2*i], s); err != nil {
			return nil, err
		}
		if err := call(); err != nil {
			return nil, err
		}
		if err := c.Record(ev[2*i+1], s); err != nil {
			return nil, err
		}
	}
	out := make([]float64, o.Repeats)
	for i := range out {
		us, err := c.Elapsed(ev[2*i], ev[2*i+1])
		if err != nil {
			return nil, err
		}
		out[i] = us
	}
	return out, nil
}

// Quantiles returns the median and the 25th and 75th percentiles
// (linear interpolation) of xs.
func Quantiles(xs []float64) (median, p25, p75 float64) {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	q := func(p float64) float64 {
		if len(s) == 0 {
			return 0
		}
		x := p * float64(len(s)-1)
		i := int(x)
		if i+1 >= len(s) {
			return s[len(s)-1]
		}
		f := x - float64(i)
		return s[i]*(1-f) + s[i+1]*f
	}
	return q(0.5), q(0.25), q(0.75)
}

// CopyBandwidth measures device-to-device copy bandwidth in GB/s
// (bytes read plus bytes written, 1e9 bytes per GB): the median over
// repeats copies of size bytes, after warm-up.
func (c *Ctx) CopyBandwidth(size int64, repeats int) (float64, error) {
	a, err := c.Alloc(size)
	if err != nil {
		return 0, err
	}
	defer c.Free(a)
	b, err := c.Alloc(size)
	if err != nil {
		return 0, err
	}
	defer c.Free(b)
	if err := c.Fill32(a, 0x3f800000, 0); err != nil {
		return 0, err
	}
	s, err := c.NewStream()
	if err != nil {
		return 0, err
	}
	defer c.DestroyStream(s)
	us, err := c.Time(s, TimeOpts{Warmup: 3, Repeats: repeats}, func() error { return c.CopyDtoD(b, a, size, s) })
	if err != nil {
		return 0, err
	}
	med, _, _ := Quantiles(us)
	return float64(2*size) / (med * 1e-6) / 1e9, nil
}

// FlushBuffer allocates a buffer of twice the L2 size (at least 64 MiB)
// for cold timings.
func (c *Ctx) FlushBuffer() (Buffer, error) {
	return c.Alloc(max(2*c.d.Props.L2Bytes, 64<<20))
}
