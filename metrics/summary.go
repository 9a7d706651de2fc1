package metrics

import (
	"slices"

	"github.com/hbench/hbench/resultfmt"
)

// Quantile returns the p-quantile of sorted (ascending) data with linear
// interpolation between order statistics: the definition numpy and pandas
// use by default (Hyndman & Fan type 7), so figures recomputed from the
// raw samples with pandas agree. (gonum's stat.LinInterp is a different
// definition: it puts the median of 1..5 at 2.5.)
func Quantile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	h := float64(len(sorted)-1) * p
	lo := int(h)
	if lo >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	return sorted[lo] + (h-float64(lo))*(sorted[lo+1]-sorted[lo])
}

// Summarize returns the mean, median, 10th and 90th percentiles (see
// Quantile), min, max and count of xs. It does not modify xs.
func Summarize(xs []float64) resultfmt.Stat {
	if len(xs) == 0 {
		return resultfmt.Stat{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	var sum float64
	for _, x := range s {
		sum += x
	}
	return resultfmt.Stat{
		Mean:   sum / float64(len(s)),
		Median: Quantile(s, 0.5),
		P10:    Quantile(s, 0.1),
		P90:    Quantile(s, 0.9),
		Min:    s[0],
		Max:    s[len(s)-1],
		Count:  len(s),
	}
}
