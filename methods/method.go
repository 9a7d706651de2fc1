package methods

import (
	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/budget"
	"github.com/hbench/hbench/registry"
)

// Method is one configured selection method.
type Method interface {
	// Prepare builds the per-Group state (metadata over keys) and returns a
	// Selector for that Group's decode steps. It may be called concurrently
	// for different Groups.
	Prepare(g *attn.Group, opt Options) (Selector, error)
	// AuxBits returns the auxiliary memory the method keeps, in bits per
	// token per key/value head, for head dimension d and groupSize query
	// heads per key/value head (0 for methods that keep nothing).
	AuxBits(d, groupSize int) float64
}

// Options are the evaluation options every method honours.
type Options struct {
	// Shared selects one key set per KV head, shared by the query heads of
	// its group; otherwise each query head gets its own selection.
	Shared bool
	// Seed seeds any randomness of the method for this Group.
	Seed int64
}

// Step is one decode step: the query at position T sees keys 0..T.
type Step struct {
	T      int
	Budget budget.Budget
}

// Selector selects keys for the decode steps of one Group.
type Selector interface {
	// Select returns, for each query head of the Group (in Group.QHeads
	// order), the kept key positions: ascending, unique, in [0, T], and
	// exactly Budget.Total of them. It may reuse sel's storage. Calls for
	// one Group come with non-decreasing T.
	Select(step Step, sel [][]int32) ([][]int32, error)
}

// Unbudgeted is implemented by methods that ignore the budget and keep
// every visible key (dense attention); every other Selector must return
// exactly Budget.Total keys.
type Unbudgeted interface{ Unbudgeted() }

// ConsecutiveNeeder is implemented by stateful methods (H2O) whose
// Selector must see every decode step: the experiment's query plan must
// then evaluate consecutive positions.
type ConsecutiveNeeder interface{ NeedsConsecutive() bool }

// Env gives constructors access to what lies outside the method config.
type Env struct {
	// Dir is the directory relative paths in the config resolve against.
	Dir string
	// Calibration returns the Groups of a named workload of the experiment,
	// for methods calibrated offline (Double Sparsity). Nil when the
	// experiment has none.
	Calibration func(workload string) ([]*attn.Group, error)
	// Trained returns the path of the weights made by the experiment's
	// training of that name (trained on first use, then cached). Nil when
	// the experiment has no train block.
	Trained func(name string) (string, error)
}

// Constructor builds a method from a parameter struct made by its entry's
// Defaults.
type Constructor func(params any, env Env) (Method, error)

// Spec is a registered method.
type Spec = registry.Entry[Constructor]

// Registry holds every method; each method file registers itself in init.
var Registry = registry.New[Constructor]("method")

// Register adds a method to Registry.
func Register(s Spec) { Registry.Register(s) }
