// Package methods holds the sparse-attention selection methods, one file
// per method, each a CPU float32 reference implementation that later GPU
// kernels are checked against.
//
// A method is built once per configuration (New, from its parameter
// struct), prepared once per attention Group (Prepare builds any per-key
// metadata: codes, page bounds, label caches), and asked at each decode step
// for the keys each query head keeps (Selector.Select). Stateful methods
// (H2O) keep their state in the Selector; the runner calls Select with
// increasing positions for one Group.
//
// Every method shares the budget policy of package budget: the sink window,
// the local window, and a heavy budget the method fills with its own
// choice. TopK is the shared "sink + local + top-k by score" selection.
//
// Adding a method: one file with its parameter struct (yaml and doc tags,
// defaults in the Defaults function), a type implementing Method, and one
// Register call in that file's init.
package methods
