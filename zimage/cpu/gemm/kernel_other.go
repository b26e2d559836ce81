//go:build !amd64 || purego

package gemm

func archKernels() []kernel { return nil }

var useTranspose = false

func transposeRows(panel []float32, nr int, src *bSource, jbase, cols, p0, kb int) (rows, ks int) {
	return 0, 0
}

func dot4Available() bool { return false }

func dot4(sums *[4]float32, a []float32, src *bSource, j, p0 int, tmp []float32) {}

func archBF16Kernel() (kernel, bool) { return kernel{}, false }

func transposePairs(panel []float32, nr int, src *bSource, jbase, cols, p0, qn int) (rows, qs int) {
	return 0, 0
}

func pickQ8Kernel() q8Tile { return genericQ8 }

func quantRow(dst []byte, d []float32, x []float32, nb int) { quantizeRowGo(dst, d, x, nb) }

func pickKQKernel() kqTile { return genericKQ }

var kqKernel = pickKQKernel()

func transpose16Asm(dst []uint32, ldd int, src []uint32, lds, n int) bool { return false }

func kqTranspose(dst []uint32, ld int, src *[16][64]uint32) { kqTransposeGo(dst, ld, src) }
