// H2O (heavy-hitter eviction) decode step on the GPU: per list a kept set
// of exactly `total` slots (position, accumulated score); per step the
// new token enters, the unprotected slot with the lowest accumulated
// score is evicted (ties: the newer position goes), the lists are copied
// out for the sparse decode of decode.cu, and the softmax weights of the
// step's query head(s) over the kept set are added to the slots' scores,
// as methods.H2O (h2oSelector.step) does.
//
// Specialised by defines:
//   HEAD_DIM   64 or 128
//   GROUP      query heads per KV head (1..8)
//   SHARED     1: one list per KV head, scores summed over the group's
//              heads (methods.H2O with Options.Shared); 0: one list per
//              query head
//   DTYPE_BF16 1 for bf16 keys, 0 for fp16
//
// State per list li (lists = B × NL, NL = HKV when SHARED else HQ):
// pos [lists][cap] int32 and acc [lists][cap] double, the first `total`
// slots valid, in no particular order. Accumulated scores are kept in
// double, as the CPU's, so that the GPU evicts what the CPU evicts
// wherever the two differ only by rounding (fp32 logits in another
// order, float exps: ~1e-6 of a weight).

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

#if SHARED
#define HL GROUP  // query heads per list
#else
#define HL 1
#endif
#define EPL (HEAD_DIM / 16)  // elements of a key row per lane (16 lanes per row)
#define HT 256               // threads of h2o_logits, h2o_accum, h2o_init
#define ST 1024              // threads of h2o_select (one block per list)
#define SU 8                 // slots per thread per step of h2o_select
#define KU 4                 // keys per half-warp per step of h2o_logits
#define HINF __int_as_float(0x7f800000)
#define DINF __longlong_as_double(0x7ff0000000000000ll)

// evictFirst says whether slot (a, p) goes before slot (ba, bp): the lower
// accumulated score, then the newer position (the CPU keeps the older).
__device__ __forceinline__ bool evictFirst(double a, int p, int s, double ba, int bp, int bs) {
    if (s < 0) return false;
    if (bs < 0) return true;
    return a < ba || (a == ba && p > bp);
}

// h2o_select: grid (lists), block ST. The list holds `prev` slots. Every
// slot i < total is copied to idx [lists][total]; the slot with a position
// in the middle range [lo, hi) that is evicted first is found (warp
// shuffles, then shared memory). Then, by one thread: with need = 1 that
// slot is evicted (replaced by T with score 0 when addT, else by the last
// slot); with need = 0 and addT, T is appended as slot prev. A repeated
// step passes prev = total, addT = need = 0: the scan runs, nothing
// changes.
extern "C" __global__ void __launch_bounds__(ST)
h2o_select(int* __restrict__ pos, double* __restrict__ acc, int* __restrict__ idx, int cap, int prev, int total, int lo,
           int hi, int T, int addT, int need) {
    __shared__ double wa[ST / 32];
    __shared__ int wp[ST / 32], ws[ST / 32];
    const int li = blockIdx.x;
    int* P = pos + (size_t)li * cap;
    double* A = acc + (size_t)li * cap;
    int* I = idx + (size_t)li * total;
    double ba = DINF;
    int bp = -1, bs = -1;
    // SU slots per thread per step, all loads issued before any is used
    // (one dependent load per slot at a time was latency-bound: 32 µs for
    // 32K slots).
    for (int i0 = threadIdx.x; i0 < prev; i0 += ST * SU) {
        int pv[SU];
        double av[SU];
#pragma unroll
        for (int u = 0; u < SU; u++) {
            const int i = i0 + u * ST;
            pv[u] = i < prev ? P[i] : -1;
            av[u] = i < prev ? A[i] : DINF;
        }
#pragma unroll
        for (int u = 0; u < SU; u++) {
            const int i = i0 + u * ST;
            if (i < total) I[i] = pv[u];
            if (pv[u] >= lo && pv[u] < hi && evictFirst(av[u], pv[u], i, ba, bp, bs)) {
                ba = av[u];
                bp = pv[u];
                bs = i;
            }
        }
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        const double a = __shfl_xor_sync(0xffffffffu, ba, off);
        const int p = __shfl_xor_sync(0xffffffffu, bp, off);
        const int s = __shfl_xor_sync(0xffffffffu, bs, off);
        if (evictFirst(a, p, s, ba, bp, bs)) {
            ba = a;
            bp = p;
            bs = s;
        }
    }
    if (lane == 0) {
        wa[warp] = ba;
        wp[warp] = bp;
        ws[warp] = bs;
    }
    __syncthreads();
    if (warp != 0) return;
    ba = lane < ST / 32 ? wa[lane] : DINF;
    bp = lane < ST / 32 ? wp[lane] : -1;
    bs = lane < ST / 32 ? ws[lane] : -1;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        const double a = __shfl_xor_sync(0xffffffffu, ba, off);
        const int p = __shfl_xor_sync(0xffffffffu, bp, off);
        const int s = __shfl_xor_sync(0xffffffffu, bs, off);
        if (evictFirst(a, p, s, ba, bp, bs)) {
            ba = a;
            bp = p;
            bs = s;
        }
    }
    if (lane != 0) return;
    if (need) {
        if (bs < 0) return;  // no candidate: the host's budget checks exclude this
        if (addT) {
            P[bs] = T;
            A[bs] = 0.0;
            I[bs] = T;
        } else {
            const int last = prev - 1;
            const int pl = P[last];
            P[bs] = pl;
            A[bs] = A[last];
            if (bs < total) I[bs] = pl;
        }
    } else if (addT) {
        P[prev] = T;
        A[prev] = 0.0;
        I[prev] = T;
    }
}

// h2o_init (first step): grid (lists), block HT. Copies the lists sel
// [lists][total] of the top-k over the prefill scores pre [lists][pstride]
// into the slots and idx; a slot's score is pre at its position when it
// is < t0, else 0 (the new token).
extern "C" __global__ void __launch_bounds__(HT)
h2o_init(const int* __restrict__ sel, const float* __restrict__ pre, int pstride, int t0, int total, int cap,
         int* __restrict__ pos, double* __restrict__ acc, int* __restrict__ idx) {
    const int li = blockIdx.x;
    for (int i = threadIdx.x; i < total; i += HT) {
        const int p = sel[(size_t)li * total + i];
        pos[(size_t)li * cap + i] = p;
        acc[(size_t)li * cap + i] = p < t0 ? (double)pre[(size_t)li * pstride + p] : 0.0;
        idx[(size_t)li * total + i] = p;
    }
}

// Online (max, sum of exp(x - max)) of one head: float differences (as
// the CPU's float32 logits) and exps, the sum in double. (Double exps,
// one lane per head in turn, made the first version's h2o_logits and
// h2o_accum 5× slower than their K reads.)
__device__ __forceinline__ void h2o_combine(float& m, double& z, float m2, double z2) {
    if (m2 == -HINF) return;
    if (m == -HINF) {
        m = m2;
        z = z2;
        return;
    }
    if (m2 > m) {
        z = z * (double)expf(m - m2) + z2;
        m = m2;
    } else {
        z += z2 * (double)expf(m2 - m);
    }
}

// h2o_logits: grid (nblk, NL, B), block HT. Block x covers the slots
// [x*chunk, min((x+1)*chunk, total)) of list li = (B, NL) and computes,
// a half-warp per key (KU keys at a time), the scaled logits x = (q·k)·scale of the list's
// query heads over the keys at idx, into lg [lists][HL][lgs], and per
// head the block's (max, sum exp(x - max)) into part [lists][HL][nblk][2]
// (double). q fp32 [B][HQ][HEAD_DIM]; k 16-bit [B][HKV][N][HEAD_DIM].
extern "C" __global__ void __launch_bounds__(HT)
h2o_logits(const float* __restrict__ q, const unsigned short* __restrict__ k, const int* __restrict__ idx, int total,
           int N, int hkv, int chunk, float scale, float* __restrict__ lg, int lgs, double* __restrict__ part) {
    const int x = blockIdx.x, l = blockIdx.y, b = blockIdx.z;
    const int li = b * gridDim.y + l;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, half = lane >> 4, l16 = lane & 15;
    const int hq = hkv * GROUP;
#if SHARED
    const int kvh = l, h0 = l * GROUP;
#else
    const int kvh = l / GROUP, h0 = l;
#endif
    float qr[HL][EPL];
#pragma unroll
    for (int g = 0; g < HL; g++)
#pragma unroll
        for (int i = 0; i < EPL; i++) qr[g][i] = q[((size_t)b * hq + h0 + g) * HEAD_DIM + l16 * EPL + i];
    const unsigned short* kb = k + ((size_t)b * hkv + kvh) * (size_t)N * HEAD_DIM;
    const int* il = idx + (size_t)li * total;
    float* lgl = lg + (size_t)li * HL * lgs;
    const int start = x * chunk, end = min(start + chunk, total);
    float m = -HINF;  // lane l16 < HL: head l16's running stats
    double z = 0.0;
    // KU keys per half-warp per step: every index, then every row, is
    // loaded before any is used (one key per half-warp reached ~1.2 TB/s).
    for (int i0 = start + warp * 2 * KU; i0 < end; i0 += (HT / 32) * 2 * KU) {
        int pj[KU];
#pragma unroll
        for (int u = 0; u < KU; u++) {
            const int i = i0 + 2 * u + half;
            pj[u] = i < end ? il[i] : -1;
        }
        unsigned int w[KU][EPL / 2];
#pragma unroll
        for (int u = 0; u < KU; u++) {
            if (pj[u] >= 0) {
                const unsigned short* row = kb + (size_t)pj[u] * HEAD_DIM + l16 * EPL;
#if EPL == 8
                const uint4 r = __ldg(reinterpret_cast<const uint4*>(row));
                w[u][0] = r.x;
                w[u][1] = r.y;
                w[u][2] = r.z;
                w[u][3] = r.w;
#else
                const uint2 r = __ldg(reinterpret_cast<const uint2*>(row));
                w[u][0] = r.x;
                w[u][1] = r.y;
#endif
            } else {
#pragma unroll
                for (int e = 0; e < EPL / 2; e++) w[u][e] = 0u;
            }
        }
#pragma unroll
        for (int u = 0; u < KU; u++) {
            float mine = 0.f;  // lane l16 < HL: head l16's dot
#pragma unroll
            for (int g = 0; g < HL; g++) {
                float a = 0.f;
#pragma unroll
                for (int e = 0; e < EPL / 2; e++) {
                    a = fmaf(qr[g][2 * e], lo16(w[u][e]), a);
                    a = fmaf(qr[g][2 * e + 1], hi16(w[u][e]), a);
                }
#pragma unroll
                for (int off = 8; off > 0; off >>= 1) a += __shfl_xor_sync(0xffffffffu, a, off);
                if (l16 == g) mine = a;
            }
            if (pj[u] >= 0 && l16 < HL) {
                const float xs = mine * scale;
                lgl[(size_t)l16 * lgs + i0 + 2 * u + half] = xs;
                h2o_combine(m, z, xs, 1.0);
            }
        }
    }
    // Block reduce per head: half-warp hw's lane g holds head g's partial.
    __shared__ float sm[HT / 16][HL];
    __shared__ double sz[HT / 16][HL];
    const int hw = threadIdx.x >> 4;
    if (l16 < HL) {
        sm[hw][l16] = m;
        sz[hw][l16] = z;
    }
    __syncthreads();
    if (threadIdx.x < HL) {
        const int g = threadIdx.x;
        float M = -HINF;
        double Z = 0.0;
        for (int h = 0; h < HT / 16; h++) h2o_combine(M, Z, sm[h][g], sz[h][g]);
        double* p = part + (((size_t)li * HL + g) * gridDim.x + x) * 2;
        p[0] = (double)M;
        p[1] = Z;
    }
}

// h2o_accum: grid (nblk, NL, B), block HT. Reduces the nblk partials of
// each head of list li to (M, Z) (a warp per head), then adds to the
// score of every slot i of the block's chunk the weight exp(x - M)·(1/Z)
// of each head in turn (the CPU's order), unless rep (a repeated step:
// computed, not stored).
extern "C" __global__ void __launch_bounds__(HT)
h2o_accum(const float* __restrict__ lg, int lgs, const double* __restrict__ part, int nblk, int total, int chunk, int cap,
          double* __restrict__ acc, int rep) {
    __shared__ float gm[HL];
    __shared__ double gz[HL];  // 1/Z
    const int x = blockIdx.x, li = blockIdx.z * gridDim.y + blockIdx.y;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    // Warp g reduces head g's partials (HL <= HT/32), xor shuffles.
    if (warp < HL) {
        const double* p = part + ((size_t)li * HL + warp) * nblk * 2;
        float M = -HINF;
        double Z = 0.0;
        for (int i = lane; i < nblk; i += 32) h2o_combine(M, Z, (float)p[2 * i], p[2 * i + 1]);
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) {
            const float m2 = __shfl_xor_sync(0xffffffffu, M, off);
            const double z2 = __shfl_xor_sync(0xffffffffu, Z, off);
            h2o_combine(M, Z, m2, z2);
        }
        if (lane == 0) {
            gm[warp] = M;
            gz[warp] = 1.0 / Z;
        }
    }
    __syncthreads();
    const float* lgl = lg + (size_t)li * HL * lgs;
    double* A = acc + (size_t)li * cap;
    const int start = x * chunk, end = min(start + chunk, total);
    for (int i = start + threadIdx.x; i < end; i += HT) {
        double a = A[i];
#pragma unroll
        for (int g = 0; g < HL; g++) a += (double)expf(lgl[(size_t)g * lgs + i] - gm[g]) * gz[g];
        if (!rep) A[i] = a;
    }
}
