package train

import (
	"errors"
	"fmt"
	"math"

	"github.com/hbench/hbench/workloads"
)

// Config is the training configuration: plain data, decoded strictly from
// YAML (the `train:` block of an experiment or `hbench train --config`).
// Start from Defaults.
type Config struct {
	Bits       int    `yaml:"bits" json:"bits" doc:"hash bits: the output width of both maps"`
	Hidden     []int  `yaml:"hidden" json:"hidden" doc:"hidden layer widths of both maps (empty: a linear map)"`
	Activation string `yaml:"activation" json:"activation" doc:"hidden activation: silu, relu, tanh or identity"`

	TopK  int `yaml:"top_k" json:"top_k" doc:"positives per query: its top-k keys by q·k outside the sink and local windows"`
	Sink  int `yaml:"sink" json:"sink" doc:"leading keys always kept, excluded from the labels (should match the experiment's budget)"`
	Local int `yaml:"local" json:"local" doc:"most recent keys always kept, excluded from the labels (should match the experiment's budget)"`

	Alpha float64 `yaml:"alpha" json:"alpha" doc:"positive weight alpha of the loss (positive weight = alpha + beta·context length)"`
	Beta  float64 `yaml:"beta" json:"beta" doc:"positive weight per key of context"`

	LR        float64 `yaml:"lr" json:"lr" doc:"Adam learning rate"`
	Batch     int     `yaml:"batch" json:"batch" doc:"queries per minibatch"`
	Negatives int     `yaml:"negatives" json:"negatives" doc:"random negative keys shared by a minibatch's queries (besides the other queries' positives)"`
	Epochs    int     `yaml:"epochs" json:"epochs" doc:"maximum passes over the training queries"`
	Patience  int     `yaml:"patience" json:"patience" doc:"stop after this many epochs without a better validation recall (0: never stop early)"`

	Queries int `yaml:"queries" json:"queries" doc:"training query positions sampled per head and sequence"`
	Valid   int `yaml:"valid" json:"valid" doc:"held-out validation query positions per head and sequence (disjoint from the training ones)"`
	From    int `yaml:"from" json:"from" doc:"first query position sampled"`
	To      int `yaml:"to" json:"to" doc:"query positions sampled are < to (0: the sequence length). Note: maps of post-RoPE vectors do not extrapolate to positions far beyond the trained ones; hold out evaluation queries with exclude rather than to"`

	Exclude workloads.QueryPlan `yaml:"exclude" json:"exclude" doc:"query positions never sampled for training or validation: give the evaluation's queries block, so it evaluates held-out positions"`

	ValidSparsity []float64 `yaml:"valid_sparsity" json:"valid_sparsity" doc:"sparsities at which validation recall is measured; early stopping uses their mean top-k recall"`

	Layers []int `yaml:"layers" json:"layers" doc:"train only these layers (default: every layer in the data)"`
	Heads  []int `yaml:"heads" json:"heads" doc:"train only these query heads (default: all)"`

	Seed    uint64 `yaml:"seed" json:"seed" doc:"seed of sampling, initialisation and minibatch order"`
	Workers int    `yaml:"workers" json:"-" doc:"heads trained in parallel (0: the number of CPUs); does not change the result"`
}

// Defaults returns the default configuration: the paper's 3-layer
// 128→128→128→32 SiLU maps, top-32 labels, alpha 20, Adam 1e-3.
func Defaults() Config {
	return Config{
		Bits: 32, Hidden: []int{128, 128}, Activation: "silu",
		TopK: 32, Sink: 4, Local: 32,
		Alpha: 20, Beta: 0,
		LR: 1e-3, Batch: 32, Negatives: 1024, Epochs: 12, Patience: 5,
		Queries: 2048, Valid: 128, From: 1024,
		ValidSparsity: []float64{8, 16},
		Seed:          1,
	}
}

// Validate reports every problem of the configuration, joined.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, a...)...))
	}
	if c.Bits <= 0 || c.Bits > 1024 {
		bad("bits", "must be in 1..1024, got %d", c.Bits)
	}
	for i, h := range c.Hidden {
		if h <= 0 {
			bad(fmt.Sprintf("hidden[%d]", i), "must be > 0, got %d", h)
		}
	}
	switch c.Activation {
	case "silu", "relu", "tanh", "identity":
	default:
		bad("activation", "must be silu, relu, tanh or identity, got %q", c.Activation)
	}
	if c.TopK <= 0 {
		bad("top_k", "must be > 0, got %d", c.TopK)
	}
	if c.Sink < 0 {
		bad("sink", "must be >= 0, got %d", c.Sink)
	}
	if c.Local < 0 {
		bad("local", "must be >= 0, got %d", c.Local)
	}
	if !(c.Alpha > 0) || math.IsInf(c.Alpha, 0) {
		bad("alpha", "must be a finite number > 0, got %g", c.Alpha)
	}
	if !(c.Beta >= 0) || math.IsInf(c.Beta, 0) {
		bad("beta", "must be a finite number >= 0, got %g", c.Beta)
	}
	if !(c.LR > 0) || c.LR > 1 {
		bad("lr", "must be in (0, 1], got %g", c.LR)
	}
	if c.Batch <= 0 {
		bad("batch", "must be > 0, got %d", c.Batch)
	}
	if c.Negatives < 0 {
		bad("negatives", "must be >= 0, got %d", c.Negatives)
	}
	if c.Epochs <= 0 {
		bad("epochs", "must be > 0, got %d", c.Epochs)
	}
	if c.Patience < 0 {
		bad("patience", "must be >= 0, got %d", c.Patience)
	}
	if c.Queries <= 0 {
		bad("queries", "must be > 0, got %d", c.Queries)
	}
	if c.Valid <= 0 {
		bad("valid", "must be > 0, got %d", c.Valid)
	}
	if c.From < 0 {
		bad("from", "must be >= 0, got %d", c.From)
	}
	if c.To < 0 || c.To > 0 && c.To <= c.From {
		bad("to", "must be 0 (the sequence length) or > from (%d), got %d", c.From, c.To)
	}
	if c.Exclude != (workloads.QueryPlan{}) {
		if err := c.Exclude.Validate(); err != nil {
			bad("exclude", "%v", err)
		}
	}
	if len(c.ValidSparsity) == 0 {
		bad("valid_sparsity", "give at least one sparsity")
	}
	for i, s := range c.ValidSparsity {
		if !(s > 1) || math.IsInf(s, 0) {
			bad(fmt.Sprintf("valid_sparsity[%d]", i), "must be a finite number > 1, got %g", s)
		}
	}
	if c.Workers < 0 {
		bad("workers", "must be >= 0, got %d", c.Workers)
	}
	return errors.Join(errs...)
}

// widths returns the layer widths of a map for input dimension dim.
func (c *Config) widths(dim int) []int {
	return append(append([]int{dim}, c.Hidden...), c.Bits)
}
