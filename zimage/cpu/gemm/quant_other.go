//go:build !amd64 || purego

package gemm

import "github.com/zimage/zimage/weights"

var useDequantAsm = false

func dequantBlocksAsm(dst []float32, blk []byte, dt weights.DType, sc []float32) bool {
	return false
}

var useQuantPanel = false

func packQuantFused(panel []float32, nr int, src *bSource, jbase, cols, p0, kb int) int { return 0 }

func gemvQuantFused(c, a []float32, raw []byte, rb int, dt weights.DType, m, n, k, g0 int, tab []float32) bool {
	return false
}
