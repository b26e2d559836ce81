package gemm

// A kernel computes one mr×nr tile of C from a packed A panel and a B panel
// with row stride ldb (nr when packed, n when read in place):
// C[i, j] (+)= Σ_p a[p*mr+i]·b[p*ldb+j] for p < kc, with C at c[i*ldc+j].
// When acc is false the tile is overwritten, otherwise accumulated into.
type kernel struct {
	name   string
	isa    string // "avx512", "avx2" or "" (pure Go)
	mr, nr int
	fn     func(kc int, a, b, c []float32, ldb, ldc int, acc bool)
	// narrow[r-1] is the same kernel for r < mr rows (problems with m < mr).
	narrow []kernel
	// pairs: the kernel reads bf16 pairs along k (packAPanelPairs,
	// packBPairs) and kc counts pairs. round: a float32 kernel whose packed
	// operands are rounded to bf16 first (the bf16 mode without AVX512-BF16).
	pairs, round bool
}

var genericKernel = kernel{name: "generic", mr: 4, nr: 4, fn: kernelGeneric4x4}

// kernels lists every kernel usable on this machine, best first.
var kernels = append(archKernels(), genericKernel)

// active is the kernel used by the driver; tests switch it with useKernel.
var active = kernels[0]

// useKernel selects the named kernel and returns the previous one; it
// reports false when the kernel is not available.
func useKernel(name string) (prev kernel, ok bool) {
	for _, k := range kernels {
		if k.name == name {
			prev, active = active, k
			return prev, true
		}
	}
	return active, false
}

// KernelName reports which micro-kernel this machine uses ("avx512", "avx2"
// or "generic").
func KernelName() string { return active.name }

// kernelGeneric4x4 is the portable micro-kernel (4×4 accumulators in
// registers on most targets).
func kernelGeneric4x4(kc int, a, b, c []float32, ldb, ldc int, acc bool) {
	var c00, c01, c02, c03, c10, c11, c12, c13 float32
	var c20, c21, c22, c23, c30, c31, c32, c33 float32
	a = a[:kc*4]
	b = b[:(kc-1)*ldb+4]
	for p := 0; p < kc; p++ {
		av := a[p*4 : p*4+4 : p*4+4]
		bv := b[p*ldb : p*ldb+4 : p*ldb+4]
		b0, b1, b2, b3 := bv[0], bv[1], bv[2], bv[3]
		a0 := av[0]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		a1 := av[1]
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		a2 := av[2]
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
		c23 += a2 * b3
		a3 := av[3]
		c30 += a3 * b0
		c31 += a3 * b1
		c32 += a3 * b2
		c33 += a3 * b3
	}
	r0 := c[0*ldc : 0*ldc+4 : 0*ldc+4]
	r1 := c[1*ldc : 1*ldc+4 : 1*ldc+4]
	r2 := c[2*ldc : 2*ldc+4 : 2*ldc+4]
	r3 := c[3*ldc : 3*ldc+4 : 3*ldc+4]
	if acc {
		c00, c01, c02, c03 = c00+r0[0], c01+r0[1], c02+r0[2], c03+r0[3]
		c10, c11, c12, c13 = c10+r1[0], c11+r1[1], c12+r1[2], c13+r1[3]
		c20, c21, c22, c23 = c20+r2[0], c21+r2[1], c22+r2[2], c23+r2[3]
		c30, c31, c32, c33 = c30+r3[0], c31+r3[1], c32+r3[2], c33+r3[3]
	}
	r0[0], r0[1], r0[2], r0[3] = c00, c01, c02, c03
	r1[0], r1[1], r1[2], r1[3] = c10, c11, c12, c13
	r2[0], r2[1], r2[2], r2[3] = c20, c21, c22, c23
	r3[0], r3[1], r3[2], r3[3] = c30, c31, c32, c33
}
