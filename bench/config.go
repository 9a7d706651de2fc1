package bench

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/gpu"
)

// Config is a bench file.
type Config struct {
	Name    string `yaml:"name" doc:"experiment name: results go to <root>/<name>/<run-id>/"`
	Seed    uint64 `yaml:"seed" doc:"seed of the random inputs"`
	Warmup  int    `yaml:"warmup" doc:"untimed calls before timing (default 10)"`
	Repeats int    `yaml:"repeats" doc:"timed calls per cell, at least 50 (default 60)"`
	// Sweep axes: every combination is a shape.
	Contexts []int    `yaml:"contexts" doc:"context lengths N (keys per KV head)"`
	Batch    []int    `yaml:"batch" doc:"batch sizes (default [1])"`
	Heads    []int    `yaml:"heads" doc:"query heads"`
	KVHeads  []int    `yaml:"kv_heads" doc:"key/value heads (each must divide every heads value)"`
	HeadDim  []int    `yaml:"head_dim" doc:"head dimensions: 64 or 128 (default [128])"`
	DType    []string `yaml:"dtype" doc:"K/V element types: bf16 or fp16 (default [bf16])"`
	Cache    []string `yaml:"cache" doc:"cold (L2 flushed by writing 2x its size before each call: it is left full of dirty lines), cold-clean (flushed by reading 2x its size: clean lines, no write-backs in the timed call) and/or warm (default [cold, warm])"`
	Graph    []bool   `yaml:"graph" doc:"launch through a CUDA graph: false and/or true (default [false])"`
	Kernels  []Kernel `yaml:"kernels" doc:"what to time at each shape"`
}

// Kernel is one timed kernel or pipeline.
type Kernel struct {
	// Name is a registered kernel kind (KernelNames; "hbench bench --help" lists them).
	Name string `yaml:"name" doc:"kernel kind: dense (split-K decode), sparse (gather decode over index lists), or a method's whole decode step (hash, oracle, quest, streaming, ...; hbench bench --help lists them)"`
	// Selection is per-kv-head or per-head (sparse and hash only).
	Selection string `yaml:"selection" doc:"per-kv-head (one list per KV head, shared by its query heads) or per-head (default per-kv-head)"`
	// Sparsity ratios: k = N / sparsity keys per list (sparse and hash).
	Sparsity []float64 `yaml:"sparsity" doc:"sparsity ratios, k = N/sparsity (sparse and hash; default [32])"`
	// Bits is the hash code width (hash only).
	Bits int `yaml:"bits" doc:"code bits, a multiple of 32 (hash: default 32; lsh: default 128)"`
	// Codes is the key-code granularity (hash only).
	Codes string `yaml:"codes" doc:"key codes per-head (one per query head, as the authors and methods/hashattention do) or per-kv-head (one per KV head); hash only, default per-head"`
	// Sink and Local are the always-kept windows of the budget.
	Sink  int `yaml:"sink" doc:"leading keys always kept (hash, oracle, quest, streaming)"`
	Local int `yaml:"local" doc:"most recent keys always kept (hash, oracle, quest, streaming)"`
	// Page is Quest's page size.
	Page int `yaml:"page" doc:"Quest page size in tokens (quest only; default 16)"`
	// Channels is the number of label channels (Double Sparsity).
	Channels int `yaml:"channels" doc:"label channels r per KV head (doublesparsity only; default head_dim/8)"`
	// Label names the kernel in results (default: name and selection).
	Label string `yaml:"label" doc:"display name in results (default: name[selection])"`
}

// Cache states a call is timed in.
const (
	// CacheCold flushes L2 before each call by writing a buffer of twice
	// its size: the call starts with L2 full of dirty lines, whose
	// write-backs it pays for as it evicts them.
	CacheCold = "cold"
	// CacheColdClean flushes L2 by reading such a buffer: the call starts
	// with none of its data in L2 and nothing to write back (as after a
	// model's weight-streaming kernels).
	CacheColdClean = "cold-clean"
	// CacheWarm times back-to-back calls.
	CacheWarm = "warm"
)

// Kernel names.
const (
	KernelDense  = "dense"
	KernelSparse = "sparse"
	// KernelRows reads the sparse kernel's K/V rows and nothing else.
	KernelRows = "rows"
	KernelHash = "hash"
	// KernelOracle is the oracle step (exact scores, radix top-k).
	KernelOracle = "oracle"
	// KernelQuest is the Quest step (page bounds, page top-k).
	KernelQuest = "quest"
	// KernelStreaming is the StreamingLLM step (sink + recent window).
	KernelStreaming = "streaming"
)

// selects says whether a kernel selects its own keys with a budget of
// sink + local + heavy keys.
func (k Kernel) selects() bool {
	spec := kernelSpecs[k.Name]
	return spec != nil && spec.selects
}

// Variant returns the kernel's display name.
func (k Kernel) Variant() string {
	if k.Label != "" {
		return k.Label
	}
	if spec := kernelSpecs[k.Name]; spec != nil && spec.variant != nil {
		return spec.variant(k)
	}
	if spec := kernelSpecs[k.Name]; spec != nil && spec.plain {
		return k.Name
	}
	return k.Name + "[" + k.Selection + "]"
}

// Sel returns the kernel's gpu.Selection.
func (k Kernel) Sel() gpu.Selection {
	switch {
	case kernelSpecs[k.Name] != nil && kernelSpecs[k.Name].plain:
		return gpu.Dense
	case k.Selection == "per-head":
		return gpu.PerHead
	}
	return gpu.PerKVHead
}

var lineRE = regexp.MustCompile(`line (\d+): `)

// Load reads, strictly decodes, defaults and validates a bench file.
func Load(path string) (*Config, []byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	c, err := Parse(path, b)
	return c, b, err
}

// Parse decodes bench YAML data (path names it in errors).
func Parse(path string, data []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		// yaml.v3 reports "line N: ..." per problem; rewrite as path:N: ...
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = strings.TrimPrefix(msg, "unmarshal errors:\n")
		var errs []error
		for _, l := range strings.Split(msg, "\n") {
			l = strings.TrimSpace(l)
			if l == "" {
				continue
			}
			if m := lineRE.FindStringSubmatchIndex(l); m != nil {
				l = path + ":" + l[m[2]:m[3]] + ": " + l[m[1]:]
			} else {
				l = path + ": " + l
			}
			errs = append(errs, errors.New(l))
		}
		return nil, errors.Join(errs...)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.defaults()
	if err := c.validate(path, &root); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) defaults() {
	if c.Warmup == 0 {
		c.Warmup = 10
	}
	if c.Repeats == 0 {
		c.Repeats = 60
	}
	if len(c.Batch) == 0 {
		c.Batch = []int{1}
	}
	if len(c.HeadDim) == 0 {
		c.HeadDim = []int{128}
	}
	if len(c.DType) == 0 {
		c.DType = []string{gpu.BF16}
	}
	if len(c.Cache) == 0 {
		c.Cache = []string{CacheCold, CacheWarm}
	}
	if len(c.Graph) == 0 {
		c.Graph = []bool{false}
	}
	for i := range c.Kernels {
		k := &c.Kernels[i]
		if spec := kernelSpecs[k.Name]; spec != nil && !spec.plain {
			if k.Selection == "" {
				k.Selection = "per-kv-head"
			}
			if len(k.Sparsity) == 0 {
				k.Sparsity = []float64{32}
			}
		}
		if spec := kernelSpecs[k.Name]; spec != nil && spec.defaults != nil {
			spec.defaults(k)
		}
	}
}

// lineOf returns the line of the value at path (mapping keys and sequence
// indexes) in the document, or of the nearest existing ancestor.
func lineOf(root *yaml.Node, path ...any) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, p := range path {
		var next *yaml.Node
		switch p := p.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == p {
						next = n.Content[i+1]
						line = n.Content[i].Line
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && p < len(n.Content) {
				next = n.Content[p]
				line = next.Line
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}

func (c *Config) validate(path string, root *yaml.Node) error {
	var errs []error
	bad := func(field string, at []any, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s:%d: %s: %s", path, lineOf(root, at...), field, fmt.Sprintf(format, a...)))
	}
	if c.Name == "" || strings.ContainsAny(c.Name, `/\ `) {
		bad("name", []any{"name"}, "must be a non-empty name without slashes or spaces")
	}
	if c.Warmup < 0 {
		bad("warmup", []any{"warmup"}, "must be >= 0")
	}
	if c.Repeats < 50 {
		bad("repeats", []any{"repeats"}, "must be >= 50 (median and IQR need them), got %d", c.Repeats)
	}
	posInts := func(name string, xs []int, required bool) {
		if required && len(xs) == 0 {
			bad(name, []any{name}, "must list at least one value")
		}
		for i, x := range xs {
			if x < 1 {
				bad(name+"["+strconv.Itoa(i)+"]", []any{name, i}, "must be >= 1, got %d", x)
			}
		}
	}
	posInts("contexts", c.Contexts, true)
	posInts("batch", c.Batch, true)
	posInts("heads", c.Heads, true)
	posInts("kv_heads", c.KVHeads, true)
	for i, d := range c.HeadDim {
		if d != 64 && d != 128 {
			bad("head_dim["+strconv.Itoa(i)+"]", []any{"head_dim", i}, "must be 64 or 128, got %d", d)
		}
	}
	for i, d := range c.DType {
		if d != gpu.BF16 && d != gpu.FP16 {
			bad("dtype["+strconv.Itoa(i)+"]", []any{"dtype", i}, "must be bf16 or fp16, got %q", d)
		}
	}
	for i, x := range c.Cache {
		if x != CacheCold && x != CacheColdClean && x != CacheWarm {
			bad("cache["+strconv.Itoa(i)+"]", []any{"cache", i}, "must be cold, cold-clean or warm, got %q", x)
		}
	}
	for i, h := range c.Heads {
		for j, kv := range c.KVHeads {
			if kv >= 1 && h >= 1 && (h%kv != 0 || h/kv > 8) {
				bad("kv_heads["+strconv.Itoa(j)+"]", []any{"kv_heads", j}, "%d KV heads do not divide heads[%d] = %d into groups of at most 8", kv, i, h)
			}
		}
	}
	if len(c.Kernels) == 0 {
		bad("kernels", []any{"kernels"}, "must list at least one kernel")
	}
	for i, k := range c.Kernels {
		f := "kernels[" + strconv.Itoa(i) + "]"
		at := func(key string) []any { return []any{"kernels", i, key} }
		spec := kernelSpecs[k.Name]
		if spec == nil {
			bad(f+".name", at("name"), "unknown kernel %q (known: %s)", k.Name, strings.Join(KernelNames(), ", "))
			continue
		}
		if spec.plain {
			if k.Selection != "" || len(k.Sparsity) > 0 || k.Bits != 0 || k.Codes != "" || k.Sink != 0 || k.Local != 0 || k.Page != 0 || k.Channels != 0 {
				bad(f, []any{"kernels", i}, "%s takes no selection, sparsity, bits, codes, sink, local, page or channels", k.Name)
			}
			continue
		}
		if k.Selection != "per-kv-head" && k.Selection != "per-head" {
			bad(f+".selection", at("selection"), "must be per-kv-head or per-head, got %q", k.Selection)
		}
		for j, s := range k.Sparsity {
			if !(s > 1) || math.IsInf(s, 0) {
				bad(f+".sparsity["+strconv.Itoa(j)+"]", []any{"kernels", i, "sparsity", j}, "must be a finite number > 1, got %g", s)
			}
		}
		if !spec.selects && (k.Sink != 0 || k.Local != 0) {
			bad(f, []any{"kernels", i}, "%s takes no sink and local", k.Name)
		}
		for _, fld := range []struct {
			name string
			set  bool
		}{{"bits", k.Bits != 0}, {"codes", k.Codes != ""}, {"page", k.Page != 0}, {"channels", k.Channels != 0}} {
			if fld.set && !spec.takesField(fld.name) {
				var who []string
				for _, n := range KernelNames() {
					if kernelSpecs[n].takesField(fld.name) {
						who = append(who, n)
					}
				}
				bad(f+"."+fld.name, at(fld.name), "only %s take %s", strings.Join(who, ", "), fld.name)
			}
		}
		if spec.check != nil {
			spec.check(k, func(field, format string, a ...any) {
				name, where := f, []any{"kernels", i}
				if field != "" {
					name, where = f+"."+field, at(field)
				}
				bad(name, where, format, a...)
			})
		}
		if spec.selects {
			if k.Sink < 0 || k.Local < 0 {
				bad(f, []any{"kernels", i}, "sink and local must be >= 0")
			}
			for _, sp := range k.Sparsity {
				for _, n := range c.Contexts {
					spec := budget.Spec{Sparsity: sp, Sink: k.Sink, Local: k.Local}
					if sp > 1 && n > 0 {
						if err := spec.CheckFits(n); err != nil {
							bad(f, []any{"kernels", i}, "context %d, sparsity %g: %v", n, sp, err)
						}
					}
				}
			}
		}
	}
	return errors.Join(errs...)
}
