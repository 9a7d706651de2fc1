package methods

import (
	"errors"
	"sync"
	"testing"
)

// TestPrepCache checks that a build runs once per key, also under
// concurrent calls, that distinct keys build separately, and that errors
// are returned to every caller.
func TestPrepCache(t *testing.T) {
	var c prepCache[int]
	g1, g2 := randGroup(1, 4, 2, 1), randGroup(2, 4, 2, 1)
	var mu sync.Mutex
	builds := 0
	build := func(v int) func() (int, error) {
		return func() (int, error) {
			mu.Lock()
			builds++
			mu.Unlock()
			return v, nil
		}
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, _ := c.get(prepKey{g: g1}, build(1)); v != 1 {
				t.Errorf("got %d, want 1", v)
			}
		}()
	}
	wg.Wait()
	if v, _ := c.get(prepKey{g: g2}, build(2)); v != 2 {
		t.Errorf("second group: got %d, want 2", v)
	}
	if v, _ := c.get(prepKey{g: g1, seed: 1}, build(3)); v != 3 {
		t.Errorf("other seed: got %d, want 3", v)
	}
	if builds != 3 {
		t.Errorf("%d builds, want 3", builds)
	}
	bad := errors.New("bad")
	for i := 0; i < 2; i++ {
		if _, err := c.get(prepKey{g: g2, t0: 5}, func() (int, error) { return 0, bad }); err != bad {
			t.Errorf("call %d: error %v, want %v", i, err, bad)
		}
	}
	// methods share their build across Prepare calls of one Group
	m := newMethod(t, "hashattention", func(p any) { p.(*HashAttentionParams).Init = "random" }, Env{})
	s1, _ := m.Prepare(g1, Options{})
	s2, _ := m.Prepare(g1, Options{Shared: true})
	if s1.(*hashSelector).hashPrep != s2.(*hashSelector).hashPrep {
		t.Error("hashattention: two Prepare calls of one Group built twice")
	}
}
