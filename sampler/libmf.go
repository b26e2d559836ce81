package sampler

import "math"

// This file reproduces glibc's single-precision logf, sinf and cosf (the
// Arm-optimized-routines algorithms glibc ships since 2.28) for the inputs
// torch's scalar normal kernel feeds them. They evaluate in float64 and round
// once at the end; glibc's x86-64 libm dispatches at run time to builds
// compiled with -mfma, where GCC contracts each a*b + c below into one FMA,
// and aarch64 builds contract the same way. The math.FMA calls mirror those
// contractions; every other product is rounded on its own.
//
// The table and polynomial constants are the published data of those
// routines (they cannot be derived independently bit for bit).

// logfTab holds {1/c, log(c)} for 16 subintervals of [0x1.66p-1, 0x1.66p0).
var logfTab = [16][2]float64{
	{0x1.661ec79f8f3bep+0, -0x1.57bf7808caadep-2},
	{0x1.571ed4aaf883dp+0, -0x1.2bef0a7c06ddbp-2},
	{0x1.49539f0f010bp+0, -0x1.01eae7f513a67p-2},
	{0x1.3c995b0b80385p+0, -0x1.b31d8a68224e9p-3},
	{0x1.30d190c8864a5p+0, -0x1.6574f0ac07758p-3},
	{0x1.25e227b0b8eap+0, -0x1.1aa2bc79c81p-3},
	{0x1.1bb4a4a1a343fp+0, -0x1.a4e76ce8c0e5ep-4},
	{0x1.12358f08ae5bap+0, -0x1.1973c5a611cccp-4},
	{0x1.0953f419900a7p+0, -0x1.252f438e10c1ep-5},
	{0x1p+0, 0x0p+0},
	{0x1.e608cfd9a47acp-1, 0x1.aa5aa5df25984p-5},
	{0x1.ca4b31f026aap-1, 0x1.c5e53aa362eb4p-4},
	{0x1.b2036576afce6p-1, 0x1.526e57720db08p-3},
	{0x1.9c2d163a1aa2dp-1, 0x1.bc2860d22477p-3},
	{0x1.886e6037841edp-1, 0x1.1058bc8a07ee1p-2},
	{0x1.767dcf5534862p-1, 0x1.4043057b6ee09p-2},
}

const (
	logfLn2 = 0x1.62e42fefa39efp-1
	logfA0  = -0x1.00ea348b88334p-2
	logfA1  = 0x1.5575b0be00b6ap-2
	logfA2  = -0x1.ffffef20a4123p-2
	logfOff = 0x3f330000
)

// logfGlibc is glibc's logf for positive normal x (the scalar kernel only
// sees u1 in [2^-24, 1]); other inputs fall back to math.Log.
func logfGlibc(x float32) float32 {
	ix := math.Float32bits(x)
	if ix == 0x3f800000 {
		return 0
	}
	if ix-0x00800000 >= 0x7f800000-0x00800000 {
		return float32(math.Log(float64(x))) // zero, subnormal, negative, inf, NaN: never reached here
	}
	// x = 2^k z with z in [OFF, 2·OFF); c is the centre of z's subinterval.
	tmp := ix - logfOff
	i := (tmp >> (23 - 4)) % 16
	k := int32(tmp) >> 23
	iz := ix - (tmp & (0x1ff << 23))
	invc, logc := logfTab[i][0], logfTab[i][1]
	z := float64(math.Float32frombits(iz))

	// log(x) = log1p(z/c - 1) + log(c) + k·ln2
	r := math.FMA(z, invc, -1)
	y0 := math.FMA(float64(k), logfLn2, logc)
	r2 := float64(r * r)
	y := math.FMA(logfA1, r, logfA2)
	y = math.FMA(logfA0, r2, y)
	y = math.FMA(y, r2, y0+r)
	return float32(y)
}

// sincosfTab is glibc's __sincosf_table: the second entry negates the cosine
// polynomial so quadrants 2 and 3 get their sign for free.
type sincosfPoly struct {
	sign               [4]float64
	c0, c1, c2, c3, c4 float64 // cosine polynomial
	s1, s2, s3         float64 // sine polynomial
}

var sincosfTab = [2]sincosfPoly{
	{
		sign: [4]float64{1, -1, -1, 1},
		c0:   0x1p0, c1: -0x1.ffffffd0c621cp-2, c2: 0x1.55553e1068f19p-5,
		c3: -0x1.6c087e89a359dp-10, c4: 0x1.99343027bf8c3p-16,
		s1: -0x1.555545995a603p-3, s2: 0x1.1107605230bc4p-7, s3: -0x1.994eb3774cf24p-13,
	},
	{
		sign: [4]float64{1, -1, -1, 1},
		c0:   -0x1p0, c1: 0x1.ffffffd0c621cp-2, c2: -0x1.55553e1068f19p-5,
		c3: 0x1.6c087e89a359dp-10, c4: -0x1.99343027bf8c3p-16,
		s1: -0x1.555545995a603p-3, s2: 0x1.1107605230bc4p-7, s3: -0x1.994eb3774cf24p-13,
	},
}

const (
	sincosfHpiInv = 0x1.45F306DC9C883p+23 // 2/π · 2^24 (x86-64 build: no round-to-int intrinsics)
	sincosfHpi    = 0x1.921FB54442D18p0   // π/2
)

// abstop12 is the top 12 bits of x without the sign: a cheap magnitude class.
func abstop12(x float32) uint32 { return (math.Float32bits(x) >> 20) & 0x7ff }

// sinfPoly evaluates the sine (n even) or cosine (n odd) polynomial.
func sinfPoly(x, x2 float64, p *sincosfPoly, n int32) float32 {
	if n&1 == 0 {
		x3 := float64(x * x2)
		s1 := math.FMA(x2, p.s3, p.s2)
		x7 := float64(x3 * x2)
		s := math.FMA(x3, p.s1, x)
		return float32(math.FMA(x7, s1, s))
	}
	x4 := float64(x2 * x2)
	c2 := math.FMA(x2, p.c4, p.c3)
	c1 := math.FMA(x2, p.c1, p.c0)
	x6 := float64(x4 * x2)
	c := math.FMA(x4, p.c2, c1)
	return float32(math.FMA(x6, c2, c))
}

// reduceFast returns x - n·π/2 in [-π/4, π/4] and the quadrant n (|x| < 120).
func reduceFast(x float64) (float64, int32) {
	r := float64(x * sincosfHpiInv)
	n := (int32(r) + 0x800000) >> 24
	return math.FMA(-float64(n), sincosfHpi, x), n
}

// sinfGlibc is glibc's sinf for |y| < 120 (θ ∈ [0, 2π) here); larger
// arguments, which need the 4/π table reduction, fall back to math.Sin.
func sinfGlibc(y float32) float32 {
	x := float64(y)
	p := &sincosfTab[0]
	switch {
	case abstop12(y) < abstop12(0x1.921FB6p-1): // |y| < π/4 (by exponent class)
		if abstop12(y) < abstop12(0x1p-12) {
			return y
		}
		return sinfPoly(x, float64(x*x), p, 0)
	case abstop12(y) < abstop12(120):
		x, n := reduceFast(x)
		s := p.sign[n&3]
		if n&2 != 0 {
			p = &sincosfTab[1]
		}
		return sinfPoly(float64(x*s), float64(x*x), p, n)
	default:
		return float32(math.Sin(x))
	}
}

// cosfGlibc is glibc's cosf for |y| < 120, like sinfGlibc.
func cosfGlibc(y float32) float32 {
	x := float64(y)
	p := &sincosfTab[0]
	switch {
	case abstop12(y) < abstop12(0x1.921FB6p-1):
		if abstop12(y) < abstop12(0x1p-12) {
			return 1
		}
		return sinfPoly(x, float64(x*x), p, 1)
	case abstop12(y) < abstop12(120):
		x, n := reduceFast(x)
		s := p.sign[n&3]
		if n&2 != 0 {
			p = &sincosfTab[1]
		}
		return sinfPoly(float64(x*s), float64(x*x), p, n^1)
	default:
		return float32(math.Cos(x))
	}
}
