//go:build amd64 && !purego

package gemm

import "unsafe"

// prefetchRows prefetches n bytes (n > 0) of each of rows rows, stride
// bytes apart, starting at p.
//
//go:noescape
func prefetchRows(p unsafe.Pointer, stride, rows, n int)

const canPrefetch = true
