package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hbench/hbench/gpu"
)

func TestBenchCheck(t *testing.T) {
	code, out, errs := run(t, "bench", "--check", "../experiments/bench-decode.yaml")
	if code != 0 || !strings.Contains(out, "ok: 6 shapes × 5 kernels") {
		t.Fatalf("bench --check: %d %q %q", code, out, errs)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: x\ncontexts: [4096]\nheads: [32]\nkv_heads: [8]\nkernels: [{name: dense}]\nrepeat: 60\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs = run(t, "bench", "--check", bad)
	if code != 1 || !strings.Contains(errs, "bad.yaml:6: field repeat not found") {
		t.Fatalf("bench --check on an unknown key: %d %q", code, errs)
	}
	if code, _, errs := run(t, "bench"); code != 2 || !strings.Contains(errs, "need exactly one bench file") {
		t.Fatalf("bench without file: %d %q", code, errs)
	}
}

// Without a CUDA driver, gpu and bench fail with one clear message; with
// one, gpu prints the device and its copy bandwidth.
func TestGPUCommand(t *testing.T) {
	_, err := gpu.Open(0)
	code, out, errs := run(t, "gpu", "--copy-mib", "64")
	if errors.Is(err, gpu.ErrNoGPU) {
		if code != 1 || !strings.Contains(errs, "no CUDA driver") {
			t.Fatalf("gpu without a driver: %d %q", code, errs)
		}
		code, _, errs = run(t, "bench", "../experiments/bench-decode.yaml")
		if code != 1 || !strings.Contains(errs, "no CUDA driver") {
			t.Fatalf("bench without a driver: %d %q", code, errs)
		}
		return
	}
	if code != 0 || !strings.Contains(out, "device-to-device copy") {
		t.Fatalf("gpu: %d %q %q", code, out, errs)
	}
}
