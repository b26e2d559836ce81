//go:build !amd64 || purego

package gemm

import "unsafe"

func prefetchRows(p unsafe.Pointer, stride, rows, n int) {}

const canPrefetch = false
