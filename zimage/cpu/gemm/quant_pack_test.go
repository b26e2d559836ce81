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
// assembly transposer and dequantizers; with m ≤ 8 (the GEMV path) with the
// fused dot kernels and with the row kernels' scratch.
func TestMatMulBTQuantPackedExact(t *testing.T) {
	defer func(v int) { kcMax = v }(kcMax)
	defer func(v bool) { useTranspose = v }(useTranspose)
	defer func(v bool) { useDequantAsm = v }(useDequantAsm)
	defer func(v bool) { useQuantPanel = v }(useQuantPanel)
	rng := rand.New(rand.NewPCG(7, 8))
	types := []weights.DType{weights.Q8_0, weights.Q4_0, weights.Q4_1, weights.Q5_0, weights.Q5_1,
		weights.Q2_K, weights.Q3_K, weights.Q4_K, weights.Q5_K, weights.Q6_K}
	shapes := [][3]int{{9, 5, 256}, {16, 33, 512}, {37, 70, 768}, {64, 131, 1280}, {13, 300, 256},
		{1, 5, 256}, {3, 33, 512}, {8, 70, 768}, {5, 131, 1280}, {2, 300, 256}, {1, 64, 8448}, {7, 48, 4608}}
	defer func(v int) { quantFusedMaxM = v }(quantFusedMaxM)
	blocks := map[string][]byte{}
	for mode, tr := range []bool{true, true, false} {
		useTranspose = tr && useTranspose
		useQuantPanel = tr && useQuantPanel
		useDequantAsm = tr && useDequantAsm
		quantFusedMaxM = []int{8, 0, 8}[mode] // mode 1: GEMV through the row kernels' scratch
		for _, kc := range []int{1024, 200} {
			kcMax = kc
			for _, dt := range types {
				for _, sz := range shapes {
					m, n, k := sz[0], sz[1], sz[2]
					name := fmt.Sprintf("%v m=%d n=%d k=%d kc=%d tr=%v", dt, m, n, k, kc, useTranspose)
					key := fmt.Sprint(dt, n, k)
					b, ok := blocks[key]
					if !ok { // the same weights for every mode and kc
						b = randomQuant(t, rng, dt, n, k)
						blocks[key] = b
					}
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

// TestDequantBlocksAsm checks the assembly block dequantizers against
// weights' reference bit for bit on random bytes (every scale pattern:
// subnormal, infinite and NaN f16 scales included; NaN only has to stay
// NaN).
func TestDequantBlocksAsm(t *testing.T) {
	if !useDequantAsm {
		t.Skip("no assembly dequantizers on this CPU")
	}
	rng := rand.New(rand.NewPCG(9, 10))
	for _, dt := range []weights.DType{weights.Q8_0, weights.Q4_0, weights.Q4_K, weights.Q6_K, weights.Q5_K} {
		for _, nb := range []int{1, 3, 40} {
			blk := make([]byte, nb*dt.BlockBytes())
			for i := range blk {
				blk[i] = byte(rng.IntN(256))
			}
			want := make([]float32, nb*dt.BlockSize())
			if err := weights.Dequantize(want, blk, dt); err != nil {
				t.Fatal(err)
			}
			got := make([]float32, len(want))
			if !dequantBlocksAsm(got, blk, dt, make([]float32, 16*nb)) {
				if dt == weights.Q5_K {
					continue // no assembly: the caller falls back
				}
				t.Fatalf("%v: no assembly dequantizer", dt)
			}
			for i := range got {
				g, w := got[i], want[i]
				if math.IsNaN(float64(w)) && math.IsNaN(float64(g)) {
					continue
				}
				if math.Float32bits(g) != math.Float32bits(w) {
					t.Fatalf("%v nb=%d: y[%d] = %g (%#x), reference %g (%#x)", dt, nb, i, g, math.Float32bits(g), w, math.Float32bits(w))
				}
			}
		}
	}
}

func TestF16ToF32Inline(t *testing.T) {
	for h := range 1 << 16 {
		g, w := f16ToF32(uint16(h)), weights.F16ToF32(uint16(h))
		if math.Float32bits(g) != math.Float32bits(w) {
			t.Fatalf("%#04x: %#x, want %#x", h, math.Float32bits(g), math.Float32bits(w))
		}
	}
}
