// Package inspect summarises qkv-capture/1 files: their metadata and
// shapes, and how concentrated their attention is.
//
// Concentration answers whether the data has the token sparsity that
// sparse-attention methods rely on. For each query head and each of the
// last positions t of the window, the exact softmax of scale·q_t·k_j over
// the causally visible keys j = 0..t (n = t+1 keys, float64) is computed,
// and these masses are read from it:
//
//   - Top1, Top3, Top6: the mass on the ceil(0.01·n), ceil(0.03·n) and
//     ceil(0.06·n) keys of largest probability;
//   - Key0: the mass on key 0 (the BOS, where the capture has one): an
//     attention sink shows here;
//   - Recent: the mass on the ceil(0.01·n) most recent keys, t included: what
//     a sliding window of that size already holds;
//   - Uniform: 1/n, the share of one key under uniform attention.
//
// Each is averaged over the measured positions (Concentration), per head
// (HeadReport) and over heads (Report.Mean). Capture reads the file through
// workloads.ReadCapture; Masses is the per-query core, usable on any
// probability vector.
package inspect
