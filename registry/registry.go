// Package registry is the one plug-in registry style hbench uses for
// methods, workloads and GPU kernels: each plug-in registers a name (its
// YAML key and file name), a one-line description, a function returning its
// parameter struct filled with defaults, and a constructor.
package registry

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
)

// Entry is one registered plug-in; New is its constructor, of a type chosen
// by the registry's owner.
type Entry[F any] struct {
	// Name is the YAML key and registry name.
	Name string
	// Doc is a one-line description.
	Doc string
	// Defaults returns a pointer to a new parameter struct filled with the
	// defaults. Fields carry `yaml` and `doc` tags. If the struct has a
	// Validate() error method, config loading calls it after decoding.
	// Nil means the plug-in takes no parameters.
	Defaults func() any
	New      F
}

// Registry holds the entries of one kind of plug-in.
type Registry[F any] struct {
	kind string
	mu   sync.RWMutex
	m    map[string]Entry[F]
}

// New returns an empty registry; kind ("method", "workload") labels panics
// and errors.
func New[F any](kind string) *Registry[F] {
	return &Registry[F]{kind: kind, m: map[string]Entry[F]{}}
}

// Kind returns the plug-in kind.
func (r *Registry[F]) Kind() string { return r.kind }

// Register adds e; a duplicate name panics (a programming error).
func (r *Registry[F]) Register(e Entry[F]) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.m[e.Name]; dup {
		panic(fmt.Sprintf("registry: duplicate %s %q", r.kind, e.Name))
	}
	if e.Defaults == nil {
		e.Defaults = func() any { return &struct{}{} }
	}
	r.m[e.Name] = e
}

// Lookup returns the entry of that name.
func (r *Registry[F]) Lookup(name string) (Entry[F], bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.m[name]
	return e, ok
}

// All returns every entry sorted by name.
func (r *Registry[F]) All() []Entry[F] {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Entry[F], 0, len(r.m))
	for _, e := range r.m {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Names returns the sorted entry names.
func (r *Registry[F]) Names() []string {
	var n []string
	for _, e := range r.All() {
		n = append(n, e.Name)
	}
	return n
}

// Param describes one parameter, for listings.
type Param struct {
	Name    string
	Type    string
	Default string
	Doc     string
}

// Params lists the yaml-tagged fields of a parameter struct pointer with
// their defaults and doc tags.
func Params(defaults any) []Param {
	v := reflect.ValueOf(defaults)
	for v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil
	}
	var out []Param
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		out = append(out, Param{Name: name, Type: f.Type.String(), Default: fmt.Sprint(v.Field(i).Interface()), Doc: f.Tag.Get("doc")})
	}
	return out
}
