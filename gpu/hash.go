package gpu

import (
	"cmp"
	_ "embed"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/hbench/hbench/budget"
)

//go:embed kernels/hash.cu
var hashSrc string

// HashHidden is the hidden width of the HashAttention MLPs the kernels
// implement: in -> HashHidden -> HashHidden -> bits, SiLU between layers
// (the authors' default).
const HashHidden = 128

// HashMap is one learned map in row-major [out][in] form (as
// methods.MLP): W1 [HashHidden][in], W2 [HashHidden][HashHidden], W3
// [bits][HashHidden], with biases.
type HashMap struct {
	W1, B1, W2, B2, W3, B3 []float32
}

// PackHashMaps lays maps out for the kernels: per map, each weight matrix
// transposed to [in][out], followed by its bias.
func PackHashMaps(maps []HashMap, in, bits int) ([]float32, error) {
	h := HashHidden
	var out []float32
	tr := func(w []float32, rows, cols int) {
		for c := 0; c < cols; c++ {
			for r := 0; r < rows; r++ {
				out = append(out, w[r*cols+c])
			}
		}
	}
	for i, m := range maps {
		if len(m.W1) != h*in || len(m.B1) != h || len(m.W2) != h*h || len(m.B2) != h || len(m.W3) != bits*h || len(m.B3) != bits {
			return nil, fmt.Errorf("gpu: hash map %d: shapes do not match %d -> %d -> %d -> %d", i, in, h, h, bits)
		}
		tr(m.W1, h, in)
		out = append(out, m.B1...)
		tr(m.W2, h, h)
		out = append(out, m.B2...)
		tr(m.W3, bits, h)
		out = append(out, m.B3...)
	}
	return out, nil
}

// HashStep is the per-token HashAttention pipeline for one shape: query
// codes through the query MLPs, XOR+popcount scores fused with a counting
// select into index lists, then the sparse decode over the lists.
type HashStep struct {
	Shape  Shape
	Sel    Selection // PerKVHead (scores summed over the group) or PerHead
	Bits   int
	Budget budget.Budget
	// CodeHeads is the number of key-code heads: Heads (a code per query
	// head) or KVHeads (one per KV head).
	CodeHeads int
	// Blocks and Chunk split each list's middle range for the select.
	Blocks, Chunk int
	nbins         int
	// QC are the query codes [Batch][Heads][Bits/32] (uint32); Idx the
	// lists [Batch][Lists][Budget.Total] (int32).
	QC, Idx              Buffer
	bhist, thr, base     Buffer
	qcode, keyc          *Func
	hist, thresh, compct *Func
	// Fused is the one-launch counting select (select_fused, cooperative
	// launch on FusedBlocks blocks per list); false: the three kernels.
	Fused                   bool
	FusedBlocks, FusedChunk int
	// ScoreSmem is the fused select's dynamic shared memory for its
	// scores (0: they go to the scratch buffer in L2).
	ScoreSmem             int
	fused                 *Func
	ghist, bcnt, bar, scr Buffer // bcnt: per-block suffix sums of the histogram
	// Dec is the sparse decode over Idx.
	Dec *Decoder
	mod *Module
}

// HashDefines returns the hash module's defines.
func HashDefines(s Shape, sel Selection, bits, codeHeads int) map[string]string {
	selHeads := 1
	if sel == PerKVHead {
		selHeads = s.Heads / s.KVHeads
	}
	bf := "1"
	if s.DType == FP16 {
		bf = "0"
	}
	return map[string]string{
		"IN_DIM": strconv.Itoa(s.HeadDim), "HID": strconv.Itoa(HashHidden), "BITS": strconv.Itoa(bits),
		"SEL_HEADS": strconv.Itoa(selHeads), "CODE_DIV": strconv.Itoa(s.Heads / codeHeads), "DTYPE_BF16": bf,
		"MLP_PREFETCH": strconv.Itoa(min(max(hashTuning.prefetch, 0), 1)), "MLP_PARTS": strconv.Itoa(hashTuning.parts),
		"SEL_MLP": strconv.Itoa(min(max(hashTuning.mlp, 0), 1)), "SEL_MINB": strconv.Itoa(hashTuning.minb), "SEL_VF": strconv.Itoa(cmp.Or(hashTuning.vf, 4)), "SEL_TRACE": strconv.Itoa(min(max(hashTuning.trace, 0), 1)), "SEL_EVICT": strconv.Itoa(min(max(hashTuning.evict, 0), 1)), "MLP_PRELOAD": strconv.Itoa(min(max(hashTuning.preload, 0), 1)),
	}
}

const hashSelThreads = 256

// selVF is the fused select's 16-byte code loads per lane per round of
// its one-word scoring (SEL_VF) for a step of shape s on sms SMs: 8 where
// planFused will give every block its least chunk (hashSelThreads*16
// keys, one round of 4 loads per lane either way), 4 where chunks are
// longer. On the H200 ((b), cold, same call; docs/gpu-notes.md) 8 was
// 1.0 µs faster at 128K and 1.1 µs slower at 1M than 4.
func selVF(s Shape, sel Selection, b budget.Budget, sms int) int {
	lo, hi := b.MiddleRange()
	perList := max(1, sms*hashTuning.bps/(s.Batch*s.Lists(sel)))
	if hi-lo <= hashSelThreads*16*perList {
		return 8
	}
	return 4
}

// hashScoreSmem bounds the fused select's scores kept in shared memory
// per block.
const hashScoreSmem = 16 << 10

// MaxHashBins bounds the number of distinct scores of a list (bits × query
// heads per list + 1): the select keeps a histogram per warp in shared
// memory.
const MaxHashBins = 1500

// hashBins is the number of distinct scores of a list.
func hashBins(s Shape, sel Selection, bits int) int {
	if sel == PerHead {
		return bits + 1
	}
	return bits*(s.Heads/s.KVHeads) + 1
}

// NewHashStep compiles the kernels and allocates the step's buffers. The
// budget must be resolved for s.Context keys.
func NewHashStep(c *Ctx, s Shape, sel Selection, bits, codeHeads int, b budget.Budget) (*HashStep, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if sel != PerKVHead && sel != PerHead {
		return nil, fmt.Errorf("hash step: selection must be per-kv-head or per-head, got %v", sel)
	}
	if bits < 32 || bits%32 != 0 || hashBins(s, sel, bits) > MaxHashBins {
		return nil, fmt.Errorf("hash step: bits %d: must be a multiple of 32 with bits × (query heads per list) + 1 <= %d score values", bits, MaxHashBins)
	}
	if codeHeads != s.Heads && codeHeads != s.KVHeads {
		return nil, fmt.Errorf("hash step: code heads %d must be heads %d or kv_heads %d", codeHeads, s.Heads, s.KVHeads)
	}
	if b.N != s.Context || b.Total < 1 || b.Sink+b.Local+b.Heavy != b.Total {
		return nil, fmt.Errorf("hash step: budget %+v does not fit context %d", b, s.Context)
	}
	defs := HashDefines(s, sel, bits, codeHeads)
	if hashTuning.vf == 0 {
		defs["SEL_VF"] = strconv.Itoa(selVF(s, sel, b, c.d.Props.SMs))
	}
	mod, err := c.module("hash.cu", hashSrc, defs)
	if err != nil {
		return nil, err
	}
	h := &HashStep{Shape: s, Sel: sel, Bits: bits, Budget: b, CodeHeads: codeHeads, mod: mod}
	for _, f := range []struct {
		p    **Func
		name string
	}{{&h.qcode, "query_codes"}, {&h.keyc, "key_codes"}, {&h.hist, "select_hist"}, {&h.thresh, "select_threshold"}, {&h.compct, "select_compact"}, {&h.fused, "select_fused"}} {
		if *f.p, err = c.Func(mod, f.name); err != nil {
			return nil, err
		}
	}
	lists := s.Batch * s.Lists(sel)
	lo, hi := b.MiddleRange()
	m := max(hi-lo, 1)
	nbins := hashBins(s, sel, bits)
	// Enough blocks to fill the SMs a few times over, each at least one
	// pass of hashSelThreads keys; select_threshold holds all of a list's
	// block histograms in 40 KiB of shared memory.
	want := max(1, (c.d.Props.SMs*8+lists-1)/lists)
	h.Blocks = min(want, (m+hashSelThreads-1)/hashSelThreads, 4*hashSelThreads, max(1, 10240/nbins))
	h.nbins = nbins
	h.Chunk = (m + h.Blocks - 1) / h.Blocks
	h.Blocks = (m + h.Chunk - 1) / h.Chunk
	words := int64(bits / 32)
	allocs := []struct {
		b *Buffer
		n int64
	}{
		{&h.QC, int64(s.Batch*s.Heads) * words * 4},
		{&h.Idx, int64(lists) * int64(b.Total) * 4},
		{&h.bhist, int64(lists) * int64(h.Blocks) * int64(nbins) * 4},
		{&h.thr, int64(lists) * 2 * 4},
		{&h.base, int64(lists) * int64(h.Blocks) * 2 * 4},
	}
	for _, a := range allocs {
		if *a.b, err = c.Alloc(a.n); err != nil {
			h.Free(c)
			return nil, err
		}
	}
	if err := h.planFused(c, lists, m); err != nil {
		h.Free(c)
		return nil, err
	}
	if h.Dec, err = NewDecoder(c, s, sel, b.Total); err != nil {
		h.Free(c)
		return nil, err
	}
	return h, nil
}

// hashTuning is the step's tuning in force, from HBENCH_HASH ("fused=0"
// runs the three-kernel select; "bps=N" aims the fused select at N blocks
// per SM, within the occupancy limit; "prefetch=0" stops the query MLP's
// L2 prefetch of its weights; "parts=8" splits each MLP layer's inputs 8
// ways, 1024 threads per head, instead of 4; "coop=0" launches the fused
// select as a plain kernel: its grid fits the occupancy limit, so its
// blocks become resident once earlier kernels drain, but only a
// cooperative launch guarantees it; "mlp=1" runs the query MLP inside the
// fused select, whose other blocks prefetch their key codes meanwhile;
// "pdl=0" launches the fused select after the kernel before it (the query
// MLP, or LSH's query codes) instead of beside it, where the device has
// programmatic dependent launch (1, the default: beside it where the key
// codes are at most L2/8, their L2 prefetch overlapping that kernel, and
// after the query MLP at every size; 2: at every size after either; on
// the H200, beside the MLP at 1M was 1.3 µs faster for (b) and 2.4 µs for
// (c), beside LSH's codes 1.6-1.8 µs slower at 128K and 1M); "preload=0"
// loads each MLP layer's weights when it starts instead of all three
// layers' at once into registers; "smem=0" keeps the fused select's scores
// in the L2 scratch buffer even where they fit in shared memory; "minb=N"
// caps the fused select's registers for N blocks per SM (0: no cap; 4
// measured 2-5 us slower at 128K and 2-4 us faster at 1M, docs/gpu-notes.md);
// "vf=N" sets the 16-byte code loads per lane per round of the fused
// select's one-word scoring (0, the default: selVF chooses; 2, 4 or 8);
// "trace=1" makes the fused select stamp its phases (SelectTrace);
// "evict=0" loads the one-word key codes without the L2 evict-first
// policy (read once, they otherwise displace each other first).
var hashTuning = func() struct{ fused, bps, prefetch, parts, coop, mlp, pdl, preload, smem, minb, vf, trace, evict int } {
	t := struct{ fused, bps, prefetch, parts, coop, mlp, pdl, preload, smem, minb, vf, trace, evict int }{1, 4, 1, 4, 1, 0, 1, 1, 1, 0, 0, 0, 1}
	for _, kv := range strings.Split(os.Getenv("HBENCH_HASH"), ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		n, err := strconv.Atoi(v)
		switch {
		case kv == "":
		case ok && err == nil && k == "fused":
			t.fused = n
		case ok && err == nil && k == "bps" && n >= 1:
			t.bps = n
		case ok && err == nil && k == "prefetch":
			t.prefetch = n
		case ok && err == nil && k == "parts" && (n == 2 || n == 4 || n == 8):
			t.parts = n
		case ok && err == nil && k == "coop":
			t.coop = n
		case ok && err == nil && k == "mlp":
			t.mlp = n
		case ok && err == nil && k == "pdl" && n >= 0 && n <= 2:
			t.pdl = n
		case ok && err == nil && k == "preload":
			t.preload = n
		case ok && err == nil && k == "smem":
			t.smem = n
		case ok && err == nil && k == "minb" && n >= 0 && n <= 8:
			t.minb = n
		case ok && err == nil && k == "vf" && (n == 0 || n == 2 || n == 4 || n == 8):
			t.vf = n
		case ok && err == nil && k == "trace":
			t.trace = n
		case ok && err == nil && k == "evict":
			t.evict = n
		default:
			panic(fmt.Sprintf("HBENCH_HASH: %q is not fused=0|1, bps=N, prefetch=0|1, parts=2|4|8, coop=0|1, mlp=0|1, pdl=0|1|2, preload=0|1, smem=0|1, minb=0..8, vf=0|2|4|8, trace=0|1 or evict=0|1", kv))
		}
	}
	return t
}()

// HashTuningString is the step's tuning in force, for result files.
func HashTuningString() string {
	t := hashTuning
	return fmt.Sprintf("fused=%d,bps=%d,prefetch=%d,parts=%d,coop=%d,mlp=%d,pdl=%d,preload=%d,smem=%d,minb=%d,vf=%d,trace=%d,evict=%d", t.fused, t.bps, t.prefetch, t.parts, t.coop, t.mlp, t.pdl, t.preload, t.smem, t.minb, t.vf, t.trace, t.evict)
}

// planFused sizes the fused select: every block of the grid must be
// resident at once (cooperative launch), so the blocks per list are the
// occupancy limit shared among all lists, at most one block per
// hashSelThreads*16 keys with one-word codes (one round of the kernel's
// 16-byte loads: fewer, fuller blocks meet sooner at the list barrier;
// measured in docs/gpu-notes.md) and per hashSelThreads*8 keys
// otherwise. Without room for a block per list it keeps the three-kernel
// select.
func (h *HashStep) planFused(c *Ctx, lists, m int) error {
	if hashTuning.fused == 0 {
		return nil
	}
	occ, err := c.Occupancy(h.fused, hashSelThreads, 0)
	if err != nil {
		return err
	}
	bps := min(occ, hashTuning.bps)
	capacity := c.d.Props.SMs * bps
	minKeys := hashSelThreads * 8
	if h.codeWords() == 1 {
		minKeys = hashSelThreads * 16
	}
	per := min(capacity/lists, (m+minKeys-1)/minKeys)
	if per < 1 {
		return nil
	}
	h.FusedChunk = ((m+per-1)/per + 15) / 16 * 16 // 16-byte aligned score chunks
	h.FusedBlocks = (m + h.FusedChunk - 1) / h.FusedChunk
	scoreBytes := int64(1)
	if h.nbins > 256 {
		scoreBytes = 2
	}
	// Scores stay in shared memory when a block's chunk fits in
	// hashScoreSmem bytes and the blocks per SM planned above still fit
	// beside it, so that the grid is the same either way.
	if n := int64(h.FusedChunk) * scoreBytes; n <= hashScoreSmem && hashTuning.smem == 1 {
		occS, err := c.Occupancy(h.fused, hashSelThreads, int(n))
		if err != nil {
			return err
		}
		if occS >= bps {
			h.ScoreSmem = int(n)
		}
	}
	for _, a := range []struct {
		b *Buffer
		n int64
	}{
		{&h.ghist, int64(lists) * 2 * int64(h.nbins) * 4}, // two copies, by launch parity
		{&h.bcnt, int64(lists) * int64(h.FusedBlocks) * int64(h.nbins+1) * 4},
		{&h.bar, int64(lists) * 32 * 4},
		{&h.scr, int64(lists) * int64(h.FusedBlocks) * int64(h.FusedChunk) * scoreBytes},
	} {
		if *a.b, err = c.Alloc(a.n); err != nil {
			return err
		}
	}
	for _, b := range []Buffer{h.ghist, h.bar} {
		if err := c.Fill32(b, 0, 0); err != nil {
			return err
		}
	}
	h.Fused = true
	return c.Sync()
}

// codeHeadsPerList is the number of key-code heads a list scores (the
// kernel's KHEADS): one where a code head serves all of the list's query
// heads, else one per query head of the list.
func (h *HashStep) codeHeadsPerList() int {
	selHeads := h.Shape.Heads / h.Shape.Lists(h.Sel)
	if h.Shape.Heads/h.CodeHeads < selHeads {
		return selHeads
	}
	return 1
}

// codeWords is the number of 32-bit code words the select reads per key.
func (h *HashStep) codeWords() int { return h.codeHeadsPerList() * h.Bits / 32 }

// HashTracePoints is the number of phase stamps per block of the fused
// select's trace: 0 entry, 1 past the wait for the kernel before it, 2
// query codes loaded, 3 chunk scored, 4 suffix sums published, 5 past the
// list barrier, 6 threshold known, 7 keys before each warp's part counted
// (the blocks before and the warps before), 8 compaction done.
const HashTracePoints = 9

// SelectTrace reads the fused select's phase stamps of its last launch,
// made with HBENCH_HASH=trace=1 (a diagnostic): per block, in the order
// block x of list l of batch b at (b*Lists + l)*FusedBlocks + x, the
// %globaltimer (ns) at each point, as thread 0 of the block passed it.
func (h *HashStep) SelectTrace(c *Ctx) ([][HashTracePoints]uint64, error) {
	if !h.Fused || hashTuning.trace != 1 {
		return nil, fmt.Errorf("select trace: needs the fused select with HBENCH_HASH=trace=1")
	}
	g, err := c.Global(h.mod, "sel_trace")
	if err != nil {
		return nil, err
	}
	n := h.Shape.Batch * h.Shape.Lists(h.Sel) * h.FusedBlocks
	raw := make([]uint64, g.Size/8)
	if err := Download(c, raw, g); err != nil {
		return nil, err
	}
	if n*HashTracePoints > len(raw) {
		return nil, fmt.Errorf("select trace: %d blocks, room for %d", n, len(raw)/HashTracePoints)
	}
	out := make([][HashTracePoints]uint64, n)
	for i := range out {
		copy(out[i][:], raw[i*HashTracePoints:])
	}
	return out, nil
}

// KeyCodeBytes is the size of the key codes [Batch][CodeHeads][Context][Bits/32].
func (h *HashStep) KeyCodeBytes() int64 {
	return int64(h.Shape.Batch*h.CodeHeads) * int64(h.Shape.Context) * int64(h.Bits/8)
}

// MapFloats is the number of floats of one packed map.
func (h *HashStep) MapFloats() int {
	d, m := h.Shape.HeadDim, HashHidden
	return d*m + m + m*m + m + m*h.Bits + h.Bits
}

// EnqueueKeyCodes computes the key codes kc from the keys k through the
// CodeHeads packed key maps kw (prefill; not part of the step).
func (h *HashStep) EnqueueKeyCodes(c *Ctx, s Stream, k, kw, kc Buffer) error {
	sh := h.Shape
	return c.Launch(h.keyc, Dim3{uint32(sh.Context), uint32(h.CodeHeads), uint32(sh.Batch)}, Dim3{X: uint32(hashTuning.parts * HashHidden)}, 0, s,
		k, kw, sh.Context, sh.KVHeads, h.CodeHeads, kc)
}

// EnqueueQueryCodes computes only the query codes (for timing the MLP).
func (h *HashStep) EnqueueQueryCodes(c *Ctx, s Stream, q, qw Buffer) error {
	sh := h.Shape
	return c.Launch(h.qcode, Dim3{uint32(sh.Heads), uint32(sh.Batch), 1}, Dim3{X: uint32(hashTuning.parts * HashHidden)}, 0, s, q, qw, sh.Heads, h.QC)
}

// EnqueueSelect computes the query codes from q through the Heads packed
// query maps qw, scores the key codes kc and writes the lists to h.Idx.
func (h *HashStep) EnqueueSelect(c *Ctx, s Stream, q, qw, kc Buffer) error {
	if h.Fused && hashTuning.mlp == 1 {
		return h.launchFused(c, s, kc, q, qw, 1, false)
	}
	if err := h.EnqueueQueryCodes(c, s, q, qw); err != nil {
		return err
	}
	return h.enqueueSelectCodes(c, s, kc, true)
}

// launchFused launches select_fused; with mlp 1 it also computes the query
// codes from q through the maps qw into h.QC; afterMLP says that the
// query MLP kernel runs just before it.
func (h *HashStep) launchFused(c *Ctx, s Stream, kc, q, qw Buffer, mlp int, afterMLP bool) error {
	sh := h.Shape
	lo, hi := h.Budget.MiddleRange()
	launch := c.LaunchCooperative
	if hashTuning.coop == 0 {
		launch = c.Launch
	}
	// L2 prefetch of the key codes while the query codes are made (by the
	// MLP kernel before, overlapped through programmatic dependent launch,
	// or with mlp here): at most half the L2 over the whole grid.
	lists := sh.Lists(h.Sel)
	pf := int(c.d.Props.L2Bytes / 2 / int64(h.FusedBlocks*lists*sh.Batch*h.codeHeadsPerList()))
	switch {
	case mlp == 1:
	case h.pdl(c, afterMLP):
		// The grid fits the occupancy limit; the blocks that find no room
		// beside the MLP kernel's become resident when it exits (it waits
		// on nothing), so the list barrier cannot deadlock.
		launch = c.LaunchPDL
		if !h.prefetchCodes(c) {
			pf = 0
		}
	default:
		pf = 0
	}
	smemScores := 0
	if h.ScoreSmem > 0 {
		smemScores = 1
	}
	return launch(h.fused, Dim3{uint32(h.FusedBlocks), uint32(lists), uint32(sh.Batch)}, Dim3{X: hashSelThreads}, uint32(h.ScoreSmem), s,
		h.QC, kc, sh.Context, sh.Heads, lo, hi, h.FusedChunk, h.Budget.Heavy, h.ghist, h.bcnt, h.bar, h.scr,
		h.Budget.Sink, h.Budget.Local, h.Budget.Total, h.Idx, q, qw, mlp, pf, smemScores)
}

// pdl says whether the fused select starts under programmatic dependent
// launch: its blocks prefetch their key codes while the kernel before it
// (the query MLP, or LSH's query codes) runs.
//
// Only where the key codes are at most an eighth of the L2 (H200: (b) at
// 128K-256K): prefetching more (16 MiB at 128K per query head, 32-128 MiB
// at 1M) measured slower than the plain launch (docs/gpu-notes.md).
// afterMLP says that the kernel before it is the query MLP (EnqueueSelect),
// not the caller's (LSH's hyperplane codes).
func (h *HashStep) pdl(c *Ctx, afterMLP bool) bool {
	return c.PDL() && (hashTuning.pdl == 1 && (h.prefetchCodes(c) || afterMLP) || hashTuning.pdl == 2)
}

// prefetchCodes says whether the fused select's blocks ask L2 for their
// key codes before the wait under programmatic dependent launch: where
// the codes are at most L2/8 (more was measured slower, docs/gpu-notes.md).
func (h *HashStep) prefetchCodes(c *Ctx) bool { return h.KeyCodeBytes() <= c.d.Props.L2Bytes/8 }

// EnqueueSelectCodes runs the counting select alone on the query codes
// already in h.QC ([Batch][Heads][Bits/32] uint32, written by the caller:
// LSH's hyperplane codes use this) and the key codes kc, writing the
// lists to h.Idx.
func (h *HashStep) EnqueueSelectCodes(c *Ctx, s Stream, kc Buffer) error {
	return h.enqueueSelectCodes(c, s, kc, false)
}

// enqueueSelectCodes is EnqueueSelectCodes after the query MLP (afterMLP)
// or another kernel.
func (h *HashStep) enqueueSelectCodes(c *Ctx, s Stream, kc Buffer, afterMLP bool) error {
	sh := h.Shape
	lists := uint32(sh.Lists(h.Sel))
	lo, hi := h.Budget.MiddleRange()
	if h.Fused {
		return h.launchFused(c, s, kc, Buffer{}, Buffer{}, 0, afterMLP)
	}
	grid := Dim3{uint32(h.Blocks), lists, uint32(sh.Batch)}
	blk := Dim3{X: hashSelThreads}
	if err := c.Launch(h.hist, grid, blk, 0, s, h.QC, kc, sh.Context, sh.Heads, lo, hi, h.Chunk, h.bhist); err != nil {
		return err
	}
	if err := c.Launch(h.thresh, Dim3{lists, uint32(sh.Batch), 1}, blk, uint32(h.Blocks*h.nbins*4), s, h.bhist, h.Blocks, h.Budget.Heavy, h.thr, h.base); err != nil {
		return err
	}
	return c.Launch(h.compct, grid, blk, 0, s, h.QC, kc, sh.Context, sh.Heads, lo, hi, h.Chunk, h.thr, h.base,
		h.Budget.Sink, h.Budget.Local, h.Budget.Total, h.Idx)
}

// Enqueue runs the whole step: select, then the sparse decode of q over
// in.K, in.V into h.Dec.Out.
func (h *HashStep) Enqueue(c *Ctx, s Stream, in DecodeInputs, qw, kc Buffer) error {
	if err := h.EnqueueSelect(c, s, in.Q, qw, kc); err != nil {
		return err
	}
	in.Idx = h.Idx
	return h.Dec.Enqueue(c, s, in)
}

// StepBytes is the byte floor of one step: the key codes once, the query
// maps, the K/V rows of the lists, the lists, q and the output.
func (h *HashStep) StepBytes() int64 {
	maps := int64(h.Shape.Heads) * int64(h.MapFloats()) * 4
	return h.KeyCodeBytes() + maps + h.Shape.DecodeBytes(h.Sel, h.Budget.Total)
}

// SelectBytes is the byte floor of the select alone: the key codes once.
func (h *HashStep) SelectBytes() int64 { return h.KeyCodeBytes() }

// Free releases the step's buffers.
func (h *HashStep) Free(c *Ctx) {
	for _, b := range []Buffer{h.QC, h.Idx, h.bhist, h.thr, h.base, h.ghist, h.bcnt, h.bar, h.scr} {
		c.Free(b)
	}
	if h.Dec != nil {
		h.Dec.Free(c)
	}
}
