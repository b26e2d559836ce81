package sampler

import "math"

// This file reproduces the single-precision log and sincos of avx_mathfun.h
// (Cephes polynomials) that torch's AVX2 normal kernel uses, including the
// multiply-adds GCC contracts into FMA instructions when it compiles those
// intrinsics (spec §5.3). Every fma32d below stands for one such vfmadd;
// every other product is rounded on its own (float32(...) keeps the Go
// compiler from fusing it).
//
// log8 and sincos8 run the 8 lanes side by side, as the intrinsics do, which
// lets the CPU overlap the 8 dependency chains. They use fma32d, the FMA
// rounded through float64, which can differ from a true single-rounding FMA
// only on rare double-rounding ties; avx2math_test.go runs both functions on
// every input Randn can give them (all 2^24 uniforms) against a one-lane
// reference built on the exact fma32, and they agree everywhere.

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

// log8 is log256_ps for x in (0, 1] (u1 = 1 - u never reaches 0 or goes
// negative, so the NaN and denormal handling is left out).
func log8(x *[8]float32) (y [8]float32) {
	var e, m, z [8]float32
	for j := range 8 {
		e[j], m[j] = logReduce(x[j])
		z[j] = float32(m[j] * m[j])
		y[j] = cephesLogP0
	}
	for _, p := range logPoly {
		for j := range 8 {
			y[j] = fma32d(y[j], m[j], p)
		}
	}
	for j := range 8 {
		v := float32(y[j] * m[j])
		v = fma32d(v, z[j], float32(e[j]*cephesLogQ1))
		v = fma32d(-z[j], 0.5, v)
		y[j] = fma32d(e[j], cephesLogQ2, m[j]+v)
	}
	return y
}

// logPoly are the Horner coefficients after cephesLogP0.
var logPoly = [...]float32{cephesLogP1, cephesLogP2, cephesLogP3, cephesLogP4,
	cephesLogP5, cephesLogP6, cephesLogP7, cephesLogP8}

// logReduce splits x into exponent e and m = mantissa - 1 with the mantissa
// taken in [√½, √2), as log256_ps does.
func logReduce(x float32) (e, m float32) {
	bits := math.Float32bits(x)
	e = float32(int32(bits>>23)-127) + 1
	// Mantissa in [0.5, 1): keep the fraction bits, force the exponent of 0.5.
	m = math.Float32frombits(bits&^0x7f800000 | 0x3f000000)
	if m < cephesSQRTHF {
		e -= 1
		m = (m - 1) + m
	} else {
		m = m - 1
	}
	return e, m
}

// sincos8 is sincos256_ps for θ ≥ 0 (θ = 2π·u here).
func sincos8(theta *[8]float32) (sin, cos [8]float32) {
	for l := range 8 {
		j, yj := sincosOctant(theta[l])

		// Extended-precision reduction x = θ - j·π/4 (three FMAs).
		x := fma32d(yj, -cephesDP1, theta[l])
		x = fma32d(yj, -cephesDP2, x)
		x = fma32d(yj, -cephesDP3, x)
		z := float32(x * x)

		c := fma32d(fma32d(coscofP0, z, coscofP1), z, coscofP2)
		c = float32(c * z)
		c = fma32d(c, z, -float32(z*0.5))
		c = c + 1

		s := fma32d(fma32d(sincofP0, z, sincofP1), z, sincofP2)
		s = float32(s * z)
		s = fma32d(s, x, x)

		sin[l], cos[l] = sincosSelect(j, s, c)
	}
	return sin, cos
}

// sincosOctant is j = (int(θ·4/π) + 1) &^ 1 (truncating, like cvttps) and
// float32(j).
func sincosOctant(theta float32) (int32, float32) {
	j := int32(float32(theta * cephesFOPI))
	j = (j + 1) &^ 1
	return j, float32(j)
}

// sincosSelect swaps the sine and cosine polynomials and sets their signs by
// octant. The sign flips are XORs of the sign bit in the original, so a zero
// flips too.
func sincosSelect(j int32, s, c float32) (sin, cos float32) {
	if j&2 == 0 {
		sin, cos = s, c
	} else {
		sin, cos = c, s
	}
	if j&4 != 0 {
		sin = flipSign(sin)
	}
	if (j-2)&4 == 0 {
		cos = flipSign(cos)
	}
	return sin, cos
}

func flipSign(x float32) float32 { return math.Float32frombits(math.Float32bits(x) ^ 0x80000000) }
