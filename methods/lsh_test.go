package methods

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/hbench/hbench/attn"

	"github.com/hbench/hbench/tensor"
)

// spearman returns the rank correlation of x and y (average ranks for
// ties).
func spearman(x, y []float64) float64 {
	rx, ry := ranks(x), ranks(y)
	var mx, my float64
	for i := range rx {
		mx += rx[i]
		my += ry[i]
	}
	mx /= float64(len(rx))
	my /= float64(len(ry))
	var sxy, sxx, syy float64
	for i := range rx {
		a, b := rx[i]-mx, ry[i]-my
		sxy += a * b
		sxx += a * a
		syy += b * b
	}
	return sxy / math.Sqrt(sxx*syy)
}

func ranks(x []float64) []float64 {
	idx := make([]int, len(x))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case x[a] < x[b]:
			return -1
		case x[a] > x[b]:
			return 1
		}
		return 0
	})
	r := make([]float64, len(x))
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && x[idx[j+1]] == x[idx[i]] {
			j++
		}
		for k := i; k <= j; k++ {
			r[idx[k]] = float64(i+j) / 2
		}
		i = j + 1
	}
	return r
}

func cosine(a, b []float32) float64 {
	return tensor.Dot(a, b) / math.Sqrt(tensor.Dot(a, a)*tensor.Dot(b, b))
}

// lshCorrelation returns the mean Spearman correlation, over queries and
// seeds, between LSH scores and ref(q, k) over all keys.
func lshCorrelation(t *testing.T, g *attn.Group, bits int, mips bool, ref func(q, k []float32) float64) float64 {
	var sum float64
	n := 0
	for seed := int64(0); seed < 4; seed++ {
		m := newMethod(t, "lsh", func(p any) { p.(*LSHParams).Bits, p.(*LSHParams).MIPS = bits, mips }, Env{})
		s, err := m.Prepare(g, Options{Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		ls := s.(*lshSelector)
		dst := make([]float32, g.T())
		for tq := g.T() - 40; tq < g.T(); tq += 4 {
			ls.score(0, tq, g.T(), dst)
			x, y := make([]float64, g.T()), make([]float64, g.T())
			for j := range dst {
				x[j] = float64(dst[j])
				y[j] = ref(g.Q[0].Row(tq), g.K.Row(j))
			}
			sum += spearman(x, y)
			n++
		}
	}
	return sum / float64(n)
}

// TestLSHConvergesToCosine checks that the rank correlation between
// SimHash scores and cosine similarity rises with the number of bits and
// approaches 1, and that the MIPS transform tracks the inner product better
// than plain SimHash when key norms vary.
func TestLSHConvergesToCosine(t *testing.T) {
	g := randGroup(11, 300, 32, 1)
	prev := -1.0
	for _, b := range []int{8, 32, 128, 1024} {
		c := lshCorrelation(t, g, b, false, cosine)
		t.Logf("bits %4d: Spearman(score, cosine) = %.3f", b, c)
		if c <= prev {
			t.Errorf("bits %d: correlation %.3f did not rise above %.3f", b, c, prev)
		}
		prev = c
	}
	if prev < 0.95 {
		t.Errorf("1024 bits: correlation %.3f, want > 0.95", prev)
	}
	// keys with norms spread over e^±2: inner product and cosine rankings
	// differ, and only the MIPS transform recovers the former
	rng := newRand(3)
	for j := 0; j < g.T(); j++ {
		s := float32(math.Exp(4*rng.Float64() - 2))
		for c := range g.K.Row(j) {
			g.K.Row(j)[c] *= s
		}
	}
	plain, mips := lshTopRecall(t, g, 1024, false), lshTopRecall(t, g, 1024, true)
	t.Logf("1024 bits: recall of the top 10 by q·k: plain %.3f, mips %.3f", plain, mips)
	if mips <= plain {
		t.Errorf("mips top-10 recall %.3f not above plain %.3f", mips, plain)
	}
}

// TestLSHHamming checks the score on hand-made codes of 1 and 2 words.
func TestLSHHamming(t *testing.T) {
	for _, c := range []struct {
		q, keys []uint64
		bits    int
		want    []float32
	}{
		{[]uint64{0b1011}, []uint64{0b1011, 0b0100, 0b1001}, 4, []float32{4, 0, 3}},
		{[]uint64{1, 1 << 63}, []uint64{1, 1 << 63, 0, 0, 1, 0}, 70, []float32{70, 68, 69}},
	} {
		dst := make([]float32, len(c.want))
		hamming(c.q, c.keys, c.bits, len(c.want), dst)
		if !slices.Equal(dst, c.want) {
			t.Errorf("%s: %v, want %v", fmt.Sprint(c.q), dst, c.want)
		}
	}
}

// lshTopRecall returns the mean fraction of the 10 keys of largest q·k
// found among the 30 keys of largest LSH score.
func lshTopRecall(t *testing.T, g *attn.Group, bits int, mips bool) float64 {
	m := newMethod(t, "lsh", func(p any) { p.(*LSHParams).Bits, p.(*LSHParams).MIPS = bits, mips }, Env{})
	var sum float64
	n := 0
	for seed := int64(0); seed < 4; seed++ {
		s, err := m.Prepare(g, Options{Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		dst, ip := make([]float32, g.T()), make([]float32, g.T())
		for tq := g.T() - 40; tq < g.T(); tq += 4 {
			s.(*lshSelector).score(0, tq, g.T(), dst)
			for j := range ip {
				ip[j] = tensor.Dot32(g.Q[0].Row(tq), g.K.Row(j))
			}
			top, _ := TopKIndices(ip, 0, g.T(), 10, nil, nil)
			got, _ := TopKIndices(dst, 0, g.T(), 30, nil, nil)
			for _, j := range top {
				if slices.Contains(got, j) {
					sum++
				}
			}
			n += len(top)
		}
	}
	return sum / float64(n)
}
