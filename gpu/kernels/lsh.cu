// LSH (SimHash) codes on the GPU, bit-identical to methods.LSH: key codes
// at prefill, query codes per step; the counting select of hash.cu ranks
// the keys by Hamming score.
//
// Specialised by defines:
//   HEAD_DIM   head dimension d (64 or 128)
//   IN         plane width: HEAD_DIM, or HEAD_DIM + 1 with MIPS
//   MIPS       1: keys get the extra coordinate sqrt(M² − |k|²) (M² the
//              largest |k|² of the (batch, KV head)), queries 0
//   WORDS      32-bit words per code (code bits padded to 32·WORDS)
//   GROUP      query heads per KV head
//   DTYPE_BF16 1 for bf16 keys, 0 for fp16
//
// Planes PT [KV_HEADS][IN][32·WORDS] fp32: plane p of a KV head, element c,
// at PT[(kvh·IN + c)·32·WORDS + p] (transposed so that the lanes of a warp,
// one plane each, read consecutive words). Padding planes are zero, so
// their bit is 0 in every code and adds the same constant to every score.
//
// Exactness: bit p = [dot32(plane_p, x) > 0] with dot32 tensor.Dot32's
// order (four float32 partial sums over i ≡ 0..3 mod 4 up to the last
// multiple of 4, the tail into the first, then (s0 + s1) + (s2 + s3)),
// every product and sum rounded on its own (__fmul_rn/__fadd_rn: no FMA
// contraction), as Go computes it on amd64. |k|² is a float64 sum in
// position order of exact float64 products (tensor.Dot), the extra
// coordinate float32(sqrt(max(0, M² − |k|²))) in float64, as the CPU.

#ifndef HEAD_DIM
#define HEAD_DIM 128
#endif
#ifndef MIPS
#define MIPS 0
#endif
#ifndef IN
#if MIPS
#define IN (HEAD_DIM + 1)
#else
#define IN HEAD_DIM
#endif
#endif
#ifndef WORDS
#define WORDS 2
#endif
#ifndef GROUP
#define GROUP 4
#endif
#ifndef DTYPE_BF16
#define DTYPE_BF16 1
#endif

#define PBITS (32 * WORDS)
#define LSH_THREADS 256
#define KEYS_PER_BLOCK 32

// dot32 of plane p (column p of pt, stride PBITS) with x (shared memory),
// in tensor.Dot32's order.
__device__ __forceinline__ float lsh_dot32(const float* __restrict__ pt, int p, const float* x) {
    float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
    int i = 0;
    for (; i + 4 <= IN; i += 4) {
        s0 = __fadd_rn(s0, __fmul_rn(pt[(i + 0) * PBITS + p], x[i + 0]));
        s1 = __fadd_rn(s1, __fmul_rn(pt[(i + 1) * PBITS + p], x[i + 1]));
        s2 = __fadd_rn(s2, __fmul_rn(pt[(i + 2) * PBITS + p], x[i + 2]));
        s3 = __fadd_rn(s3, __fmul_rn(pt[(i + 3) * PBITS + p], x[i + 3]));
    }
    for (; i < IN; i++) s0 = __fadd_rn(s0, __fmul_rn(pt[i * PBITS + p], x[i]));
    return __fadd_rn(__fadd_rn(s0, s1), __fadd_rn(s2, s3));
}

// |k|² as tensor.Dot(k, k): float64, position order.
__device__ __forceinline__ double lsh_norm2(const unsigned short* __restrict__ k) {
    double s = 0.0;
    for (int c = 0; c < HEAD_DIM; c++) {
        double x = (double)ld16(k + c);
        s = __dadd_rn(s, __dmul_rn(x, x));
    }
    return s;
}

// lsh_max_norm: m2[b][kvh] = max over keys of |k|² (the bit pattern of a
// non-negative double orders as an unsigned integer). m2 starts at 0.
// Grid (ceil(n / LSH_THREADS), kv_heads, batch).
extern "C" __global__ void __launch_bounds__(LSH_THREADS) lsh_max_norm(
    const unsigned short* __restrict__ K, int n, int kv_heads, unsigned long long* __restrict__ m2) {
    const int bh = blockIdx.z * kv_heads + blockIdx.y;
    const int j = blockIdx.x * LSH_THREADS + threadIdx.x;
    if (j >= n) return;
    double v = lsh_norm2(K + ((size_t)bh * n + j) * HEAD_DIM);
    atomicMax(m2 + bh, (unsigned long long)__double_as_longlong(v));
}

// lsh_key_codes: kc[b][kvh][j][w] for KEYS_PER_BLOCK keys per block; a
// warp computes one word of one key, lane i the bit of plane 32w + i.
// Grid (ceil(n / KEYS_PER_BLOCK), kv_heads, batch).
extern "C" __global__ void __launch_bounds__(LSH_THREADS) lsh_key_codes(
    const unsigned short* __restrict__ K, const float* __restrict__ PT, int n, int kv_heads,
    const unsigned long long* __restrict__ m2, unsigned int* __restrict__ kc) {
    __shared__ float xs[KEYS_PER_BLOCK][IN];
    const int kvh = blockIdx.y, bh = blockIdx.z * kv_heads + kvh;
    const int j0 = blockIdx.x * KEYS_PER_BLOCK;
    const int nk = min(KEYS_PER_BLOCK, n - j0);
    const unsigned short* kb = K + ((size_t)bh * n + j0) * HEAD_DIM;
    for (int e = threadIdx.x; e < nk * HEAD_DIM; e += LSH_THREADS) xs[e / HEAD_DIM][e % HEAD_DIM] = ld16(kb + e);
#if MIPS
    const double mm = __longlong_as_double((long long)m2[bh]);
    for (int r = threadIdx.x; r < nk; r += LSH_THREADS) {
        double v = lsh_norm2(kb + (size_t)r * HEAD_DIM);
        xs[r][HEAD_DIM] = __double2float_rn(__dsqrt_rn(fmax(0.0, __dsub_rn(mm, v))));
    }
#endif
    __syncthreads();
    const float* pt = PT + (size_t)kvh * IN * PBITS;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int t = warp; t < nk * WORDS; t += LSH_THREADS / 32) {
        const int r = t / WORDS, w = t % WORDS;
        const float d = lsh_dot32(pt, 32 * w + lane, xs[r]);
        const unsigned int bits = __ballot_sync(0xffffffffu, d > 0.f);
        if (lane == 0) kc[((size_t)bh * n + j0 + r) * WORDS + w] = bits;
    }
}

// lsh_query_codes: word w of qc[b][h] for the fp32 queries Q [B][H][HEAD_DIM]
// (with MIPS the extra coordinate is 0). The block stages the word's 32
// planes in shared memory (all loads in flight at once), warp m sums the
// partial chain s_m of tensor.Dot32 for lane i's plane (chain 0 also the
// tail), and warp 0 adds them in Dot32's order. Grid (WORDS, heads, batch),
// QC_THREADS threads.
#define QC_THREADS 128
#define MAIN (IN / 4 * 4)
extern "C" __global__ void __launch_bounds__(QC_THREADS) lsh_query_codes(
    const float* __restrict__ Q, const float* __restrict__ PT, int heads, unsigned int* __restrict__ qc) {
    __shared__ float ps[IN][32];
    __shared__ float xs[IN];
    __shared__ float part[4][32];
    pdl_launch_dependents();  // the select may start prefetching its key codes
    const int w = blockIdx.x, h = blockIdx.y, bh = blockIdx.z * heads + h;
    const float* pt = PT + (size_t)(h / GROUP) * IN * PBITS + 32 * w;
#pragma unroll 8
    for (int e = threadIdx.x; e < IN * 32; e += QC_THREADS) ps[e / 32][e % 32] = pt[(e / 32) * PBITS + e % 32];
    for (int c = threadIdx.x; c < IN; c += QC_THREADS) xs[c] = c < HEAD_DIM ? Q[(size_t)bh * HEAD_DIM + c] : 0.f;
    __syncthreads();
    const int m = threadIdx.x / 32, lane = threadIdx.x % 32;
    float s = 0.f;
#pragma unroll 8
    for (int i = m; i < MAIN; i += 4) s = __fadd_rn(s, __fmul_rn(ps[i][lane], xs[i]));
    if (m == 0)
        for (int i = MAIN; i < IN; i++) s = __fadd_rn(s, __fmul_rn(ps[i][lane], xs[i]));
    part[m][lane] = s;
    __syncthreads();
    if (m == 0) {
        const float d = __fadd_rn(__fadd_rn(part[0][lane], part[1][lane]), __fadd_rn(part[2][lane], part[3][lane]));
        const unsigned int bits = __ballot_sync(0xffffffffu, d > 0.f);
        if (lane == 0) qc[(size_t)bh * WORDS + w] = bits;
    }
}
