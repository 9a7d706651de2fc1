package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/hbench/hbench/attn"
	"github.com/hbench/hbench/methods"
	"github.com/hbench/hbench/tensor"
)

// TrainingFormat tags the `training` metadata JSON of a weight file.
const TrainingFormat = "hbench-train/1"

// Report is what training measured.
type Report struct {
	Heads []HeadReport `json:"heads"`
	// Seconds is the wall time of training.
	Seconds float64 `json:"seconds"`
}

// HeadReport is the training record of one (layer, query head).
type HeadReport struct {
	Layer int `json:"layer"`
	Head  int `json:"head"`
	// Init is the validation recall of the untrained initial maps.
	Init Recall `json:"init"`
	// Epochs holds the mean training loss and validation recall per epoch.
	Epochs []EpochStats `json:"epochs"`
	// BestEpoch is the epoch whose maps were kept (0: the initial ones).
	BestEpoch int `json:"best_epoch"`
	// Final is the validation recall of the exported maps, computed through
	// methods.MLP.Code exactly as inference does.
	Final Recall `json:"final"`
	// Data lists the positions each sequence contributed.
	Data []ItemPositions `json:"data"`
}

// EpochStats is one epoch of one head.
type EpochStats struct {
	Epoch int     `json:"epoch"`
	Loss  float64 `json:"loss"`
	Valid Recall  `json:"valid"`
}

// ItemPositions are the query positions sampled from one sequence.
type ItemPositions struct {
	Workload string `json:"workload"`
	Item     string `json:"item"`
	KVHead   int    `json:"kv_head"`
	// Train and Valid are the training and held-out validation positions.
	Train []int `json:"train"`
	Valid []int `json:"valid"`
}

// Training is the JSON stored under the `training` metadata key of a
// trained weight file.
type Training struct {
	Format string `json:"format"`
	Config Config `json:"config"`
	// Data identifies every Group trained on, with a SHA-256 of its
	// queries and keys; DataHash hashes them all (the cache key's data part).
	Data     []GroupInfo `json:"data"`
	DataHash string      `json:"data_hash"`
	// Files are the source files with their SHA-256, when the caller knows
	// them (see AddFiles).
	Files  []FileInfo `json:"files,omitempty"`
	Report *Report    `json:"report"`
}

// Train learns HashAttention's query and key maps for every (layer, query
// head) in groups (restricted to cfg.Layers and cfg.Heads), one head per
// worker in parallel. Several Groups with the same layer and query head
// (several sequences) are pooled. Progress, when non-nil, gets a progress
// bar and one summary line per head.
//
// For each head: cfg.Valid held-out and cfg.Queries training query
// positions are drawn without replacement from [From, To) minus the
// positions of cfg.Exclude (the evaluation's queries); a training
// query's labels are its cfg.TopK keys with the largest q·k within
// [Sink, t+1-Local) (1) against every other key there (0). A minibatch
// takes cfg.Batch queries of one sequence and a shared key pool: the
// union of their positives and cfg.Negatives uniform random keys. The
// relaxed logit of a (query, key) pair is
//
//	z = Σ_b tanh(f_q(q))_b · tanh(f_k(k))_b − θ
//
// with θ a learned scalar (initially 0; inference ranks keys by matching
// bits, so θ is not exported). The loss is binary cross-entropy with
// positive weight Alpha + Beta·(t+1); each query's sampled negatives are
// weighted by (its labelled range − TopK) / (its sampled negatives) so they
// stand for all its negatives. Inputs are standardised per dimension
// during training and the standardisation is folded into the first layer
// on export. After each epoch the hard sign codes are validated (top-k and
// mass recall at cfg.ValidSparsity, with package budget and methods.TopK,
// scored by matching bits as inference does); the best epoch's maps are
// kept and training stops after cfg.Patience epochs without improvement.
//
// The result does not depend on cfg.Workers or scheduling: each head has
// its own random stream seeded by (Seed, layer, head).
func Train(ctx context.Context, cfg Config, groups []*attn.Group, progress io.Writer) (*methods.HashWeights, *Report, error) {
	start := time.Now()
	if err := cfg.Validate(); err != nil {
		return nil, nil, fmt.Errorf("train config: %w", err)
	}
	heads, dim, err := collect(&cfg, groups)
	if err != nil {
		return nil, nil, err
	}
	workers := cfg.Workers
	if workers == 0 {
		workers = runtime.NumCPU()
	}
	workers = min(workers, len(heads))

	var bar *progressbar.ProgressBar
	var mu sync.Mutex // guards bar and progress
	totalSteps := 0
	for _, h := range heads {
		totalSteps += cfg.Epochs * stepsPerEpoch(&cfg, h.srcs)
	}
	if progress != nil {
		bar = progressbar.NewOptions(totalSteps,
			progressbar.OptionSetWriter(progress),
			progressbar.OptionSetDescription(fmt.Sprintf("training %d heads", len(heads))),
			progressbar.OptionShowCount(),
			progressbar.OptionSetWidth(20),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionShowDescriptionAtLineEnd(),
		)
	}
	tick := func(n int, desc string) {
		if bar == nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if desc != "" {
			bar.Describe(desc)
		}
		bar.Add(n)
	}

	results := make([]*headResult, len(heads))
	errs := make([]error, len(heads))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i], errs[i] = trainHead(ctx, &cfg, heads[i], dim, tick)
			}
		}()
	}
feed:
	for i := range heads {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if bar != nil {
		bar.Finish()
		fmt.Fprintln(progress)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("train: %w", err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}

	w := &methods.HashWeights{Bits: cfg.Bits, Dim: dim, Activation: cfg.Activation, Hidden: slices.Clone(cfg.Hidden),
		Maps: map[[2]int]*methods.HeadMaps{}, Metadata: map[string]string{}}
	rep := &Report{}
	for _, r := range results {
		w.Maps[[2]int{r.rep.Layer, r.rep.Head}] = r.maps
		rep.Heads = append(rep.Heads, r.rep)
		if progress != nil {
			f := r.rep.Final
			fmt.Fprintf(progress, "L%d.H%d: best epoch %d of %d, top-k recall", r.rep.Layer, r.rep.Head, r.rep.BestEpoch, len(r.rep.Epochs))
			for s := range f.Sparsity {
				fmt.Fprintf(progress, " %gx %.3f (untrained %.3f)", f.Sparsity[s], f.TopK[s], r.rep.Init.TopK[s])
			}
			fmt.Fprintln(progress)
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	tr := Training{Format: TrainingFormat, Config: cfg, Data: groupInfos(groups), DataHash: DataHash(groups), Report: rep}
	js, err := json.Marshal(tr)
	if err != nil {
		return nil, nil, fmt.Errorf("train: metadata: %w", err)
	}
	w.Metadata["training"] = string(js)
	w.Metadata["model"] = "trained by hbench train"
	if err := w.Validate(); err != nil {
		return nil, nil, fmt.Errorf("train: %w", err)
	}
	return w, rep, nil
}

// headSpec is one (layer, query head) to train with its sources.
type headSpec struct {
	layer, head int
	srcs        []headSrc
}

// collect groups the sources by (layer, query head), sorted.
func collect(cfg *Config, groups []*attn.Group) ([]headSpec, int, error) {
	if len(groups) == 0 {
		return nil, 0, errors.New("train: no data (no groups)")
	}
	by := map[[2]int][]headSrc{}
	dim := groups[0].D()
	for _, g := range groups {
		if err := g.Validate(); err != nil {
			return nil, 0, fmt.Errorf("train: %w", err)
		}
		if g.D() != dim {
			return nil, 0, fmt.Errorf("train: groups have head dimensions %d and %d; train one model at a time", dim, g.D())
		}
		if len(cfg.Layers) > 0 && !slices.Contains(cfg.Layers, g.Layer) {
			continue
		}
		for qi, h := range g.QHeads {
			if len(cfg.Heads) > 0 && !slices.Contains(cfg.Heads, h) {
				continue
			}
			k := [2]int{g.Layer, h}
			by[k] = append(by[k], headSrc{g: g, qi: qi})
		}
	}
	if len(by) == 0 {
		return nil, 0, fmt.Errorf("train: the data has none of layers %v, query heads %v", cfg.Layers, cfg.Heads)
	}
	var out []headSpec
	for k, s := range by {
		out = append(out, headSpec{layer: k[0], head: k[1], srcs: s})
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].layer < out[j].layer || out[i].layer == out[j].layer && out[i].head < out[j].head
	})
	return out, dim, nil
}

// stepsPerEpoch is an upper bound of the minibatches of one epoch (for the
// progress bar).
func stepsPerEpoch(cfg *Config, srcs []headSrc) int {
	n := 0
	for range srcs {
		n += (cfg.Queries + cfg.Batch - 1) / cfg.Batch
	}
	return n
}

type headResult struct {
	maps *methods.HeadMaps
	rep  HeadReport
}

// headSeed mixes the layer and head into the second PCG seed word.
func headSeed(layer, head int) uint64 {
	return uint64(layer)<<32 ^ uint64(uint32(head)) ^ 0x9e3779b97f4a7c15
}

// trainHead trains the maps of one head.
func trainHead(ctx context.Context, cfg *Config, hs headSpec, dim int, tick func(int, string)) (*headResult, error) {
	rng := rand.New(rand.NewPCG(cfg.Seed, headSeed(hs.layer, hs.head)))
	hd, err := newHeadData(cfg, hs.layer, hs.head, hs.srcs, rng)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	widths := cfg.widths(dim)
	m := &model[float32]{Q: newMLP[float32](widths, rng), K: newMLP[float32](widths, rng)}
	act := activation{cfg.Activation}
	rep := HeadReport{Layer: hs.layer, Head: hs.head}
	for _, it := range hd.items {
		rep.Data = append(rep.Data, ItemPositions{Workload: it.g.Workload, Item: it.g.Item, KVHead: it.g.KVHead, Train: it.train, Valid: it.valid})
	}
	mc := &modelCoder{m: m, act: act, qn: &hd.qn, kn: &hd.kn}
	rep.Init = evaluate(cfg, hd.items, mc)
	best, bestScore, since := m.clone(), rep.Init.Score(), 0

	opt := newAdam(m, cfg.LR)
	g := m.zerosLike()
	var ws workspace[float32]
	bt := &batcher{cfg: cfg, hd: hd, slot: map[*attn.Group][]int32{}}
	type mb struct {
		it  *item
		idx []int
	}
	budgetSteps := stepsPerEpoch(cfg, hs.srcs)
	name := fmt.Sprintf("L%d.H%d", hs.layer, hs.head)
	for ep := 1; ep <= cfg.Epochs; ep++ {
		var mbs []mb
		for _, it := range hd.items {
			perm := rng.Perm(len(it.train))
			for s := 0; s < len(perm); s += cfg.Batch {
				mbs = append(mbs, mb{it, perm[s:min(s+cfg.Batch, len(perm))]})
			}
		}
		rng.Shuffle(len(mbs), func(i, j int) { mbs[i], mbs[j] = mbs[j], mbs[i] })
		var loss float64
		for _, b := range mbs {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			batch := bt.build(b.it, b.idx, rng)
			g.zero()
			l := lossGrad(m, act, batch, g, &ws)
			if math.IsNaN(l) || math.IsInf(l, 0) {
				return nil, fmt.Errorf("train: %s epoch %d: loss is %g (lower lr?)", name, ep, l)
			}
			opt.step(m, g)
			loss += l
			tick(1, "")
		}
		tick(budgetSteps-len(mbs), "")
		st := EpochStats{Epoch: ep, Loss: loss / float64(max(len(mbs), 1)), Valid: evaluate(cfg, hd.items, mc)}
		rep.Epochs = append(rep.Epochs, st)
		tick(0, fmt.Sprintf("%s ep %d loss %.4f recall %s", name, ep, st.Loss, fmtRecall(st.Valid)))
		if sc := st.Valid.Score(); sc > bestScore {
			best, bestScore, rep.BestEpoch, since = m.clone(), sc, ep, 0
		} else {
			since++
		}
		if cfg.Patience > 0 && since >= cfg.Patience {
			tick((cfg.Epochs-ep)*budgetSteps, "")
			break
		}
	}
	maps := &methods.HeadMaps{Q: export(&best.Q, &hd.qn), K: export(&best.K, &hd.kn)}
	rep.Final = evaluate(cfg, hd.items, &mapsCoder{hm: maps, act: cfg.Activation})
	return &headResult{maps: maps, rep: rep}, nil
}

func fmtRecall(r Recall) string {
	s := ""
	for i, sp := range r.Sparsity {
		if i > 0 {
			s += " "
		}
		s += strconv.FormatFloat(sp, 'g', -1, 64) + "x:" + strconv.FormatFloat(r.TopK[i], 'f', 3, 64)
	}
	return s
}

// export converts a trained map to methods.MLP, folding the input
// standardisation x' = (x − μ)/σ into the first layer:
// W0' = W0·diag(1/σ), b0' = b0 − W0·(μ/σ).
func export(m *mlp[float32], nm *norm) *methods.MLP {
	out := &methods.MLP{}
	for l, ly := range m.Layers {
		w := tensor.NewMat(ly.Out, ly.In)
		b := make([]float32, ly.Out)
		for o := 0; o < ly.Out; o++ {
			row := ly.W[o*ly.In : (o+1)*ly.In]
			if l > 0 {
				copy(w.Row(o), row)
				b[o] = ly.B[o]
				continue
			}
			bias := float64(ly.B[o])
			for i, x := range row {
				w.Data[o*ly.In+i] = float32(float64(x) / nm.Std[i])
				bias -= float64(x) * nm.Mean[i] / nm.Std[i]
			}
			b[o] = float32(bias)
		}
		out.W = append(out.W, w)
		out.B = append(out.B, b)
	}
	return out
}
