package cpu

import "math"

// expf is e^x in float32 for the softmax (x ≤ 0 in practice), accurate to
// about 1 ulp: Cody–Waite reduction x = n·ln2 + r, |r| ≤ ln2/2, and the
// Cephes degree-6 polynomial, scaled by 2^n through the exponent bits.
// Results below the smallest normal float32 flush to 0, which no softmax
// weight can notice (e^-87 next to the row maximum's e^0).
func expf(x float32) float32 {
	const (
		log2e = 1.44269504088896341
		ln2hi = 0.693359375
		ln2lo = -2.12194440e-4
	)
	if x < -87.3 {
		return 0
	}
	if !(x <= 88) { // large or NaN: rare, leave it to the library
		return float32(math.Exp(float64(x)))
	}
	// n = round(x·log2e), half away from zero.
	t := x * log2e
	var ni int32
	if t < 0 {
		ni = int32(t - 0.5)
	} else {
		ni = int32(t + 0.5)
	}
	n := float32(ni)
	r := x - float32(n*ln2hi)
	r = r - float32(n*ln2lo)
	p := float32(1.9875691500e-4)
	p = float32(p*r) + 1.3981999507e-3
	p = float32(p*r) + 8.3334519073e-3
	p = float32(p*r) + 4.1665795894e-2
	p = float32(p*r) + 1.6666665459e-1
	p = float32(p*r) + 5.0000001201e-1
	y := float32(float32(p*r)*r) + r + 1
	return y * math.Float32frombits(uint32(ni+127)<<23)
}
