package bench

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/hbench/hbench/resultfmt"
)

func TestParseErrorsNameFileLineField(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key", "name: x\ncontexts: [4096]\nheads: [32]\nkv_heads: [8]\nkernel: [dense]\n",
			[]string{"b.yaml:5: field kernel not found"}},
		{"bad values", "name: x\nrepeats: 10\ncontexts: [4096, 0]\nheads: [32]\nkv_heads: [8, 5]\nhead_dim: [96]\ncache: [hot]\nkernels:\n  - name: dense\n  - name: sparse\n    sparsity: [0.5]\n  - name: nope\n",
			[]string{"b.yaml:2: repeats: must be >= 50", "b.yaml:3: contexts[1]: must be >= 1", "b.yaml:5: kv_heads[1]: 5 KV heads",
				"b.yaml:6: head_dim[0]: must be 64 or 128", "b.yaml:7: cache[0]", "b.yaml:11: kernels[1].sparsity[0]", "b.yaml:12: kernels[2].name: unknown kernel \"nope\""}},
		{"selection kernels' params", "name: x\ncontexts: [1024]\nheads: [4]\nkv_heads: [1]\nkernels:\n  - name: oracle\n    page: 8\n  - name: quest\n    page: -1\n  - name: streaming\n    bits: 32\n  - name: sparse\n    sink: 4\n  - name: oracle\n    sink: 1000\n    local: 30\n",
			[]string{"b.yaml:7: kernels[0].page: only quest take page", "b.yaml:9: kernels[1].page: must be >= 1", "b.yaml:11: kernels[2].bits: only hash, lsh take bits",
				"b.yaml:12: kernels[3]: sparse takes no sink", "b.yaml:14: kernels[4]: context 1024, sparsity 32"}},
		{"hash budget does not fit", "name: x\ncontexts: [1024]\nheads: [4]\nkv_heads: [1]\nkernels:\n  - name: hash\n    sink: 16\n    local: 16\n    codes: per-query\n",
			[]string{"b.yaml:6: kernels[0]: context 1024, sparsity 32", "b.yaml:9: kernels[0].codes"}},
		{"dense takes no sparsity", "name: x\ncontexts: [1024]\nheads: [4]\nkv_heads: [1]\nkernels:\n  - name: dense\n    sparsity: [4]\n",
			[]string{"b.yaml:6: kernels[0]: dense takes no selection"}},
	} {
		_, err := Parse("b.yaml", []byte(tc.yaml))
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error\n%v\ndoes not contain %q", tc.name, err, w)
			}
		}
	}
}

func TestParseDefaultsAndShapes(t *testing.T) {
	c, err := Parse("b.yaml", []byte("name: x\ncontexts: [4096, 8192]\nheads: [32]\nkv_heads: [8, 32]\nkernels:\n  - name: dense\n  - name: hash\n  - name: quest\n  - name: oracle\n    selection: per-head\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Repeats != 60 || c.Warmup != 10 || len(c.Cache) != 2 || c.Kernels[1].Selection != "per-kv-head" || c.Kernels[1].Bits != 32 || c.Kernels[1].Codes != "per-head" ||
		c.Kernels[2].Page != 16 || c.Kernels[2].Variant() != "quest[per-kv-head,page=16]" || c.Kernels[3].Variant() != "oracle[per-head]" || len(c.Kernels[3].Sparsity) != 1 {
		t.Errorf("defaults not applied: %+v", c)
	}
	sh := c.Shapes()
	if len(sh) != 4 || sh[0].Context != 4096 || sh[1].KVHeads != 32 || sh[3].Context != 8192 || sh[0].DType != "bf16" || sh[0].HeadDim != 128 {
		t.Errorf("shapes %+v", sh)
	}
}

func TestExperimentFilesLoad(t *testing.T) {
	files, _ := filepath.Glob("../experiments/bench-*.yaml")
	if len(files) == 0 {
		t.Skip("no bench experiment files")
	}
	for _, f := range files {
		if _, _, err := Load(f); err != nil {
			t.Errorf("%v", err)
		}
	}
}

func TestPrintTable(t *testing.T) {
	var b strings.Builder
	cells := []*resultfmt.Cell{{ID: "a", Kind: resultfmt.KindLatency, Variant: "dense", Latency: &resultfmt.Latency{Context: 4096, Batch: 1, Heads: 32, KVHeads: 8, HeadDim: 128, DType: "bf16", Cache: "cold", MedianUS: 12.34, P25US: 12, P75US: 13, GBps: 3000, FracCeiling: 0.75}}}
	if err := PrintTable(&b, cells); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"dense", "4096", "32/8", "12.3", "3000", "75.0"} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("table lacks %q:\n%s", w, b.String())
		}
	}
}
