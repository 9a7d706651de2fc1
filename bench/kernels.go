package bench

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/hbench/hbench/gpu"
)

// kernelSpec is one kind of timed kernel or pipeline. Each registers
// itself from its own file (kernel_*.go) with registerKernel: a new
// pipeline is one new file and its registerKernel call.
type kernelSpec struct {
	// name is the value of a bench file's kernels[i].name.
	name string
	// doc is one line for the Kernel.Name documentation.
	doc string
	// plain kernels take no selection, sparsity or budget (dense, noop).
	plain bool
	// selects says the kernel selects its own keys with a budget of sink
	// + local + heavy keys (it takes sink and local).
	selects bool
	// takes lists the optional Kernel fields it accepts besides
	// selection, sparsity, sink, local and label: "bits", "codes",
	// "page", "channels".
	takes []string
	// defaults fills the kernel's own fields (nil: none).
	defaults func(*Kernel)
	// check reports problems with the kernel's own fields through bad
	// (field is appended to "kernels[i]", "" for the kernel itself).
	check func(k Kernel, bad func(field, format string, a ...any))
	// variant is the display name (nil: name[selection]).
	variant func(Kernel) string
	// run times the kernel at one shape and sparsity on the shape's
	// random inputs (sparsity 0 for dense).
	run func(r *runner, sh Shape, k Kernel, sparsity float64, in gpu.DecodeInputs) error
}

var kernelSpecs = map[string]*kernelSpec{}

// registerKernel adds a kernel kind; it panics on a duplicate name.
func registerKernel(s kernelSpec) {
	if _, dup := kernelSpecs[s.name]; dup {
		panic("bench: kernel " + s.name + " registered twice")
	}
	kernelSpecs[s.name] = &s
}

// KernelNames returns the registered kernel names, sorted.
func KernelNames() []string {
	var out []string
	for n := range kernelSpecs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// KernelDocs returns "name: doc" lines for every registered kernel.
func KernelDocs() string {
	var b strings.Builder
	w := 0
	for _, n := range KernelNames() {
		w = max(w, len(n))
	}
	for _, n := range KernelNames() {
		fmt.Fprintf(&b, "  %-*s  %s\n", w, n, kernelSpecs[n].doc)
	}
	return b.String()
}

func (s *kernelSpec) takesField(f string) bool { return slices.Contains(s.takes, f) }
