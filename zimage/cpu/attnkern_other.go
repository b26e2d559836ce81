//go:build !amd64 || purego

package cpu

// tileMatMul computes C[m, n] = A[m, k]·B[k, n] with explicit row strides.
// Only reached when fastAttention is true, which it never is here; kept
// as a plain loop so the build has no unreachable panics.
func tileMatMul(c []float32, ldc int, a []float32, lda int, b []float32, ldb int, m, n, k int) {
	for i := range m {
		row := c[i*ldc : i*ldc+n]
		clear(row)
		for p := range k {
			av := a[i*lda+p]
			for j, bv := range b[p*ldb : p*ldb+n] {
				row[j] += av * bv
			}
		}
	}
}

func fastAttention(dh int) bool { return false }

var hasBF16Dot = false

func tileMatMulBF16(c []float32, ldc int, a []uint32, lda int, b []uint32, ldb int, m, n, k int, acc bool) {
}

func fastAttentionBF16(dh int) bool { return false }

func toBF16Pairs(dst []uint32, src []float32) { toBF16PairsGo(dst, src) }

func softmaxRowBF16Asm(prow []uint32, row []float32, lim int, m float32) (float64, float32, bool) {
	return 0, 0, false
}

func scaleToBF16Pairs(dst []uint32, src []float32, scale float32) {
	scaleToBF16PairsGo(dst, src, scale)
}

func softmaxTileBF16(s []float32, lds int, p []uint32, ldp int, rows, n int, m []float32, l []float64, alpha []float32) bool {
	return false
}

func scaleRows(o []float32, ld, rows, n int, alpha []float32) { scaleRowsGo(o, ld, rows, n, alpha) }
