// Package resultfmt defines the files every hbench run writes, and reads
// them back: manifest.json (what ran, where, from which config),
// cells.jsonl (one raw record per finished cell, appended as cells finish),
// and summary.csv (one row per cell, for pandas). Reports and comparisons
// are rendered from these files alone.
//
// Writes are crash-safe: a cell is appended as one line in one write, a
// torn last line is dropped on reading, and whole files are replaced by
// write-to-temporary-then-rename.
package resultfmt

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// File names inside a run directory.
const (
	ManifestFile = "manifest.json"
	CellsFile    = "cells.jsonl"
	SummaryFile  = "summary.csv"
)

// Cell kinds.
const (
	KindQuality = "quality"
	KindLatency = "latency"
)

// Quality metric names (keys of Cell.Metrics).
const (
	MetricRecall      = "recall"       // top-k recall against the oracle at the same budget
	MetricMassRecall  = "mass_recall"  // true softmax mass on the selected keys
	MetricOutputError = "output_error" // ‖o_sparse − o_dense‖ / ‖o_dense‖
	MetricDensity     = "density"      // selected keys / visible keys
)

// QualityMetrics lists the quality metrics in report order.
var QualityMetrics = []string{MetricRecall, MetricMassRecall, MetricOutputError, MetricDensity}

// Stat summarises one metric over the samples of a cell.
type Stat struct {
	Mean   float64 `json:"mean"`
	Median float64 `json:"median"`
	P10    float64 `json:"p10"`
	P90    float64 `json:"p90"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Count  int     `json:"count"`
}

// Cell is one finished unit of a run. For quality cells: one workload ×
// layer × method variant × budget, aggregated over query positions and
// query heads. For latency cells: one kernel or pipeline at one shape.
type Cell struct {
	// ID identifies the cell within its experiment; a resumed run skips
	// cells whose ID is already in cells.jsonl.
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// Workload is the workload name from the config.
	Workload string `json:"workload,omitempty"`
	// Layer is the model layer (0 for synthetic data).
	Layer int `json:"layer"`
	// Method is the registry name; Variant the display name of the grid
	// point (e.g. "quest[page=16]"), equal to Method without a grid.
	Method  string         `json:"method"`
	Variant string         `json:"variant"`
	Params  map[string]any `json:"params,omitempty"`
	// Sparsity is the budget's sparsity ratio (0 when the budget is a token
	// count, given in Tokens).
	Sparsity float64 `json:"sparsity,omitempty"`
	Tokens   int     `json:"tokens,omitempty"`
	Sink     int     `json:"sink"`
	Local    int     `json:"local"`
	// Shared is true when one selection serves all query heads of a KV head.
	Shared bool `json:"shared"`
	// AuxBits is the method's auxiliary memory in bits per token per KV head.
	AuxBits float64 `json:"aux_bits"`
	// Samples is the number of (query position, query head) pairs measured.
	Samples int             `json:"samples,omitempty"`
	Metrics map[string]Stat `json:"metrics,omitempty"`
	Latency *Latency        `json:"latency,omitempty"`
	// Seconds is the wall time spent computing the cell.
	Seconds float64 `json:"seconds"`
}

// Latency is a GPU timing of one kernel or pipeline at one shape.
type Latency struct {
	Stage   string `json:"stage"` // e.g. "dense", "sparse", "score", "select", "step"
	Context int    `json:"context"`
	Batch   int    `json:"batch"`
	Heads   int    `json:"heads"`
	KVHeads int    `json:"kv_heads"`
	HeadDim int    `json:"head_dim"`
	DType   string `json:"dtype"`
	Cache   string `json:"cache"` // "warm", "cold" (L2 flushed by a write before each launch) or "cold-clean" (by a read)
	Graph   bool   `json:"graph"` // launched through a CUDA graph
	// SamplesUS holds every timed repeat, in microseconds.
	SamplesUS []float64 `json:"samples_us"`
	MedianUS  float64   `json:"median_us"`
	P25US     float64   `json:"p25_us"`
	P75US     float64   `json:"p75_us"`
	// Bytes is the minimum device-memory traffic of one call.
	Bytes       int64   `json:"bytes"`
	GBps        float64 `json:"gbps"`
	CeilingGBps float64 `json:"ceiling_gbps"`
	FracCeiling float64 `json:"frac_ceiling"`
}

// Manifest records what a run was and where it ran.
type Manifest struct {
	Experiment string    `json:"experiment"`
	RunID      string    `json:"run_id"`
	ConfigPath string    `json:"config_path"`
	ConfigHash string    `json:"config_hash"`
	Config     any       `json:"config"`
	Commit     string    `json:"commit"`
	GoVersion  string    `json:"go_version"`
	Host       Host      `json:"host"`
	GPU        *GPU      `json:"gpu,omitempty"`
	Started    time.Time `json:"started"`
	Finished   time.Time `json:"finished,omitzero"`
	Cells      int       `json:"cells"`
}

// Host describes the machine a run used.
type Host struct {
	Hostname string `json:"hostname"`
	OS       string `json:"os"`
	Arch     string `json:"arch"`
	CPUs     int    `json:"cpus"`
	Workers  int    `json:"workers"`
}

// GPU describes the device of a latency run.
type GPU struct {
	Name              string  `json:"name"`
	ComputeCapability string  `json:"compute_capability"`
	Driver            string  `json:"driver"`
	NVRTC             string  `json:"nvrtc"`
	SMs               int     `json:"sms"`
	L2Bytes           int64   `json:"l2_bytes"`
	MemoryBytes       int64   `json:"memory_bytes"`
	CopyGBps          float64 `json:"copy_gbps"`
}

// WriteFileAtomic replaces path with data: it writes a temporary file in the
// same directory, syncs it and renames it over path.
func WriteFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, path)
	}
	if err != nil {
		os.Remove(name)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// WriteManifest writes dir/manifest.json atomically.
func WriteManifest(dir string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, ManifestFile), append(b, '\n'))
}

// ReadManifest reads dir/manifest.json.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ManifestFile), err)
	}
	return &m, nil
}

// CellWriter appends cells to dir/cells.jsonl, one line per write.
type CellWriter struct{ f *os.File }

// OpenCellWriter opens dir/cells.jsonl for appending, first dropping a torn
// last line left by an interrupted run.
func OpenCellWriter(dir string) (*CellWriter, error) {
	path := filepath.Join(dir, CellsFile)
	if _, err := ReadCells(dir); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &CellWriter{f: f}, nil
}

// Append writes one cell as one line and syncs it to disk.
func (w *CellWriter) Append(c *Cell) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if _, err := w.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("append cell %s: %w", c.ID, err)
	}
	return w.f.Sync()
}

// Close closes the file.
func (w *CellWriter) Close() error { return w.f.Close() }

// ReadCells reads dir/cells.jsonl. A last line cut short by an interrupted
// write is dropped, and the file is rewritten without it; a bad line
// anywhere else is an error naming the line. When the same ID appears twice
// the later record wins.
func ReadCells(dir string) ([]*Cell, error) {
	path := filepath.Join(dir, CellsFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cells []*Cell
	index := map[string]int{}
	good := 0 // bytes of complete, valid lines
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	line := 0
	for sc.Scan() {
		line++
		raw := sc.Bytes()
		end := good + len(raw) + 1
		complete := end <= len(b) && b[end-1] == '\n'
		var c Cell
		if err := json.Unmarshal(raw, &c); err != nil || !complete {
			if end >= len(b) { // torn tail
				break
			}
			return nil, fmt.Errorf("%s:%d: bad cell record: %v", path, line, err)
		}
		good = end
		if i, ok := index[c.ID]; ok {
			cells[i] = &c
			continue
		}
		index[c.ID] = len(cells)
		cells = append(cells, &c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if good < len(b) {
		if err := WriteFileAtomic(path, b[:good]); err != nil {
			return nil, err
		}
	}
	return cells, nil
}
