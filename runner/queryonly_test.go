package runner

import (
	"testing"

	"github.com/hbench/hbench/config"
	"github.com/hbench/hbench/methods"
)

// TestReadsStepQueryOnly: which variants let a synthetic workload generate
// only the query plan's queries (doublesparsity unless calibration: self).
func TestReadsStepQueryOnly(t *testing.T) {
	for _, c := range []struct {
		v    config.Variant
		want bool
	}{
		{config.Variant{Method: "lsh", Params: &methods.LSHParams{Bits: 64}}, true},
		{config.Variant{Method: "oracle", Params: &methods.OracleParams{}}, true},
		{config.Variant{Method: "doublesparsity", Params: &methods.DoubleSparsityParams{Calibration: methods.Names{"calib"}}}, true},
		{config.Variant{Method: "doublesparsity", Params: &methods.DoubleSparsityParams{Calibration: methods.Names{"self"}}}, false},
		{config.Variant{Method: "h2o", Params: &methods.H2OParams{Init: "zero"}}, false},
	} {
		if got := readsStepQueryOnly(&c.v); got != c.want {
			t.Errorf("%s %+v: %v, want %v", c.v.Method, c.v.Params, got, c.want)
		}
	}
}
