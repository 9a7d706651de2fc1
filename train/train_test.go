package train

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/methods"
	"github.com/hbench/hbench/tensor"
	"github.com/hbench/hbench/workloads"
)

// planted returns a Group of T positions, dimension d and two query heads
// with planted structure: every key belongs to one of C clusters (a unit
// direction c_z, scaled by 2.5, plus unit Gaussian noise) and carries a
// constant component 1 along a nuisance direction e ⟂ all c_z; every query
// points at one cluster (3·c_z plus noise 0.5) plus a large random
// component 8·r_t·e. The nuisance part adds the same amount to all of a
// query's scores, so the exact top keys are the members of its cluster;
// but it dominates the query's direction, so random hyperplanes (LSH)
// mostly encode it. A learned query map can discard it.
func planted(seed uint64, T, d, C int) *attn.Group {
	rng := rand.New(rand.NewPCG(seed, 99))
	e := make([]float32, d)
	e[0] = 1
	cent := make([][]float32, C)
	for z := range cent {
		c := make([]float32, d)
		var n float64
		for i := 1; i < d; i++ {
			c[i] = float32(rng.NormFloat64())
			n += float64(c[i] * c[i])
		}
		for i := range c {
			c[i] /= float32(math.Sqrt(n))
		}
		cent[z] = c
	}
	k := tensor.NewMat(T, d)
	for j := 0; j < T; j++ {
		z := rng.IntN(C)
		row := k.Row(j)
		for i := range row {
			row[i] = 2.5*cent[z][i] + float32(rng.NormFloat64()) + e[i]
		}
	}
	g := &attn.Group{Workload: "planted", Item: "0", K: k, V: k.Clone(), Scale: float32(1 / math.Sqrt(float64(d)))}
	for h := 0; h < 2; h++ {
		q := tensor.NewMat(T, d)
		for t := 0; t < T; t++ {
			z := rng.IntN(C)
			r := float32(8 * rng.NormFloat64())
			row := q.Row(t)
			for i := range row {
				row[i] = 3*cent[z][i] + 0.5*float32(rng.NormFloat64()) + r*e[i]
			}
		}
		g.QHeads = append(g.QHeads, h)
		g.Q = append(g.Q, q)
	}
	return g
}

func smallConfig() Config {
	c := Defaults()
	c.Bits, c.Hidden = 8, []int{32, 32}
	c.TopK, c.Sink, c.Local = 8, 1, 4
	c.Batch, c.Negatives, c.Queries, c.Valid = 32, 128, 384, 64
	c.From = 128
	c.Epochs, c.Patience = 40, 0
	c.LR = 3e-3
	return c
}

// lshMaps returns random-hyperplane (SimHash) maps: the same Gaussian
// projection for queries and keys, sign of the projection as the code.
func lshMaps(rng *rand.Rand, d, bits int) *methods.HeadMaps {
	w := tensor.NewMat(bits, d)
	for i := range w.Data {
		w.Data[i] = float32(rng.NormFloat64())
	}
	m := &methods.MLP{W: []*tensor.Mat{w}, B: [][]float32{make([]float32, bits)}}
	return &methods.HeadMaps{Q: m, K: m}
}

// TestTrainPlanted checks that training raises validation recall well
// above the untrained maps and above LSH codes with the same number of
// bits, on data with planted query→key structure.
func TestTrainPlanted(t *testing.T) {
	cfg := smallConfig()
	g := planted(1, 768, 16, 8)
	w, rep, err := Train(context.Background(), cfg, []*attn.Group{g}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Heads) != 2 || len(w.Maps) != 2 {
		t.Fatalf("trained %d heads, %d maps; want 2", len(rep.Heads), len(w.Maps))
	}
	for _, h := range rep.Heads {
		// The same validation positions the head was validated on.
		rng := rand.New(rand.NewPCG(cfg.Seed, headSeed(h.Layer, h.Head)))
		hd, err := newHeadData(&cfg, h.Layer, h.Head, []headSrc{{g, h.Head}}, rng)
		if err != nil {
			t.Fatal(err)
		}
		var lsh float64
		for s := uint64(0); s < 5; s++ {
			lsh += evaluate(&cfg, hd.items, &mapsCoder{hm: lshMaps(rand.New(rand.NewPCG(s, 7)), 16, cfg.Bits), act: "identity"}).Score() / 5
		}
		final, init := h.Final.Score(), h.Init.Score()
		t.Logf("L%d.H%d: untrained %.3f, LSH %.3f, trained %.3f (best epoch %d); mass recall %v", h.Layer, h.Head, init, lsh, final, h.BestEpoch, h.Final.Mass)
		if final < init+0.2 || final < lsh+0.2 {
			t.Errorf("head %d: trained recall %.3f is not well above untrained %.3f and LSH %.3f", h.Head, final, init, lsh)
		}
		if last := h.Epochs[len(h.Epochs)-1].Loss; !(last < h.Epochs[0].Loss) {
			t.Errorf("head %d: loss did not fall: %v -> %v", h.Head, h.Epochs[0].Loss, last)
		}
		// The exported maps (standardisation folded in) code as the
		// training model did at the best epoch.
		if h.BestEpoch > 0 {
			if got, want := h.Final.Score(), h.Epochs[h.BestEpoch-1].Valid.Score(); math.Abs(got-want) > 0.02 {
				t.Errorf("head %d: exported maps recall %.4f, training model %.4f", h.Head, got, want)
			}
		}
	}
}

// TestTrainDeterministic checks that identical seeds give bit-identical
// weight files, whatever the number of workers.
func TestTrainDeterministic(t *testing.T) {
	cfg := smallConfig()
	cfg.Epochs, cfg.Queries = 2, 128
	g := planted(2, 512, 16, 4)
	dir := t.TempDir()
	var files [][]byte
	for i, workers := range []int{1, 2, 1} {
		c := cfg
		c.Workers = workers
		w, _, err := Train(context.Background(), c, []*attn.Group{g}, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Wall time differs between runs; everything else must not.
		var tr Training
		json.Unmarshal([]byte(w.Metadata["training"]), &tr)
		tr.Report.Seconds = 0
		js, _ := json.Marshal(tr)
		w.Metadata["training"] = string(js)
		p := filepath.Join(dir, "w.safetensors")
		if err := w.Save(p); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, b)
		if i > 0 && !bytes.Equal(files[0], b) {
			t.Fatalf("run %d (workers %d) differs from run 0", i, workers)
		}
	}
	c := cfg
	c.Seed = 2
	w, _, err := Train(context.Background(), c, []*attn.Group{g}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := w.Maps[[2]int{0, 0}].Q.W[0].Data, mustLoad(t, dir).Maps[[2]int{0, 0}].Q.W[0].Data; a[0] == b[0] && a[1] == b[1] {
		t.Errorf("seed 2 gave the same weights as seed 1")
	}
}

func mustLoad(t *testing.T, dir string) *methods.HashWeights {
	t.Helper()
	w, err := methods.LoadHashWeights(filepath.Join(dir, "w.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestCached checks that a second call reuses the cached file and that a
// config change trains anew.
func TestCached(t *testing.T) {
	cfg := smallConfig()
	cfg.Epochs, cfg.Queries, cfg.Heads = 1, 64, []int{1}
	g := planted(3, 384, 16, 4)
	dir := t.TempDir()
	var log bytes.Buffer
	p1, err := Cached(context.Background(), dir, cfg, []*attn.Group{g}, &log)
	if err != nil {
		t.Fatal(err)
	}
	w, err := methods.LoadHashWeights(p1)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Maps) != 1 || w.Maps[[2]int{0, 1}] == nil {
		t.Fatalf("cached weights hold maps %v, want only layer 0 head 1", w.Maps)
	}
	var tr Training
	if err := json.Unmarshal([]byte(w.Metadata["training"]), &tr); err != nil || tr.Format != TrainingFormat || tr.Config.Bits != 8 || len(tr.Data) != 1 {
		t.Fatalf("training metadata %+v, err %v", tr, err)
	}
	log.Reset()
	p2, err := Cached(context.Background(), dir, cfg, []*attn.Group{g}, &log)
	if err != nil || p2 != p1 || !bytes.Contains(log.Bytes(), []byte("found in cache")) {
		t.Fatalf("second call: %q, %v, log %q; want the cached %q", p2, err, log.String(), p1)
	}
	cfg.Workers = 1 // does not change the result, so not the key
	if p, _ := Cached(context.Background(), dir, cfg, []*attn.Group{g}, nil); p != p1 {
		t.Errorf("workers changed the cache key")
	}
	cfg.Bits = 16
	p3, err := Cached(context.Background(), dir, cfg, []*attn.Group{g}, nil)
	if err != nil || p3 == p1 {
		t.Fatalf("changed config: %q, %v; want a new file", p3, err)
	}
	g.K.Data[5] += 1
	if k1, _ := Key(cfg, []*attn.Group{g}); k1 == filepath.Base(p3) {
		t.Errorf("changed data kept the key")
	}
}

// TestConfigValidate checks that every problem is reported with its field.
func TestConfigValidate(t *testing.T) {
	d := Defaults()
	if err := d.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	c := d
	c.Bits, c.Activation, c.Alpha, c.To, c.ValidSparsity, c.Hidden = 0, "gelu", -1, 10, []float64{0.5}, []int{128, 0}
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"bits:", "activation:", "alpha:", "to:", "valid_sparsity[0]:", "hidden[1]:"} {
		if !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// TestLabels checks labels against a hand-made case: scores q·k_j = j mod
// 5 for one query; ties go to the lower position.
func TestLabels(t *testing.T) {
	k := tensor.NewMat(12, 1)
	for j := range 12 {
		k.Data[j] = float32(j % 5)
	}
	q := &tensor.Mat{Rows: 12, Cols: 1, Data: make([]float32, 12)}
	q.Data[11] = 1
	cfg := Config{TopK: 3, Sink: 1, Local: 2}
	pos, mid := labels(&cfg, q, k, []int{11})
	// range [1, 10): scores 1,2,3,4,0,1,2,3,4 at 1..9; top-3: 4 (pos 4, 9), 3 (pos 3 wins over 8).
	if want := []int32{3, 4, 9}; !slices.Equal(pos[0], want) || mid[0] != 9 {
		t.Errorf("labels %v (range %d), want %v (9)", pos[0], mid[0], want)
	}
}

// TestExportFoldsNorm checks that folding the standardisation into the
// first layer gives the same outputs as standardising the inputs.
func TestExportFoldsNorm(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	m := newMLP[float32]([]int{3, 4, 2}, rng)
	nm := norm{Mean: []float64{1, -2, 0.5}, Std: []float64{2, 0.5, 3}}
	x := []float32{0.3, -1, 2}
	xs := make([]float32, 3)
	nm.apply(xs, x)
	var tp tape[float32]
	want := m.forward(xs, 1, activation{"silu"}, &tp)
	got := export(&m, &nm).Forward(x, "silu", [2][]float32{nil, nil})
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-5 {
			t.Fatalf("exported output %v, want %v", got, want)
		}
	}
}

// TestInferenceMatches checks that HashAttention inference (package
// methods), loading the saved weight file, selects exactly the keys the
// training's final validation selected.
func TestInferenceMatches(t *testing.T) {
	cfg := smallConfig()
	cfg.Epochs, cfg.Queries = 2, 128
	g := planted(5, 512, 16, 4)
	w, rep, err := Train(context.Background(), cfg, []*attn.Group{g}, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "w.safetensors")
	if err := w.Save(path); err != nil {
		t.Fatal(err)
	}
	spec, ok := methods.Registry.Lookup("hashattention")
	if !ok {
		t.Skip("hashattention inference not registered")
	}
	p := spec.Defaults().(*methods.HashAttentionParams)
	p.Weights = path
	m, err := spec.New(p, methods.Env{})
	if err != nil {
		t.Fatal(err)
	}
	sel, err := m.Prepare(g, methods.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range rep.Heads {
		hm := w.Maps[[2]int{h.Layer, h.Head}]
		it := &item{g: g, qi: h.Head}
		mc := &mapsCoder{hm: hm, act: cfg.Activation}
		kc := mc.keyCodes(it, g.T())
		for _, pos := range h.Data[0].Valid {
			qc := mc.queryCodes(it, []int{pos})
			scores := make([]float32, pos+1)
			for j := range scores {
				scores[j] = float32(cfg.Bits - popDiff(qc, kc[j:j+1]))
			}
			st := methods.Step{T: pos, Budget: budgetAt(&cfg, 0, pos)}
			want, _ := methods.TopK(scores, st, nil, nil)
			got, err := sel.Select(st, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got[h.Head], want) {
				t.Fatalf("head %d position %d: inference selected %v, training validation %v", h.Head, pos, got[h.Head], want)
			}
		}
	}
}

func popDiff(a, b []uint64) int {
	n := 0
	for i := range a {
		n += bits.OnesCount64(a[i] ^ b[i])
	}
	return n
}

// TestExclude checks that excluded positions (the evaluation's queries)
// are never sampled, for training or validation.
func TestExclude(t *testing.T) {
	cfg := smallConfig()
	cfg.Queries, cfg.Valid, cfg.From = 1000, 40, 0
	cfg.Exclude = workloads.QueryPlan{Last: 64, Stride: 2}
	g := planted(6, 256, 8, 2)
	it, err := sampleItem(&cfg, g, 0, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	excl := map[int]bool{}
	for _, p := range cfg.Exclude.Positions(256) {
		excl[p] = true
	}
	seen := map[int]bool{}
	for _, p := range append(append([]int{}, it.train...), it.valid...) {
		if excl[p] || seen[p] {
			t.Fatalf("position %d sampled twice or excluded", p)
		}
		seen[p] = true
	}
	// Every non-excluded position with enough context is used (there are
	// fewer than queries + valid of them).
	lo := cfg.Sink + cfg.Local + cfg.TopK
	if want := 256 - lo - 64; len(seen) != want {
		t.Errorf("sampled %d positions, want all %d candidates", len(seen), want)
	}
	cfg.Exclude = workloads.QueryPlan{Last: -1, Every: 0}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "exclude:") {
		t.Errorf("bad exclude plan: %v", err)
	}
}

// TestEarlyStopping checks that training stops after Patience epochs
// without a better validation recall, keeping the best (here the initial)
// maps.
func TestEarlyStopping(t *testing.T) {
	cfg := smallConfig()
	cfg.Epochs, cfg.Patience, cfg.Queries, cfg.LR = 10, 2, 64, 1e-9 // too small a step to change any code
	cfg.Heads = []int{0}
	g := planted(7, 384, 16, 4)
	_, rep, err := Train(context.Background(), cfg, []*attn.Group{g}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := rep.Heads[0]
	if len(h.Epochs) != 2 || h.BestEpoch != 0 {
		t.Fatalf("ran %d epochs, best %d; want 2 epochs and the initial maps", len(h.Epochs), h.BestEpoch)
	}
	if math.Abs(h.Final.Score()-h.Init.Score()) > 0.02 {
		t.Errorf("final recall %.3f, want the initial %.3f", h.Final.Score(), h.Init.Score())
	}
}

// TestBatch checks a minibatch: labels 1 exactly at each query's
// positives, no weight outside its labelled range [Sink, t+1-Local), and
// negative weights that sum to its number of negatives in the full range.
func TestBatch(t *testing.T) {
	cfg := smallConfig()
	cfg.Queries, cfg.Negatives = 64, 40
	g := planted(8, 300, 8, 3)
	rng := rand.New(rand.NewPCG(3, 3))
	hd, err := newHeadData(&cfg, 0, 0, []headSrc{{g, 0}}, rng)
	if err != nil {
		t.Fatal(err)
	}
	it := hd.items[0]
	b := &batcher{cfg: &cfg, hd: hd, slot: map[*attn.Group][]int32{}}
	idx := []int{0, 5, len(it.train) - 1}
	bt := b.build(it, idx, rng)
	pool := b.pool
	if bt.B != 3 || bt.P != len(pool) {
		t.Fatalf("batch %dx%d, pool %d", bt.B, bt.P, len(pool))
	}
	for r, i := range idx {
		tq := it.train[i]
		pos := map[int32]bool{}
		for _, j := range it.pos[i] {
			pos[j] = true
		}
		var negW float64
		npos := 0
		for p, j := range pool {
			y, w := bt.Y[r*bt.P+p], bt.W[r*bt.P+p]
			in := int(j) >= cfg.Sink && int(j) < tq+1-cfg.Local
			switch {
			case !in && w != 0:
				t.Errorf("query %d: key %d outside its range has weight %g", tq, j, w)
			case pos[j] && (y != 1 || float64(w) != cfg.Alpha):
				t.Errorf("query %d: positive key %d has label %g weight %g", tq, j, y, w)
			case in && !pos[j]:
				if y != 0 {
					t.Errorf("query %d: negative key %d has label %g", tq, j, y)
				}
				negW += float64(w)
			}
			if y == 1 {
				npos++
			}
		}
		if npos != len(it.pos[i]) {
			t.Errorf("query %d: %d positives in the batch, want %d", tq, npos, len(it.pos[i]))
		}
		if want := float64(it.mid[i] - len(it.pos[i])); math.Abs(negW-want) > 1e-3*want {
			t.Errorf("query %d: negative weights sum to %g, want %g", tq, negW, want)
		}
	}
}
