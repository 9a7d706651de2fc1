package gpu

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestGatherRowsChecksum checks that EnqueueGatherRows reads exactly the
// lists' K and V rows: the xor of their 32-bit words against the CPU's, on
// fresh random rows and lists, per KV head and per query head, with a
// list length that does not fill the last pass.
func TestGatherRowsChecksum(t *testing.T) {
	d := device(t)
	rng := rand.New(rand.NewPCG(11, 12))
	for _, tc := range []decodeCase{
		{Shape{2, 8, 2, 128, 3001, BF16}, PerKVHead, 377},
		{Shape{2, 8, 2, 128, 3001, BF16}, PerHead, 93},
		{Shape{1, 4, 4, 64, 1000, FP16}, PerKVHead, 1},
		{Shape{1, 32, 8, 128, 40000, BF16}, PerKVHead, 1250},
	} {
		t.Run(fmt.Sprintf("%v/%v/k=%d", tc.s, tc.sel, tc.k), func(t *testing.T) {
			s := tc.s
			kv, vv := randKV(rng, s), randKV(rng, s)
			idx := randLists(rng, s, tc.sel, tc.k)
			var want uint32
			word := func(raw []uint16, i int) uint32 { return uint32(raw[i]) | uint32(raw[i+1])<<16 }
			nl := s.Lists(tc.sel)
			for l := 0; l < s.Batch*nl; l++ {
				kvh := l/nl*s.KVHeads + l%nl/(nl/s.KVHeads)
				for _, p := range idx[l*tc.k : (l+1)*tc.k] {
					base := (kvh*s.Context + int(p)) * s.HeadDim
					for i := 0; i < s.HeadDim; i += 2 {
						want ^= word(kv.raw, base+i) ^ word(vv.raw, base+i)
					}
				}
			}
			var got [1]uint32
			err := d.Do(func(c *Ctx) error {
				in, free, err := uploadInputs(c, nil, kv, vv) // no queries: the rows alone
				defer free()
				if err != nil {
					return err
				}
				ib, err := Upload(c, idx)
				if err != nil {
					return err
				}
				defer c.Free(ib)
				out, err := Upload(c, []uint32{0})
				if err != nil {
					return err
				}
				defer c.Free(out)
				if err := c.EnqueueGatherRows(0, s, tc.sel, tc.k, in.K, in.V, ib, out); err != nil {
					return err
				}
				if err := c.Sync(); err != nil {
					return err
				}
				return Download(c, got[:], out)
			})
			if err != nil {
				t.Fatal(err)
			}
			if got[0] != want {
				t.Errorf("xor of the rows read %#08x, want %#08x", got[0], want)
			}
		})
	}
}

func TestGatherRowBytes(t *testing.T) {
	s := Shape{1, 32, 8, 128, 262144, BF16}
	// 8 lists of 8192 rows, a K and a V row of 256 bytes each and an index
	if got, want := GatherRowBytes(s, PerKVHead, 8192), int64(8*8192*(2*256+4)); got != want {
		t.Errorf("GatherRowBytes = %d, want %d", got, want)
	}
}
