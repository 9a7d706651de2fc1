// Oracle, Quest and StreamingLLM selection on the GPU: exact q·K scores,
// Quest's page labels and bounds, a radix (AIR-style) top-k over float
// scores with the CPU tie-break, and the sink + recent-window lists; the
// sparse decode of decode.cu follows.
//
// Specialised by defines:
//   HEAD_DIM   64 or 128
//   GROUP      query heads per KV head (1..8)
//   SHARED     1: one list per KV head on the group's summed softmax
//              probabilities (methods.Oracle with Options.Shared); 0: one
//              list per query head on the raw score q·k
//   DTYPE_BF16 1 for bf16 keys, 0 for fp16
//   TUNR       items per thread per step of topk_pass (default 4)
//
// Scores: oracle_scores writes L [B][HQ][N] = q·k (fp32 q, 16-bit k, fp32
// sums). With SHARED it also writes per block and head the pair (max,
// sum of exp((x - max)·scale)) of its keys, and oracle_probs reduces them
// to each head's softmax statistics and writes S [B][HKV][N] = the sum
// over the group of exp((L - max)·scale) / Z, as methods.Oracle does.
//
// Radix top-k of each list's scores over the positions [lo, hi): a
// score's key is its float bits mapped to an order-preserving uint32 (-0
// taken as +0, so equal floats have equal keys). The kernels rank items
// (a position, or for Quest a page of positions with one score, weighted
// by its positions in [lo, hi)). Four passes of 8 bits (topk_pass), each
// a per-block shared-memory histogram, by weight, of the keys whose
// higher bits equal the prefix chosen so far, added into one global
// histogram per list; the last block of the pass (atomic ticket) finds
// the digit where the weight from the top reaches the remaining k and
// updates the list's state (prefix, remaining k), then clears the
// histogram and ticket for the next pass. After four passes the prefix
// is the threshold key T and the remaining k is r, the number of
// positions of key T to take. topk_count sums the weights of keys > T and
// == T of each block; topk_compact rescans its chunk in order and writes
// the positions of an item at slot sink + gt_before + min(eq_before, r)
// on: each list is ascending, and equals methods.TopKIndices over the
// positions (score desc, then position asc).

#ifndef HEAD_DIM
#define HEAD_DIM 128
#endif
#ifndef GROUP
#define GROUP 1
#endif
#ifndef SHARED
#define SHARED 0
#endif
#ifndef DTYPE_BF16
#define DTYPE_BF16 1
#endif

#define EPL (HEAD_DIM / 16)  // elements of a key row per lane (16 lanes per row)
#define OT 256               // threads of every kernel here
#define RBITS 8
#define RBINS 256
#ifndef TUNR
#define TUNR 4  // items per thread per step of topk_pass (loads in flight)
#endif
#define OINF __int_as_float(0x7f800000)  // +inf (no math.h under NVRTC)

// Combine two (max, sum) softmax partials at scale s.
__device__ __forceinline__ void smcombine(float& m, float& z, float m2, float z2, float s) {
    if (m2 == (-OINF)) return;
    if (m == (-OINF)) {
        m = m2;
        z = z2;
        return;
    }
    const float M = fmaxf(m, m2);
    z = z * expf((m - M) * s) + z2 * expf((m2 - M) * s);
    m = M;
}

// oracle_scores: grid (nblk, HKV, B), block OT. Block x covers keys
// [x*chunk, min((x+1)*chunk, N)); a half-warp scores one key per step.
// q fp32 [B][HQ][HEAD_DIM]; k 16-bit [B][HKV][N][HEAD_DIM]; L [B][HQ][N];
// part [B][HQ][nblk][2] (SHARED only).
extern "C" __global__ void __launch_bounds__(OT)
oracle_scores(const float* __restrict__ q, const unsigned short* __restrict__ k, int N, int hkv, int chunk, float scale,
              float* __restrict__ L, float* __restrict__ part) {
    const int x = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, half = lane >> 4, l16 = lane & 15;
    const int hq = hkv * GROUP;
    float qr[GROUP][EPL];
#pragma unroll
    for (int g = 0; g < GROUP; g++)
#pragma unroll
        for (int i = 0; i < EPL; i++) qr[g][i] = q[((size_t)b * hq + kvh * GROUP + g) * HEAD_DIM + l16 * EPL + i];
    const unsigned short* kb = k + ((size_t)b * hkv + kvh) * (size_t)N * HEAD_DIM;
    float* Lb = L + ((size_t)b * hq + kvh * GROUP) * (size_t)N;
    const int start = x * chunk, end = min(start + chunk, N);
#if SHARED
    float m = (-OINF), z = 0.f;  // lane l16 < GROUP: head l16's running stats
#endif
    for (int j0 = start + warp * 2; j0 < end; j0 += (OT / 32) * 2) {
        const int j = j0 + half;
        const bool ok = j < end;
        unsigned int w[EPL / 2];
        if (ok) {
            const unsigned short* row = kb + (size_t)j * HEAD_DIM + l16 * EPL;
#if EPL == 8
            const uint4 r = __ldg(reinterpret_cast<const uint4*>(row));
            w[0] = r.x;
            w[1] = r.y;
            w[2] = r.z;
            w[3] = r.w;
#else
            const uint2 r = __ldg(reinterpret_cast<const uint2*>(row));
            w[0] = r.x;
            w[1] = r.y;
#endif
        } else {
#pragma unroll
            for (int i = 0; i < EPL / 2; i++) w[i] = 0u;
        }
        float dot[GROUP];
#pragma unroll
        for (int g = 0; g < GROUP; g++) {
            float a = 0.f;
#pragma unroll
            for (int i = 0; i < EPL / 2; i++) {
                a = fmaf(qr[g][2 * i], lo16(w[i]), a);
                a = fmaf(qr[g][2 * i + 1], hi16(w[i]), a);
            }
#pragma unroll
            for (int off = 8; off > 0; off >>= 1) a += __shfl_xor_sync(0xffffffffu, a, off);
            dot[g] = a;
        }
        if (ok) {
#pragma unroll
            for (int g = 0; g < GROUP; g++) {
                if (l16 == g) {
                    Lb[(size_t)g * N + j] = dot[g];
#if SHARED
                    smcombine(m, z, dot[g], 1.f, scale);
#endif
                }
            }
        }
    }
#if SHARED
    // Block reduce per head: half-warp h's lane g holds head g's partial.
    __shared__ float sm[OT / 16][GROUP], sz[OT / 16][GROUP];
    const int hw = threadIdx.x >> 4;
    if (l16 < GROUP) {
        sm[hw][l16] = m;
        sz[hw][l16] = z;
    }
    __syncthreads();
    if (threadIdx.x < GROUP) {
        const int g = threadIdx.x;
        float M = (-OINF), Z = 0.f;
        for (int h = 0; h < OT / 16; h++) smcombine(M, Z, sm[h][g], sz[h][g], scale);
        float* p = part + (((size_t)b * hq + kvh * GROUP + g) * gridDim.x + x) * 2;
        p[0] = M;
        p[1] = Z;
    }
#endif
}

// oracle_probs (SHARED): grid (nblk, HKV, B), block OT. Reduces the
// nsb score-block partials of the group's heads to (max, Z), then writes
// S [B][HKV][N] for keys [x*chunk, min((x+1)*chunk, N)).
extern "C" __global__ void __launch_bounds__(OT)
oracle_probs(const float* __restrict__ L, const float* __restrict__ part, int nsb, int N, int hkv, int chunk, float scale,
             float* __restrict__ S) {
    __shared__ float rm[OT], rz[OT];
    __shared__ float gm[GROUP], gz[GROUP];
    const int x = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z;
    const int hq = hkv * GROUP;
    for (int g = 0; g < GROUP; g++) {
        const float* p = part + ((size_t)b * hq + kvh * GROUP + g) * nsb * 2;
        float M = (-OINF), Z = 0.f;
        for (int i = threadIdx.x; i < nsb; i += OT) smcombine(M, Z, p[2 * i], p[2 * i + 1], scale);
        rm[threadIdx.x] = M;
        rz[threadIdx.x] = Z;
        __syncthreads();
        for (int off = OT / 2; off > 0; off >>= 1) {
            if (threadIdx.x < off) {
                float a = rm[threadIdx.x], c = rz[threadIdx.x];
                smcombine(a, c, rm[threadIdx.x + off], rz[threadIdx.x + off], scale);
                rm[threadIdx.x] = a;
                rz[threadIdx.x] = c;
            }
            __syncthreads();
        }
        if (threadIdx.x == 0) {
            gm[g] = rm[0];
            gz[g] = rz[0];
        }
        __syncthreads();
    }
    const float* Lb = L + ((size_t)b * hq + kvh * GROUP) * (size_t)N;
    float* Sb = S + ((size_t)b * hkv + kvh) * (size_t)N;
    const int start = x * chunk, end = min(start + chunk, N);
    for (int j = start + threadIdx.x; j < end; j += OT) {
        float s = 0.f;
#pragma unroll
        for (int g = 0; g < GROUP; g++) s += expf((Lb[(size_t)g * N + j] - gm[g]) * scale) / gz[g];
        Sb[j] = s;
    }
}

// fkey maps a float to a uint32 with the same order; -0 maps as +0.
__device__ __forceinline__ unsigned int fkey(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u << 1) == 0u) u = 0u;
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// The top-k kernels rank items: item i of list li has the score
// S[li*sstride + i] and covers the positions [max(lo, i*div),
// min(hi, (i+1)*div)), its weight. div = 1: an item per position (the
// oracle); div > 1: an item per page of div positions that meets [lo, hi)
// (Quest), so a page is counted once with its weight rather than once per
// position. Items of list li run from lo/div to (hi-1)/div; block x
// covers items [ilo + x*chunk, min(ilo + (x+1)*chunk, ihi)).
struct Items {
    int lo, hi, div, ilo, ihi;
    __device__ __forceinline__ Items(int lo_, int hi_, int div_) : lo(lo_), hi(hi_), div(div_) {
        ilo = lo / div;
        ihi = hi > lo ? (hi - 1) / div + 1 : ilo;
    }
    __device__ __forceinline__ int first(int i) const { return max(lo, i * div); }
    __device__ __forceinline__ int weight(int i) const { return min(hi, (i + 1) * div) - first(i); }
};

// topk_pass: grid (nblk, NL, B), block OT. Pass p (0..3) histograms, by
// weight, digit (key >> (24 - 8p)) & 255 of the keys of the block's items
// whose bits above that digit equal the list's prefix; st [B][NL][2] =
// (prefix, remaining k), written by the last block of each pass (pass 0
// starts from (0, heavy)); ghist [B][NL][RBINS] and cnt [B][NL] are zero
// between passes.
extern "C" __global__ void __launch_bounds__(OT)
topk_pass(const float* __restrict__ S, int div, int sstride, int lo, int hi, int chunk, int heavy, int pass, unsigned int* st,
          int* ghist, unsigned int* cnt) {
    __shared__ int h[RBINS];
    __shared__ int amLast;
    const int x = blockIdx.x, li = blockIdx.z * gridDim.y + blockIdx.y;
    const int shift = 24 - RBITS * pass;
    unsigned int prefix = 0u;
    int krem = heavy;
    if (pass > 0) {
        prefix = st[2 * li];
        krem = (int)st[2 * li + 1];
    }
    if (krem <= 0) return;  // nothing to select (uniform over the grid)
    h[threadIdx.x] = 0;
    __syncthreads();
    const float* s = S + (size_t)li * sstride;
    const Items it(lo, hi, div);
    const int start = it.ilo + x * chunk, end = min(start + chunk, it.ihi);
    for (int i0 = start; i0 < end; i0 += OT * TUNR) {
        float v[TUNR];
#pragma unroll
        for (int u = 0; u < TUNR; u++) {
            const int i = i0 + u * OT + threadIdx.x;
            v[u] = i < end ? s[i] : 0.f;
        }
#pragma unroll
        for (int u = 0; u < TUNR; u++) {
            const int i = i0 + u * OT + threadIdx.x;
            const unsigned int key = fkey(v[u]);
            const bool match = pass == 0 || (key >> (shift + RBITS)) == (prefix >> (shift + RBITS));
            const int bin = i < end && match ? (int)((key >> shift) & (RBINS - 1)) : -1;
            if (div == 1) {
                // Warp-aggregated: one shared atomic per distinct digit per
                // warp (scores crowd into few top digits).
                const unsigned int peers = __match_any_sync(0xffffffffu, bin);
                if (bin >= 0 && (int)(threadIdx.x & 31) == __ffs(peers) - 1) atomicAdd(&h[bin], __popc(peers));
            } else if (bin >= 0) {
                atomicAdd(&h[bin], it.weight(i));
            }
        }
    }
    __syncthreads();
    const int c0 = h[threadIdx.x];
    if (c0) atomicAdd(&ghist[(size_t)li * RBINS + threadIdx.x], c0);
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) amLast = atomicAdd(&cnt[li], 1u) == gridDim.x - 1;
    __syncthreads();
    if (!amLast) return;
    __threadfence();
    const int c = __ldcg(&ghist[(size_t)li * RBINS + threadIdx.x]);
    h[threadIdx.x] = c;
    __syncthreads();
    // Inclusive suffix sums: h[t] = sum of c[u] for u >= t.
    for (int off = 1; off < RBINS; off <<= 1) {
        const int a = threadIdx.x + off < RBINS ? h[threadIdx.x + off] : 0;
        __syncthreads();
        h[threadIdx.x] += a;
        __syncthreads();
    }
    const int incl = h[threadIdx.x], above = incl - c;
    if (above < krem && krem <= incl) {
        st[2 * li] = prefix | ((unsigned int)threadIdx.x << shift);
        st[2 * li + 1] = (unsigned int)(krem - above);
    }
    ghist[(size_t)li * RBINS + threadIdx.x] = 0;
    if (threadIdx.x == 0) cnt[li] = 0u;
}

// Block-wide sums of two ints (all threads get them); red has 2*OT/32 ints.
__device__ __forceinline__ void blocksum2(int& a, int& b, int* red) {
    for (int off = 16; off > 0; off >>= 1) {
        a += __shfl_xor_sync(0xffffffffu, a, off);
        b += __shfl_xor_sync(0xffffffffu, b, off);
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) {
        red[warp] = a;
        red[OT / 32 + warp] = b;
    }
    __syncthreads();
    a = b = 0;
#pragma unroll
    for (int w = 0; w < OT / 32; w++) {
        a += red[w];
        b += red[OT / 32 + w];
    }
}

// topk_count: grid (nblk, NL, B), block OT. base [B][NL][nblk][2] = the
// weights of the block's items with keys > T and == T, T = st's prefix
// after the four passes.
extern "C" __global__ void __launch_bounds__(OT)
topk_count(const float* __restrict__ S, int div, int sstride, int lo, int hi, int chunk, int heavy,
           const unsigned int* __restrict__ st, int* __restrict__ base) {
    __shared__ int red[2 * OT / 32];
    const int x = blockIdx.x, li = blockIdx.z * gridDim.y + blockIdx.y;
    if (heavy <= 0) return;
    const unsigned int T = st[2 * li];
    const float* s = S + (size_t)li * sstride;
    const Items it(lo, hi, div);
    const int start = it.ilo + x * chunk, end = min(start + chunk, it.ihi);
    int gt = 0, eq = 0;
    for (int i = start + threadIdx.x; i < end; i += OT) {
        const unsigned int key = fkey(s[i]);
        const int w = it.weight(i);
        gt += key > T ? w : 0;
        eq += key == T ? w : 0;
    }
    blocksum2(gt, eq, red);
    if (threadIdx.x == 0) {
        base[((size_t)li * gridDim.x + x) * 2] = gt;
        base[((size_t)li * gridDim.x + x) * 2 + 1] = eq;
    }
}

// topk_compact: grid (nblk, NL, B), block OT. Writes the lists idx
// [B][NL][total]: sink positions, the selected middle positions in
// ascending order, local positions. An item with key > T writes all its
// positions from slot sink + gt_before + min(eq_before, r); one with key
// == T its first min(weight, r - eq_before) positions from sink +
// gt_before + eq_before (weights before it in position order).
extern "C" __global__ void __launch_bounds__(OT)
topk_compact(const float* __restrict__ S, int div, int sstride, int N, int lo, int hi, int chunk, int heavy,
             const unsigned int* __restrict__ st, const int* __restrict__ base, int sink, int local, int total,
             int* __restrict__ idx) {
    __shared__ int red[2 * OT / 32];
    __shared__ int wgt[OT / 32], weq[OT / 32];
    const int x = blockIdx.x, li = blockIdx.z * gridDim.y + blockIdx.y;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int* out = idx + (size_t)li * total;
    if (x == 0) {
        for (int i = threadIdx.x; i < sink; i += OT) out[i] = i;
        for (int i = threadIdx.x; i < local; i += OT) out[total - local + i] = N - local + i;
    }
    if (heavy <= 0) return;
    const unsigned int T = st[2 * li];
    const int r = (int)st[2 * li + 1];
    // Weights > T and == T in the blocks before this one.
    int gtRun = 0, eqRun = 0;
    const int* bo = base + (size_t)li * gridDim.x * 2;
    for (int y = threadIdx.x; y < x; y += OT) {
        gtRun += bo[2 * y];
        eqRun += bo[2 * y + 1];
    }
    blocksum2(gtRun, eqRun, red);
    const float* s = S + (size_t)li * sstride;
    const Items it(lo, hi, div);
    const int start = it.ilo + x * chunk, end = min(start + chunk, it.ihi);
    for (int i0 = start; i0 < end; i0 += OT) {
        const int i = i0 + threadIdx.x;
        int wg = 0, we = 0, p0 = 0;
        if (i < end) {
            const unsigned int key = fkey(s[i]);
            const int w = it.weight(i);
            p0 = it.first(i);
            wg = key > T ? w : 0;
            we = key == T ? w : 0;
        }
        // Inclusive warp scans of the weights.
        int sg = wg, se = we;
        warp_scan2(sg, se, lane);
        if (lane == 31) {
            wgt[warp] = sg;
            weq[warp] = se;
        }
        __syncthreads();
        int g = gtRun + sg - wg, e = eqRun + se - we, tg = 0, te = 0;
#pragma unroll
        for (int w = 0; w < OT / 32; w++) {
            if (w < warp) {
                g += wgt[w];
                e += weq[w];
            }
            tg += wgt[w];
            te += weq[w];
        }
        if (wg > 0) {
            const int o = sink + g + min(e, r);
            for (int t = 0; t < wg; t++) out[o + t] = p0 + t;
        } else if (we > 0 && e < r) {
            const int take = min(we, r - e);
            for (int t = 0; t < take; t++) out[sink + g + e + t] = p0 + t;
        }
        gtRun += tg;
        eqRun += te;
        __syncthreads();
    }
}

// quest_pages (prefill): grid (P, HKV, B), block OT. Page p of KV head
// covers keys [p*page, min((p+1)*page, N)); pl [B][HKV][P][2][HEAD_DIM]
// (16-bit, the K dtype) = the channel minima, then maxima (exact: they
// are keys' values).
extern "C" __global__ void __launch_bounds__(OT)
quest_pages(const unsigned short* __restrict__ k, int N, int page, unsigned short* __restrict__ pl) {
    const int p = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z, hkv = gridDim.y, np = gridDim.x;
    const unsigned short* kb = k + ((size_t)b * hkv + kvh) * (size_t)N * HEAD_DIM;
    unsigned short* out = pl + (((size_t)b * hkv + kvh) * np + p) * 2 * HEAD_DIM;
    const int lo = p * page, hi = min(lo + page, N);
    for (int c = threadIdx.x; c < HEAD_DIM; c += OT) {
        unsigned short mn = kb[(size_t)lo * HEAD_DIM + c], mx = mn;
        float fmn = lo16(mn), fmx = fmn;
        for (int j = lo + 1; j < hi; j++) {
            const unsigned short v = kb[(size_t)j * HEAD_DIM + c];
            const float f = lo16(v);
            if (f < fmn) {
                fmn = f;
                mn = v;
            }
            if (f > fmx) {
                fmx = f;
                mx = v;
            }
        }
        out[c] = mn;
        out[HEAD_DIM + c] = mx;
    }
}

// quest_scores: grid (nblk, HKV, B), block OT; block x covers pages
// [x*chunk, min((x+1)*chunk, P)), a half-warp scores one page per step.
// pu [B][NL][P] = U = sum over channels c of (q_c >= 0 ? q_c*max_c :
// q_c*min_c), per query head (SHARED 0) or summed over the group in head
// order (SHARED 1); the current page (the last, cur) gets +inf.
extern "C" __global__ void __launch_bounds__(OT)
quest_scores(const float* __restrict__ q, const unsigned short* __restrict__ pl, int P, int hkv, int chunk,
             float* __restrict__ pu) {
    const int x = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, half = lane >> 4, l16 = lane & 15;
    const int hq = hkv * GROUP;
    float qr[GROUP][EPL];
#pragma unroll
    for (int g = 0; g < GROUP; g++)
#pragma unroll
        for (int i = 0; i < EPL; i++) qr[g][i] = q[((size_t)b * hq + kvh * GROUP + g) * HEAD_DIM + l16 * EPL + i];
    const unsigned short* pb = pl + ((size_t)b * hkv + kvh) * (size_t)P * 2 * HEAD_DIM;
    const int start = x * chunk, end = min(start + chunk, P);
    for (int p0 = start + warp * 2; p0 < end; p0 += (OT / 32) * 2) {
        const int p = p0 + half;
        const bool ok = p < end;
        unsigned int wn[EPL / 2], wx[EPL / 2];
        if (ok) {
            const unsigned short* rn = pb + (size_t)p * 2 * HEAD_DIM + l16 * EPL;
            const unsigned short* rx = rn + HEAD_DIM;
#if EPL == 8
            const uint4 a = __ldg(reinterpret_cast<const uint4*>(rn)), c = __ldg(reinterpret_cast<const uint4*>(rx));
            wn[0] = a.x; wn[1] = a.y; wn[2] = a.z; wn[3] = a.w;
            wx[0] = c.x; wx[1] = c.y; wx[2] = c.z; wx[3] = c.w;
#else
            const uint2 a = __ldg(reinterpret_cast<const uint2*>(rn)), c = __ldg(reinterpret_cast<const uint2*>(rx));
            wn[0] = a.x; wn[1] = a.y;
            wx[0] = c.x; wx[1] = c.y;
#endif
        } else {
#pragma unroll
            for (int i = 0; i < EPL / 2; i++) wn[i] = wx[i] = 0u;
        }
        float u[GROUP];
#pragma unroll
        for (int g = 0; g < GROUP; g++) {
            float a = 0.f;
#pragma unroll
            for (int i = 0; i < EPL / 2; i++) {
                const float q0 = qr[g][2 * i], q1 = qr[g][2 * i + 1];
                a = fmaf(q0, q0 >= 0.f ? lo16(wx[i]) : lo16(wn[i]), a);
                a = fmaf(q1, q1 >= 0.f ? hi16(wx[i]) : hi16(wn[i]), a);
            }
#pragma unroll
            for (int off = 8; off > 0; off >>= 1) a += __shfl_xor_sync(0xffffffffu, a, off);
            u[g] = a;
        }
        if (ok) {
            const bool cur = p == P - 1;
#if SHARED
            if (l16 == 0) {
                float t = 0.f;
#pragma unroll
                for (int g = 0; g < GROUP; g++) t += u[g];
                pu[((size_t)b * hkv + kvh) * P + p] = cur ? OINF : t;
            }
#else
#pragma unroll
            for (int g = 0; g < GROUP; g++)
                if (l16 == g) pu[((size_t)b * hq + kvh * GROUP + g) * P + p] = cur ? OINF : u[g];
#endif
        }
    }
}

// stream_lists: any grid. idx [lists][total]: entry i is i for i < sink,
// else N - total + i (the sink, then the most recent total - sink keys).
extern "C" __global__ void stream_lists(int lists, int total, int sink, int N, int* __restrict__ idx) {
    const long long n = (long long)lists * total;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n; t += (long long)gridDim.x * blockDim.x) {
        const int i = (int)(t % total);
        idx[t] = i < sink ? i : N - total + i;
    }
}
