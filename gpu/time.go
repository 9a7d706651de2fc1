package gpu

import (
	"fmt"
	"sort"
)

// TimeOpts is the timing protocol of one measurement.
type TimeOpts struct {
	Warmup  int  // untimed calls first
	Repeats int  // timed calls
	Cold    bool // flush L2 (write Flush; read it with Clean) before each timed call
	// Clean makes the cold flush read Flush instead of writing it: L2 then
	// holds clean lines, so the timed call evicts without write-backs.
	Clean bool
	Graph bool // capture the call once in a CUDA graph and time graph launches
	// Flush is the buffer that evicts L2 (at least twice the L2 size);
	// required when Cold.
	Flush Buffer
	// Settle, when > 0, idles the GPU for that many microseconds after
	// each cold flush, before the timed call's first event (a kernel of
	// one thread that touches no memory): what the flush's own traffic
	// still costs the call once it starts (a diagnostic).
	Settle float64
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
	// cold leaves L2 as the protocol asks before call i (and idles the
	// GPU for Settle µs after the flush).
	cold := func(i int) error {
		if !o.Cold {
			return nil
		}
		if err := c.FlushL2(o.Flush, o.Clean, uint32(i), s); err != nil {
			return err
		}
		if o.Settle > 0 {
			return c.EnqueueIdle(o.Settle, s)
		}
		return nil
	}
	for i := 0; i < o.Warmup; i++ {
		if err := cold(i); err != nil {
			return nil, err
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
		if err := cold(i); err != nil {
			return nil, err
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
	b, err := c.Alloc(max(2*c.d.Props.L2Bytes, 64<<20))
	if err != nil {
		return b, err
	}
	if err := c.FillU32(b, 0x5eed); err != nil { // random words: nothing a read could skip
		c.Free(b)
		return Buffer{}, err
	}
	return b, c.Sync()
}

// EnqueueRead reads buffer b once on s (16-byte loads over the whole
// device, the words' xor kept only so the loads stay; a tail of fewer
// than 16 bytes is not read): the time of a plain streaming read of b,
// a reference for kernels that must read it (the counting select reads
// its key codes).
func (c *Ctx) EnqueueRead(b Buffer, s Stream) error {
	f, err := c.utilFunc("flush_read")
	if err != nil {
		return err
	}
	return c.Launch(f, Dim3{X: uint32(c.d.Props.SMs * 8)}, Dim3{X: 256}, 0, s, b, b.Size/16, uintptr(0))
}

// EnqueueIdle launches one thread on s that spins for us microseconds
// and touches no memory.
func (c *Ctx) EnqueueIdle(us float64, s Stream) error {
	f, err := c.utilFunc("idle")
	if err != nil {
		return err
	}
	return c.Launch(f, Dim3{X: 1}, Dim3{X: 1}, 0, s, int64(us*1e3))
}

// FlushL2 evicts L2 on s through the flush buffer b: by writing it (seed
// as every word: L2 is left full of dirty lines) or, with clean, by
// reading it (L2 is left holding clean lines).
func (c *Ctx) FlushL2(b Buffer, clean bool, seed uint32, s Stream) error {
	if !clean {
		return c.Fill32(b, seed, s)
	}
	return c.EnqueueRead(b, s)
}
