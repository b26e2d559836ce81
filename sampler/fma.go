package sampler

import "math"

// fma32 returns a*b + c rounded once to float32, like the vfmadd*ps
// instructions of the reference's AVX2 kernels.
//
// The product of two float32 is exact in float64, so only the sum rounds; but
// rounding that sum to float64 and then to float32 can land on a float32 tie
// that the exact sum did not lie on (double rounding). In that rare case the
// float64 sum is replaced by its round-to-odd neighbour, which makes the final
// conversion correct.
func fma32(a, b, c float32) float32 {
	p := float64(a) * float64(b) // exact (24+24 significant bits); fusing it would change nothing
	cc := float64(c)
	s := p + cc
	bits := math.Float64bits(s)
	const tie = 1 << 28 // a float64 whose low 29 mantissa bits are 1000…0 lies halfway between two float32
	if bits&(1<<29-1) != tie && math.Abs(s) >= 0x1p-126 {
		return float32(s)
	}
	// Exact error of the float64 sum (Knuth's TwoSum; no products, so no fusion).
	bb := s - p
	err := (p - (s - bb)) + (cc - bb)
	if err != 0 && bits&1 == 0 {
		// Round to odd: step one float64 ulp towards the exact value.
		if (err > 0) == (s > 0) {
			bits++
		} else {
			bits--
		}
		s = math.Float64frombits(bits)
	}
	return float32(s)
}
