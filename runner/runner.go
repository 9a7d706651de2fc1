// Package runner executes an experiment: it builds the workloads and
// method variants of a loaded config, expands the sweep into cells
// (workload × layer × method variant × budget), evaluates the cells in
// parallel over CPU cores, and writes the run files of package resultfmt.
//
// Runs are resumable: the run directory is named by the experiment's
// content hash unless told otherwise, each finished cell is appended to
// cells.jsonl as it completes, and a rerun skips every cell already there.
// An interrupted run therefore loses only the cells in flight.
package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/config"
	"github.com/hbench/hbench/gpu"
	"github.com/hbench/hbench/gpueval"
	"github.com/hbench/hbench/methods"
	"github.com/hbench/hbench/metrics"
	"github.com/hbench/hbench/resultfmt"
	"github.com/hbench/hbench/train"
	"github.com/hbench/hbench/workloads"
)

// Options control a run.
type Options struct {
	// Root is the results root; the run goes to Root/<experiment>/<RunID>.
	Root string
	// RunID names the run directory; empty means the first 12 hex digits
	// of the experiment hash, so rerunning the same file resumes it.
	RunID string
	// Workers is the number of cells evaluated at once (0: GOMAXPROCS).
	Workers int
	// Fresh discards finished cells of an earlier run in the same directory.
	Fresh bool
	// Progress receives the progress bar (nil: none).
	Progress io.Writer
	// MaxCells stops after this many new cells (0: no limit); for tests of
	// resumption.
	MaxCells int
	// Log receives notes about the device (methods left on the CPU in a
	// GPU run, device: auto finding no GPU); nil: none.
	Log io.Writer
}

// Result is what a run produced.
type Result struct {
	Dir     string
	Cells   []*resultfmt.Cell // every cell of the experiment, in sweep order
	Skipped int               // cells found finished and not recomputed
}

// cell is one unit of work.
type cell struct {
	id       string
	workload *config.Workload
	layer    int
	groups   []*attn.Group
	variant  *config.Variant
	method   methods.Method
	budget   config.Budget
}

// Load builds the workloads of an experiment, checking that every budget
// fits every workload's evaluated positions. It returns the groups per
// workload name.
func Load(x *config.Experiment) (map[string][]*attn.Group, error) {
	return loadGroups(x, nil)
}

// loadGroups is Load; a workload for which lazy returns true may compute only
// the queries of the plan's positions (workloads.Env.Queries).
func loadGroups(x *config.Experiment, lazy func(*config.Workload) bool) (map[string][]*attn.Group, error) {
	out := map[string][]*attn.Group{}
	for i, w := range x.Workloads {
		env := workloads.Env{Dir: x.Dir}
		if lazy != nil && lazy(w) {
			env.Queries = x.Queries.Positions
		}
		groups, err := loadWorkload(x, w, fmt.Sprintf("workloads[%d]", i), env)
		if err != nil {
			return nil, err
		}
		if len(x.Queries.Positions(groups[0].T())) == 0 {
			return nil, x.Errorf(w.Line, fmt.Sprintf("workloads[%d]", i), "the query plan selects no position of its %d-token sequences", groups[0].T())
		}
		for _, g := range groups {
			pos := x.Queries.Positions(g.T())
			if len(pos) == 0 {
				continue
			}
			for bi, b := range x.Budgets {
				if err := b.CheckFits(pos[0] + 1); err != nil {
					field := fmt.Sprintf("budget.sparsity[%d]", bi)
					if b.Tokens > 0 {
						field = "budget.tokens"
					}
					return nil, x.Errorf(b.Line, field, "workload %q, first evaluated position %d: %v", w.Name, pos[0], err)
				}
			}
		}
		out[w.Name] = groups
	}
	return out, nil
}

func loadWorkload(x *config.Experiment, w *config.Workload, path string, env workloads.Env) ([]*attn.Group, error) {
	spec, _ := workloads.Registry.Lookup(w.Kind)
	wl, err := spec.New(w.Params, env)
	if err != nil {
		return nil, x.Errorf(w.Line, path+"."+w.Kind, "%v", err)
	}
	groups, err := wl.Groups()
	if err != nil {
		return nil, x.Errorf(w.Line, path+"."+w.Kind, "%v", err)
	}
	if len(groups) == 0 {
		return nil, x.Errorf(w.Line, path+"."+w.Kind, "workload %q has no attention groups", w.Name)
	}
	for _, g := range groups {
		g.Workload = w.Name
		if err := g.Validate(); err != nil {
			return nil, x.Errorf(w.Line, path+"."+w.Kind, "%v", err)
		}
	}
	return groups, nil
}

// stepQueryOnly lists the methods whose Prepare and Select read no query
// but the evaluated step's: on workloads evaluated by these alone, only
// the query plan's queries are generated. Note: h2o reads every past
// query (accumulated attention) and doublesparsity with calibration: self
// every query of the group, so they need them all (readsStepQueryOnly).
var stepQueryOnly = map[string]bool{
	"dense": true, "oracle": true, "streaming": true, "random": true,
	"quest": true, "lsh": true, "hashattention": true, "doublesparsity": true,
}

// readsStepQueryOnly reports whether variant v reads only the evaluated
// step's query of the workloads it runs on (stepQueryOnly); doublesparsity
// does unless it calibrates on them (calibration: self).
func readsStepQueryOnly(v *config.Variant) bool {
	if p, ok := v.Params.(*methods.DoubleSparsityParams); ok && slices.Contains(p.Calibration, "self") {
		return false
	}
	return stepQueryOnly[v.Method]
}

// ErrNotTrained is what methods get from Env.Trained when BuildMethods is
// told not to train (hbench validate).
var ErrNotTrained = errors.New("not trained yet (hbench run trains it)")

// BuildMethods constructs every method variant. Trainings the methods
// refer to run here (or come from the cache under root/.cache), with their
// progress on progress; with noTrain they fail with ErrNotTrained instead.
func BuildMethods(ctx context.Context, x *config.Experiment, root string, progress io.Writer, noTrain bool) ([]methods.Method, error) {
	var (
		mu    sync.Mutex
		calib = map[string][]*attn.Group{}
	)
	load := func(name string, wls []*config.Workload, block string) ([]*attn.Group, error) {
		if g, ok := calib[name]; ok {
			return g, nil
		}
		for i, w := range wls {
			if w.Name == name {
				g, err := loadWorkload(x, w, fmt.Sprintf("%s[%d]", block, i), workloads.Env{Dir: x.Dir})
				if err != nil {
					return nil, err
				}
				calib[name] = g
				return g, nil
			}
		}
		return nil, nil
	}
	env := methods.Env{Dir: x.Dir}
	env.Calibration = func(name string) ([]*attn.Group, error) {
		mu.Lock()
		defer mu.Unlock()
		g, err := load(name, x.Calibration, "calibration")
		if g != nil || err != nil {
			return g, err
		}
		var names []string
		for _, w := range x.Calibration {
			names = append(names, w.Name)
		}
		return nil, fmt.Errorf("no calibration workload %q (the experiment's calibration block has: %s)", name, strings.Join(names, ", "))
	}
	env.Trained = func(name string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		for i, t := range x.Trainings {
			if t.Name != name {
				continue
			}
			g, err := load(t.Workload, x.Calibration, "calibration")
			if g == nil && err == nil {
				g, err = load(t.Workload, x.Workloads, "workloads")
			}
			if err != nil {
				return "", err
			}
			// Absolute: methods resolve relative paths against the YAML file.
			cache, err := filepath.Abs(filepath.Join(root, ".cache", "hashattention"))
			if err != nil {
				return "", err
			}
			if noTrain {
				path, key, err := train.CachePath(cache, t.Config, g)
				if err == nil && train.InCache(path, key) {
					return path, nil
				}
				return "", fmt.Errorf("training %q on %q: %w", t.Name, t.Workload, ErrNotTrained)
			}
			path, err := train.Cached(ctx, cache, t.Config, g, progress)
			if err != nil {
				return "", x.Errorf(t.Line, fmt.Sprintf("train[%d]", i), "%v", err)
			}
			return path, nil
		}
		var names []string
		for _, t := range x.Trainings {
			names = append(names, t.Name)
		}
		return "", fmt.Errorf("no training %q (the experiment's train block has: %s)", name, strings.Join(names, ", "))
	}
	out := make([]methods.Method, len(x.Variants))
	var untrained []error
	for i, v := range x.Variants {
		spec, _ := methods.Registry.Lookup(v.Method)
		m, err := spec.New(v.Params, env)
		if noTrain && errors.Is(err, ErrNotTrained) {
			untrained = append(untrained, x.Errorf(v.Line, "methods."+v.Label, "%w", err))
			continue
		}
		if err != nil {
			return nil, x.Errorf(v.Line, "methods."+v.Label, "%w", err)
		}
		if c, ok := m.(methods.ConsecutiveNeeder); ok && c.NeedsConsecutive() && !x.Queries.Consecutive() {
			return nil, x.Errorf(v.Line, "methods."+v.Label, "needs consecutive query positions (queries: {last: N} with stride 1), the plan has gaps")
		}
		out[i] = m
	}
	return out, errors.Join(untrained...)
}

// cellID hashes everything that determines a cell's numbers. device is
// the device the cell is evaluated on; the CPU's ids leave it out (as
// before devices existed), the GPU's include it, so CPU and GPU cells
// never stand in for each other on resume.
func cellID(x *config.Experiment, w *config.Workload, layer int, v *config.Variant, b config.Budget, device string) string {
	k := map[string]any{
		"workload": w.Name, "kind": w.Kind, "wparams": w.Params, "layer": layer,
		"method": v.Method, "label": v.Label, "params": v.Params,
		"budget": b.Spec, "queries": x.Queries, "selection": x.Selection, "seed": x.Seed,
		"calibration": x.Calibration,
	}
	if device != config.DeviceCPU {
		k["device"] = device
	}
	key, _ := json.Marshal(k)
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

// openDevice resolves the experiment's device: nil for the CPU, an
// Evaluator for the GPU. device: gpu fails without a usable GPU; device:
// auto then says so on log and evaluates on the CPU.
func openDevice(x *config.Experiment, log io.Writer) (*gpueval.Evaluator, error) {
	if x.Device == config.DeviceCPU || x.Device == "" {
		return nil, nil
	}
	ev, err := gpueval.Open(0)
	if err == nil {
		return ev, nil
	}
	if x.Device == config.DeviceAuto && errors.Is(err, gpu.ErrNoGPU) {
		if log != nil {
			fmt.Fprintf(log, "device auto: %v; evaluating on the CPU\n", err)
		}
		return nil, nil
	}
	const hint = "(device: cpu evaluates on the CPU; device: auto falls back to it)"
	if x.DeviceLine == 0 { // from hbench run --device
		return nil, fmt.Errorf("device %s: %w %s", x.Device, err, hint)
	}
	return nil, x.Errorf(x.DeviceLine, "device", "%s: %w %s", x.Device, err, hint)
}

// Run executes the experiment and writes its run directory.
func Run(ctx context.Context, x *config.Experiment, opt Options) (*Result, error) {
	ev, err := openDevice(x, opt.Log)
	if err != nil {
		return nil, err
	}
	device := config.DeviceCPU
	if ev != nil {
		device = config.DeviceGPU
		defer ev.Close()
	}
	root := opt.Root
	if root == "" {
		root = "results"
	}
	ms, err := BuildMethods(ctx, x, root, opt.Progress, false)
	if err != nil {
		return nil, err
	}
	loadStart := time.Now()
	// Only the plan's queries are computed where every method evaluated on
	// the workload reads only the query of the step (readsStepQueryOnly).
	groups, err := loadGroups(x, func(w *config.Workload) bool {
		for _, v := range x.Variants {
			if v.RunsOn(w.Name) && !readsStepQueryOnly(v) {
				return false
			}
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	if ev != nil {
		// The kernels read fp16 K/V: every part of a GPU run sees those values.
		for _, w := range x.Workloads {
			if err := gpueval.RoundFP16(groups[w.Name]); err != nil {
				return nil, x.Errorf(w.Line, "workloads."+w.Name, "%v", err)
			}
		}
		if opt.Log != nil {
			fmt.Fprintf(opt.Log, "device gpu: %s; workloads loaded and rounded to fp16 in %.1fs\n", ev.Dev.Props.Name, time.Since(loadStart).Seconds())
		}
		for i, v := range x.Variants {
			m, note, err := ev.Wrap(v.Method, v.Params, ms[i])
			if err != nil {
				return nil, x.Errorf(v.Line, "methods."+v.Label, "%v", err)
			}
			if note != "" && opt.Log != nil {
				fmt.Fprintf(opt.Log, "device gpu: %s: %s\n", v.Label, note)
			}
			ms[i] = m
		}
	}
	runID := opt.RunID
	if runID == "" {
		runID = x.Hash[:12]
	}
	dir := filepath.Join(root, x.Name, runID)
	if opt.Fresh {
		os.Remove(filepath.Join(dir, resultfmt.CellsFile))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// Cells of the sweep, in order.
	var cells []*cell
	for _, w := range x.Workloads {
		byLayer := map[int][]*attn.Group{}
		var layers []int
		for _, g := range groups[w.Name] {
			if _, ok := byLayer[g.Layer]; !ok {
				layers = append(layers, g.Layer)
			}
			byLayer[g.Layer] = append(byLayer[g.Layer], g)
		}
		sort.Ints(layers)
		for _, l := range layers {
			for vi, v := range x.Variants {
				if !v.RunsOn(w.Name) {
					continue
				}
				for _, b := range x.Budgets {
					cells = append(cells, &cell{id: cellID(x, w, l, v, b, device), workload: w, layer: l, groups: byLayer[l], variant: v, method: ms[vi], budget: b})
				}
			}
		}
	}
	done := map[string]*resultfmt.Cell{}
	if prev, err := resultfmt.ReadCells(dir); err == nil {
		for _, c := range prev {
			done[c.ID] = c
		}
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	man := &resultfmt.Manifest{
		Experiment: x.Name, RunID: runID, ConfigPath: x.Path, ConfigHash: x.Hash, Config: x.Raw,
		Commit: resultfmt.Commit(x.Dir), GoVersion: runtime.Version(), Started: time.Now().UTC(), Cells: len(cells),
		Host: resultfmt.ThisHost(opt.Workers),
	}
	if ev != nil {
		p := ev.Dev.Props
		nv, _, _ := gpu.NVRTCVersion()
		man.GPU = &resultfmt.GPU{Name: p.Name, ComputeCapability: fmt.Sprintf("%d.%d", p.Major, p.Minor), Driver: p.DriverVersion(),
			NVRTC: nv, SMs: p.SMs, L2Bytes: p.L2Bytes, MemoryBytes: p.MemoryBytes}
	}
	if old, err := resultfmt.ReadManifest(dir); err == nil && len(done) > 0 {
		man.Started = old.Started // a resumed run keeps its start time
	}
	if err := resultfmt.WriteManifest(dir, man); err != nil {
		return nil, err
	}
	w, err := resultfmt.OpenCellWriter(dir)
	if err != nil {
		return nil, err
	}
	defer w.Close()

	var todo []*cell
	for _, c := range cells {
		if _, ok := done[c.id]; !ok {
			todo = append(todo, c)
		}
	}
	if opt.MaxCells > 0 && len(todo) > opt.MaxCells {
		todo = todo[:opt.MaxCells]
	}
	refs := newRefCache(x)
	if ev != nil {
		refs.build = ev.Reference
		refs.onDrop = ev.Drop
		// Every cell of a layer walks the same (position, head) order and
		// waits on the same reference: build them all at once instead.
		refs.prefetch = x.Queries.Positions
	}
	defer refs.close() // before ev.Close: the prefetch uses the device
	if err := execute(ctx, x, todo, refs, opt, func(c *resultfmt.Cell) error {
		done[c.ID] = c
		return w.Append(c)
	}); err != nil {
		return nil, err
	}
	res := &Result{Dir: dir, Skipped: len(cells) - len(todo)}
	for _, c := range cells {
		if rc, ok := done[c.id]; ok {
			res.Cells = append(res.Cells, rc)
		}
	}
	if err := resultfmt.WriteSummary(dir, res.Cells); err != nil {
		return nil, err
	}
	if len(res.Cells) == len(cells) {
		man.Finished = time.Now().UTC()
	}
	if err := resultfmt.WriteManifest(dir, man); err != nil {
		return nil, err
	}
	return res, nil
}

// execute evaluates cells on opt.Workers goroutines, handing each result to
// emit in completion order (emit is called from one goroutine at a time).
func execute(ctx context.Context, x *config.Experiment, todo []*cell, refs *refCache, opt Options, emit func(*resultfmt.Cell) error) error {
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan *cell)
	type result struct {
		c   *resultfmt.Cell
		err error
	}
	results := make(chan result)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range jobs {
				rc, err := evalCell(ctx, x, c, refs)
				results <- result{rc, err}
			}
		}()
	}
	go func() {
		defer close(jobs)
		for _, c := range todo {
			select {
			case jobs <- c:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(results) }()

	// References of a layer are dropped once its last cell is done, so a
	// sweep holds the exact attention of about one layer at a time.
	remaining := map[*attn.Group]int{}
	for _, c := range todo {
		remaining[c.groups[0]]++
	}
	groupsOf := map[string]*cell{}
	for _, c := range todo {
		groupsOf[c.id] = c
	}
	start := time.Now()
	var bar *progressbar.ProgressBar
	var firstErr error
	n := 0
	for r := range results {
		if r.err != nil {
			if firstErr == nil && !errors.Is(r.err, context.Canceled) {
				firstErr = r.err
			}
			cancel()
			continue
		}
		if firstErr != nil {
			continue
		}
		if err := emit(r.c); err != nil {
			firstErr = err
			cancel()
			continue
		}
		n++
		if c := groupsOf[r.c.ID]; c != nil {
			if remaining[c.groups[0]]--; remaining[c.groups[0]] == 0 {
				refs.drop(c.groups)
			}
		}
		if opt.Progress != nil && bar == nil && time.Since(start) > 2*time.Second {
			bar = progressbar.NewOptions(len(todo), progressbar.OptionSetWriter(opt.Progress),
				progressbar.OptionSetDescription("cells"), progressbar.OptionShowCount(),
				progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(250*time.Millisecond),
				progressbar.OptionClearOnFinish(), progressbar.OptionFullWidth())
			bar.Set(n - 1)
		}
		if bar != nil {
			bar.Add(1)
		}
	}
	if bar != nil {
		bar.Finish()
	}
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil && n < len(todo) {
		return fmt.Errorf("interrupted after %d of %d cells (finished cells are saved; run again to resume): %w", n, len(todo), err)
	}
	return nil
}

// evalCell evaluates one cell: every group of its layer, every evaluated
// position in order, every query head.
func evalCell(ctx context.Context, x *config.Experiment, c *cell, refs *refCache) (*resultfmt.Cell, error) {
	start := time.Now()
	var rec, mass, oerr, dens []float64
	opt := methods.Options{Shared: x.Selection == config.PerKVHead}
	var sel [][]int32
	for gi, g := range c.groups {
		opt.Seed = x.Seed*1_000_003 + int64(g.Layer)*1009 + int64(g.KVHead)*31 + int64(gi)
		s, err := c.method.Prepare(g, opt)
		if err != nil {
			return nil, x.Errorf(c.variant.Line, "methods."+c.variant.Label, "prepare layer %d KV head %d of %s: %v", g.Layer, g.KVHead, c.workload.Name, err)
		}
		for _, t := range x.Queries.Positions(g.T()) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			b := c.budget.Resolve(t + 1)
			sel, err = s.Select(methods.Step{T: t, Budget: b}, sel)
			if err != nil {
				return nil, fmt.Errorf("%s layer %d KV head %d position %d: %s: %w", c.workload.Name, g.Layer, g.KVHead, t, c.variant.Label, err)
			}
			if len(sel) != len(g.Q) {
				return nil, fmt.Errorf("%s: returned %d selections for %d query heads", c.variant.Label, len(sel), len(g.Q))
			}
			for h := range g.Q {
				if err := checkSelection(sel[h], b.N, b.Total, isUnbudgeted(c.method)); err != nil {
					return nil, fmt.Errorf("%s layer %d head %d position %d: %s: %w", c.workload.Name, g.Layer, g.QHeads[h], t, c.variant.Label, err)
				}
				r, err := refs.get(g, h, t)
				if err != nil {
					return nil, fmt.Errorf("%s layer %d head %d position %d: reference: %w", c.workload.Name, g.Layer, g.QHeads[h], t, err)
				}
				rec = append(rec, r.Recall(sel[h], b.Total))
				mass = append(mass, r.MassRecall(sel[h]))
				oerr = append(oerr, r.OutputError(sel[h]))
				dens = append(dens, r.Density(sel[h]))
			}
		}
	}
	g0 := c.groups[0]
	return &resultfmt.Cell{
		ID: c.id, Kind: resultfmt.KindQuality, Workload: c.workload.Name, Layer: c.layer,
		Method: c.variant.Method, Variant: c.variant.Label, Params: c.variant.ParamsMap(),
		Sparsity: c.budget.Sparsity, Tokens: c.budget.Tokens, Sink: c.budget.Sink, Local: c.budget.Local,
		Shared: opt.Shared, AuxBits: c.method.AuxBits(g0.D(), len(g0.Q)), Samples: len(rec),
		Metrics: map[string]resultfmt.Stat{
			resultfmt.MetricRecall:      metrics.Summarize(rec),
			resultfmt.MetricMassRecall:  metrics.Summarize(mass),
			resultfmt.MetricOutputError: metrics.Summarize(oerr),
			resultfmt.MetricDensity:     metrics.Summarize(dens),
		},
		Seconds: time.Since(start).Seconds(),
	}, nil
}

// checkSelection enforces the Selector contract: ascending, unique, in
// range, and exactly the budget (all keys for an Unbudgeted method).
func checkSelection(sel []int32, n, total int, all bool) error {
	want := total
	if all {
		want = n
	}
	if len(sel) != want {
		return fmt.Errorf("selected %d keys, budget is %d", len(sel), want)
	}
	for i, j := range sel {
		if j < 0 || int(j) >= n {
			return fmt.Errorf("selected key %d outside 0..%d", j, n-1)
		}
		if i > 0 && sel[i-1] >= j {
			return fmt.Errorf("selection not strictly ascending at %d: %d then %d", i, sel[i-1], j)
		}
	}
	return nil
}

func isUnbudgeted(m methods.Method) bool {
	_, ok := m.(methods.Unbudgeted)
	return ok
}

// refCache shares exact-attention references between cells.
type refCache struct {
	budgets []config.Budget
	mu      sync.Mutex
	m       map[refKey]*refEntry
	// build computes a reference (nil: metrics.NewReference on the CPU);
	// onDrop, when set, is told which groups were dropped.
	build  func(g *attn.Group, h, t, kmax int) (*metrics.Reference, error)
	onDrop func(groups []*attn.Group)
	// prefetch, when set, gives the evaluated positions of a sequence of T:
	// a group's first request then starts building all its references
	// (every query head at every position) on GOMAXPROCS goroutines.
	prefetch func(T int) []int
	started  map[*attn.Group]bool // groups whose prefetch started
	dropped  map[*attn.Group]bool // groups dropped (a late prefetch stops)
	closed   bool                 // the run is over: prefetches stop
	wg       sync.WaitGroup       // running prefetches
}

// close stops the prefetches and waits for the references in flight.
func (c *refCache) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.wg.Wait()
}

type refKey struct {
	g    *attn.Group
	h, t int
}

type refEntry struct {
	once sync.Once
	r    *metrics.Reference
	err  error
}

func newRefCache(x *config.Experiment) *refCache {
	return &refCache{budgets: x.Budgets, m: map[refKey]*refEntry{}}
}

func (c *refCache) get(g *attn.Group, h, t int) (*metrics.Reference, error) {
	return c.getFor(g, h, t, false)
}

// getFor is get; for a prefetch it does nothing once g is dropped.
func (c *refCache) getFor(g *attn.Group, h, t int, prefetch bool) (*metrics.Reference, error) {
	k := refKey{g, h, t}
	c.mu.Lock()
	if prefetch && (c.dropped[g] || c.closed) {
		c.mu.Unlock()
		return nil, nil
	}
	e, ok := c.m[k]
	if !ok {
		e = &refEntry{}
		c.m[k] = e
	}
	start := c.prefetch != nil && !c.started[g] && !c.dropped[g] && !c.closed
	if start {
		if c.started == nil {
			c.started, c.dropped = map[*attn.Group]bool{}, map[*attn.Group]bool{}
		}
		c.started[g] = true
		c.wg.Add(1)
	}
	c.mu.Unlock()
	if start {
		go c.prefetchGroup(g)
	}
	e.once.Do(func() {
		kmax := 1
		for _, b := range c.budgets {
			kmax = max(kmax, b.TotalFor(t+1))
		}
		if c.build != nil {
			e.r, e.err = c.build(g, h, t, kmax)
			return
		}
		e.r = metrics.NewReference(g.Q[h].Row(t), g.K, g.V, t, g.Scale, kmax)
	})
	return e.r, e.err
}

// prefetchGroup builds every reference of g on GOMAXPROCS goroutines,
// stopping early once g is dropped.
func (c *refCache) prefetchGroup(g *attn.Group) {
	defer c.wg.Done()
	type job struct{ h, t int }
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				c.getFor(g, j.h, j.t, true) // errors reach the cell that asks
			}
		}()
	}
	for _, t := range c.prefetch(g.T()) {
		for h := range g.Q {
			jobs <- job{h, t}
		}
	}
	close(jobs)
	wg.Wait()
}

// drop forgets the references of the given groups.
func (c *refCache) drop(groups []*attn.Group) {
	set := map[*attn.Group]bool{}
	for _, g := range groups {
		set[g] = true
	}
	c.mu.Lock()
	for k := range c.m {
		if set[k.g] {
			delete(c.m, k)
		}
	}
	if c.dropped != nil {
		for g := range set {
			c.dropped[g] = true
		}
	}
	c.mu.Unlock()
	if c.onDrop != nil {
		c.onDrop(groups)
	}
}
