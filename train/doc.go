// Package train learns HashAttention's query and key hash maps (Desai et
// al., arXiv 2412.14468) on CPU, in pure Go.
//
// Data flow: attention Groups (captures or synthetic) → per (layer, query
// head) sampled training and held-out validation query positions, each
// labelled with its true top-k keys by q·k outside the sink and local
// windows → minibatches of queries against a shared pool of keys (their
// positives plus random negatives) → the relaxed logit
// Σ tanh(f_q(q))·tanh(f_k(k)) − θ, weighted binary cross-entropy, a
// hand-written backward pass over gonum BLAS, Adam → per-epoch validation
// of the hard sign codes (top-k and mass recall at the configured
// sparsities, selected with package budget and methods.TopK exactly as the
// evaluation does) with early stopping → methods.HashWeights, the
// hashattention-weights/1 file HashAttention inference reads, with the
// config, data provenance and validation figures in its `training`
// metadata (Training).
//
// Train trains; Cached trains once per (config, data) and keeps the file
// in a cache directory. Heads train in parallel, each with its own random
// stream, so results do not depend on the number of workers.
//
// The model code is generic over float32 (training) and float64 (the
// finite-difference check of the backward pass in the tests).
//
// Note: negatives are subsampled (Config.Negatives random keys per
// minibatch, plus the other queries' positives) and importance-weighted;
// scoring every key of the context per query costs a key-map forward over
// the whole context per query and was too slow for the 5-minute budget.
package train
