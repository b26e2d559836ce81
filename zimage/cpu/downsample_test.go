package cpu

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestDownsample2D compares the strided conv with a float64 reference,
// whole and with output-row tiles (a small im2col budget), with and
// without bias.
func TestDownsample2D(t *testing.T) {
	const ci, co, h, w = 5, 7, 10, 14
	r := rand.New(rand.NewPCG(5, 6))
	fill := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	x, wt, bias := fill(ci*h*w), fill(co*ci*9), fill(co)
	want := make([]float64, co*(h/2)*(w/2))
	for o := 0; o < co; o++ {
		for i := 0; i < h/2; i++ {
			for j := 0; j < w/2; j++ {
				var acc float64
				for c := 0; c < ci; c++ {
					for ky := 0; ky < 3; ky++ {
						for kx := 0; kx < 3; kx++ {
							if y, xx := 2*i+ky, 2*j+kx; y < h && xx < w {
								acc += float64(wt[((o*ci+c)*3+ky)*3+kx]) * float64(x[(c*h+y)*w+xx])
							}
						}
					}
				}
				want[(o*(h/2)+i)*(w/2)+j] = acc
			}
		}
	}
	defer func(v int) { colBudget = v }(colBudget)
	for _, budget := range []int{colBudget, 4 * ci * 9 * (w / 2)} { // whole, one output row per tile
		colBudget = budget
		for _, withBias := range []bool{false, true} {
			b := New()
			var bt = b.FromHost(bias, co)
			if !withBias {
				bt = nil
			}
			got := b.ToHost(b.Downsample2D(b.FromHost(x, ci, h, w), b.FromHost(wt, co, ci, 3, 3), bt))
			if err := b.Err(); err != nil {
				t.Fatal(err)
			}
			for i, v := range got {
				ref := want[i]
				if withBias {
					ref += float64(bias[i/((h/2)*(w/2))])
				}
				if math.Abs(float64(v)-ref) > 1e-4 {
					t.Fatalf("budget %d bias %v: value %d = %v, want %v", budget, withBias, i, v, ref)
				}
			}
		}
	}
	b := New()
	b.Downsample2D(b.FromHost(x[:ci*9*w], ci, 9, w), b.FromHost(wt, co, ci, 3, 3), nil)
	if b.Err() == nil {
		t.Error("odd height: no error")
	}
}
