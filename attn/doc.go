// Package attn holds the unit of work every hbench package shares, the
// Group (one key/value head of one layer, with the queries of the query
// heads that read it), and the float64 reference for exact decode attention
// that all metrics and kernel checks are measured against.
//
// Data flows: workloads build Groups; methods prepare per-Group state and
// select keys per query position; metrics compare a selection with the
// exact attention computed here.
package attn
