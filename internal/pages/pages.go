// Package pages hands memory pages back to the OS: the unused tail of a
// pre-faulted reserve slab (zimage/cpu and its gemm package), and the
// pages of a mapped checkpoint that are no longer needed (weights).
package pages
