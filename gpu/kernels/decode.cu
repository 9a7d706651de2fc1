// Split-K decode attention (FlashDecoding-style), dense and gather.
//
// Specialised by defines:
//   HEAD_DIM   64 or 128
//   GROUP      query heads per block (1, 2, 4, 8): the block reads each K/V
//              row once for all GROUP query heads (GQA)
//   DTYPE_BF16 1 for bf16 K/V, 0 for fp16
//   THREADS    threads per block
//   TILE       keys per lane group per step (loads in flight per lane: 2*TILE)
//   PREFETCH   1: load step i+1 before the arithmetic of step i
//   MINB       minimum resident blocks per SM for __launch_bounds__ (0: none)
//   SCATTER    1: reduce-scatter the scores across the lane group, then
//              broadcast them; 0: plain xor all-reduce of every score;
//              2: reduce-scatter, softmax by the lane that owns each score,
//              broadcast the probabilities (GROUP*TILE <= HEAD_DIM/8)
//
// Layout: q fp32 [B][HQ][HEAD_DIM]; K, V [B][HKV][N][HEAD_DIM] (16-bit);
// gather lists int32 [B][HQ/GROUP][n]; partials pacc [B][HQ][splits][HEAD_DIM]
// and pml [B][HQ][splits][2] = (running max m in log2 units, sum l); out fp32
// [B][HQ][HEAD_DIM].
//
// A lane group of HEAD_DIM/8 lanes owns one key row at a time, each lane 8
// dims (one 16-byte load of K and one of V). Scores are reduced across the
// lane group with xor shuffles, so every lane holds the full score. Online
// softmax in base 2 (q is pre-scaled by scale*log2(e)), fp32 accumulation.
// Only plain loads, shuffles and exp2f: builds for sm_80 and sm_90 alike.

#ifndef HEAD_DIM
#define HEAD_DIM 128
#endif
#ifndef GROUP
#define GROUP 4
#endif
#ifndef DTYPE_BF16
#define DTYPE_BF16 1
#endif
#ifndef THREADS
#define THREADS 256
#endif
#ifndef TILE
#define TILE 4
#endif
#ifndef PREFETCH
#define PREFETCH 1
#endif
#ifndef MINB
#define MINB 0
#endif
#ifndef SCATTER
#define SCATTER 1
#endif
#if MINB > 0
#define DECODE_BOUNDS __launch_bounds__(THREADS, MINB)
#else
#define DECODE_BOUNDS __launch_bounds__(THREADS)
#endif

#define LANES (HEAD_DIM / 8)
#define NGROUPS (THREADS / LANES)
#define NEG_BIG (-1e30f)

// DECODE_MMA 1 compiles only decode_combine from this file (the module of
// the tensor-core kernels, decode_mma.cu, appended by the Go side).
#ifndef DECODE_MMA
#define DECODE_MMA 0
#endif
#if !DECODE_MMA

__device__ __forceinline__ float h2f(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ void unpack2(unsigned int w, float& a, float& b) {
#if DTYPE_BF16
    a = __uint_as_float(w << 16);
    b = __uint_as_float(w & 0xffff0000u);
#else
    a = h2f((unsigned short)(w & 0xffffu));
    b = h2f((unsigned short)(w >> 16));
#endif
}

__device__ __forceinline__ void unpack8(uint4 w, float f[8]) {
    unpack2(w.x, f[0], f[1]);
    unpack2(w.y, f[2], f[3]);
    unpack2(w.z, f[4], f[5]);
    unpack2(w.w, f[6], f[7]);
}

__device__ __forceinline__ uint4 ldg16(const uint4* p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}

// rows_of returns the key rows of list entries j0..j0+TILE-1 (positions,
// or list entries when GATHER), -1 at or past end.
template <bool GATHER>
__device__ __forceinline__ void rows_of(int (&r)[TILE], int j0, int end, const int* __restrict__ il) {
#pragma unroll
    for (int t = 0; t < TILE; t++) r[t] = j0 + t < end ? (GATHER ? __ldg(il + j0 + t) : j0 + t) : -1;
}

// load_rows loads this lane's 16 bytes of K and V of each row (zeros for
// row -1, which reads nothing).
__device__ __forceinline__ void load_rows(uint4 (&kr)[TILE], uint4 (&vr)[TILE], const int (&r)[TILE], size_t rowbase,
                                          const uint4* __restrict__ k, const uint4* __restrict__ v, int lane) {
#pragma unroll
    for (int t = 0; t < TILE; t++) {
        if (r[t] >= 0) {
            const size_t row = rowbase + (size_t)r[t];
            kr[t] = ldg16(k + row * LANES + lane);
            vr[t] = ldg16(v + row * LANES + lane);
        } else {
            kr[t] = make_uint4(0, 0, 0, 0);
            vr[t] = make_uint4(0, 0, 0, 0);
        }
    }
}

// reduce_lanes sums each of the V = GROUP*TILE partial scores sv[] over the
// LANES lanes of a lane group, leaving every full sum in every lane. It
// reduce-scatters first (each xor step exchanges only the half of the
// values the partner keeps: V/2 + V/4 + ... shuffles instead of
// V*log2(LANES)), then broadcasts each sum from the lane that holds it.
__device__ __forceinline__ void reduce_lanes(float* sv, int lane) {
    constexpr int V = GROUP * TILE;
    int c = V;
#pragma unroll
    for (int off = LANES / 2; off > 0; off >>= 1) {
        if (c >= 2) {
            const int h = c / 2;
            const bool up = (lane & off) != 0;
#pragma unroll
            for (int i = 0; i < h; i++) {
                const float a = sv[i], b = sv[i + h];
                const float send = up ? a : b, keep = up ? b : a;
                sv[i] = keep + __shfl_xor_sync(0xffffffffu, send, off);
            }
            c = h;
        } else {
            sv[0] += __shfl_xor_sync(0xffffffffu, sv[0], off);
        }
    }
    float full[V];
#pragma unroll
    for (int v = 0; v < V; v++) {
        int owner = 0, rem = v, cc = V;
#pragma unroll
        for (int off = LANES / 2; off > 0; off >>= 1) {
            if (cc >= 2) {
                const int h = cc / 2;
                if (rem >= h) {
                    owner |= off;
                    rem -= h;
                }
                cc = h;
            }
        }
        full[v] = __shfl_sync(0xffffffffu, sv[rem], owner, LANES);
    }
#pragma unroll
    for (int v = 0; v < V; v++) sv[v] = full[v];
}

// RL is the number of lanes that hold each score after reduce_scatter
// (SCATTER == 2 needs GROUP*TILE <= LANES): lane l owns score l / RL.
#define RL (LANES / (GROUP * TILE) > 0 ? LANES / (GROUP * TILE) : 1)

// reduce_scatter is the first half of reduce_lanes: it returns the full
// sum of score lane / RL (GROUP*TILE <= LANES).
__device__ __forceinline__ float reduce_scatter(float* sv, int lane) {
    int c = GROUP * TILE;
#pragma unroll
    for (int off = LANES / 2; off > 0; off >>= 1) {
        if (c >= 2) {
            const int h = c / 2;
            const bool up = (lane & off) != 0;
#pragma unroll
            for (int i = 0; i < h; i++) {
                const float a = sv[i], b = sv[i + h];
                const float send = up ? a : b, keep = up ? b : a;
                sv[i] = keep + __shfl_xor_sync(0xffffffffu, send, off);
            }
            c = h;
        } else {
            sv[0] += __shfl_xor_sync(0xffffffffu, sv[0], off);
        }
    }
    return sv[0];
}

template <bool GATHER>
__device__ __forceinline__ void partial(const float* __restrict__ q, const uint4* __restrict__ k,
                                        const uint4* __restrict__ v, const int* __restrict__ idx, int n, int N,
                                        int hq, int hkv, int chunk, float scale, float* __restrict__ pacc,
                                        float* __restrict__ pml) {
    const int split = blockIdx.x, hb = blockIdx.y, b = blockIdx.z;
    const int splits = gridDim.x;
    const int qh0 = hb * GROUP;
    const int kvh = qh0 / (hq / hkv);
    const int lane = threadIdx.x % LANES;
    const int grp = threadIdx.x / LANES;
    const int start = split * chunk;
    const int end = min(start + chunk, n);

    float qr[GROUP][8];
    const float sc = scale * 1.4426950408889634f;
#pragma unroll
    for (int g = 0; g < GROUP; g++) {
        const float4* qp = (const float4*)(q + ((size_t)b * hq + qh0 + g) * HEAD_DIM + lane * 8);
        float4 x = qp[0], y = qp[1];
        qr[g][0] = x.x * sc; qr[g][1] = x.y * sc; qr[g][2] = x.z * sc; qr[g][3] = x.w * sc;
        qr[g][4] = y.x * sc; qr[g][5] = y.y * sc; qr[g][6] = y.z * sc; qr[g][7] = y.w * sc;
    }
    float m[GROUP], l[GROUP], acc[GROUP][8];
#pragma unroll
    for (int g = 0; g < GROUP; g++) {
        m[g] = NEG_BIG;
        l[g] = 0.f;
#pragma unroll
        for (int i = 0; i < 8; i++) acc[g][i] = 0.f;
    }
#if SCATTER == 2
    static_assert(GROUP * TILE <= LANES, "SCATTER 2 needs GROUP*TILE <= LANES");
    const int v_own = lane / RL;
    const int t_own = v_own % TILE;
    float m_own = NEG_BIG, l_own = 0.f;  // running max and sum of this lane's score slot
#endif
    const size_t rowbase = ((size_t)b * hkv + kvh) * (size_t)N;
    const int* il = GATHER ? idx + ((size_t)b * gridDim.y + hb) * (size_t)n : nullptr;

    // Every thread runs the same number of steps (shuffles need the whole
    // warp). With PREFETCH the next step's rows are loaded before this
    // step's arithmetic, so each thread keeps loads in flight throughout.
    // Rows of the next step are known one step ahead, so a gather's index
    // load never stalls the row loads.
    const int STEP = NGROUPS * TILE;
    uint4 kr[TILE], vr[TILE];
    int rc[TILE], rn[TILE];
    rows_of<GATHER>(rc, start + grp * TILE, end, il);
    load_rows(kr, vr, rc, rowbase, k, v, lane);
    rows_of<GATHER>(rn, start + STEP + grp * TILE, end, il);
    for (int base = start; base < end; base += STEP) {
        bool ok[TILE];
#pragma unroll
        for (int t = 0; t < TILE; t++) ok[t] = rc[t] >= 0;
#if PREFETCH
        uint4 kn[TILE], vn[TILE];
        load_rows(kn, vn, rn, rowbase, k, v, lane);
#endif
        int rn2[TILE];
        rows_of<GATHER>(rn2, base + 2 * STEP + grp * TILE, end, il);
        float s[GROUP][TILE];
#pragma unroll
        for (int t = 0; t < TILE; t++) {
            float kf[8];
            unpack8(kr[t], kf);
#pragma unroll
            for (int g = 0; g < GROUP; g++) {
                float d = 0.f;
#pragma unroll
                for (int i = 0; i < 8; i++) d = fmaf(qr[g][i], kf[i], d);
                s[g][t] = d;
            }
        }
#if SCATTER == 2
        // Owner softmax: after the reduce-scatter, lane owns score v_own of
        // the tile (replicated over RL lanes); it alone exponentiates it,
        // then the probabilities are broadcast for the PV update.
        float p[GROUP][TILE];
        {
            float mine = reduce_scatter(&s[0][0], lane);
            const bool ok_own = base + grp * TILE + t_own < end;
            const float s_own = ok_own ? mine : NEG_BIG;
            float mt = s_own;  // max over the tile's keys of this lane's head
#pragma unroll
            for (int o = RL; o < RL * TILE; o <<= 1) mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, o));
#pragma unroll
            for (int g = 0; g < GROUP; g++) {
                const float mtg = __shfl_sync(0xffffffffu, mt, g * TILE * RL, LANES);
                if (mtg > m[g]) {
                    const float alpha = exp2f(m[g] - mtg);
#pragma unroll
                    for (int i = 0; i < 8; i++) acc[g][i] *= alpha;
                    m[g] = mtg;
                }
            }
            if (mt > m_own) {
                l_own *= exp2f(m_own - mt);
                m_own = mt;
            }
            const float p_own = ok_own ? exp2f(s_own - m_own) : 0.f;
            l_own += p_own;
#pragma unroll
            for (int g = 0; g < GROUP; g++)
#pragma unroll
                for (int t = 0; t < TILE; t++) p[g][t] = __shfl_sync(0xffffffffu, p_own, (g * TILE + t) * RL, LANES);
        }
#else
#if SCATTER
        reduce_lanes(&s[0][0], lane);
#else
#pragma unroll
        for (int off = LANES / 2; off > 0; off >>= 1)
#pragma unroll
            for (int g = 0; g < GROUP; g++)
#pragma unroll
                for (int t = 0; t < TILE; t++) s[g][t] += __shfl_xor_sync(0xffffffffu, s[g][t], off);
#endif
        float p[GROUP][TILE];
#pragma unroll
        for (int g = 0; g < GROUP; g++) {
            float mx = m[g];
#pragma unroll
            for (int t = 0; t < TILE; t++)
                if (ok[t]) mx = fmaxf(mx, s[g][t]);
            // Rescale only when the running max grows (rare after the first
            // steps); alpha would be exactly 1 otherwise.
            if (mx > m[g]) {
                const float alpha = exp2f(m[g] - mx);
                l[g] *= alpha;
#pragma unroll
                for (int i = 0; i < 8; i++) acc[g][i] *= alpha;
                m[g] = mx;
            }
            float sum = 0.f;
#pragma unroll
            for (int t = 0; t < TILE; t++) {
                p[g][t] = ok[t] ? exp2f(s[g][t] - mx) : 0.f;
                sum += p[g][t];
            }
            l[g] += sum;
        }
#endif
#pragma unroll
        for (int t = 0; t < TILE; t++) {
            float vf[8];
            unpack8(vr[t], vf);
#pragma unroll
            for (int g = 0; g < GROUP; g++)
#pragma unroll
                for (int i = 0; i < 8; i++) acc[g][i] = fmaf(p[g][t], vf[i], acc[g][i]);
        }
#if PREFETCH
#pragma unroll
        for (int t = 0; t < TILE; t++) {
            kr[t] = kn[t];
            vr[t] = vn[t];
        }
#else
        load_rows(kr, vr, rn, rowbase, k, v, lane);
#endif
#pragma unroll
        for (int t = 0; t < TILE; t++) {
            rc[t] = rn[t];
            rn[t] = rn2[t];
        }
    }

#if SCATTER == 2
    // l of a head: its TILE slots' sums, each rescaled to the head's max.
    {
        float lh = l_own * exp2f(m_own - m[0]);
#pragma unroll
        for (int g = 1; g < GROUP; g++)
            if (v_own / TILE == g) lh = l_own * exp2f(m_own - m[g]);
#pragma unroll
        for (int o = RL; o < RL * TILE; o <<= 1) lh += __shfl_xor_sync(0xffffffffu, lh, o);
#pragma unroll
        for (int g = 0; g < GROUP; g++) l[g] = __shfl_sync(0xffffffffu, lh, g * TILE * RL, LANES);
    }
#endif
    // Merge the lane groups of the block, one query head at a time.
    __shared__ float sm_m[NGROUPS], sm_l[NGROUPS];
    __shared__ __align__(16) float sm_acc[NGROUPS][HEAD_DIM];
#pragma unroll
    for (int g = 0; g < GROUP; g++) {
        if (lane == 0) {
            sm_m[grp] = m[g];
            sm_l[grp] = l[g];
        }
        __syncthreads();
        float M = NEG_BIG;
        for (int x = 0; x < NGROUPS; x++) M = fmaxf(M, sm_m[x]);
        const float f = exp2f(m[g] - M);
        float4* dst = (float4*)&sm_acc[grp][lane * 8];
        dst[0] = make_float4(acc[g][0] * f, acc[g][1] * f, acc[g][2] * f, acc[g][3] * f);
        dst[1] = make_float4(acc[g][4] * f, acc[g][5] * f, acc[g][6] * f, acc[g][7] * f);
        __syncthreads();
        const size_t o = ((size_t)b * hq + qh0 + g) * splits + split;
        for (int c = threadIdx.x; c < HEAD_DIM; c += THREADS) {
            float sum = 0.f;
            for (int x = 0; x < NGROUPS; x++) sum += sm_acc[x][c];
            pacc[o * HEAD_DIM + c] = sum;
        }
        if (threadIdx.x == 0) {
            float L = 0.f;
            for (int x = 0; x < NGROUPS; x++) L += sm_l[x] * exp2f(sm_m[x] - M);
            pml[2 * o] = M;
            pml[2 * o + 1] = L;
        }
        __syncthreads();
    }
}

extern "C" __global__ void DECODE_BOUNDS
decode_dense(const float* __restrict__ q, const uint4* __restrict__ k, const uint4* __restrict__ v, int N, int hq,
             int hkv, int chunk, float scale, float* __restrict__ pacc, float* __restrict__ pml) {
    pdl_wait();
    partial<false>(q, k, v, nullptr, N, N, hq, hkv, chunk, scale, pacc, pml);
}

extern "C" __global__ void DECODE_BOUNDS
decode_gather(const float* __restrict__ q, const uint4* __restrict__ k, const uint4* __restrict__ v,
              const int* __restrict__ idx, int n, int N, int hq, int hkv, int chunk, float scale,
              float* __restrict__ pacc, float* __restrict__ pml) {
    pdl_wait();  // the lists come from the kernel before (LaunchPDL)
    partial<true>(q, k, v, idx, n, N, hq, hkv, chunk, scale, pacc, pml);
}

#endif  // !DECODE_MMA

// decode_combine merges the splits by log-sum-exp: grid B*HQ, block HEAD_DIM.
extern "C" __global__ void __launch_bounds__(HEAD_DIM)
decode_combine(const float* __restrict__ pacc, const float* __restrict__ pml, int splits, float* __restrict__ out) {
    pdl_wait();
    const size_t bh = blockIdx.x;
    const int c = threadIdx.x;
    const float* ml = pml + bh * splits * 2;
    float M = NEG_BIG;
    for (int s = 0; s < splits; s++) M = fmaxf(M, ml[2 * s]);
    float L = 0.f, o = 0.f;
    for (int s = 0; s < splits; s++) {
        const float w = exp2f(ml[2 * s] - M);
        L = fmaf(w, ml[2 * s + 1], L);
        o = fmaf(w, pacc[(bh * splits + s) * HEAD_DIM + c], o);
    }
    out[bh * HEAD_DIM + c] = o / L;
}
