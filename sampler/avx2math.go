package sampler

import "math"

// This file reproduces, lane by lane, the single-precision log and sincos of
// avx_mathfun.h (Cephes polynomials) that torch's AVX2 normal kernel uses,
// including the multiply-adds GCC contracts into FMA instructions when it
// compiles those intrinsics (spec §5.3). Every fma32 below stands for one such
// vfmadd; every other product is rounded on its own (float32(...) keeps the Go
// compiler from fusing it).

// Cephes coefficients of avx_mathfun.h.
const (
	cephesSQRTHF = 0.707106781186547524
	cephesLogP0  = 7.0376836292e-2
	cephesLogP1  = -1.1514610310e-1
	cephesLogP2  = 1.1676998740e-1
	cephesLogP3  = -1.2420140846e-1
	cephesLogP4  = 1.4249322787e-1
	cephesLogP5  = -1.6668057665e-1
	cephesLogP6  = 2.0000714765e-1
	cephesLogP7  = -2.4999993993e-1
	cephesLogP8  = 3.3333331174e-1
	cephesLogQ1  = -2.12194440e-4
	cephesLogQ2  = 0.693359375

	cephesFOPI = 1.27323954473516 // 4/π
	cephesDP1  = 0.78515625
	cephesDP2  = 2.4187564849853515625e-4
	cephesDP3  = 3.77489497744594108e-8

	sincofP0 = -1.9515295891e-4
	sincofP1 = 8.3321608736e-3
	sincofP2 = -1.6666654611e-1
	coscofP0 = 2.443315711809948e-5
	coscofP1 = -1.388731625493765e-3
	coscofP2 = 4.166664568298827e-2
)

// logAVX2 is log256_ps for one lane, valid for x in (0, 1] (u1 = 1 - u never
// reaches 0 or goes negative, so the NaN and denormal handling is left out).
func logAVX2(x float32) float32 {
	bits := math.Float32bits(x)
	e := float32(int32(bits>>23)-127) + 1
	// Mantissa in [0.5, 1): keep the fraction bits, force the exponent of 0.5.
	m := math.Float32frombits(bits&^0x7f800000 | 0x3f000000)
	if m < cephesSQRTHF {
		e -= 1
		m = (m - 1) + m
	} else {
		m = m - 1
	}
	z := float32(m * m)

	y := float32(cephesLogP0)
	y = fma32(y, m, cephesLogP1)
	y = fma32(y, m, cephesLogP2)
	y = fma32(y, m, cephesLogP3)
	y = fma32(y, m, cephesLogP4)
	y = fma32(y, m, cephesLogP5)
	y = fma32(y, m, cephesLogP6)
	y = fma32(y, m, cephesLogP7)
	y = fma32(y, m, cephesLogP8)
	y = float32(y * m)
	y = fma32(y, z, float32(e*cephesLogQ1))
	y = fma32(-z, 0.5, y)
	return fma32(e, cephesLogQ2, m+y)
}

// sincosAVX2 is sincos256_ps for one lane, for θ ≥ 0 (θ = 2π·u here).
func sincosAVX2(theta float32) (sin, cos float32) {
	j := int32(float32(theta * cephesFOPI)) // truncation, like cvttps
	j = (j + 1) &^ 1
	yj := float32(j)

	// Extended-precision reduction x = θ - j·π/4 (three FMAs).
	x := fma32(yj, -cephesDP1, theta)
	x = fma32(yj, -cephesDP2, x)
	x = fma32(yj, -cephesDP3, x)
	z := float32(x * x)

	c := fma32(fma32(coscofP0, z, coscofP1), z, coscofP2)
	c = float32(c * z)
	c = fma32(c, z, -float32(z*0.5))
	c = c + 1

	s := fma32(fma32(sincofP0, z, sincofP1), z, sincofP2)
	s = float32(s * z)
	s = fma32(s, x, x)

	if j&2 == 0 {
		sin, cos = s, c
	} else {
		sin, cos = c, s
	}
	// Sign flips are XORs of the sign bit in the original, so a zero flips too.
	if j&4 != 0 {
		sin = flipSign(sin)
	}
	if (j-2)&4 == 0 {
		cos = flipSign(cos)
	}
	return sin, cos
}

func flipSign(x float32) float32 { return math.Float32frombits(math.Float32bits(x) ^ 0x80000000) }
