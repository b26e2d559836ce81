package sampler

import "math"

// fma32 returns a*b + c rounded once to float32, like the vfmadd*ps
// instructions of the reference's AVX2 kernels.
//
// The product of two float32 is exact in float64, so only the sum rounds. But
// rounding the sum to float64 and then to float32 can land on a float32 tie
// that the exact sum was not on (double rounding); those rare sums, and sums
// in float32's subnormal range, are redone by rounding to odd.
func fma32(a, b, c float32) float32 {
	p := float64(float64(a) * float64(b)) // exact; the conversion also keeps it unfused
	cc := float64(c)
	s := p + cc
	bits := math.Float64bits(s)
	// A float64 whose low 29 mantissa bits are 1000…0 lies halfway between
	// two float32: harmless when the float64 sum was exact (as when the
	// operands are close in magnitude), which the two differences detect
	// (Fast2Sum). An exponent field below 1023-126 is float32-subnormal.
	if bits&(1<<29-1) == 1<<28 && (s-p != cc || s-cc != p) || bits&(0x7ff<<52) < (1023-126)<<52 {
		return fma32Odd(a, b, c)
	}
	return float32(s)
}

// fma32d is a*b + c rounded through float64: equal to fma32 except when the
// float64 sum is an inexact float32 tie or float32-subnormal. It is the fast
// path of the Cephes kernels, whose every possible input is checked by a test
// to give the same result as with fma32.
func fma32d(a, b, c float32) float32 {
	return float32(float64(float64(a)*float64(b)) + float64(c))
}

// fma32Odd rounds the float64 sum to odd (Knuth's TwoSum gives its exact
// error), after which the conversion to float32 is correctly rounded.
func fma32Odd(a, b, c float32) float32 {
	p := float64(float64(a) * float64(b)) // exact; the conversion also keeps it unfused
	cc := float64(c)
	s := p + cc
	bb := s - p
	err := (p - (s - bb)) + (cc - bb)
	if bits := math.Float64bits(s); err != 0 && bits&1 == 0 {
		// Step one float64 ulp towards the exact value.
		if (err > 0) == (s > 0) {
			bits++
		} else {
			bits--
		}
		s = math.Float64frombits(bits)
	}
	return float32(s)
}
