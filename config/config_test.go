package config

import (
	"os"
	"strings"
	"testing"

	"github.com/hbench/hbench/methods"
)

const good = `
name: t
seed: 3
workloads:
  - name: real
    capture: {files: ["../testdata/persuasion/*.safetensors"], tokens: 512}
queries: {last: 4}
budget: {sparsity: [4, 8], sink: 2, local: 4}
selection: per-kv-head
methods:
  - dense
  - oracle: {windows: true}
  - label: o2
    oracle: {}
    grid: {windows: [false, true]}
`

func TestParseGood(t *testing.T) {
	x, err := Parse("exp/t.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if x.Name != "t" || x.Seed != 3 || x.Selection != PerKVHead || x.Dir != "exp" {
		t.Fatalf("parsed %+v", x)
	}
	if len(x.Budgets) != 2 || x.Budgets[1].Sparsity != 8 || x.Budgets[1].Sink != 2 || x.Budgets[1].Local != 4 {
		t.Fatalf("budgets %+v", x.Budgets)
	}
	var labels []string
	for _, v := range x.Variants {
		labels = append(labels, v.Label)
	}
	if got := strings.Join(labels, " "); got != "dense oracle o2[windows=false] o2[windows=true]" {
		t.Fatalf("variants %q", got)
	}
	if len(x.Hash) != 64 {
		t.Fatalf("hash %q", x.Hash)
	}
	y, _ := Parse("exp/t.yaml", []byte(good+"\n# a comment changes nothing\n"))
	if y.Hash != x.Hash {
		t.Fatal("hash depends on comments")
	}
}

func TestParseErrors(t *testing.T) {
	base := func(repl ...string) string {
		s := good
		for i := 0; i+1 < len(repl); i += 2 {
			if !strings.Contains(s, repl[i]) {
				panic("test bug: " + repl[i])
			}
			s = strings.Replace(s, repl[i], repl[i+1], 1)
		}
		return s
	}
	cases := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{"unknown method", base("  - dense\n", "  - qeust\n"), []string{"t.yaml:11: methods[0]: unknown method \"qeust\"", "known: dense"}},
		{"unknown parameter", base("{windows: true}", "{windws: true}"), []string{"t.yaml:12: methods[1].oracle: unknown parameter \"windws\" (known: windows)"}},
		{"bad parameter type", base("{windows: true}", "{windows: 7}"), []string{"t.yaml:12: methods[1].oracle: cannot unmarshal"}},
		{"sparsity 1", base("[4, 8]", "[4, 1]"), []string{"t.yaml:8: budget.sparsity[1]: sparsity: must be a finite number > 1, got 1"}},
		{"sparsity below 1", base("[4, 8]", "[0.5]"), []string{"budget.sparsity[0]", "> 1"}},
		{"unknown top key", base("seed: 3", "sede: 3"), []string{"t.yaml:3: sede: unknown key"}},
		{"unknown workload kind", base("capture:", "captur:"), []string{"t.yaml:6: workloads[0]: unknown workload kind \"captur\""}},
		{"unknown workload param", base("tokens: 512", "tokns: 512"), []string{"t.yaml:6: workloads[0].capture: unknown parameter \"tokns\""}},
		{"bad selection", base("per-kv-head", "per-token"), []string{"t.yaml:9: selection: must be"}},
		{"bad grid key", base("grid: {windows:", "grid: {window:"), []string{"methods[2].grid: unknown parameter \"window\""}},
		{"missing methods", base("methods:\n  - dense\n  - oracle: {windows: true}\n  - label: o2\n    oracle: {}\n    grid: {windows: [false, true]}\n", ""), []string{"methods: missing (required)"}},
		{"duplicate label", base("  - dense\n", "  - dense\n  - dense\n"), []string{"duplicate method label \"dense\""}},
		{"negative sink", base("sink: 2", "sink: -2"), []string{"budget.sparsity[0]: sink: must be >= 0"}},
		{"bad queries", base("{last: 4}", "{last: 4, every: 2}"), []string{"t.yaml:7: queries: give last or every, not both"}},
		{"queries unknown key", base("{last: 4}", "{lst: 4}"), []string{"queries: unknown parameter \"lst\""}},
		{"two errors joined", base("seed: 3", "sede: 3", "  - dense\n", "  - nope\n"), []string{"unknown key", "unknown method \"nope\""}},
		{"not yaml", "name: [", []string{"t.yaml"}},
		{"bad device", base("selection: per-kv-head", "selection: per-kv-head\ndevice: cuda"), []string{`t.yaml:10: device: must be "cpu", "gpu" or "auto", got "cuda"`}},
		{"device not a string", base("selection: per-kv-head", "selection: per-kv-head\ndevice: [gpu]"), []string{"t.yaml:10: device: cannot unmarshal"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("exp/t.yaml", []byte(c.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\n does not contain %q", err, w)
				}
			}
		})
	}
}

func TestMergeKeys(t *testing.T) {
	y := strings.Replace(good, "  - dense\n", "  - label: a\n    oracle: &o {windows: true}\n  - label: b\n    oracle: {<<: *o}\n", 1)
	x, err := Parse("exp/t.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if p := x.Variants[1].Params.(*methods.OracleParams); !p.Windows || x.Variants[1].Label != "b" {
		t.Fatalf("merged params %+v of %s", p, x.Variants[1].Label)
	}
	bad := strings.Replace(good, "  - dense\n", "  - label: a\n    oracle: &o {windws: true}\n  - label: b\n    oracle: {<<: *o}\n", 1)
	if _, err := Parse("exp/t.yaml", []byte(bad)); err == nil || !strings.Contains(err.Error(), `unknown parameter "windws"`) {
		t.Fatalf("merged unknown key: %v", err)
	}
}

func TestVariantWorkloads(t *testing.T) {
	y := strings.Replace(good, "  - dense\n", "  - dense: {}\n    workloads: [real]\n", 1)
	x, err := Parse("exp/t.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if !x.Variants[0].RunsOn("real") || x.Variants[0].RunsOn("other") || !x.Variants[1].RunsOn("other") {
		t.Fatalf("RunsOn wrong: %+v", x.Variants[0])
	}
	bad := strings.Replace(good, "  - dense\n", "  - dense: {}\n    workloads: [nope]\n", 1)
	if _, err := Parse("exp/t.yaml", []byte(bad)); err == nil || !strings.Contains(err.Error(), `methods.dense.workloads: no workload named "nope"`) {
		t.Fatalf("error %v", err)
	}
}

// TestREADMEExample keeps the README's experiment example valid.
func TestREADMEExample(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no yaml block in README.md")
	}
	x, err := Parse("README.yaml", []byte(block))
	if err != nil {
		t.Fatalf("README example: %v", err)
	}
	if len(x.Variants) < 5 || len(x.Trainings) != 1 || len(x.Budgets) != 4 {
		t.Fatalf("README example parsed to %s", x.Summary())
	}
}

// TestDevice: the device key, its default, and what it does to the hash
// (the run id): "cpu" written or not is the same run; gpu and auto are
// other runs; --device (SetDevice) gives the hash of the file with the key.
func TestDevice(t *testing.T) {
	parse := func(y string) *Experiment {
		t.Helper()
		x, err := Parse("exp/t.yaml", []byte(y))
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	none := parse(good)
	if none.Device != DeviceCPU || none.DeviceLine != 0 {
		t.Fatalf("default device %q line %d", none.Device, none.DeviceLine)
	}
	cpu := parse(good + "device: cpu\n")
	gpu := parse(good + "device: gpu\n")
	auto := parse(good + "device: auto\n")
	if gpu.Device != DeviceGPU || gpu.DeviceLine != 16 || auto.Device != DeviceAuto {
		t.Fatalf("device %q line %d, auto %q", gpu.Device, gpu.DeviceLine, auto.Device)
	}
	if cpu.Hash != none.Hash {
		t.Error("device: cpu changes the hash of a file without the key")
	}
	if gpu.Hash == none.Hash || auto.Hash == none.Hash || gpu.Hash == auto.Hash {
		t.Error("device gpu/auto does not change the hash")
	}
	x := parse(good)
	if err := x.SetDevice("gpu"); err != nil {
		t.Fatal(err)
	}
	if x.Hash != gpu.Hash || x.Device != DeviceGPU {
		t.Errorf("SetDevice(gpu): hash %s, want the file's with device: gpu %s", x.Hash, gpu.Hash)
	}
	if err := x.SetDevice("cpu"); err != nil || x.Hash != none.Hash {
		t.Errorf("SetDevice(cpu): %v, hash %s, want %s", err, x.Hash, none.Hash)
	}
	if err := x.SetDevice("tpu"); err == nil || !strings.Contains(err.Error(), `device: must be "cpu", "gpu" or "auto", got "tpu"`) {
		t.Errorf("SetDevice(tpu): %v", err)
	}
}
