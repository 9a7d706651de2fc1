package gpueval

import (
	"testing"

	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/methods"
)

// adapterCases are the lsh, doublesparsity and h2o adapters' cases for
// compareMethod. LSH and Double Sparsity compute the CPU's scores exactly
// (tensor.Dot32's order, no FMA contraction) with the CPU's tie-break, so
// their lists must be equal. H2O's accumulated scores differ from the
// CPU's in the last bits (fp32 logits in another order, fp32-rounded
// prefill scores), so after a near-tie its cache may keep another token:
// at most 1% of the selected keys may differ (codes), and the metrics must
// agree within metricTol.
func adapterCases() []methodCase {
	self := methods.Names{"self"}
	return []methodCase{
		{name: "lsh", params: &methods.LSHParams{Bits: 64, Seed: 3}, exact: true},
		{name: "lsh", params: &methods.LSHParams{Bits: 128, MIPS: true, Seed: 5}, exact: true},
		{name: "lsh", params: &methods.LSHParams{Bits: 40, Seed: 7}, exact: true}, // padded to 64 bits
		{name: "doublesparsity", params: &methods.DoubleSparsityParams{Calibration: self, Channels: 16, Bits: 16}, exact: true},
		{name: "doublesparsity", params: &methods.DoubleSparsityParams{Calibration: self, Channels: 13, Bits: 4}, exact: true},
		{name: "h2o", params: &methods.H2OParams{Init: "prefill"}, codes: true},
		{name: "h2o", params: &methods.H2OParams{Init: "zero", Recent: 0.5}, codes: true},
	}
}

// TestGPUAdaptersMatchCPUOnCapture: lsh, doublesparsity and h2o on the
// shipped capture, per-head and per-KV-head selection, the budgets of
// TestGPUMatchesCPUOnCapture (k = 1 included).
func TestGPUAdaptersMatchCPUOnCapture(t *testing.T) {
	ev := evaluator(t)
	groups := captureGroups(t)
	specs := []budget.Spec{{Sparsity: 8, Sink: 4, Local: 16}, {Sparsity: 32}, {Tokens: 1}}
	for _, mc := range adapterCases() {
		compareMethod(t, ev, groups, mc, 8, specs)
	}
}

// TestGPUAdaptersMatchCPUOnSynthetic: the same on the small synthetic
// workload rounded to fp16 (1531 tokens, GQA group 4).
func TestGPUAdaptersMatchCPUOnSynthetic(t *testing.T) {
	ev := evaluator(t)
	groups := synthGroups(t, 1531, true)
	specs := []budget.Spec{{Sparsity: 8, Sink: 4, Local: 16}, {Sparsity: 64, Sink: 1, Local: 3}}
	for _, mc := range adapterCases() {
		compareMethod(t, ev, groups, mc, 6, specs)
	}
}

// TestGPUH2OMatchesCPULong runs the H2O adapter over 150 consecutive
// positions of the capture (the cache evicts a token at most steps), so
// that the GPU's slots must track the CPU's cache through many evictions.
func TestGPUH2OMatchesCPULong(t *testing.T) {
	ev := evaluator(t)
	groups := captureGroups(t)
	specs := []budget.Spec{{Sparsity: 8, Sink: 4, Local: 16}, {Tokens: 64, Sink: 2, Local: 8}}
	for _, p := range []*methods.H2OParams{{Init: "prefill"}, {Init: "prefill", Recent: 0.5}} {
		compareMethod(t, ev, groups, methodCase{name: "h2o", params: p, codes: true}, 150, specs)
	}
}

// TestAdapterNotes: the new adapters are registered, wrap their methods
// without a device, and a configuration the GPU step lacks (LSH codes
// with more distinct scores than the counting select holds) stays on the
// CPU with a note. It needs no GPU.
func TestAdapterNotes(t *testing.T) {
	ev := &Evaluator{}
	for _, mc := range adapterCases() {
		cpu := newMethod(t, mc.name, mc.params)
		m, note, err := ev.Wrap(mc.name, mc.params, cpu)
		if err != nil || note != "" || m == cpu {
			t.Fatalf("%s %+v: got %T, note %q, err %v", mc.name, mc.params, m, note, err)
		}
	}
	p := &methods.LSHParams{Bits: 2048}
	cpu := newMethod(t, "lsh", p)
	m, note, err := ev.Wrap("lsh", p, cpu)
	if err != nil || m != cpu || note == "" {
		t.Fatalf("lsh bits 2048: got %T, note %q, err %v", m, note, err)
	}
	t.Log(note)
	h := newMethod(t, "h2o", &methods.H2OParams{Init: "zero"})
	m, _, err = ev.Wrap("h2o", &methods.H2OParams{Init: "zero"}, h)
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := m.(methods.ConsecutiveNeeder); !ok || !c.NeedsConsecutive() {
		t.Error("the GPU h2o does not say it needs consecutive positions")
	}
}
