//go:build amd64 && !purego

package cpu

// attnKern6x64 computes a 6×64 tile C (=|+=) A·B with A [6, k] (row
// stride lda), B [k, 64] (row stride ldb) and C (row stride ldc), all
// float32 in place.
//
//go:noescape
func attnKern6x64(a *float32, lda int, b *float32, ldb int, c *float32, ldc int, k int, acc bool)

// tileMatMul computes C[m, n] = A[m, k]·B[k, n] with explicit row strides,
// m a multiple of 6 and n of 64, in 6×64 register tiles. The caller
// guarantees the extents (checked here against the slices).
func tileMatMul(c []float32, ldc int, a []float32, lda int, b []float32, ldb int, m, n, k int) {
	if m == 0 || n == 0 {
		return
	}
	// Bounds: the last element each operand's tiles touch.
	_ = c[(m-1)*ldc+n-1]
	if k > 0 {
		_ = a[(m-1)*lda+k-1]
		_ = b[(k-1)*ldb+n-1]
	}
	for i := 0; i < m; i += 6 {
		for j := 0; j < n; j += 64 {
			attnKern6x64(&a[i*lda], lda, &b[j], ldb, &c[i*ldc+j], ldc, k, false)
		}
	}
}

// fastAttention reports whether the in-place tile kernel handles head
// width dh.
func fastAttention(dh int) bool { return useAVX512 && dh%64 == 0 }
