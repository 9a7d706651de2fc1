// Tensor-core split-K decode attention for GQA groups (dense and gather).
//
// The same split-K + log-sum-exp design and the same partials layout as
// decode.cu (whose decode_combine merges the splits), but QK and PV of the
// block's GROUP query heads run on mma.sync.m16n8k16 (16-bit in, fp32
// accumulate; sm_80 and sm_90 alike), with K/V tiles staged in shared
// memory by cp.async and read back with ldmatrix.
//
// Specialised by defines:
//   HEAD_DIM    64 or 128
//   GROUP       query heads per block (1..8; used for groups >= 4)
//   DTYPE_BF16  1 for bf16 K/V, 0 for fp16
//   MMA_WARPS   warps per block; each warp runs its own key tiles
//   MMA_STAGES  shared-memory stages per warp (tiles in flight: STAGES-1)
//   MMA_KT      keys per warp tile (16 or 32)
//   MMA_FUSE    1: the last block of a head block to finish merges all
//               splits (log-sum-exp) and writes the output, so no
//               decode_combine launch (one split writes it directly; up
//               to MM_SLOTS splits are merged from MM_SLOTS padded slots
//               with no per-split predicate); 0: decode_combine does it.
//               The kernels' last argument `mergers` > 0 (2 to MM_SLOTS
//               splits, gpu.DecodeTuning.Mergers) makes the merge tagged:
//               partials carry the call's parity in each word's lowest
//               bit, a relaxed count elects the last `mergers` blocks, and
//               each merges 1/mergers of the outputs once every partial it
//               loads carries the parity (no fence before the count; one
//               SM no longer loads every partial)
//   MMA_EVICT   1: K/V rows are loaded under an L2 evict-first policy
//               (read once: they displace each other, not other data);
//               gpu.DecodeDefines sets it for the gather only
//
// Fragments (m16n8k16, groupID = lane/4, tig = lane%4):
//   QK: S[row][key] = A[row][d] * K[key][d]: rows 0..7 of A hold the high
//       16-bit part of the pre-scaled q of head `row`, rows 8..15 the
//       residual q - hi (so lane's c0 + c2 is the full score); B = K rows
//       straight from shared memory (ldmatrix).
//   PV: O[row][d] = P[row][key] * V[key][d]: rows 0..7 of A hold the high
//       part of the probabilities, rows 8..15 the residual (the C layout of
//       QK is the A layout of PV, so P never leaves registers); B = V by
//       ldmatrix.trans. The output of head g is c0 + c2.
// Splitting q and P into a 16-bit value and its 16-bit residual uses the
// M rows a group of <= 8 heads leaves idle, so it costs no extra mma and
// keeps q and P at about 16 significant bits instead of 8 (bf16).
//
// Shared memory: per warp MMA_STAGES stages of [K tile | V tile], each
// tile MMA_KT rows of HEAD_DIM 16-bit values; 16-byte chunk c of row r
// sits at chunk c ^ (r & 7) (conflict-free ldmatrix and cp.async).

#ifndef HEAD_DIM
#define HEAD_DIM 128
#endif
#ifndef GROUP
#define GROUP 4
#endif
#ifndef DTYPE_BF16
#define DTYPE_BF16 1
#endif
#ifndef MMA_WARPS
#define MMA_WARPS 4
#endif
#ifndef MMA_STAGES
#define MMA_STAGES 4
#endif
#ifndef MMA_KT
#define MMA_KT 16
#endif
#ifndef MMA_FUSE
#define MMA_FUSE 1
#endif
#ifndef MMA_EVICT
#define MMA_EVICT 1
#endif
#ifndef MMA_TRACE
#define MMA_TRACE 0  // 1: lane 0 of every warp stamps its phases into mm_trace (a diagnostic)
#endif
#define MM_TRACE_PTS 10
#if MMA_TRACE
#define MM_TRACE_BLOCKS 2048
// mm_trace[block][warp][p]: %globaltimer (ns) when lane 0 of the warp of
// block (split + splits*(head block + heads/GROUP*b)) passed point p: 0
// start (past pdl_wait), 1 its first tiles' copies issued (their indices
// arrived), 2 tile 0 arrived, 3 its last tile arrived, 4 its tiles done, 5
// the block's partials written, 6 past the block's count, 7 the merge done
// (the merging blocks only), 8 the merge's loads arrived (the merging blocks, at
// most MM_SLOTS splits), 9 the barrier before the count; 0 where a warp
// did not pass the point (gpu.Decoder.Trace).
__device__ unsigned long long mm_trace[MM_TRACE_BLOCKS][MMA_WARPS][MM_TRACE_PTS];
__device__ __forceinline__ void mm_stamp(int p) {
    if ((threadIdx.x & 31) == 0) {
        const unsigned int bi = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
        unsigned long long t;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
        if (bi < MM_TRACE_BLOCKS) mm_trace[bi][threadIdx.x >> 5][p] = t;
    }
}
#define MM_STAMP(p) mm_stamp(p)
#define MM_STAMP_ZERO(p)                                                                                       \
    do {                                                                                                       \
        const unsigned int bi_ = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;               \
        if ((threadIdx.x & 31) == 0 && bi_ < MM_TRACE_BLOCKS) mm_trace[bi_][threadIdx.x >> 5][p] = 0;          \
    } while (0)
#else
#define MM_STAMP(p) ((void)0)
#endif

#define MM_CHUNKS (HEAD_DIM / 8)           // 16-byte chunks per row
#define MM_ROWB (HEAD_DIM * 2)             // bytes per row
#define MM_TILEB (MMA_KT * MM_ROWB)        // bytes of one K (or V) tile
#define MM_STAGEB (2 * MM_TILEB)           // bytes of one stage
#define MM_WARPB (MMA_STAGES * MM_STAGEB)  // bytes per warp
#define MM_NEG (-1e30f)
#define MM_SLOTS 16  // partial slots per head when splits <= 16 (gpu.mmaSlots)
#define MM_FULL 0xffffffffu

static_assert(GROUP >= 1 && GROUP <= 8, "mma decode: 1..8 query heads per block");
static_assert(MMA_KT == 16 || MMA_KT == 32, "mma decode: MMA_KT must be 16 or 32");
static_assert(MMA_STAGES >= 2, "mma decode: at least 2 stages");
static_assert(HEAD_DIM == 64 || HEAD_DIM == 128, "mma decode: HEAD_DIM 64 or 128");
static_assert(MM_WARPB >= (GROUP * HEAD_DIM + 2 * GROUP) * 4, "mma decode: warp region too small for the merge");

#if DTYPE_BF16
#define MM_T "bf16"
#else
#define MM_T "f16"
#endif

// mm_ex2 is 2^x (ex2.approx.ftz: ~2 ulp; 0 for x <= -126), for merge weights.
__device__ __forceinline__ float mm_ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// mm_st4 and mm_ld4 are the tagged merge's 16-byte stores and loads:
// relaxed at GPU scope, so that they meet in L2 (a load never hits a
// stale L1 line) and a merging block may race a writer without a data
// race in the PTX memory model.
__device__ __forceinline__ void mm_st4(float4* p, float4 v) {
    asm volatile("st.relaxed.gpu.global.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(p), "f"(v.x), "f"(v.y), "f"(v.z),
                 "f"(v.w)
                 : "memory");
}
__device__ __forceinline__ float4 mm_ld4(const float4* p) {
    float4 v;
    asm volatile("ld.relaxed.gpu.global.v4.f32 {%0, %1, %2, %3}, [%4];"
                 : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
                 : "l"(p)
                 : "memory");
    return v;
}
// mm_tag sets the lowest mantissa bit of each word to the call's parity
// par (a relative change of at most 2^-23), so that a merging block tells
// this call's partial from the last call's, word by word.
__device__ __forceinline__ float mm_tag1(float x, unsigned par) { return __uint_as_float((__float_as_uint(x) & ~1u) | par); }
__device__ __forceinline__ float4 mm_tag(float4 v, unsigned par) {
    return make_float4(mm_tag1(v.x, par), mm_tag1(v.y, par), mm_tag1(v.z, par), mm_tag1(v.w, par));
}
// mm_stale's lowest bit is set where the lowest bit of a word of v is not par.
__device__ __forceinline__ unsigned mm_stale(float4 v, unsigned par) {
    return (__float_as_uint(v.x) ^ par) | (__float_as_uint(v.y) ^ par) | (__float_as_uint(v.z) ^ par) |
           (__float_as_uint(v.w) ^ par);
}

__device__ __forceinline__ unsigned mm_smem(const void* p) {
    unsigned r;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
    return r;
}

// mm_cp16 copies 16 bytes global -> shared, asynchronously; bytes < 16
// zero-fills the rest (0: reads nothing).
__device__ __forceinline__ void mm_cp16(unsigned dst, const void* src, int bytes, unsigned long long pol) {
#if MMA_EVICT
    asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2, %3;" ::"r"(dst), "l"(src), "r"(bytes),
                 "l"(pol)
                 : "memory");
#else
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(bytes) : "memory");
#endif
}
__device__ __forceinline__ void mm_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void mm_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

__device__ __forceinline__ void mm_ldsm4(unsigned a, unsigned& r0, unsigned& r1, unsigned& r2, unsigned& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(a)
                 : "memory");
}
__device__ __forceinline__ void mm_ldsm4t(unsigned a, unsigned& r0, unsigned& r1, unsigned& r2, unsigned& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(a)
                 : "memory");
}

// mm_mma: d += A * B, m16n8k16, 16-bit A and B, fp32 accumulators.
__device__ __forceinline__ void mm_mma(float (&d)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3, unsigned b0,
                                       unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32." MM_T "." MM_T ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// mm_split2 rounds x0 (low half) and x1 (high half) to the 16-bit type,
// packed in hi, and packs the rounding residuals x - hi the same way in lo.
__device__ __forceinline__ void mm_split2(float x0, float x1, unsigned& hi, unsigned& lo) {
    float h0, h1;
#if DTYPE_BF16
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(hi) : "f"(x1), "f"(x0));
    h0 = __uint_as_float(hi << 16);
    h1 = __uint_as_float(hi & 0xffff0000u);
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(lo) : "f"(x1 - h1), "f"(x0 - h0));
#else
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(hi) : "f"(x1), "f"(x0));
    asm("{ .reg .f16 a, b; mov.b32 {a, b}, %2; cvt.f32.f16 %0, a; cvt.f32.f16 %1, b; }"
        : "=f"(h0), "=f"(h1)
        : "r"(hi));
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(lo) : "f"(x1 - h1), "f"(x0 - h0));
#endif
}

// mm_index returns the list entry (gather) of this lane's key in the
// warp tile starting at list position tb, 0 at or past end.
template <bool GATHER>
__device__ __forceinline__ int mm_index(const int* __restrict__ il, int tb, int end, int lane) {
    if (!GATHER) return 0;
    const int j = tb + lane % MMA_KT;
    return j < end ? __ldg(il + j) : 0;
}

// mm_issue starts the cp.async copies of the K and V rows of the warp
// tile at list position tb into the stage at shared address kb (V at
// kb + MM_TILEB); keys at or past end are zero-filled. ix holds the rows
// of a gather tile (lane j % MMA_KT has key j's row).
template <bool GATHER>
__device__ __forceinline__ void mm_issue(unsigned kb, const char* __restrict__ k, const char* __restrict__ v,
                                         size_t rowbase, int tb, int end, int ix, int lane, unsigned long long pol) {
    constexpr int KP = 32 / MM_CHUNKS;  // keys per pass of the warp
    const int c = lane % MM_CHUNKS, r = lane / MM_CHUNKS;
#pragma unroll
    for (int pp = 0; pp < MMA_KT / KP; pp++) {
        const int j = pp * KP + r;
        int row = GATHER ? __shfl_sync(MM_FULL, ix, j) : tb + j;
        const bool ok = tb + j < end;
        if (!ok) row = 0;
        const size_t g = (rowbase + (size_t)row) * MM_ROWB + (size_t)c * 16;
        const unsigned so = (unsigned)(j * MM_ROWB + ((c ^ (j & 7)) << 4));
        mm_cp16(kb + so, k + g, ok ? 16 : 0, pol);
        mm_cp16(kb + MM_TILEB + so, v + g, ok ? 16 : 0, pol);
    }
}

template <bool GATHER>
__device__ __forceinline__ void mma_partial(const float* __restrict__ q, const char* __restrict__ k,
                                            const char* __restrict__ v, const int* __restrict__ idx, int n, int N,
                                            int hq, int hkv, int chunk, float scale, float* __restrict__ pacc,
                                            float* __restrict__ pml, int* __restrict__ cnt, float* __restrict__ out,
                                            int mergers) {
    extern __shared__ __align__(128) unsigned char mm_sm[];
    MM_STAMP(0);
#if MMA_TRACE
    for (int p = 1; p < MM_TRACE_PTS; p++) MM_STAMP_ZERO(p);
#endif
    const int split = blockIdx.x, hb = blockIdx.y, b = blockIdx.z;
    const int splits = gridDim.x;
    const int qh0 = hb * GROUP;
    const int kvh = qh0 / (hq / hkv);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int gid = lane >> 2, tig = lane & 3;
    const int start = split * chunk;
    const int end = min(start + chunk, n);
    const int ntiles = end > start ? (end - start + MMA_KT - 1) / MMA_KT : 0;
    const int wt = ntiles > warp ? (ntiles - warp + MMA_WARPS - 1) / MMA_WARPS : 0;  // this warp's tiles

    const size_t rowbase = ((size_t)b * hkv + kvh) * (size_t)N;
    const int* il = GATHER ? idx + ((size_t)b * gridDim.y + hb) * (size_t)n : nullptr;
    const unsigned wbase = mm_smem(mm_sm) + warp * MM_WARPB;
    const int tstride = MMA_WARPS * MMA_KT;
    const int tb0 = start + warp * MMA_KT;  // list position of this warp's tile 0
#if MMA_EVICT
    const unsigned long long pol = l2_evict_first();
#else
    const unsigned long long pol = 0;
#endif

    // Every load of the start is issued before any is waited for: q, the
    // index lists of the first MMA_STAGES tiles, then (once the indices
    // arrive) the K/V rows of the first MMA_STAGES-1 tiles.
    const float sc = scale * 1.4426950408889634f;
    const bool on = gid < GROUP;
    float2 qx[HEAD_DIM / 16], qy[HEAD_DIM / 16];
    {
        const float* qp = q + ((size_t)b * hq + qh0 + (on ? gid : 0)) * HEAD_DIM + tig * 2;
#pragma unroll
        for (int kk = 0; kk < HEAD_DIM / 16; kk++) {
            qx[kk] = *(const float2*)(qp + kk * 16);
            qy[kk] = *(const float2*)(qp + kk * 16 + 8);
        }
    }
    // Tagged merge (mergers > 0): this call's parity, from the head block's
    // count, which holds par*splits plus the splits counted so far.
    int c0 = 0;
    if (MMA_FUSE && mergers > 0 && splits > 1)
        asm volatile("ld.relaxed.gpu.global.s32 %0, [%1];" : "=r"(c0) : "l"(cnt + (size_t)b * gridDim.y + hb));
    int ixp[MMA_STAGES];
#pragma unroll
    for (int s = 0; s < MMA_STAGES; s++) ixp[s] = mm_index<GATHER>(il, tb0 + s * tstride, end, lane);
#pragma unroll
    for (int s = 0; s < MMA_STAGES - 1; s++) {
        if (s < wt) mm_issue<GATHER>(wbase + s * MM_STAGEB, k, v, rowbase, tb0 + s * tstride, end, ixp[s], lane, pol);
        mm_commit();
    }
    int ixn = ixp[MMA_STAGES - 1];  // rows of the next tile to issue (loaded one issue ahead)
    MM_STAMP(1);

    // q fragments: rows gid (high part) and gid + 8 (residual) of A.
    unsigned qa[HEAD_DIM / 16][4];
#pragma unroll
    for (int kk = 0; kk < HEAD_DIM / 16; kk++) {
        const float2 x = on ? qx[kk] : make_float2(0.f, 0.f), y = on ? qy[kk] : make_float2(0.f, 0.f);
        mm_split2(x.x * sc, x.y * sc, qa[kk][0], qa[kk][1]);
        mm_split2(y.x * sc, y.y * sc, qa[kk][2], qa[kk][3]);
    }
    float o[HEAD_DIM / 8][4];
#pragma unroll
    for (int nt = 0; nt < HEAD_DIM / 8; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) o[nt][e] = 0.f;
    float m = MM_NEG, l = 0.f;  // row gid: running max (log2 units); this lane's share of the sum

    for (int i = 0; i < wt; i++) {
        mm_wait<MMA_STAGES - 2>();
        __syncwarp();
#if MMA_TRACE
        if (i == 0) MM_STAMP(2);
        if (i == wt - 1) MM_STAMP(3);
#endif
        {
            const int ni = i + MMA_STAGES - 1;  // refills the stage tile i-1 used
            if (ni < wt) {
                const int ixc = ixn;
                ixn = mm_index<GATHER>(il, tb0 + (ni + 1) * tstride, end, lane);
                mm_issue<GATHER>(wbase + (ni % MMA_STAGES) * MM_STAGEB, k, v, rowbase, tb0 + ni * tstride, end, ixc,
                                 lane, pol);
            }
            mm_commit();
        }
        const unsigned kb = wbase + (i % MMA_STAGES) * MM_STAGEB, vb = kb + MM_TILEB;
        const int tb = tb0 + i * tstride;

        // S = Q K^T for MMA_KT keys: n-tile j holds keys j*8 .. j*8+7.
        float s[MMA_KT / 8][4];
#pragma unroll
        for (int j = 0; j < MMA_KT / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[j][e] = 0.f;
#pragma unroll
        for (int kk = 0; kk < HEAD_DIM / 16; kk++) {
#pragma unroll
            for (int np = 0; np < MMA_KT / 16; np++) {
                // matrices 0,1: keys np*16+0..7, chunks 2kk, 2kk+1; 2,3: keys +8.
                const int key = np * 16 + ((lane >> 4) << 3) + (lane & 7);
                const int c = 2 * kk + ((lane >> 3) & 1);
                unsigned b0, b1, b2, b3;
                mm_ldsm4(kb + key * MM_ROWB + ((c ^ (key & 7)) << 4), b0, b1, b2, b3);
                mm_mma(s[2 * np], qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3], b0, b1);
                mm_mma(s[2 * np + 1], qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3], b2, b3);
            }
        }
        // Online softmax of row gid over the tile (4 lanes share a row).
        float x[MMA_KT / 8][2];
        float mx = MM_NEG;
#pragma unroll
        for (int j = 0; j < MMA_KT / 8; j++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const float t = s[j][e] + s[j][e + 2];
                x[j][e] = tb + j * 8 + tig * 2 + e < end ? t : MM_NEG;
                mx = fmaxf(mx, x[j][e]);
            }
        mx = fmaxf(mx, __shfl_xor_sync(MM_FULL, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(MM_FULL, mx, 2));
        const float mn = fmaxf(m, mx);
        if (__any_sync(MM_FULL, mn > m)) {  // rescale only when a running max grows
            const float alpha = exp2f(m - mn);
            l *= alpha;
#pragma unroll
            for (int nt = 0; nt < HEAD_DIM / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) o[nt][e] *= alpha;
            m = mn;
        }
        // O += P V, 16 keys per mma k-step.
#pragma unroll
        for (int np = 0; np < MMA_KT / 16; np++) {
            const float p00 = exp2f(x[2 * np][0] - m), p01 = exp2f(x[2 * np][1] - m);
            const float p10 = exp2f(x[2 * np + 1][0] - m), p11 = exp2f(x[2 * np + 1][1] - m);
            l += (p00 + p01) + (p10 + p11);
            unsigned a0, a1, a2, a3;
            mm_split2(p00, p01, a0, a1);
            mm_split2(p10, p11, a2, a3);
#pragma unroll
            for (int ntp = 0; ntp < HEAD_DIM / 16; ntp++) {
                // matrices 0,1: keys np*16+0..7 and +8 of chunk 2ntp; 2,3: chunk 2ntp+1.
                const int key = np * 16 + (((lane >> 3) & 1) << 3) + (lane & 7);
                const int c = 2 * ntp + (lane >> 4);
                unsigned b0, b1, b2, b3;
                mm_ldsm4t(vb + key * MM_ROWB + ((c ^ (key & 7)) << 4), b0, b1, b2, b3);
                mm_mma(o[2 * ntp], a0, a1, a2, a3, b0, b1);
                mm_mma(o[2 * ntp + 1], a0, a1, a2, a3, b2, b3);
            }
        }
    }
    mm_wait<0>();
    __syncwarp();
    l += __shfl_xor_sync(MM_FULL, l, 1);
    l += __shfl_xor_sync(MM_FULL, l, 2);
    MM_STAMP(4);

    // Merge the warps: each writes its heads' (acc, m, l) over its own
    // stage buffers, then the block combines them by log-sum-exp, two
    // outputs a thread. One split writes the output itself (MMA_FUSE);
    // otherwise the block leaves its partial in slot `split` of its heads.
    float* wo = (float*)(mm_sm + warp * MM_WARPB);
    if (gid < GROUP) {
#pragma unroll
        for (int nt = 0; nt < HEAD_DIM / 8; nt++)
            *(float2*)&wo[gid * HEAD_DIM + nt * 8 + tig * 2] = make_float2(o[nt][0] + o[nt][2], o[nt][1] + o[nt][3]);
        if (tig == 0) {
            wo[GROUP * HEAD_DIM + gid] = m;
            wo[GROUP * HEAD_DIM + GROUP + gid] = l;
        }
    }
    __syncthreads();
    const int ps = MMA_FUSE && splits <= MM_SLOTS ? MM_SLOTS : splits;  // partial slots per head
    for (int p = threadIdx.x; p < GROUP * HEAD_DIM / 2; p += MMA_WARPS * 32) {
        const int g = 2 * p / HEAD_DIM, c = 2 * p % HEAD_DIM;
        float M = MM_NEG;
#pragma unroll
        for (int w = 0; w < MMA_WARPS; w++) M = fmaxf(M, ((const float*)(mm_sm + w * MM_WARPB))[GROUP * HEAD_DIM + g]);
        float2 acc = make_float2(0.f, 0.f);
        float L = 0.f;
#pragma unroll
        for (int w = 0; w < MMA_WARPS; w++) {
            const float* ww = (const float*)(mm_sm + w * MM_WARPB);
            const float f = mm_ex2(ww[GROUP * HEAD_DIM + g] - M);
            const float2 a = *(const float2*)&ww[2 * p];
            acc.x = fmaf(f, a.x, acc.x);
            acc.y = fmaf(f, a.y, acc.y);
            L = fmaf(f, ww[GROUP * HEAD_DIM + GROUP + g], L);
        }
        const size_t bh = (size_t)b * hq + qh0 + g;
        if (MMA_FUSE && splits == 1) {
            const float inv = 1.f / L;
            *(float2*)(out + bh * HEAD_DIM + c) = make_float2(acc.x * inv, acc.y * inv);
            continue;
        }
        if (MMA_FUSE && mergers > 0) {  // (acc, M, L) of output pair p, one tagged 16-byte slot
            mm_st4((float4*)pacc + (((size_t)b * gridDim.y + hb) * MM_SLOTS + split) * (GROUP * HEAD_DIM / 2) + p,
                   mm_tag(make_float4(acc.x, acc.y, M, L), c0 >= splits));
            continue;
        }
        const size_t oi = bh * ps + split;
        *(float2*)(pacc + oi * HEAD_DIM + c) = acc;
        if (c == 0) *(float2*)(pml + 2 * oi) = make_float2(M, L);
        // The slots past the splits weigh nothing; this block rewrites its
        // share of them every call, so that the merge finds them in L2 and
        // not, after whatever ran before, in DRAM.
        for (int j = split + splits; j < ps; j += splits) {
            *(float2*)(pacc + (bh * ps + j) * HEAD_DIM + c) = make_float2(0.f, 0.f);
            if (c == 0) *(float2*)(pml + 2 * (bh * ps + j)) = make_float2(MM_NEG, 0.f);
        }
    }
    MM_STAMP(5);
#if MMA_FUSE
    if (splits == 1) return;
    // The last block of this head block to finish merges the splits. It
    // resets the counter for the next call. The block's partials are
    // ordered before thread 0's count by the barrier, and the count is an
    // acquire-release atomic at GPU scope (as CUTLASS's semaphore): the last
    // block sees every block's partials after its own barrier, with no
    // fence by every thread first.
    __shared__ int mm_last;
    __syncthreads();
    MM_STAMP(9);
    if (threadIdx.x == 0) {
        int* ctr = cnt + (size_t)b * gridDim.y + hb;
        int done;
        if (mergers > 0) {
            // Tagged: a relaxed count (no fence waits for the partials to
            // land first) elects the last `mergers` blocks; mm_last holds
            // which of them this is (1 .. mergers, 0: none). The count runs
            // from par*splits; the last block sets it to the other
            // parity's start.
            const int par = c0 >= splits;
            asm volatile("atom.relaxed.gpu.global.add.s32 %0, [%1], 1;" : "=r"(done) : "l"(ctr) : "memory");
            done -= par * splits;
            mm_last = max(0, done - (splits - mergers) + 1);
            if (done == splits - 1) *ctr = (par ^ 1) * splits;
        } else {
            asm volatile("atom.acq_rel.gpu.global.add.s32 %0, [%1], 1;" : "=r"(done) : "l"(ctr) : "memory");
            mm_last = done == splits - 1;
            if (mm_last) *ctr = 0;
        }
    }
    __syncthreads();
    MM_STAMP(6);
    if (!mm_last) return;
    if (mergers > 0) {
        // Merger j = mm_last - 1 of `mergers` merges output pairs [j*pp,
        // (j+1)*pp): it loads all MM_SLOTS slots of a pair at once, again
        // while a split's slot still carries the last call's parity (a
        // partial not yet in L2, or, for all but the last merger, of a
        // block not yet counted). The slots past the splits hold neutral
        // (0, 0, MM_NEG, 0) from the decoder's start and are not checked.
        // A wait that never ends traps after 2^26 rounds.
        constexpr int P2 = GROUP * HEAD_DIM / 2;
        const unsigned par = c0 >= splits;
        const int pp = (P2 + mergers - 1) / mergers, pe = min(P2, mm_last * pp);
        const float4* sl = (const float4*)pacc + ((size_t)b * gridDim.y + hb) * MM_SLOTS * P2;
        for (int p = (mm_last - 1) * pp + threadIdx.x; p < pe; p += MMA_WARPS * 32) {
            float4 t[MM_SLOTS];
            for (unsigned rounds = 0;; rounds++) {
                unsigned stale = 0;
#pragma unroll
                for (int x = 0; x < MM_SLOTS; x++) t[x] = mm_ld4(sl + x * P2 + p);
#pragma unroll
                for (int x = 0; x < MM_SLOTS; x++)
                    if (x < splits) stale |= mm_stale(t[x], par);
                if (!(stale & 1)) break;
                if (rounds > (1u << 26)) __trap();
            }
            MM_STAMP(8);
            float M = t[0].z;
#pragma unroll
            for (int x = 1; x < MM_SLOTS; x++) M = fmaxf(M, t[x].z);
            float L = 0.f, ax = 0.f, ay = 0.f;
#pragma unroll
            for (int x = 0; x < MM_SLOTS; x++) {
                const float w = mm_ex2(t[x].z - M);
                L = fmaf(w, t[x].w, L);
                ax = fmaf(w, t[x].x, ax);
                ay = fmaf(w, t[x].y, ay);
            }
            const int g = 2 * p / HEAD_DIM, c = 2 * p % HEAD_DIM;
            const float inv = 1.f / L;
            *(float2*)(out + ((size_t)b * hq + qh0 + g) * HEAD_DIM + c) = make_float2(ax * inv, ay * inv);
        }
    } else if (splits <= MM_SLOTS) {
        // One round trip, two outputs a thread, no predicates: each thread
        // loads all MM_SLOTS slots' partials and (M, L) pairs of its head
        // at once (the slots past `splits` hold (MM_NEG, 0) and zeros,
        // written by the blocks above), then combines them.
        for (int p = threadIdx.x; p < GROUP * HEAD_DIM / 2; p += MMA_WARPS * 32) {
            const int g = 2 * p / HEAD_DIM, c = 2 * p % HEAD_DIM;
            const size_t bh = (size_t)b * hq + qh0 + g;
            const float2* mp = (const float2*)(pml + bh * MM_SLOTS * 2);
            const float2* pa = (const float2*)(pacc + bh * MM_SLOTS * HEAD_DIM + c);
            float2 ml[MM_SLOTS], v[MM_SLOTS];
#pragma unroll
            for (int x = 0; x < MM_SLOTS; x++) {
                ml[x] = __ldcg(mp + x);
                v[x] = __ldcg(pa + x * (HEAD_DIM / 2));
            }
#if MMA_TRACE
            {
                float t = 0.f;  // every load arrived
#pragma unroll
                for (int x = 0; x < MM_SLOTS; x++) t += ml[x].x + v[x].x;
                asm volatile("" ::"f"(t));
                MM_STAMP(8);
            }
#endif
            float M = ml[0].x;
#pragma unroll
            for (int x = 1; x < MM_SLOTS; x++) M = fmaxf(M, ml[x].x);
            float L = 0.f;
            float2 a = make_float2(0.f, 0.f);
#pragma unroll
            for (int x = 0; x < MM_SLOTS; x++) {
                const float w = mm_ex2(ml[x].x - M);
                L = fmaf(w, ml[x].y, L);
                a.x = fmaf(w, v[x].x, a.x);
                a.y = fmaf(w, v[x].y, a.y);
            }
            const float inv = 1.f / L;
            *(float2*)(out + bh * HEAD_DIM + c) = make_float2(a.x * inv, a.y * inv);
        }
    } else if (2 * GROUP * splits * (int)sizeof(float) <= MMA_WARPS * MM_WARPB) {
        // The splits' weights first, once per head: warp g loads head g's
        // (M, L) pairs (one 8-byte load a split, every split at once), and
        // leaves w_x = exp2(M_x - M) / L in shared memory (free now). Then
        // every output loads its splits' partials MU at a time.
        float* sw = (float*)mm_sm;      // [GROUP][splits]: M_x, then the weights
        float* sl = sw + GROUP * splits;  // [GROUP][splits]: L_x
        for (int g = warp; g < GROUP; g += MMA_WARPS) {
            const float2* ml = (const float2*)(pml + ((size_t)b * hq + qh0 + g) * splits * 2);
            float M = MM_NEG;
            for (int x = lane; x < splits; x += 32) {
                const float2 v = __ldcg(ml + x);
                sw[g * splits + x] = v.x;
                sl[g * splits + x] = v.y;
                M = fmaxf(M, v.x);
            }
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) M = fmaxf(M, __shfl_xor_sync(MM_FULL, M, o));
            float L = 0.f;
            for (int x = lane; x < splits; x += 32) {
                const float w = exp2f(sw[g * splits + x] - M);
                sw[g * splits + x] = w;
                L = fmaf(w, sl[g * splits + x], L);
            }
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) L += __shfl_xor_sync(MM_FULL, L, o);
            const float inv = 1.f / L;
            for (int x = lane; x < splits; x += 32) sw[g * splits + x] *= inv;
        }
        __syncthreads();
        constexpr int T = MMA_WARPS * 32, MU = 16;
#pragma unroll
        for (int r = 0; r < (GROUP * HEAD_DIM + T - 1) / T; r++) {
            const int e = threadIdx.x + r * T;
            if (e < GROUP * HEAD_DIM) {
                const int g = e / HEAD_DIM, c = e % HEAD_DIM;
                const size_t bh = (size_t)b * hq + qh0 + g;
                const float* pa = pacc + bh * splits * HEAD_DIM + c;
                const float* w = sw + g * splits;
                float acc = 0.f;
                for (int x0 = 0; x0 < splits; x0 += MU) {
                    float v[MU];
#pragma unroll
                    for (int u = 0; u < MU; u++) v[u] = x0 + u < splits ? __ldcg(pa + (size_t)(x0 + u) * HEAD_DIM) : 0.f;
#pragma unroll
                    for (int u = 0; u < MU; u++)
                        if (x0 + u < splits) acc = fmaf(w[x0 + u], v[u], acc);
                }
                out[bh * HEAD_DIM + c] = acc;
            }
        }
    } else {
        for (int e = threadIdx.x; e < GROUP * HEAD_DIM; e += MMA_WARPS * 32) {
            const int g = e / HEAD_DIM, c = e % HEAD_DIM;
            const size_t bh = (size_t)b * hq + qh0 + g;
            const float* ml = pml + bh * splits * 2;
            float M = MM_NEG;
            for (int x = 0; x < splits; x++) M = fmaxf(M, __ldcg(ml + 2 * x));
            float L = 0.f, acc = 0.f;
            for (int x = 0; x < splits; x++) {
                const float w = exp2f(__ldcg(ml + 2 * x) - M);
                L = fmaf(w, __ldcg(ml + 2 * x + 1), L);
                acc = fmaf(w, __ldcg(pacc + (bh * splits + x) * HEAD_DIM + c), acc);
            }
            out[bh * HEAD_DIM + c] = acc / L;
        }
    }
    MM_STAMP(7);
#endif
}

extern "C" __global__ void __launch_bounds__(MMA_WARPS * 32)
decode_dense_mma(const float* __restrict__ q, const char* __restrict__ k, const char* __restrict__ v, int N, int hq,
                 int hkv, int chunk, float scale, float* __restrict__ pacc, float* __restrict__ pml, int* __restrict__ cnt,
                 float* __restrict__ out, int mergers) {
    pdl_wait();
    mma_partial<false>(q, k, v, nullptr, N, N, hq, hkv, chunk, scale, pacc, pml, cnt, out, mergers);
}

extern "C" __global__ void __launch_bounds__(MMA_WARPS * 32)
decode_gather_mma(const float* __restrict__ q, const char* __restrict__ k, const char* __restrict__ v,
                  const int* __restrict__ idx, int n, int N, int hq, int hkv, int chunk, float scale,
                  float* __restrict__ pacc, float* __restrict__ pml, int* __restrict__ cnt, float* __restrict__ out,
                  int mergers) {
    pdl_wait();  // the lists come from the kernel before (LaunchPDL)
    mma_partial<true>(q, k, v, idx, n, N, hq, hkv, chunk, scale, pacc, pml, cnt, out, mergers);
}
