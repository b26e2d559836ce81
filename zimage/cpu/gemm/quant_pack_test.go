package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/zimage/zimage/weights"
)

// TestMatMulBTQuantPackedExact checks that the path dequantizing into the
// packed panels gives bit for bit the result of the chunked
// dequantize-then-multiply path, on ragged shapes, with k blocks that start
// inside a quantization block (small kcMax), with and without the
// assembly transposer.
func TestMatMulBTQuantPackedExact(t *testing.T) {
	defer func(v int) { kcMax = v }(kcMax)
	defer func(v bool) { useTranspose = v }(useTranspose)
	rng := rand.New(rand.NewPCG(7, 8))
	types := []weights.DType{weights.Q8_0, weights.Q4_0, weights.Q4_1, weights.Q5_0, weights.Q5_1,
		weights.Q2_K, weights.Q3_K, weights.Q4_K, weights.Q5_K, weights.Q6_K}
	shapes := [][3]int{{9, 5, 256}, {16, 33, 512}, {37, 70, 768}, {64, 131, 1280}, {13, 2100, 256}}
	for _, tr := range []bool{true, false} {
		useTranspose = tr && useTranspose
		for _, kc := range []int{1024, 200} {
			kcMax = kc
			for _, dt := range types {
				for _, sz := range shapes {
					m, n, k := sz[0], sz[1], sz[2]
					name := fmt.Sprintf("%v m=%d n=%d k=%d kc=%d tr=%v", dt, m, n, k, kc, useTranspose)
					b := randomQuant(t, rng, dt, n, k)
					a := make([]float32, m*k)
					for i := range a {
						a[i] = float32(rng.NormFloat64())
					}
					bias := make([]float32, n)
					for i := range bias {
						bias[i] = float32(rng.NormFloat64())
					}
					for _, bb := range [][]float32{nil, bias} {
						got, want := make([]float32, m*n), make([]float32, m*n)
						if err := matMulBTQuantMode(nil, false, got, a, b, dt, bb, m, n, k); err != nil {
							t.Fatalf("%s: %v", name, err)
						}
						if err := matMulBTQuantMode(nil, true, want, a, b, dt, bb, m, n, k); err != nil {
							t.Fatalf("%s: %v", name, err)
						}
						for i := range got {
							if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
								t.Fatalf("%s bias=%v: C[%d] = %g, chunked path %g", name, bb != nil, i, got[i], want[i])
							}
						}
					}
				}
			}
		}
	}
}
