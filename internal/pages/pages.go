// Package pages hands the memory pages of an unreferenced part of a Go
// slice back to the OS (the pre-faulted reserves of zimage/cpu and its gemm
// package: their unused tail stays allocated while other pieces of the same
// slab are in use).
package pages
