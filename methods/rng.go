package methods

import (
	"math/rand/v2"
	"slices"
)

// mix folds values into one well-spread 64-bit seed (splitmix64 steps), so
// that a method's randomness depends on its seed and on the Group (layer,
// head) it serves, but not on the order Groups are prepared in.
func mix(vals ...int64) uint64 {
	var h uint64 = 0x9e3779b97f4a7c15
	for _, v := range vals {
		h ^= uint64(v)
		h += 0x9e3779b97f4a7c15
		z := h
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		h = z ^ (z >> 31)
	}
	return h
}

// newRand returns a PCG generator seeded from vals.
func newRand(vals ...int64) *rand.Rand {
	s := mix(vals...)
	return rand.New(rand.NewPCG(s, mix(int64(s), 1)))
}

func sortInt32(s []int32) { slices.Sort(s) }

func sortPairs(s [][2]int) {
	slices.SortFunc(s, func(a, b [2]int) int {
		if a[0] != b[0] {
			return a[0] - b[0]
		}
		return a[1] - b[1]
	})
}
