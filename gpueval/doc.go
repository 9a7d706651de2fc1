// Package gpueval evaluates selection quality on the GPU: the same metrics
// as the CPU path (package metrics), on references and selections
// computed by CUDA kernels, so that sweeps at 64K–1M-token contexts run in
// seconds. The runner uses it for experiments with `device: gpu` (or
// hbench run --device gpu).
//
// Data flow:
//
//   - Open loads the driver (an error wrapping gpu.ErrNoGPU where none
//     loads) and compiles kernels/ref.cu.
//   - RoundFP16 rounds the groups' K and V to fp16 in place before
//     anything is evaluated: the kernels read 16-bit K/V, so the CPU side
//     of a GPU run (metrics, methods without an adapter) sees exactly the
//     values the GPU sees. Captures are fp16 already (no change); float32
//     synthetic data changes in the fourth significant digit, so a GPU
//     run's numbers match a CPU run of the same file to about 1e-3, and
//     exactly (to summation order) on fp16-representable data.
//   - Each attn.Group's K and V are uploaded once ([T][d] fp16, one KV
//     head) and serve every query position t as the prefix of t+1 rows
//     (gpu.Shape{Batch: 1, KVHeads: 1, Heads: group size, Context: t+1}).
//     Drop frees them with everything prepared for the group.
//   - Reference builds a metrics.Reference for query head h at position
//     t: kernels/ref.cu computes the float64 logits scale·q·k_j of keys
//     0..t and, after the log-sum-exp (CPU), the dense output
//     Σ p_j v_j in float64; the logits and output are downloaded and
//     metrics.NewReferenceFrom computes the rest, so every metric is the
//     CPU code (recall, mass recall and output error need only the
//     selected keys' logits and value rows, O(k·d) per selection).
//   - Adapters (one file per method: oracle.go, streaming.go, quest.go,
//     hashattention.go, lsh.go, doublesparsity.go, h2o.go) wrap a configured CPU method in a methods.Method
//     whose Selector runs the method's GPU step (package gpu) for each
//     decode position and downloads its index lists. Wrap looks the
//     method up by its registry name; a method with no adapter, or a
//     configuration the GPU step does not implement (the adapter returns
//     ErrUnsupported), stays on the CPU and Wrap says so in a note the
//     runner prints. Adding a method is one file with an init that calls
//     Register.
package gpueval
