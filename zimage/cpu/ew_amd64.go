//go:build amd64 && !purego

package cpu

//go:generate go run gen_ew.go

// Kernels of ew_amd64.s (see their Go references in ew.go); n counts the
// float32 elements of the first operand, a multiple of 16 (AVX512) or 8
// (AVX2).

//go:noescape
func addAVX512(dst, a, c *float32, n int)

//go:noescape
func mulAVX512(dst, a, c *float32, n int)

//go:noescape
func gatedAddAVX512(dst, a, gate, c *float32, n int)

//go:noescape
func scaleAVX512(dst, src *float32, n int, s float32)

//go:noescape
func scaleMulAVX512(dst, src, w *float32, n int, s float32)

//go:noescape
func scaleShiftAVX512(dst, src *float32, n int, s, c float32)

//go:noescape
func ropePairsAVX512(dst, src, co, si *float32, n int)

//go:noescape
func ropeHalvesAVX512(dlo, dhi, a, c, co, si *float32, n int)

//go:noescape
func dupPairsAVX512(dst, src *float32, n int)

//go:noescape
func dupPairs2AVX512(dst0, dst1, src *float32, n int)

//go:noescape
func addAVX2(dst, a, c *float32, n int)

//go:noescape
func mulAVX2(dst, a, c *float32, n int)

//go:noescape
func gatedAddAVX2(dst, a, gate, c *float32, n int)

//go:noescape
func scaleAVX2(dst, src *float32, n int, s float32)

//go:noescape
func scaleMulAVX2(dst, src, w *float32, n int, s float32)

//go:noescape
func scaleShiftAVX2(dst, src *float32, n int, s, c float32)

//go:noescape
func ropePairsAVX2(dst, src, co, si *float32, n int)

//go:noescape
func ropeHalvesAVX2(dlo, dhi, a, c, co, si *float32, n int)

//go:noescape
func dupPairsAVX2(dst, src *float32, n int)

//go:noescape
func dupPairs2AVX2(dst0, dst1, src *float32, n int)

// The wrappers reslice every operand to the run's length first, so a short
// operand panics in Go before the assembly could read past it; the vector
// kernel takes the leading vecLen elements and the Go reference the tail.

// scaleRow sets dst[i] = src[i]·s.
func scaleRow(dst, src []float32, s float32) {
	dst = dst[:len(src)]
	n := vecLen(len(src))
	if n > 0 {
		if useAVX512 {
			scaleAVX512(&dst[0], &src[0], n, s)
		} else {
			scaleAVX2(&dst[0], &src[0], n, s)
		}
	}
	scaleRowGo(dst[n:], src[n:], s)
}

// scaleMulRow sets dst[i] = float32(src[i]·s)·w[i].
func scaleMulRow(dst, src, w []float32, s float32) {
	dst, w = dst[:len(src)], w[:len(src)]
	n := vecLen(len(src))
	if n > 0 {
		if useAVX512 {
			scaleMulAVX512(&dst[0], &src[0], &w[0], n, s)
		} else {
			scaleMulAVX2(&dst[0], &src[0], &w[0], n, s)
		}
	}
	scaleMulRowGo(dst[n:], src[n:], w[n:], s)
}

// scaleShiftRow sets dst[i] = float32(src[i]·s) + c.
func scaleShiftRow(dst, src []float32, s, c float32) {
	dst = dst[:len(src)]
	n := vecLen(len(src))
	if n > 0 {
		if useAVX512 {
			scaleShiftAVX512(&dst[0], &src[0], n, s, c)
		} else {
			scaleShiftAVX2(&dst[0], &src[0], n, s, c)
		}
	}
	scaleShiftRowGo(dst[n:], src[n:], s, c)
}

// addRow sets dst[i] = a[i] + c[i].
func addRow(dst, a, c []float32) {
	dst, c = dst[:len(a)], c[:len(a)]
	n := vecLen(len(a))
	if n > 0 {
		if useAVX512 {
			addAVX512(&dst[0], &a[0], &c[0], n)
		} else {
			addAVX2(&dst[0], &a[0], &c[0], n)
		}
	}
	addRowGo(dst[n:], a[n:], c[n:])
}

// mulRow sets dst[i] = a[i]·c[i].
func mulRow(dst, a, c []float32) {
	dst, c = dst[:len(a)], c[:len(a)]
	n := vecLen(len(a))
	if n > 0 {
		if useAVX512 {
			mulAVX512(&dst[0], &a[0], &c[0], n)
		} else {
			mulAVX2(&dst[0], &a[0], &c[0], n)
		}
	}
	mulRowGo(dst[n:], a[n:], c[n:])
}

// gatedAddRow sets dst[i] = a[i] + float32(g[i]·c[i]).
func gatedAddRow(dst, a, g, c []float32) {
	dst, g, c = dst[:len(a)], g[:len(a)], c[:len(a)]
	n := vecLen(len(a))
	if n > 0 {
		if useAVX512 {
			gatedAddAVX512(&dst[0], &a[0], &g[0], &c[0], n)
		} else {
			gatedAddAVX2(&dst[0], &a[0], &g[0], &c[0], n)
		}
	}
	gatedAddRowGo(dst[n:], a[n:], g[n:], c[n:])
}

// ropePairs rotates the pairs (src[2j], src[2j+1]) by co[j], si[j].
func ropePairs(dst, src, co, si []float32) {
	half := len(src) / 2
	src = src[:2*half]
	dst, co, si = dst[:2*half], co[:half], si[:half]
	n := vecLen(2 * half)
	if n > 0 {
		if useAVX512 {
			ropePairsAVX512(&dst[0], &src[0], &co[0], &si[0], n)
		} else {
			ropePairsAVX2(&dst[0], &src[0], &co[0], &si[0], n)
		}
	}
	ropePairsGo(dst[n:], src[n:], co[n/2:], si[n/2:])
}

// ropeHalves rotates the pairs (a[j], c[j]) by co[j], si[j] into dlo[j],
// dhi[j].
func ropeHalves(dlo, dhi, a, c, co, si []float32) {
	m := len(a)
	dlo, dhi, c, co, si = dlo[:m], dhi[:m], c[:m], co[:m], si[:m]
	n := vecLen(m)
	if n > 0 {
		if useAVX512 {
			ropeHalvesAVX512(&dlo[0], &dhi[0], &a[0], &c[0], &co[0], &si[0], n)
		} else {
			ropeHalvesAVX2(&dlo[0], &dhi[0], &a[0], &c[0], &co[0], &si[0], n)
		}
	}
	ropeHalvesGo(dlo[n:], dhi[n:], a[n:], c[n:], co[n:], si[n:])
}

// dupPairs sets dst[2i] = dst[2i+1] = src[i].
func dupPairs(dst, src []float32) {
	dst = dst[:2*len(src)]
	n := vecLen(len(src))
	if n > 0 {
		if useAVX512 {
			dupPairsAVX512(&dst[0], &src[0], n)
		} else {
			dupPairsAVX2(&dst[0], &src[0], n)
		}
	}
	dupPairsGo(dst[2*n:], src[n:])
}

// dupPairs2 sets dst0[2i] = dst0[2i+1] = dst1[2i] = dst1[2i+1] = src[i].
func dupPairs2(dst0, dst1, src []float32) {
	dst0, dst1 = dst0[:2*len(src)], dst1[:2*len(src)]
	n := vecLen(len(src))
	if n > 0 {
		if useAVX512 {
			dupPairs2AVX512(&dst0[0], &dst1[0], &src[0], n)
		} else {
			dupPairs2AVX2(&dst0[0], &dst1[0], &src[0], n)
		}
	}
	dupPairs2Go(dst0[2*n:], dst1[2*n:], src[n:])
}
