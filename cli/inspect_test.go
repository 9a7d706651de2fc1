package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hbench/hbench/inspect"
)

func TestInspect(t *testing.T) {
	const l1, l4 = "../testdata/persuasion/persuasion-L1.safetensors", "../testdata/persuasion/persuasion-L4.safetensors"
	code, out, errs := run(t, "inspect", "--last", "16", l1, l4)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"persuasion-L1.safetensors: layer 1, 2 query heads over 1 KV heads (GQA group 2), 2048 positions, head dim 128",
		"q [2 2048 128] F16, k [1 2048 128] F16, v [1 2048 128] F16",
		"measured query positions: 2032..2047",
		"format: qkv-capture/1",
		"top 1%", "recent 1%", "mean",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	code, out, errs = run(t, "inspect", "--json", "--last", "16", l1, l4)
	if code != 0 {
		t.Fatalf("--json: exit %d: %s", code, errs)
	}
	var reports []inspect.Report
	if err := json.Unmarshal([]byte(out), &reports); err != nil {
		t.Fatalf("--json output does not decode: %v\n%s", err, out)
	}
	if len(reports) != 2 || reports[1].Layer != 4 || len(reports[0].PerHead) != 2 || reports[0].Mean.Queries != 32 {
		t.Fatalf("--json: %+v", reports)
	}
	// The table prints the same numbers as the JSON.
	want, err := inspect.File(l4, inspect.Options{Last: 16})
	if err != nil {
		t.Fatal(err)
	}
	if reports[1].Mean != want.Mean {
		t.Fatalf("--json mean %+v, want %+v", reports[1].Mean, want.Mean)
	}

	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"inspect"}, 2, "give at least one capture file"},
		{[]string{"inspect", "--last", "0", l1}, 2, "--last 0: must be > 0"},
		{[]string{"inspect", "no-such-file.safetensors"}, 1, "no-such-file.safetensors"},
	} {
		code, _, errs := run(t, c.args...)
		if code != c.code || !strings.Contains(errs, c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d with %q", c.args, code, errs, c.code, c.msg)
		}
	}
}
