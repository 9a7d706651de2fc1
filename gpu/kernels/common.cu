// Prelude of every hbench kernel module: gpu.Compile puts it before each
// source (a #line directive then restores the source's own line numbers).
// Helpers here are shared by the kernel files; their defines (DTYPE_BF16)
// take the module's value, or the common default.

#ifndef DTYPE_BF16
#define DTYPE_BF16 1  // K/V elements are bf16 (0: fp16)
#endif

// kv2f converts one 16-bit K/V element (bf16 or fp16, by DTYPE_BF16) to float.
__device__ __forceinline__ float kv2f(unsigned short h) {
#if DTYPE_BF16
    return __uint_as_float(((unsigned int)h) << 16);
#else
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#endif
}

// ld16 loads and converts one K/V element.
__device__ __forceinline__ float ld16(const unsigned short* p) { return kv2f(*p); }

// lo16 and hi16 convert the low and high elements of a packed pair.
__device__ __forceinline__ float lo16(unsigned int w) {
#if DTYPE_BF16
    return __uint_as_float(w << 16);
#else
    return kv2f((unsigned short)(w & 0xffffu));
#endif
}
__device__ __forceinline__ float hi16(unsigned int w) {
#if DTYPE_BF16
    return __uint_as_float(w & 0xffff0000u);
#else
    return kv2f((unsigned short)(w >> 16));
#endif
}

// l2_evict_first returns an L2 cache policy (sm_80+) under which the
// lines a load brings in are the first its L2 set evicts: for data read
// once (K/V rows, key codes), so that it displaces itself rather than
// other data (in a cold timing: the dirty lines the flush left, whose
// write-backs the call would otherwise pay for).
__device__ __forceinline__ unsigned long long l2_evict_first() {
    unsigned long long p;
    asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(p));
    return p;
}

// Programmatic dependent launch (sm_90+; no-ops before, and when the
// kernel was not launched with gpu.Ctx.LaunchPDL). pdl_wait blocks until
// the kernel before this one on the stream has finished and its writes are
// visible: call it before touching anything that kernel writes.
// pdl_launch_dependents lets the next kernel's blocks start early.
__device__ __forceinline__ void pdl_wait() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_launch_dependents() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// warp_scan turns v into its inclusive scan over the lanes of a full warp
// (lane = this thread's lane).
__device__ __forceinline__ void warp_scan(int& v, int lane) {
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const int n = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += n;
    }
}

// warp_scan2 does warp_scan on a and b together.
__device__ __forceinline__ void warp_scan2(int& a, int& b, int lane) {
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const int x = __shfl_up_sync(0xffffffffu, a, o), y = __shfl_up_sync(0xffffffffu, b, o);
        if (lane >= o) {
            a += x;
            b += y;
        }
    }
}
