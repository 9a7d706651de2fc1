package methods

import (
	"fmt"
	"slices"
)

// better reports whether key a outranks key b: a higher score wins, and
// among equal scores the lower (older) position wins, so every selection is
// deterministic.
func better(sa float32, a int32, sb float32, b int32) bool {
	return sa > sb || (sa == sb && a < b)
}

// TopKIndices appends to dst the k positions in [lo, hi) with the highest
// scores[j] (ties broken toward lower positions), in ascending position
// order. scratch is reused when large enough.
func TopKIndices(scores []float32, lo, hi, k int, dst, scratch []int32) ([]int32, []int32) {
	n := hi - lo
	if k <= 0 || n <= 0 {
		return dst, scratch
	}
	if k >= n {
		for j := lo; j < hi; j++ {
			dst = append(dst, int32(j))
		}
		return dst, scratch
	}
	idx := scratch[:0]
	for j := lo; j < hi; j++ {
		idx = append(idx, int32(j))
	}
	quickselect(scores, idx, k)
	top := idx[:k]
	slices.Sort(top)
	return append(dst, top...), idx
}

// quickselect partially orders idx so that its first k entries are the k
// best by (score desc, position asc).
func quickselect(s []float32, idx []int32, k int) {
	lo, hi := 0, len(idx)-1
	for lo < hi {
		// median of three pivot
		mid := lo + (hi-lo)/2
		a, b, c := idx[lo], idx[mid], idx[hi]
		p := b
		if better(s[a], a, s[b], b) != better(s[a], a, s[c], c) {
			p = a
		} else if better(s[b], b, s[a], a) != better(s[b], b, s[c], c) {
			p = b
		} else {
			p = c
		}
		ps := s[p]
		i, j := lo, hi
		for i <= j {
			for better(s[idx[i]], idx[i], ps, p) {
				i++
			}
			for better(ps, p, s[idx[j]], idx[j]) {
				j--
			}
			if i <= j {
				idx[i], idx[j] = idx[j], idx[i]
				i++
				j--
			}
		}
		switch {
		case k-1 <= j:
			hi = j
		case k-1 >= i:
			lo = i
		default:
			return
		}
	}
}

// TopK is the shared selection "sink + local + top-k by score": the fixed
// windows of the step's budget, plus the Budget.Heavy positions with the
// highest scores among the rest. scores must hold a score for every
// position in [0, N). The result is ascending.
func TopK(scores []float32, st Step, dst, scratch []int32) ([]int32, []int32) {
	b := st.Budget
	if len(scores) < b.N {
		panic(fmt.Sprintf("methods: TopK got %d scores for %d keys", len(scores), b.N))
	}
	dst = dst[:0]
	for i := 0; i < b.Sink; i++ {
		dst = append(dst, int32(i))
	}
	lo, hi := b.MiddleRange()
	dst, scratch = TopKIndices(scores, lo, hi, b.Heavy, dst, scratch)
	for i := b.N - b.Local; i < b.N; i++ {
		dst = append(dst, int32(i))
	}
	return dst, scratch
}
