// Package workloads holds the sources of attention problems: readers of
// captured Q/K/V (qkv-capture/1 safetensors) and seeded synthetic
// generators, plus the query plan that says which decode positions are
// evaluated. Each workload turns into attention Groups (package attn): one
// per layer × KV head × sequence.
//
// Adding a workload: one file with its parameter struct (yaml and doc
// tags, defaults in Defaults), a type implementing Workload, and one
// Register call in that file's init.
package workloads

import (
	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/registry"
)

// Workload is one configured source of attention Groups.
type Workload interface {
	// Groups loads or generates every Group of the workload.
	Groups() ([]*attn.Group, error)
}

// Env gives constructors what lies outside their config.
type Env struct {
	// Dir is the directory relative paths resolve against (the YAML file's).
	Dir string
	// Queries, when set, returns the positions (ascending) whose queries
	// are evaluated in a sequence of T positions: a workload may leave the
	// other rows of Q zero (the synthetic generator skips their arithmetic;
	// the rows it does fill are bit-identical). Nil: every row.
	Queries func(T int) []int
}

// Constructor builds a workload from a parameter struct made by its entry's
// Defaults.
type Constructor func(params any, env Env) (Workload, error)

// Spec is a registered workload.
type Spec = registry.Entry[Constructor]

// Registry holds every workload; each workload file registers itself in init.
var Registry = registry.New[Constructor]("workload")

// Register adds a workload to Registry.
func Register(s Spec) { Registry.Register(s) }
