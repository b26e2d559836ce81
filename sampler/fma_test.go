package sampler

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// fmaRef rounds a*b + c exactly once, via big.Float.
func fmaRef(a, b, c float32) float32 {
	x := new(big.Float).SetPrec(200).SetFloat64(float64(a))
	x.Mul(x, new(big.Float).SetFloat64(float64(b)))
	x.Add(x, new(big.Float).SetFloat64(float64(c)))
	f, _ := x.Float32()
	return f
}

func TestFMA32DoubleRoundingCase(t *testing.T) {
	// a·b = 2^-24 - 2^-70 and c = 1 + 2^-23: the float64 sum rounds onto the
	// float32 tie 1 + 2^-23 + 2^-24, which ties-to-even would send up, while
	// the exact sum is just below it.
	a := float32(0x1p-24 * (1 + 0x1p-23))
	b := float32(1 - 0x1p-23)
	c := float32(1 + 0x1p-23)
	want := fmaRef(a, b, c)
	if want != c {
		t.Fatalf("reference: got %v, want %v", want, c)
	}
	if naive := float32(math.FMA(float64(a), float64(b), float64(c))); naive == want {
		t.Fatalf("case does not exercise double rounding")
	}
	if got := fma32(a, b, c); got != want {
		t.Errorf("fma32 = %v, want %v", got, want)
	}
	if got := fma32(-a, b, -c); got != -want {
		t.Errorf("fma32 negated = %v, want %v", got, -want)
	}
}

func TestFMA32Random(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	rnd := func(span int) float32 {
		e := r.IntN(2*span+1) - span
		m := 1 + r.Float64()
		if r.IntN(2) == 0 {
			m = -m
		}
		return float32(math.Ldexp(m, e))
	}
	for i := 0; i < 200000; i++ {
		var a, b, c float32
		if i%2 == 0 {
			a, b, c = rnd(30), rnd(30), rnd(60)
		} else {
			// Products just at c's rounding position: the hard cases.
			a, b = rnd(4), rnd(4)
			c = float32(math.Ldexp(float64(a*b), 24+r.IntN(5)))
		}
		if got, want := fma32(a, b, c), fmaRef(a, b, c); math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("fma32(%g, %g, %g) = %g, want %g", a, b, c, got, want)
		}
	}
	// Results in the float32 subnormal range take the careful path.
	for i := 0; i < 20000; i++ {
		a, b := rnd(70), rnd(70)
		c := float32(math.Ldexp(r.Float64()-0.5, -126-r.IntN(20)))
		if got, want := fma32(a, b, c), fmaRef(a, b, c); math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("fma32(%g, %g, %g) = %g, want %g", a, b, c, got, want)
		}
	}
}
