// Double Sparsity on the GPU, equal to methods.DoubleSparsity: the label
// cache (R calibrated channels of K per KV head, optionally quantised)
// built at prefill, and per step the label scores of every key; the
// radix top-k of oracle.cu ranks them.
//
// Specialised by defines:
//   HEAD_DIM   head dimension d (64 or 128)
//   R          label channels per KV head (1..HEAD_DIM)
//   QBITS      bits per label: 16 keeps K's 16-bit values (labels stored
//              in the K dtype); 1..15 quantises each key's R labels on its
//              own min-max grid of 2^QBITS levels, stored as the exact
//              float32 values the CPU computes (4 bytes per label: the
//              kernels favour exactness over the byte saving)
//   GROUP      query heads per KV head
//   SHARED     1: one score per KV head, the group's scores summed in head
//              order (Options.Shared); 0: one per query head
//   DTYPE_BF16 1 for bf16 keys, 0 for fp16
//
// Channels CH [KV_HEADS][R] int32 (ascending, batch-shared); labels LB
// [B][KV_HEADS][N][R]; scores S [B][LISTS][N] fp32.
//
// Exactness: a score is tensor.Dot32(q[ch], label) in its order (four
// float32 partial sums over i ≡ 0..3 mod 4 up to the last multiple of 4,
// the tail into the first, then (s0 + s1) + (s2 + s3)), every product and
// sum rounded on its own (no FMA contraction); the shared sum starts at 0
// and adds the heads in order, as methods.ScoreSelector. Quantisation is
// methods' quantRow in float64 (round half away from zero).
//
// Note (rejected): two keys per thread per step in ds_scores (both label
// loads in flight, half the blocks): slower on the H200, 100.6 -> 122.0 us
// at 1M keys, 32/8 heads per KV head, r = 16 (bench-lsh-ds, cold).

#ifndef HEAD_DIM
#define HEAD_DIM 128
#endif
#ifndef R
#define R 16
#endif
#ifndef QBITS
#define QBITS 16
#endif
#ifndef GROUP
#define GROUP 4
#endif
#ifndef SHARED
#define SHARED 1
#endif
#ifndef DTYPE_BF16
#define DTYPE_BF16 1
#endif

#define DS_THREADS 256

#if QBITS < 16
typedef float label_t;
#define LABEL_VEC 4  // labels per 16-byte load
#else
typedef unsigned short label_t;
#define LABEL_VEC 8
#endif

__device__ __forceinline__ float ds_val(label_t x) {
#if QBITS < 16
    return x;
#else
    return kv2f(x);
#endif
}

// ds_labels: one thread per key gathers its R channels (and quantises
// them). Grid (ceil(n / DS_THREADS), kv_heads, batch).
extern "C" __global__ void __launch_bounds__(DS_THREADS) ds_labels(
    const unsigned short* __restrict__ K, const int* __restrict__ CH, int n, int kv_heads, label_t* __restrict__ LB) {
    const int kvh = blockIdx.y, bh = blockIdx.z * kv_heads + kvh;
    const int j = blockIdx.x * DS_THREADS + threadIdx.x;
    if (j >= n) return;
    const unsigned short* k = K + ((size_t)bh * n + j) * HEAD_DIM;
    const int* ch = CH + kvh * R;
    label_t* out = LB + ((size_t)bh * n + j) * R;
#if QBITS < 16
    float a = kv2f(k[ch[0]]), b = a;
    for (int i = 1; i < R; i++) {
        float v = kv2f(k[ch[i]]);
        a = fminf(a, v);
        b = fmaxf(b, v);
    }
    const double levels = (double)((1 << QBITS) - 1);
    const double step = __ddiv_rn(__dsub_rn((double)b, (double)a), levels);
    for (int i = 0; i < R; i++) {
        float v = kv2f(k[ch[i]]);
        if (step != 0.0) v = __double2float_rn(__dadd_rn((double)a, __dmul_rn(round(__ddiv_rn(__dsub_rn((double)v, (double)a), step)), step)));
        out[i] = v;
    }
#else
    for (int i = 0; i < R; i++) out[i] = k[ch[i]];
#endif
}

// ds_scores: per (batch, KV head) each thread scores keys j = start,
// start + stride, ... against the group's R query channels. Grid
// (blocks, kv_heads, batch).
extern "C" __global__ void __launch_bounds__(DS_THREADS) ds_scores(
    const float* __restrict__ Q, const label_t* __restrict__ LB, const int* __restrict__ CH, int n, int kv_heads,
    float* __restrict__ S) {
    __shared__ float qs[GROUP][R];
    const int kvh = blockIdx.y, b = blockIdx.z, bh = b * kv_heads + kvh;
    const int heads = kv_heads * GROUP;
    for (int e = threadIdx.x; e < GROUP * R; e += DS_THREADS) {
        const int g = e / R, i = e % R;
        qs[g][i] = Q[((size_t)b * heads + kvh * GROUP + g) * HEAD_DIM + CH[kvh * R + i]];
    }
    __syncthreads();
    const label_t* lb = LB + (size_t)bh * n * R;
    for (int j = blockIdx.x * DS_THREADS + threadIdx.x; j < n; j += gridDim.x * DS_THREADS) {
        float lab[R];
        const label_t* row = lb + (size_t)j * R;
#if R % LABEL_VEC == 0
#pragma unroll
        for (int v = 0; v < R / LABEL_VEC; v++) {
            uint4 u = __ldg(reinterpret_cast<const uint4*>(row) + v);
            const label_t* e = reinterpret_cast<const label_t*>(&u);
#pragma unroll
            for (int i = 0; i < LABEL_VEC; i++) lab[v * LABEL_VEC + i] = ds_val(e[i]);
        }
#else
#pragma unroll
        for (int i = 0; i < R; i++) lab[i] = ds_val(row[i]);
#endif
#if SHARED
        float acc = 0.f;
#endif
#pragma unroll
        for (int g = 0; g < GROUP; g++) {
            float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
            int i = 0;
#pragma unroll
            for (; i + 4 <= R; i += 4) {
                s0 = __fadd_rn(s0, __fmul_rn(qs[g][i + 0], lab[i + 0]));
                s1 = __fadd_rn(s1, __fmul_rn(qs[g][i + 1], lab[i + 1]));
                s2 = __fadd_rn(s2, __fmul_rn(qs[g][i + 2], lab[i + 2]));
                s3 = __fadd_rn(s3, __fmul_rn(qs[g][i + 3], lab[i + 3]));
            }
#pragma unroll
            for (; i < R; i++) s0 = __fadd_rn(s0, __fmul_rn(qs[g][i], lab[i]));
            const float s = __fadd_rn(__fadd_rn(s0, s1), __fadd_rn(s2, s3));
#if SHARED
            acc = __fadd_rn(acc, s);
#else
            S[((size_t)b * heads + kvh * GROUP + g) * n + j] = s;
#endif
        }
#if SHARED
        S[(size_t)bh * n + j] = acc;
#endif
    }
}
