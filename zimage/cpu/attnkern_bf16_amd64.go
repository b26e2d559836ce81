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
// ldb are in words.
func tileMatMulBF16(c []float32, ldc int, a []uint32, lda int, b []uint32, ldb int, m, n, k int) {
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
			attnKernBF16_6x64(&a[i*lda], lda, &b[j], ldb, &c[i*ldc+j], ldc, k, false)
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
