// Exact decode attention of one query head in float64, for the quality
// metrics (package gpueval): the logits scale·q·k_j of every visible key
// and the dense output Σ_j exp(l_j − lse)·v_j. Keys and values are fp16
// [N][D] (one KV head, the rows of a prefix), the query fp32 [D]. Products
// and sums are in float64, as attn.Logits and attn.SparseOutput do on the
// CPU, so the two agree to rounding of the summation order.

#define RT 256  // threads of ref_logits

__device__ __forceinline__ double h2d(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return (double)f;
}

// ref_logits: grid (blocks), block RT. Block x covers keys
// [x*chunk, min((x+1)*chunk, N)); a warp scores one key per step.
// L[j] = (double)scale · Σ_c (double)q[c]·(double)k[j][c].
extern "C" __global__ void __launch_bounds__(RT)
ref_logits(const float* __restrict__ q, const unsigned short* __restrict__ k, int N, int D, int chunk, float scale,
           double* __restrict__ L) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int start = blockIdx.x * chunk;
    const int end = min(start + chunk, N);
    for (int j = start + warp; j < end; j += RT / 32) {
        const unsigned short* row = k + (size_t)j * D;
        double s = 0.0;
        for (int c = lane; c < D; c += 32) s += (double)q[c] * h2d(row[c]);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
        if (lane == 0) L[j] = (double)scale * s;
    }
}

// ref_output: grid (blocks), block D threads (D <= 1024). Block x adds
// Σ_{j in its chunk} exp(L[j] − lse)·v[j][c] into out[c] (zeroed by the
// caller); lse is passed as the bits of a double.
extern "C" __global__ void ref_output(const double* __restrict__ L, const unsigned short* __restrict__ v, int N, int D,
                                      int chunk, long long lseBits, double* __restrict__ out) {
    const int c = threadIdx.x;
    const double lse = __longlong_as_double(lseBits);
    const int start = blockIdx.x * chunk;
    const int end = min(start + chunk, N);
    double acc = 0.0;
    for (int j = start; j < end; j++) acc += exp(L[j] - lse) * h2d(v[(size_t)j * D + c]);
    atomicAdd(out + c, acc);
}
