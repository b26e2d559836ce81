package sampler

import (
	"crypto/rand"
	"encoding/binary"
	"math"
)

// Kernel selects which of torch's CPU normal kernels Randn reproduces. They
// differ only in the log/sin/cos used by the Box-Muller transform, by up to
// ~2e-6 in about a third of the values.
type Kernel int

const (
	// KernelAVX2 is torch's vectorized kernel (avx_mathfun Cephes
	// approximations with GCC's FMA contractions): what torch produces on any
	// x86-64 machine with AVX2, including AVX-512 ones.
	KernelAVX2 Kernel = iota
	// KernelScalar is torch's default-capability kernel (glibc logf, cosf,
	// sinf): torch on ARM or with ATEN_CPU_CAPABILITY=default.
	KernelScalar
)

// String names the kernel like torch's capability names.
func (k Kernel) String() string {
	switch k {
	case KernelAVX2:
		return "avx2"
	case KernelScalar:
		return "scalar"
	}
	return "Kernel(?)"
}

// Generator is torch.Generator("cpu"): an MT19937 engine plus the cached
// second double normal of the small-tensor path. Successive Randn calls on
// one Generator continue the stream exactly like successive torch.randn calls
// with the same generator. A Generator is not safe for concurrent use.
type Generator struct {
	mt          mt19937
	cached      float64
	cachedValid bool
}

// NewGenerator returns a generator after manual_seed(seed); like torch, only
// the low 32 bits of seed matter.
func NewGenerator(seed uint64) *Generator {
	g := &Generator{}
	g.mt.seed(seed)
	return g
}

// Randn is torch.randn(n, generator=g, dtype=float32) for a contiguous tensor
// of n elements, drawn with kernel k. n ≤ 0 returns an empty slice.
func (g *Generator) Randn(n int, k Kernel) []float32 {
	if n <= 0 {
		return []float32{}
	}
	out := make([]float32, n)
	if n < 16 {
		// Small tensors go through the per-element double Box-Muller.
		for i := range out {
			out[i] = float32(g.normal64())
		}
		return out
	}
	fill16 := fill16AVX2
	if k == KernelScalar {
		fill16 = fill16Scalar
	}
	g.fillUniform32(out)
	for b := 0; b+16 <= n; b += 16 {
		fill16(out[b : b+16 : b+16])
	}
	if n%16 != 0 {
		// torch redraws the last 16 values with fresh uniforms, overwriting
		// finished normals of the last full block.
		tail := out[n-16:]
		g.fillUniform32(tail)
		fill16(tail)
	}
	return out
}

// Randn is NewGenerator(seed).Randn(n, KernelAVX2): the initial latents
// torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))
// gives on x86-64, flattened in memory order.
func Randn(seed uint64, n int) []float32 {
	return NewGenerator(seed).Randn(n, KernelAVX2)
}

// fillUniform32 fills dst with torch's float uniforms in [0, 1), one engine
// draw each: 24 random bits · 2^-24.
func (g *Generator) fillUniform32(dst []float32) {
	var buf [256]uint32
	for len(dst) > 0 {
		b := buf[:min(len(buf), len(dst))]
		g.mt.fill24(b)
		for i, v := range b {
			dst[i] = float32(v) * 0x1p-24
		}
		dst = dst[len(b):]
	}
}

// uniform64 is torch's double uniform in [0, 1): 53 bits of random64 · 2^-53.
func (g *Generator) uniform64() float64 {
	return float64(g.mt.u64()&(1<<53-1)) * 0x1p-53
}

// normal64 is at::normal_distribution<double>: Box-Muller on two double
// uniforms, returning the cosine half and caching the sine half. Go's
// math.Log1p/Sin/Cos may differ from glibc's in the last bit of a float64;
// the final float32 rounding hides that unless the value lies within one
// float64 ulp of a float32 rounding boundary (about 1 value in 2^29).
func (g *Generator) normal64() float64 {
	if g.cachedValid {
		g.cachedValid = false
		return g.cached
	}
	u1 := g.uniform64()
	u2 := g.uniform64()
	r := math.Sqrt(-2 * math.Log1p(-u2))
	theta := 2 * math.Pi * u1
	g.cached = float64(r * math.Sin(theta))
	g.cachedValid = true
	return float64(r * math.Cos(theta))
}

// twoPiF32 is float32(2π), the constant the AVX2 kernel multiplies by.
const twoPiF32 float32 = 2 * math.Pi

// fill16AVX2 is normal_fill_16_AVX2: Box-Muller on the pairs (j, j+8) of a
// block of 16 uniforms, in float32 with the Cephes log/sincos.
func fill16AVX2(d []float32) {
	_ = d[15]
	var u1, theta [8]float32
	for j := range 8 {
		u1[j] = 1 - d[j]
		theta[j] = float32(twoPiF32 * d[j+8])
	}
	lg := log8(&u1)
	sin, cos := sincos8(&theta)
	for j := range 8 {
		radius := sqrt32(float32(-2 * lg[j]))
		// The kernel's final fmadd(n, std=1, mean=0) is exact and omitted.
		d[j] = float32(radius * cos[j])
		d[j+8] = float32(radius * sin[j])
	}
}

// fill16Scalar is the scalar normal_fill_16: same pairing, glibc's float
// logf/cosf/sinf, and θ = 2π·u2 computed in double then rounded to float.
func fill16Scalar(d []float32) {
	_ = d[15]
	for j := 0; j < 8; j++ {
		u1 := 1 - d[j]
		u2 := d[j+8]
		radius := sqrt32(float32(-2 * logfGlibc(u1)))
		theta := float32(2 * math.Pi * float64(u2))
		d[j] = float32(radius * cosfGlibc(theta))
		d[j+8] = float32(radius * sinfGlibc(theta))
	}
}

// sqrt32 is a correctly rounded float32 square root (rounding the float64
// root once more is exact for sqrt).
func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }

// ResolveSeed returns seed unchanged when it is ≥ 0, and a fresh random seed
// when it is -1 (the "random" convention of the command line and API). The
// fresh seed is below 2^32, since torch only uses the low 32 bits anyway, so
// it prints short and reproduces exactly when passed back. Other negative
// values are an error.
func ResolveSeed(seed int64) (uint64, error) {
	switch {
	case seed >= 0:
		return uint64(seed), nil
	case seed == -1:
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return 0, &Error{Field: "seed", Value: seed, Reason: "cannot draw a random seed: " + err.Error()}
		}
		return uint64(binary.LittleEndian.Uint32(b[:])), nil
	default:
		return 0, &Error{Field: "seed", Value: seed, Reason: "must be ≥ 0, or -1 for a random seed"}
	}
}
