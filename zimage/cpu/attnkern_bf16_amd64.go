//go:build amd64 && !purego

package cpu

import "golang.org/x/sys/cpu"

// attnKernBF16_6x64 is attnKern6x64 on bf16 pairs (AVX512-BF16): A [6, k]
// and B [k, 64] hold one uint32 word (two bf16 values) per k pair; C is
// float32.
//
//go:noescape
func attnKernBF16_6x64(a *uint32, lda int, b *uint32, ldb int, c *float32, ldc int, k int, acc bool)

// hasBF16Dot says whether VDPBF16PS may run (tests may turn it off).
var hasBF16Dot = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BF16

// tileMatMulBF16 is tileMatMul on bf16 pair words: k counts pairs, lda and
// ldb are in words. With acc the product is added to C.
func tileMatMulBF16(c []float32, ldc int, a []uint32, lda int, b []uint32, ldb int, m, n, k int, acc bool) {
	if m == 0 || n == 0 {
		return
	}
	_ = c[(m-1)*ldc+n-1]
	if k > 0 {
		_ = a[(m-1)*lda+k-1]
		_ = b[(k-1)*ldb+n-1]
	}
	for i := 0; i < m; i += 6 {
		for j := 0; j < n; j += 64 {
			attnKernBF16_6x64(&a[i*lda], lda, &b[j], ldb, &c[i*ldc+j], ldc, k, acc)
		}
	}
}

// fastAttentionBF16 reports whether bf16 attention runs on VDPBF16PS for
// head width dh.
func fastAttentionBF16(dh int) bool { return hasBF16Dot && fastAttention(dh) }

// cvtBF16x64 rounds n float32 (a multiple of 64) to bf16 pair words
// (VCVTNE2PS2BF16; denormal inputs become zero).
//
//go:noescape
func cvtBF16x64(dst *uint32, src *float32, n int)

// toBF16Pairs writes src rounded to bf16 as pair words (dst[c] holds
// src[2c] and src[2c+1], the high half zero past an odd end).
func toBF16Pairs(dst []uint32, src []float32) {
	n := 0
	if hasBF16Dot {
		n = len(src) &^ 63
	}
	if n > 0 {
		_ = dst[n/2-1]
		cvtBF16x64(&dst[0], &src[0], n)
	}
	toBF16PairsGo(dst[n/2:], src[n:])
}

//go:noescape
func softmaxRowBF16AVX512(x *float32, n int, m float32, dst *uint32, res *[17]float32)

//go:noescape
func scaleBF16AVX512(dst *uint32, src *float32, n int, scale float32)

// softmaxRowBF16Asm is the fused row step of softmaxRowBF16 on AVX-512:
// p = exp(row[:lim] − mx) written to prow as bf16 pairs, with mx =
// max(m, row[:lim]) and the sum of p (float32 lanes, then float64: the
// arithmetic of rowMax and expSub). ok is false where it does not apply
// (lim not a multiple of 16, no AVX512-BF16).
func softmaxRowBF16Asm(prow []uint32, row []float32, lim int, m float32) (sum float64, mx float32, ok bool) {
	if !hasBF16Dot || lim <= 0 || lim%16 != 0 {
		return 0, 0, false
	}
	_, _ = row[lim-1], prow[lim/2-1]
	var res [17]float32
	softmaxRowBF16AVX512(&row[0], lim, m, &prow[0], &res)
	for _, v := range res[:16] {
		sum += float64(v)
	}
	return sum, res[16], true
}

// scaleToBF16Pairs writes src·scale rounded to bf16 as pair words.
func scaleToBF16Pairs(dst []uint32, src []float32, scale float32) {
	n := 0
	if hasBF16Dot {
		n = len(src) &^ 15
	}
	if n > 0 {
		_ = dst[n/2-1]
		scaleBF16AVX512(&dst[0], &src[0], n, scale)
	}
	scaleToBF16PairsGo(dst[n/2:], src[n:], scale)
}

//go:noescape
func softmaxTileBF16AVX512(s *float32, lds int, p *uint32, ldp int, rows, n int, m *float32, l *float64, alpha *float32)

//go:noescape
func scaleRowsAVX512(o *float32, ld int, rows, n int, alpha *float32)

// softmaxTileBF16 is softmaxRowBF16 on rows [0, rows) of a score tile
// (row r: s[r·lds:][:n], pairs p[r·ldp:][:n/2]) in one AVX-512 call, the
// lane sums added as a tree (so l may differ from the row step's in the
// last bits). It reports false, doing nothing, where it does not apply
// (n not a multiple of 16, no AVX512-BF16).
func softmaxTileBF16(s []float32, lds int, p []uint32, ldp int, rows, n int, m []float32, l []float64, alpha []float32) bool {
	if !hasBF16Dot || rows <= 0 || n <= 0 || n%16 != 0 {
		return false
	}
	_, _ = s[(rows-1)*lds+n-1], p[(rows-1)*ldp+n/2-1]
	_, _, _ = m[rows-1], l[rows-1], alpha[rows-1]
	softmaxTileBF16AVX512(&s[0], lds, &p[0], ldp, rows, n, &m[0], &l[0], &alpha[0])
	return true
}

// scaleRows sets o[r·ld:][:n] *= alpha[r] for the rows whose alpha is not 1.
func scaleRows(o []float32, ld, rows, n int, alpha []float32) {
	if !useAVX512 || rows <= 0 || n <= 0 || n%16 != 0 {
		scaleRowsGo(o, ld, rows, n, alpha)
		return
	}
	_, _ = o[(rows-1)*ld+n-1], alpha[rows-1]
	scaleRowsAVX512(&o[0], ld, rows, n, &alpha[0])
}
