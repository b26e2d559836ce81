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
