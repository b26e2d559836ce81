//go:build !amd64 || purego

package gemm

var usePackAsm, hasPackAsm = false, false

func packRowPairs(out []uint32, row []float32, stride int) { packRowPairsGo(out, row, stride) }

func pairRows(out []uint32, r0, r1 []float32) int { return 0 }

func packPanel6(out []uint32, a []float32, lda, off, kb int) int { return 0 }

func cvtBF16(dst []uint16, src []float32) { cvtBF16Go(dst, src) }

func pairTaps(out []uint32, img []uint16, offs []int, n, nr, base int) {
	pairTapsGo(out, img, offs, n, nr, base)
}

func addScalar(row []float32, v float32) { addScalarGo(row, v) }
