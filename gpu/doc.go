// Package gpu runs hbench's CUDA kernels from pure Go (CGO_ENABLED=0).
//
// The CUDA driver (libcuda.so.1) and NVRTC are loaded at run time through
// github.com/ebitengine/purego; nothing is linked at build time, so hbench
// builds and its CPU paths run on machines without CUDA. Where no driver
// loads, Open returns an error wrapping ErrNoGPU that says why, and every
// GPU test skips with that message.
//
// Data flow:
//
//   - Open(0) retains the device's primary context on one goroutine locked
//     to its OS thread; every driver call runs there (Device.Do hands a Ctx
//     to a function that runs on that thread).
//   - Compile specialises an embedded .cu source by -D defines and compiles
//     it with NVRTC to a CUBIN for the device's own architecture
//     (--gpu-architecture=sm_XY). CUBINs are cached on disk under
//     os.UserCacheDir()/hbench/cubin, keyed by a hash of the source, the
//     options, the arch and the NVRTC version.
//   - Ctx holds the raw operations: memory, copies, streams, events,
//     kernel launches, CUDA graphs, an L2 flush.
//   - decode.go builds the attention kernels on top (dense split-K decode
//     and sparse gather decode): kernels/decode_mma.cu (tensor cores,
//     mma.sync m16n8k16, for 4 or more query heads per KV head) and
//     kernels/decode.cu (CUDA cores, every group size; HBENCH_DECODE=mma=0
//     selects it for all), and time.go the timing protocol: warm-up,
//     one pair of events per repeat, optional L2 flush before each repeat,
//     optional CUDA-graph launch, raw samples kept.
//   - The selection pipelines put a per-step selection in front of the
//     sparse decode, each step one CUDA graph: hash.go (HashAttention:
//     query MLP, XOR+popcount, counting select; kernels/hash.cu),
//     oracle.go (exact scores and a radix top-k, RadixTopK, which Quest
//     shares; StreamingLLM's sink + window lists) and quest.go (page
//     labels and bounds); kernels/oracle.cu. Each list equals the CPU
//     method's (package methods) with its deterministic tie-break.
package gpu
