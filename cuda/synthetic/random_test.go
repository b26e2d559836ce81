package synthetic

import (
	"bytes"
	"testing"

	"github.com/zimage/zimage/weights"
)

// TestRandomBF16 checks that the values depend on the seed alone and stay
// within the spread of each kind of tensor.
func TestRandomBF16(t *testing.T) {
	sc := Scales{Gain: 0.1, Bias: 0.5, Pad: 2}
	cases := []struct {
		t      *weights.Tensor
		lo, hi float32
	}{
		{&weights.Tensor{Name: "l.weight", Shape: []int{8, 12, 1, 3}}, -0.5, 0.5}, // fan-in 36: ±√(3/36)
		{&weights.Tensor{Name: "l.bias", Shape: []int{8}}, -0.5, 0.5},
		{&weights.Tensor{Name: "x_pad_token", Shape: []int{1, 8}}, -2, 2},
		{&weights.Tensor{Name: "norm.weight", Shape: []int{64}}, 0.9, 1.1},
	}
	for _, c := range cases {
		a, b := RandomBF16(c.t, 7, sc), RandomBF16(c.t, 7, sc)
		if !bytes.Equal(a, b) || bytes.Equal(a, RandomBF16(c.t, 8, sc)) {
			t.Fatalf("%s: not a function of the seed", c.t.Name)
		}
		for i := 0; i < len(a); i += 2 {
			x := weights.BF16ToF32(uint16(a[i]) | uint16(a[i+1])<<8)
			if tol := 0.01 * max(-c.lo, c.hi); x < c.lo-tol || x > c.hi+tol { // bf16 rounding
				t.Fatalf("%s: value %v outside [%v, %v]", c.t.Name, x, c.lo, c.hi)
			}
		}
	}
}
