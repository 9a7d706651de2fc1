package gpu

import (
	_ "embed"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

//go:embed kernels/decode.cu
var decodeSrc string

//go:embed kernels/decode_mma.cu
var decodeMMASrc string

// Sources lists the embedded kernel sources by name, for the all-arch
// compile test.
func Sources() map[string]string {
	return map[string]string{"decode.cu": decodeSrc, "decode_mma.cu": decodeMMASrc, "util.cu": utilSrc, "hash.cu": hashSrc, "oracle.cu": oracleSrc,
		"lsh.cu": lshSrc, "ds.cu": dsSrc, "h2o.cu": h2oSrc}
}

// DType names a 16-bit K/V element type.
const (
	BF16 = "bf16"
	FP16 = "fp16"
)

// Selection says which keys a decode kernel reads.
type Selection int

const (
	// Dense reads every key.
	Dense Selection = iota
	// PerKVHead reads one index list per KV head, shared by its query heads.
	PerKVHead
	// PerHead reads one index list per query head.
	PerHead
)

func (s Selection) String() string {
	switch s {
	case Dense:
		return "dense"
	case PerKVHead:
		return "per-kv-head"
	case PerHead:
		return "per-head"
	}
	return "Selection(" + strconv.Itoa(int(s)) + ")"
}

// Shape is a decode-attention problem: one query token per sequence.
type Shape struct {
	Batch   int
	Heads   int // query heads
	KVHeads int
	HeadDim int    // 64 or 128
	Context int    // N: keys per KV head and sequence
	DType   string // BF16 or FP16
}

// Validate checks what the kernels support.
func (s Shape) Validate() error {
	switch {
	case s.Batch < 1:
		return fmt.Errorf("batch %d must be >= 1", s.Batch)
	case s.KVHeads < 1 || s.Heads < s.KVHeads || s.Heads%s.KVHeads != 0:
		return fmt.Errorf("heads %d must be a positive multiple of kv_heads %d", s.Heads, s.KVHeads)
	case s.HeadDim != 64 && s.HeadDim != 128:
		return fmt.Errorf("head_dim %d: supported are 64 and 128", s.HeadDim)
	case s.Context < 1:
		return fmt.Errorf("context %d must be >= 1", s.Context)
	case s.DType != BF16 && s.DType != FP16:
		return fmt.Errorf("dtype %q: supported are bf16 and fp16", s.DType)
	}
	if g := s.Heads / s.KVHeads; g > 8 {
		return fmt.Errorf("group size %d (heads/kv_heads) above 8 is not supported", g)
	}
	return nil
}

// KVBytes is the size of K plus V.
func (s Shape) KVBytes() int64 {
	return 2 * int64(s.Batch) * int64(s.KVHeads) * int64(s.Context) * int64(s.HeadDim) * 2
}

// Lists is the number of index lists per sequence for a selection.
func (s Shape) Lists(sel Selection) int {
	if sel == PerHead {
		return s.Heads
	}
	return s.KVHeads
}

// DecodeBytes is the byte floor of one decode call: every K/V row it must
// read (k rows per list for the gather kernels, all N for dense), the
// index lists, the queries and the output.
func (s Shape) DecodeBytes(sel Selection, k int) int64 {
	row := int64(s.HeadDim) * 2
	io := int64(s.Batch*s.Heads*s.HeadDim) * 8 // fp32 q in, fp32 out
	if sel == Dense {
		return s.KVBytes() + io
	}
	lists := int64(s.Batch * s.Lists(sel))
	return lists*int64(k)*(2*row+4) + io
}

// Decoder runs split-K decode attention for one shape and selection.
// Plan (compile, allocate partials) happens in NewDecoder; Enqueue is the
// timed part.
type Decoder struct {
	Shape  Shape
	Sel    Selection
	K      int // keys per list (gather); Context for dense
	Splits int
	Chunk  int
	// Occ is the partial kernel's resident blocks per SM.
	Occ    int
	Tuning DecodeTuning
	// MMA says whether the tensor-core kernel (decode_mma.cu) runs.
	MMA bool
	// Threads and Smem are the partial kernel's block size and dynamic
	// shared memory in bytes.
	Threads, Smem int
	group         int
	mod           *Module
	partial       *Func
	combine       *Func
	// Mergers is the tagged merge's merging blocks per head block in
	// effect (DecodeTuning.Mergers; 0: the acquire-release count's last
	// block merges, or no merge).
	Mergers int
	pacc    Buffer
	pml     Buffer
	cnt     Buffer // int32 per (batch, head block): finished splits (MMA with Fuse)
	// Out is the fp32 output [Batch][Heads][HeadDim].
	Out Buffer
}

// module compiles (through the cache) and loads source src with defs,
// keeping loaded modules per device.
func (c *Ctx) module(name, src string, defs map[string]string) (*Module, error) {
	cp, err := Compile(name, src, c.d.Props.Arch(), defs)
	if err != nil {
		return nil, err
	}
	if m, ok := c.d.modules[cp.Key]; ok {
		return m, nil
	}
	m, err := c.Load(cp)
	if err != nil {
		return nil, err
	}
	if c.d.modules == nil {
		c.d.modules = map[string]*Module{}
	}
	c.d.modules[cp.Key] = m
	return m, nil
}

// DecodeTuning are the decode kernels' launch parameters.
type DecodeTuning struct {
	Threads   int  // threads per block
	Tile      int  // keys per lane group per step
	MinBlocks int  // __launch_bounds__ minimum blocks per SM (0: none)
	Prefetch  bool // load step i+1 before the arithmetic of step i
	// Scatter is how scores are reduced across a lane group: 0 xor
	// all-reduce, 1 reduce-scatter then broadcast, 2 reduce-scatter with the
	// softmax done once per score by its owner lane (needs group*tile <=
	// head_dim/8).
	Scatter int
	// Group, when > 0, overrides the query heads per block of the dense
	// kernel (1: one block per query head, the group's K/V rows shared only
	// through L2). It must divide heads/kv_heads.
	Group int
	// MMA is the smallest group size (query heads per block) that runs the
	// tensor-core kernel (decode_mma.cu); 0 never runs it. Threads, Tile,
	// MinBlocks, Prefetch and Scatter then do not apply; Warps, Stages and
	// KeyTile do.
	MMA int
	// Warps is the tensor-core kernel's warps per block.
	Warps int
	// Stages is its shared-memory stages per warp (Stages-1 tiles in flight).
	Stages int
	// KeyTile is its keys per warp tile (16 or 32).
	KeyTile int
	// Fuse makes the tensor-core kernel's last block per head block merge
	// the splits itself (no decode_combine launch).
	Fuse bool
	// EvictFirst makes the tensor-core gather (sparse decode) load K/V
	// rows under an L2 evict-first policy: rows read once displace each
	// other rather than other lines (after a write flush, the dirty lines
	// it left, whose write-backs the call then does not pay). Dense decode
	// keeps the normal policy: on the H200 its 4 GiB stream at 1M was 2.7%
	// slower with it after a write flush, and no faster after a read flush
	// (docs/gpu-notes.md, session 7).
	EvictFirst bool
	// Trace makes the tensor-core kernel stamp each warp's phases into a
	// device buffer (Decoder.Trace; a diagnostic).
	Trace bool
	// Splits, when > 0, overrides the split plan's splits per head block
	// (for A/B timings).
	Splits int
	// Mergers, when > 0, makes the fused merge (2 to 16 splits) tagged:
	// each block's partials carry the call's parity in their lowest bit,
	// a relaxed count (no fence) elects the last Mergers blocks to finish,
	// and each merges 1/Mergers of the outputs, loading the partials again
	// until every one carries the parity. More than one merger waits for
	// blocks not yet finished, so it needs the whole grid resident at once
	// (Decoder.Mergers falls back to 1 where it is not).
	Mergers int
}

// String renders t in the HBENCH_DECODE syntax.
func (t DecodeTuning) String() string {
	b := func(x bool) int {
		if x {
			return 1
		}
		return 0
	}
	return fmt.Sprintf("threads=%d,tile=%d,minb=%d,prefetch=%d,scatter=%d,group=%d,mma=%d,warps=%d,stages=%d,kt=%d,fuse=%d,evict=%d,trace=%d,splits=%d,mergers=%d",
		t.Threads, t.Tile, t.MinBlocks, b(t.Prefetch), t.Scatter, t.Group, t.MMA, t.Warps, t.Stages, t.KeyTile, b(t.Fuse), b(t.EvictFirst), b(t.Trace), t.Splits, t.Mergers)
}

// DefaultDecodeTuning returns the tuning for a group size (query heads
// per block), overridden field by field by the environment variable
// HBENCH_DECODE ("threads=128,tile=2,minb=4,prefetch=1,scatter=1,group=0"),
// for A/B timings.
func DefaultDecodeTuning(group int) (DecodeTuning, error) {
	// Measured best on the H200 (docs/gpu-notes.md): 256 threads, tile 2,
	// owner-lane softmax; 128 registers, 2 blocks/SM for group 4.
	t := DecodeTuning{Threads: 256, Tile: 2, Prefetch: true, Scatter: 2, MMA: 4, Warps: 8, Stages: 3, KeyTile: 16, Fuse: true, EvictFirst: true, Mergers: 4}
	if group >= 8 {
		// Group 8 needs about 255 registers at 256 threads.
		t.Threads = 128
	}
	// Groups >= 4 run the tensor-core kernel: 8 warps × 3 stages of
	// 16-key tiles (192 KiB of shared memory at d = 128, one block per
	// SM), fused merge; best of the A/B in docs/gpu-notes.md (version 7).
	// The merge is tagged, by the last 4 blocks of a head block (session
	// 9: 0.2-0.5 µs off the gather at 128K-1M against the count's one
	// merging block).
	// Note: tile 4 (157-185 registers, 1 block/SM), 128-thread blocks with
	// launch bounds, and group=1 (one block per query head, K/V shared
	// through L2 only) were all slower for group 4; see docs/gpu-notes.md.
	env := os.Getenv("HBENCH_DECODE")
	if env == "" {
		return t, nil
	}
	for _, kv := range strings.Split(env, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil {
			return t, fmt.Errorf("HBENCH_DECODE: %q is not key=integer", kv)
		}
		switch k {
		case "threads":
			t.Threads = n
		case "tile":
			t.Tile = n
		case "minb":
			t.MinBlocks = n
		case "prefetch":
			t.Prefetch = n != 0
		case "scatter":
			t.Scatter = n
		case "group":
			t.Group = n
		case "mma":
			t.MMA = n
		case "warps":
			t.Warps = n
		case "stages":
			t.Stages = n
		case "kt":
			t.KeyTile = n
		case "fuse":
			t.Fuse = n != 0
		case "evict":
			t.EvictFirst = n != 0
		case "trace":
			t.Trace = n != 0
		case "splits":
			t.Splits = n
		case "mergers":
			t.Mergers = n
		default:
			return t, fmt.Errorf("HBENCH_DECODE: unknown key %q (threads, tile, minb, prefetch, scatter, group, mma, warps, stages, kt, fuse, evict, trace, splits, mergers)", k)
		}
	}
	if t.Threads < 32 || t.Threads > 1024 || t.Threads%32 != 0 || t.Tile < 1 || t.Tile > 8 || t.Tile&(t.Tile-1) != 0 || t.MinBlocks < 0 || t.Group < 0 || t.Scatter < 0 || t.Scatter > 2 ||
		t.MMA < 0 || t.Warps < 1 || t.Warps > 32 || t.Stages < 2 || t.Stages > 8 || (t.KeyTile != 16 && t.KeyTile != 32) || t.Splits < 0 || t.Mergers < 0 || t.Mergers > mmaSlots {
		return t, fmt.Errorf("HBENCH_DECODE: bad tuning %v", t)
	}
	return t, nil
}

func groupOf(s Shape, sel Selection, t DecodeTuning) int {
	if sel == PerHead {
		return 1
	}
	g := s.Heads / s.KVHeads
	if sel == Dense && t.Group > 0 && g%t.Group == 0 {
		return t.Group
	}
	return g
}

// DecodeDefines returns the defines of the decode module for a shape,
// selection and tuning.
func DecodeDefines(s Shape, sel Selection, t DecodeTuning) map[string]string {
	bf := "1"
	if s.DType == FP16 {
		bf = "0"
	}
	pre, rs := "0", strconv.Itoa(t.Scatter)
	if t.Prefetch {
		pre = "1"
	}
	if t.Scatter == 2 && groupOf(s, sel, t)*t.Tile > s.HeadDim/8 {
		rs = "1" // owner softmax needs a score per lane at most
	}
	d := map[string]string{
		"HEAD_DIM": strconv.Itoa(s.HeadDim), "GROUP": strconv.Itoa(groupOf(s, sel, t)), "DTYPE_BF16": bf,
		"THREADS": strconv.Itoa(t.Threads), "TILE": strconv.Itoa(t.Tile), "MINB": strconv.Itoa(t.MinBlocks), "PREFETCH": pre, "SCATTER": rs,
	}
	if UsesMMA(s, sel, t) {
		d["MMA_WARPS"], d["MMA_STAGES"], d["MMA_KT"] = strconv.Itoa(t.Warps), strconv.Itoa(t.Stages), strconv.Itoa(t.KeyTile)
		d["DECODE_MMA"] = "1"
		d["MMA_FUSE"], d["MMA_EVICT"] = "0", "0"
		if t.Fuse {
			d["MMA_FUSE"] = "1"
		}
		if t.EvictFirst && sel != Dense {
			d["MMA_EVICT"] = "1"
		}
		if t.Trace {
			d["MMA_TRACE"] = "1"
		}
	}
	return d
}

// MMASource is the source of the tensor-core decode module: decode.cu
// (with DECODE_MMA=1 it contributes only decode_combine) followed by
// decode_mma.cu.
func MMASource() string { return decodeSrc + "\n" + decodeMMASrc }

// UsesMMA says whether a decode of shape s and selection sel runs the
// tensor-core kernel (decode_mma.cu) under tuning t: when the query heads
// per block are at least t.MMA.
func UsesMMA(s Shape, sel Selection, t DecodeTuning) bool {
	return t.MMA > 0 && groupOf(s, sel, t) >= t.MMA
}

// FitMMA returns t with Stages, then Warps, reduced until the tensor-core
// kernel's shared memory fits maxSmem bytes per block (the device's
// opt-in limit: 227 KiB on the H100/H200, 163 KiB on the A100; 0: no
// limit known).
func FitMMA(s Shape, t DecodeTuning, maxSmem int) DecodeTuning {
	for maxSmem > 0 && MMASmem(s, t) > maxSmem {
		switch {
		case t.Stages > 2:
			t.Stages--
		case t.Warps > 1:
			t.Warps /= 2
		default:
			return t
		}
	}
	return t
}

// MMASmem is the tensor-core kernel's dynamic shared memory per block in
// bytes: Warps × Stages × (a K and a V tile of KeyTile rows).
func MMASmem(s Shape, t DecodeTuning) int {
	return t.Warps * t.Stages * 2 * t.KeyTile * s.HeadDim * 2
}

// NewDecoder compiles and loads the kernels and allocates the partials
// and the output. k is the index-list length for the gather selections
// (ignored for Dense).
func NewDecoder(c *Ctx, s Shape, sel Selection, k int) (*Decoder, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	n := s.Context
	if sel != Dense {
		if k < 1 || k > s.Context {
			return nil, fmt.Errorf("sparse decode: k = %d must be in [1, %d]", k, s.Context)
		}
		n = k
	}
	tune, err := DefaultDecodeTuning(groupOf(s, sel, DecodeTuning{}))
	if err != nil {
		return nil, err
	}
	if UsesMMA(s, sel, tune) {
		tune = FitMMA(s, tune, c.d.Props.MaxSharedOptin)
	}
	d := &Decoder{Shape: s, Sel: sel, K: n, Tuning: tune, group: groupOf(s, sel, tune), MMA: UsesMMA(s, sel, tune), Threads: tune.Threads}
	src, name := decodeSrc, "decode_dense"
	if sel != Dense {
		name = "decode_gather"
	}
	step := tune.Threads / (s.HeadDim / 8) * tune.Tile
	if d.MMA {
		src, name = MMASource(), name+"_mma"
		d.Threads, d.Smem = tune.Warps*32, MMASmem(s, tune)
		step = tune.Warps * tune.KeyTile
	}
	mod, err := c.module("decode.cu", src, DecodeDefines(s, sel, tune))
	if err != nil {
		return nil, err
	}
	d.mod = mod
	if d.partial, err = c.Func(mod, name); err != nil {
		return nil, err
	}
	if d.combine, err = c.Func(mod, "decode_combine"); err != nil {
		return nil, err
	}
	if d.Smem > 0 {
		if err := c.SetMaxDynamicSmem(d.partial, d.Smem); err != nil {
			return nil, fmt.Errorf("decode: %d B of shared memory per block: %w", d.Smem, err)
		}
	}
	if d.Occ, err = c.Occupancy(d.partial, d.Threads, d.Smem); err != nil {
		return nil, err
	}
	if d.Occ < 1 {
		return nil, fmt.Errorf("decode: %s does not fit on an SM (%d threads, %d B shared memory, %d registers)", name, d.Threads, d.Smem, d.partial.Regs)
	}
	hb := s.Batch * s.Heads / d.group
	d.Splits, d.Chunk = splitPlan(n, hb, c.d.Props.SMs*max(d.Occ, 1), step)
	if tune.Splits > 0 {
		d.Splits, d.Chunk = ChunkPlan(n, tune.Splits, 1, step)
	}
	if m := tune.Mergers; d.MMA && tune.Fuse && m > 0 && d.Splits > 1 && d.Splits <= mmaSlots {
		// Mergers but the last wait for blocks not yet finished, so every
		// block must be resident at once: one wave, and no kernel after
		// this one may take SMs first (the decode kernels never trigger
		// their dependents early, so a PDL successor starts only once
		// every block has exited).
		if m > 1 && hb*d.Splits > c.d.Props.SMs*d.Occ {
			m = 1
		}
		d.Mergers = min(m, d.Splits)
	}
	bh := int64(s.Batch * s.Heads)
	slots := d.Splits
	if d.MMA && tune.Fuse && d.Splits <= mmaSlots {
		slots = mmaSlots
	}
	if d.Mergers > 0 {
		// One 16-byte slot (acc, M, L) per output pair and split, all
		// starting as the neutral (0, 0, MM_NEG, 0) with every word's
		// lowest bit 1 (parity 1): the first call, at parity 0, waits for
		// its own; slots past the splits keep these values.
		n := hb * mmaSlots * d.group * s.HeadDim / 2
		init := make([]uint32, 4*n)
		for i := 0; i < n; i++ {
			init[4*i], init[4*i+1], init[4*i+2], init[4*i+3] = 1, 1, math.Float32bits(-1e30)|1, 1
		}
		d.pacc, err = Upload(c, init)
	} else {
		d.pacc, err = c.Alloc(bh * int64(slots) * int64(s.HeadDim) * 4)
	}
	if err != nil {
		return nil, err
	}
	if d.pml, err = c.Alloc(bh * int64(slots) * 2 * 4); err != nil {
		return nil, err
	}
	if d.Out, err = c.Alloc(bh * int64(s.HeadDim) * 4); err != nil {
		return nil, err
	}
	if d.MMA {
		// The fused merge's counters start at zero; the last block of each
		// head block resets its counter after every call.
		if d.cnt, err = c.Alloc(int64(s.Batch*s.Heads/d.group) * 4); err != nil {
			return nil, err
		}
		if err := c.Fill32(d.cnt, 0, 0); err != nil {
			return nil, err
		}
		if err := c.Sync(); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// mmaSlots is the partial slots per head of the fused tensor-core decode
// when it has at most that many splits (MM_SLOTS in decode_mma.cu): its
// merge then reads every slot at once, with no per-split predicate (the
// blocks write the slots past the splits as empty every call).
const mmaSlots = 16

// splitPlan chooses the number of splits and the keys per split for n
// keys, headBlocks (batch, head-block) pairs, slots resident blocks on
// the whole device: as many splits as fill the slots in one wave (equal
// chunks, so no second wave runs on a few SMs), but at least two block
// steps (step keys each) per split.
func splitPlan(n, headBlocks, slots, step int) (splits, chunk int) {
	want := max(1, slots/headBlocks)
	most := max(1, (n+2*step-1)/(2*step))
	return ChunkPlan(n, min(want, most), 1, step)
}

// DecodeInputs are the device inputs of a decode call.
type DecodeInputs struct {
	Q    Buffer // fp32 [Batch][Heads][HeadDim]
	K, V Buffer // 16-bit [Batch][KVHeads][Context][HeadDim]
	// Idx holds int32 [Batch][Lists][K] key positions (gather only).
	Idx Buffer
	// Scale is the softmax scale (1/sqrt(HeadDim) when 0).
	Scale float32
}

// Enqueue launches the decode on stream s; the result lands in d.Out.
// The gather kernels start with programmatic dependent launch (LaunchPDL)
// where the device has it: their blocks wait for the kernel before them
// (which writes the lists) but their launch overlaps its tail.
func (d *Decoder) Enqueue(c *Ctx, s Stream, in DecodeInputs) error {
	sh := d.Shape
	scale := in.Scale
	if scale == 0 {
		scale = 1 / sqrt32(float32(sh.HeadDim))
	}
	grid := Dim3{uint32(d.Splits), uint32(sh.Heads / d.group), uint32(sh.Batch)}
	block := Dim3{X: uint32(d.Threads)}
	smem := uint32(d.Smem)
	var err error
	switch {
	case d.MMA && d.Sel == Dense:
		err = c.Launch(d.partial, grid, block, smem, s, in.Q, in.K, in.V, sh.Context, sh.Heads, sh.KVHeads, d.Chunk, scale, d.pacc, d.pml, d.cnt, d.Out, d.Mergers)
	case d.MMA:
		err = c.LaunchPDL(d.partial, grid, block, smem, s, in.Q, in.K, in.V, in.Idx, d.K, sh.Context, sh.Heads, sh.KVHeads, d.Chunk, scale, d.pacc, d.pml, d.cnt, d.Out, d.Mergers)
	case d.Sel == Dense:
		err = c.Launch(d.partial, grid, block, smem, s, in.Q, in.K, in.V, sh.Context, sh.Heads, sh.KVHeads, d.Chunk, scale, d.pacc, d.pml)
	default:
		err = c.LaunchPDL(d.partial, grid, block, smem, s, in.Q, in.K, in.V, in.Idx, d.K, sh.Context, sh.Heads, sh.KVHeads, d.Chunk, scale, d.pacc, d.pml)
	}
	if err != nil || (d.MMA && d.Tuning.Fuse) {
		return err
	}
	return c.Launch(d.combine, Dim3{X: uint32(sh.Batch * sh.Heads)}, Dim3{X: uint32(sh.HeadDim)}, 0, s, d.pacc, d.pml, d.Splits, d.Out)
}

// DecodeTracePoints is the number of phase stamps per warp of a traced
// tensor-core decode (Decoder.Trace).
const DecodeTracePoints = 10

// Trace reads the phase stamps of the decoder's last launch, made with
// HBENCH_DECODE=trace=1 (a diagnostic; the tensor-core kernel only): per
// block (split + Splits*(head block + head blocks*batch)) and warp, the
// %globaltimer (ns) as lane 0 passed each point: 0 start, 1 its first
// tiles' copies issued, 2 tile 0 arrived, 3 its last tile arrived, 4 its
// tiles done, 5 the block's partials written, 6 past the block's count of
// finished splits, 7 the merge done (the merging blocks only), 8 the
// merge's loads arrived (the merging blocks, at most 16 splits), 9 the
// block's barrier before its count; 0 where a warp had no tile or did not
// pass the point.
func (d *Decoder) Trace(c *Ctx) ([][][DecodeTracePoints]uint64, error) {
	if !d.MMA || !d.Tuning.Trace {
		return nil, fmt.Errorf("decode trace: needs the tensor-core kernel with HBENCH_DECODE=trace=1")
	}
	g, err := c.Global(d.mod, "mm_trace")
	if err != nil {
		return nil, err
	}
	w := d.Tuning.Warps
	n := d.Splits * d.Shape.Batch * d.Shape.Heads / d.group
	raw := make([]uint64, g.Size/8)
	if err := Download(c, raw, g); err != nil {
		return nil, err
	}
	if n*w*DecodeTracePoints > len(raw) {
		return nil, fmt.Errorf("decode trace: %d blocks, room for %d", n, len(raw)/(w*DecodeTracePoints))
	}
	out := make([][][DecodeTracePoints]uint64, n)
	for i := range out {
		out[i] = make([][DecodeTracePoints]uint64, w)
		for j := range out[i] {
			copy(out[i][j][:], raw[(i*w+j)*DecodeTracePoints:])
		}
	}
	return out, nil
}

// Free releases the decoder's buffers.
func (d *Decoder) Free(c *Ctx) {
	c.Free(d.pacc)
	c.Free(d.pml)
	c.Free(d.Out)
	if d.cnt.Ptr != 0 {
		c.Free(d.cnt)
	}
}
