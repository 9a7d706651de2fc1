// Package bench runs GPU latency sweeps ("hbench bench FILE.yaml").
//
// A bench file is plain data, decoded strictly (unknown keys are errors,
// every problem is reported with file:line:field). Load reads and
// validates it; Run measures the device's copy-bandwidth ceiling first,
// then times every cell of the sweep (context × batch × heads × kv_heads
// × head_dim × dtype × kernel × sparsity × cache × graph) with package
// gpu's timing protocol, and writes the same result files as "hbench run"
// (manifest.json with the GPU block, cells.jsonl of Kind "latency",
// summary.csv) under <root>/<name>/<run-id>/.
//
// Inputs are random and non-zero, generated on the device. Index lists of
// the sparse kernels hold one random position per stride of N/k keys, in
// position order (the order HashAttention's counting select emits).
package bench
