// Package tensor holds the small dense containers and number formats hbench
// passes between packages: row-major float32 matrices and the float16 /
// bfloat16 conversions needed to read captured attention tensors.
//
// It sits at the bottom of the dependency graph: every other package may
// import it, it imports nothing of hbench.
package tensor
