package methods

import (
	"sync"

	"github.com/hbench/hbench/attn"
)

// prepCache holds per-Group metadata a method builds in Prepare (key
// codes), so that the Selectors of several budgets of one Group (the
// runner prepares one per budget) share one build. Entries live as long as
// the method; a build runs once per key even when Prepare is called
// concurrently. A Group must not change once prepared (the runner's never
// do): the cache is keyed by its address.
type prepCache[V any] struct {
	mu sync.Mutex
	m  map[prepKey]*prepEntry[V]
}

// prepKey identifies a build: the Group and whatever else the build
// depends on (the seed, the sharing mode).
type prepKey struct {
	g      *attn.Group
	seed   int64
	shared bool
	t0     int
}

type prepEntry[V any] struct {
	once sync.Once
	v    V
	err  error
}

// get returns the cached value for k, building it with build on first use.
func (c *prepCache[V]) get(k prepKey, build func() (V, error)) (V, error) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[prepKey]*prepEntry[V]{}
	}
	e := c.m[k]
	if e == nil {
		e = &prepEntry[V]{}
		c.m[k] = e
	}
	c.mu.Unlock()
	e.once.Do(func() { e.v, e.err = build() })
	return e.v, e.err
}
