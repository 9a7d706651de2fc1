// Package config loads experiment YAML files: plain data, decoded strictly.
// Unknown keys are errors, every problem found is reported (joined), and
// each carries the file, line and field path:
//
//	experiments/a.yaml:14: methods[2].quest.page: must be > 0
//
// Method and workload parameters decode into the parameter structs their
// registries provide; a method's grid block expands into named variants.
// Relative paths in parameters resolve against the YAML file's directory.
package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/methods"
	"github.com/hbench/hbench/registry"
	"github.com/hbench/hbench/train"
	"github.com/hbench/hbench/workloads"
)

// Selection granularities.
const (
	PerHead   = "per-head"
	PerKVHead = "per-kv-head"
)

// Experiment is a loaded, validated experiment file.
type Experiment struct {
	// Path is the YAML file; Dir its directory (relative paths resolve here).
	Path, Dir string
	Name      string
	Seed      int64
	Workloads []*Workload
	// Calibration workloads are loaded only for methods that calibrate
	// offline; they are never evaluated.
	Calibration []*Workload
	Queries     workloads.QueryPlan
	// Budgets are the budget points of the sweep, each with sink and local.
	Budgets []Budget
	// Selection is PerHead or PerKVHead.
	Selection string
	Variants  []*Variant
	// Trainings are the named HashAttention trainings of the `train:`
	// block; a method refers to one by name (hashattention: {trained: NAME}).
	Trainings []*Training
	// Device says where quality cells are evaluated: DeviceCPU (the
	// default), DeviceGPU or DeviceAuto (package gpueval); DeviceLine is
	// the line of the device key (0 when absent).
	Device     string
	DeviceLine int
	// Raw is the decoded document, recorded in the manifest.
	Raw any
	// Hash identifies the experiment's content (SHA-256 of the canonical
	// JSON of Raw).
	Hash string
}

// Devices that evaluate quality cells (the top-level device key).
const (
	// DeviceCPU evaluates on the CPU (package methods, float32 data).
	DeviceCPU = "cpu"
	// DeviceGPU evaluates on the GPU (package gpueval: K/V rounded to fp16);
	// a run fails when no GPU driver loads.
	DeviceGPU = "gpu"
	// DeviceAuto is DeviceGPU where a GPU driver loads, else DeviceCPU
	// (said on the progress output).
	DeviceAuto = "auto"
)

// Budget is one budget point with its source line.
type Budget struct {
	budget.Spec
	Line int
}

// Training is one entry of the train block: learn HashAttention maps on a
// workload of the experiment (usually one listed under calibration, so it
// is not also evaluated).
type Training struct {
	Name     string
	Workload string
	Config   train.Config
	Line     int
}

// Workload is one workload entry.
type Workload struct {
	Name   string
	Kind   string // registry name: capture, synthetic, ...
	Params any    // *XParams from the workload registry, decoded
	Line   int
}

// Variant is one method configuration: a method entry, or one point of its
// grid.
type Variant struct {
	// Label is the display name: the entry's label or method name, with
	// the grid point appended ("quest[page=8]").
	Label  string
	Method string
	Params any // decoded parameter struct
	// Grid holds this point's grid values (nil without a grid).
	Grid map[string]any
	// Workloads, when set, restricts the variant to these workloads (e.g.
	// weights learned for one model); by default it runs on every workload.
	Workloads []string
	Line      int
}

// RunsOn reports whether the variant is evaluated on the named workload.
func (v *Variant) RunsOn(workload string) bool {
	if len(v.Workloads) == 0 {
		return true
	}
	for _, w := range v.Workloads {
		if w == workload {
			return true
		}
	}
	return false
}

// ParamsMap returns the variant's parameters as a map (via JSON), for
// records and manifests.
func (v *Variant) ParamsMap() map[string]any { return toMap(v.Params) }

func toMap(p any) map[string]any {
	b, _ := json.Marshal(p)
	m := map[string]any{}
	json.Unmarshal(b, &m)
	if len(m) == 0 {
		return nil
	}
	return m
}

// errList collects problems with positions.
type errList struct {
	file string
	errs []error
}

func (e *errList) add(line int, path, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	if path != "" {
		msg = path + ": " + msg
	}
	e.errs = append(e.errs, fmt.Errorf("%s:%d: %s", e.file, line, msg))
}

func (e *errList) err() error { return errors.Join(e.errs...) }

// Load reads, decodes and validates an experiment file.
func Load(path string) (*Experiment, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, b)
}

// Parse decodes and validates an experiment from YAML bytes; path labels
// errors and anchors relative paths.
func Parse(path string, data []byte) (*Experiment, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: empty file", path)
	}
	root := doc.Content[0]
	el := &errList{file: path}
	if root.Kind != yaml.MappingNode {
		el.add(root.Line, "", "the experiment must be a mapping of keys (name, workloads, methods, ...)")
		return nil, el.err()
	}
	x := &Experiment{Path: path, Dir: filepath.Dir(path), Selection: PerHead, Seed: 1, Device: DeviceCPU}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if _, dup := seen[k.Value]; dup {
			el.add(k.Line, k.Value, "given twice")
		}
		seen[k.Value] = v
		switch k.Value {
		case "name":
			decodeInto(el, v, "name", &x.Name)
		case "seed":
			decodeInto(el, v, "seed", &x.Seed)
		case "workloads":
			x.Workloads = parseWorkloads(el, v, "workloads", x.Dir)
		case "calibration":
			x.Calibration = parseWorkloads(el, v, "calibration", x.Dir)
		case "queries":
			decodeStrict(el, v, "queries", &x.Queries)
			if err := x.Queries.Validate(); err != nil {
				for _, e := range splitJoined(err) {
					el.add(v.Line, "queries", "%s", e)
				}
			}
		case "budget":
			x.Budgets = parseBudget(el, v)
		case "selection":
			decodeInto(el, v, "selection", &x.Selection)
			if x.Selection != PerHead && x.Selection != PerKVHead {
				el.add(v.Line, "selection", "must be %q or %q, got %q", PerHead, PerKVHead, x.Selection)
			}
		case "device":
			decodeInto(el, v, "device", &x.Device)
			x.DeviceLine = v.Line
			if err := CheckDevice(x.Device); err != nil {
				el.add(v.Line, "device", "%v", err)
			}
		case "methods":
			x.Variants = parseMethods(el, v)
		case "train":
			x.Trainings = parseTrain(el, v)
		default:
			el.add(k.Line, k.Value, "unknown key (known: name, seed, workloads, calibration, queries, budget, selection, device, methods, train)")
		}
	}
	for _, req := range []string{"name", "workloads", "queries", "budget", "methods"} {
		if _, ok := seen[req]; !ok {
			el.add(root.Line, req, "missing (required)")
		}
	}
	if x.Name != "" && strings.ContainsAny(x.Name, `/\ `) {
		el.add(seen["name"].Line, "name", "must not contain slashes or spaces (it names the results folder), got %q", x.Name)
	}
	names := map[string]bool{}
	for _, w := range append(append([]*Workload{}, x.Workloads...), x.Calibration...) {
		if names[w.Name] {
			el.add(w.Line, "workloads", "duplicate workload name %q", w.Name)
		}
		names[w.Name] = true
	}
	tnames := map[string]bool{}
	for i, t := range x.Trainings {
		if !names[t.Workload] {
			el.add(t.Line, fmt.Sprintf("train[%d].workload", i), "no workload or calibration workload named %q", t.Workload)
		}
		if tnames[t.Name] {
			el.add(t.Line, fmt.Sprintf("train[%d].name", i), "duplicate training name %q", t.Name)
		}
		tnames[t.Name] = true
	}
	labels := map[string]int{}
	for _, v := range x.Variants {
		for _, w := range v.Workloads {
			if !names[w] {
				el.add(v.Line, "methods."+v.Label+".workloads", "no workload named %q", w)
			}
		}
		if l, dup := labels[v.Label]; dup {
			el.add(v.Line, "methods", "duplicate method label %q (first at line %d): give one of them a label", v.Label, l)
		}
		labels[v.Label] = v.Line
	}
	if err := el.err(); err != nil {
		return nil, err
	}
	var raw any
	yaml.Unmarshal(data, &raw)
	x.Raw = jsonSafe(raw)
	x.Hash = hashRaw(x.Raw)
	return x, nil
}

// hashRaw hashes the canonical JSON of a decoded experiment. A device key
// of "cpu" is left out, so that writing the default down keeps a run's id
// (and resumes it); gpu and auto are part of the hash: a GPU run rounds
// K/V to fp16, so its numbers may differ from the CPU's in the last
// digits, and the two never share a run directory.
func hashRaw(raw any) string {
	if m, ok := raw.(map[string]any); ok && m["device"] == DeviceCPU {
		c := make(map[string]any, len(m))
		for k, v := range m {
			if k != "device" {
				c[k] = v
			}
		}
		raw = c
	}
	canon, _ := json.Marshal(raw)
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:])
}

// CheckDevice reports whether d names a device (cpu, gpu or auto).
func CheckDevice(d string) error {
	switch d {
	case DeviceCPU, DeviceGPU, DeviceAuto:
		return nil
	}
	return fmt.Errorf("must be %q, %q or %q, got %q", DeviceCPU, DeviceGPU, DeviceAuto, d)
}

// SetDevice overrides the file's device key (hbench run --device): the
// experiment, its Raw document and its Hash become those of the file
// with that key written in it.
func (x *Experiment) SetDevice(d string) error {
	if err := CheckDevice(d); err != nil {
		return fmt.Errorf("device: %w", err)
	}
	x.Device = d
	if m, ok := x.Raw.(map[string]any); ok {
		c := make(map[string]any, len(m)+1)
		for k, v := range m {
			c[k] = v
		}
		c["device"] = d
		x.Raw = c
	}
	x.Hash = hashRaw(x.Raw)
	return nil
}

func splitJoined(err error) []string { return strings.Split(err.Error(), "\n") }

// decodeInto decodes a node into dst, reporting type errors at the node.
func decodeInto(el *errList, n *yaml.Node, path string, dst any) {
	if err := n.Decode(dst); err != nil {
		el.add(n.Line, path, "%s", cleanYAMLErr(err))
	}
}

// decodeStrict checks the node's keys against dst's yaml-tagged fields,
// then decodes it.
func decodeStrict(el *errList, n *yaml.Node, path string, dst any) bool {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return true
	}
	if n.Kind != yaml.MappingNode {
		el.add(n.Line, path, "must be a mapping of parameters")
		return false
	}
	known := map[string]bool{}
	var names []string
	for _, p := range registry.Params(dst) {
		known[p.Name] = true
		names = append(names, p.Name)
	}
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Tag == "!!merge" { // YAML merge key (<<: *anchor): check the merged mapping's keys
			v := n.Content[i+1]
			for v.Kind == yaml.AliasNode {
				v = v.Alias
			}
			probe := reflect.New(reflect.TypeOf(dst).Elem()).Interface()
			if !decodeStrict(el, v, path, probe) {
				ok = false
			}
			continue
		}
		if !known[k.Value] {
			hint := "it takes no parameters"
			if len(names) > 0 {
				hint = "known: " + strings.Join(names, ", ")
			}
			el.add(k.Line, path, "unknown parameter %q (%s)", k.Value, hint)
			ok = false
		}
	}
	if !ok {
		return false
	}
	if err := n.Decode(dst); err != nil {
		el.add(n.Line, path, "%s", cleanYAMLErr(err))
		return false
	}
	return true
}

// lineRe matches yaml.v3's own "line N: " prefixes; errors here carry
// the line already.
var lineRe = regexp.MustCompile(`line \d+: `)

func cleanYAMLErr(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "yaml: unmarshal errors:\n")
	s = lineRe.ReplaceAllString(s, "")
	return strings.TrimSpace(s)
}

// validateParams calls p.Validate() when it has one.
func validateParams(el *errList, line int, path string, p any) {
	if v, ok := p.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			for _, e := range splitJoined(err) {
				el.add(line, path, "%s", e)
			}
		}
	}
}

func parseWorkloads(el *errList, n *yaml.Node, path, dir string) []*Workload {
	if n.Kind != yaml.SequenceNode {
		el.add(n.Line, path, "must be a list of workloads")
		return nil
	}
	var out []*Workload
	for i, e := range n.Content {
		p := fmt.Sprintf("%s[%d]", path, i)
		if e.Kind != yaml.MappingNode {
			el.add(e.Line, p, "must be a mapping with a name and one workload kind (%s)", strings.Join(workloads.Registry.Names(), ", "))
			continue
		}
		w := &Workload{Line: e.Line}
		var kindNode *yaml.Node
		for j := 0; j+1 < len(e.Content); j += 2 {
			k, v := e.Content[j], e.Content[j+1]
			if k.Value == "name" {
				decodeInto(el, v, p+".name", &w.Name)
				continue
			}
			if _, ok := workloads.Registry.Lookup(k.Value); !ok {
				el.add(k.Line, p, "unknown workload kind %q (known: %s)", k.Value, strings.Join(workloads.Registry.Names(), ", "))
				continue
			}
			if kindNode != nil {
				el.add(k.Line, p, "has two workload kinds, %q and %q: give one per entry", w.Kind, k.Value)
				continue
			}
			w.Kind, kindNode = k.Value, v
		}
		if w.Name == "" {
			el.add(e.Line, p+".name", "missing (required)")
		}
		if kindNode == nil {
			if w.Name != "" {
				el.add(e.Line, p, "no workload kind given (known: %s)", strings.Join(workloads.Registry.Names(), ", "))
			}
			continue
		}
		spec, _ := workloads.Registry.Lookup(w.Kind)
		w.Params = spec.Defaults()
		kp := p + "." + w.Kind
		if decodeStrict(el, kindNode, kp, w.Params) {
			validateParams(el, kindNode.Line, kp, w.Params)
		}
		out = append(out, w)
	}
	return out
}

func parseTrain(el *errList, n *yaml.Node) []*Training {
	if n.Kind != yaml.SequenceNode {
		el.add(n.Line, "train", "must be a list of trainings {name, workload, config}")
		return nil
	}
	var out []*Training
	for i, e := range n.Content {
		p := fmt.Sprintf("train[%d]", i)
		if e.Kind != yaml.MappingNode {
			el.add(e.Line, p, "must be a mapping {name, workload, config}")
			continue
		}
		t := &Training{Config: train.Defaults(), Line: e.Line}
		for j := 0; j+1 < len(e.Content); j += 2 {
			k, v := e.Content[j], e.Content[j+1]
			switch k.Value {
			case "name":
				decodeInto(el, v, p+".name", &t.Name)
			case "workload":
				decodeInto(el, v, p+".workload", &t.Workload)
			case "config":
				if decodeStrict(el, v, p+".config", &t.Config) {
					validateParams(el, v.Line, p+".config", &t.Config)
				}
			default:
				el.add(k.Line, p, "unknown key %q (known: name, workload, config)", k.Value)
			}
		}
		if t.Name == "" || t.Workload == "" {
			el.add(e.Line, p, "needs a name and a workload")
			continue
		}
		out = append(out, t)
	}
	return out
}

func parseBudget(el *errList, n *yaml.Node) []Budget {
	if n.Kind != yaml.MappingNode {
		el.add(n.Line, "budget", "must be a mapping with sparsity (or tokens), sink and local")
		return nil
	}
	var sink, local int
	var sp, tk *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "sparsity":
			sp = v
		case "tokens":
			tk = v
		case "sink":
			decodeInto(el, v, "budget.sink", &sink)
		case "local":
			decodeInto(el, v, "budget.local", &local)
		default:
			el.add(k.Line, "budget", "unknown key %q (known: sparsity, tokens, sink, local)", k.Value)
		}
	}
	if sp == nil && tk == nil {
		el.add(n.Line, "budget", "give sparsity (a list of ratios > 1) or tokens (a list of key counts)")
	}
	var out []Budget
	items := func(v *yaml.Node) []*yaml.Node {
		if v.Kind == yaml.SequenceNode {
			return v.Content
		}
		return []*yaml.Node{v}
	}
	if sp != nil {
		for i, it := range items(sp) {
			var s float64
			path := fmt.Sprintf("budget.sparsity[%d]", i)
			if err := it.Decode(&s); err != nil {
				el.add(it.Line, path, "must be a number > 1, got %q", it.Value)
				continue
			}
			b := Budget{Spec: budget.Spec{Sparsity: s, Sink: sink, Local: local}, Line: it.Line}
			if err := b.Validate(); err != nil {
				el.add(it.Line, path, "%s", err)
				continue
			}
			out = append(out, b)
		}
	}
	if tk != nil {
		for i, it := range items(tk) {
			var t int
			path := fmt.Sprintf("budget.tokens[%d]", i)
			if err := it.Decode(&t); err != nil || t <= 0 {
				el.add(it.Line, path, "must be a whole number > 0, got %q", it.Value)
				continue
			}
			b := Budget{Spec: budget.Spec{Tokens: t, Sink: sink, Local: local}, Line: it.Line}
			if err := b.Validate(); err != nil {
				el.add(it.Line, path, "%s", err)
				continue
			}
			out = append(out, b)
		}
	}
	return out
}

func parseMethods(el *errList, n *yaml.Node) []*Variant {
	if n.Kind != yaml.SequenceNode {
		el.add(n.Line, "methods", "must be a list of methods")
		return nil
	}
	known := strings.Join(methods.Registry.Names(), ", ")
	var out []*Variant
	for i, e := range n.Content {
		p := fmt.Sprintf("methods[%d]", i)
		var name, label string
		var only []string
		var params, grid *yaml.Node
		switch e.Kind {
		case yaml.ScalarNode:
			name = e.Value
		case yaml.MappingNode:
			for j := 0; j+1 < len(e.Content); j += 2 {
				k, v := e.Content[j], e.Content[j+1]
				switch k.Value {
				case "label":
					decodeInto(el, v, p+".label", &label)
				case "grid":
					grid = v
				case "workloads":
					decodeInto(el, v, p+".workloads", &only)
				default:
					if name != "" {
						el.add(k.Line, p, "has two methods, %q and %q: give one per entry (or misspelled label/grid/workloads?)", name, k.Value)
						continue
					}
					name, params = k.Value, v
				}
			}
		default:
			el.add(e.Line, p, "must be a method name or a mapping {METHOD: {params}, label: ..., grid: ..., workloads: [...]}")
			continue
		}
		spec, ok := methods.Registry.Lookup(name)
		if !ok {
			el.add(e.Line, p, "unknown method %q (known: %s)", name, known)
			continue
		}
		mp := p + "." + name
		base := spec.Defaults()
		if params != nil && !decodeStrict(el, params, mp, base) {
			continue
		}
		if label == "" {
			label = name
		}
		points := expandGrid(el, grid, p+".grid", base)
		if points == nil { // no grid
			validateParams(el, e.Line, mp, base)
			out = append(out, &Variant{Label: label, Method: name, Params: base, Workloads: only, Line: e.Line})
			continue
		}
		for _, pt := range points {
			v := spec.Defaults()
			if params != nil {
				params.Decode(v)
			}
			var parts []string
			okPoint := true
			for _, g := range pt {
				if err := g.node.Decode(fieldByYAML(v, g.key)); err != nil {
					el.add(g.node.Line, p+".grid."+g.key, "%s", cleanYAMLErr(err))
					okPoint = false
				}
				parts = append(parts, g.key+"="+g.node.Value)
			}
			if !okPoint {
				continue
			}
			validateParams(el, e.Line, mp+"["+strings.Join(parts, ",")+"]", v)
			gm := map[string]any{}
			for _, g := range pt {
				var val any
				g.node.Decode(&val)
				gm[g.key] = val
			}
			out = append(out, &Variant{Label: label + "[" + strings.Join(parts, ",") + "]", Method: name, Params: v, Grid: gm, Workloads: only, Line: e.Line})
		}
	}
	return out
}

type gridValue struct {
	key  string
	node *yaml.Node
}

// expandGrid returns the cartesian product of the grid's value lists, keys
// in file order; nil when there is no grid.
func expandGrid(el *errList, g *yaml.Node, path string, params any) [][]gridValue {
	if g == nil {
		return nil
	}
	if g.Kind != yaml.MappingNode || len(g.Content) == 0 {
		el.add(g.Line, path, "must map parameter names to lists of values")
		return nil
	}
	points := [][]gridValue{{}}
	for i := 0; i+1 < len(g.Content); i += 2 {
		k, v := g.Content[i], g.Content[i+1]
		if fieldByYAML(params, k.Value) == nil {
			var names []string
			for _, p := range registry.Params(params) {
				names = append(names, p.Name)
			}
			el.add(k.Line, path, "unknown parameter %q (known: %s)", k.Value, strings.Join(names, ", "))
			return nil
		}
		if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
			el.add(v.Line, path+"."+k.Value, "must be a non-empty list of values")
			return nil
		}
		var next [][]gridValue
		for _, pt := range points {
			for _, val := range v.Content {
				np := append(append([]gridValue{}, pt...), gridValue{k.Value, val})
				next = append(next, np)
			}
		}
		points = next
	}
	return points
}

// fieldByYAML returns a pointer to the field of struct pointer p whose yaml
// tag is name, or nil.
func fieldByYAML(p any, name string) any {
	v := reflect.ValueOf(p).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if tag == name && t.Field(i).IsExported() {
			return v.Field(i).Addr().Interface()
		}
	}
	return nil
}

// jsonSafe converts YAML-decoded maps with interface keys into JSON-able
// maps with sorted string keys.
func jsonSafe(x any) any {
	switch v := x.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range v {
			out[k] = jsonSafe(e)
		}
		return out
	case map[any]any:
		out := map[string]any{}
		for k, e := range v {
			out[fmt.Sprint(k)] = jsonSafe(e)
		}
		return out
	case []any:
		for i := range v {
			v[i] = jsonSafe(v[i])
		}
		return v
	}
	return x
}

// Summary returns a short human description of the sweep.
func (x *Experiment) Summary() string {
	var b bytes.Buffer
	var wl, vs []string
	for _, w := range x.Workloads {
		wl = append(wl, w.Name+" ("+w.Kind+")")
	}
	for _, v := range x.Variants {
		vs = append(vs, v.Label)
	}
	sort.Strings(wl)
	fmt.Fprintf(&b, "experiment %s: %d workloads [%s], %d method variants [%s], %d budgets, selection %s",
		x.Name, len(x.Workloads), strings.Join(wl, ", "), len(x.Variants), strings.Join(vs, ", "), len(x.Budgets), x.Selection)
	return b.String()
}

// Errorf returns an error positioned at a line of the experiment file.
func (x *Experiment) Errorf(line int, path, format string, a ...any) error {
	return fmt.Errorf("%s:%d: %s: %w", x.Path, line, path, fmt.Errorf(format, a...))
}
