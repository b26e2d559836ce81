package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/zimage/zimage/weights"
)

// TestMatMulBTQuantBF16 requires the bf16-compute product on quantized
// blocks to equal, bit for bit, the bf16-compute product on the
// dequantized float32 matrix: ragged shapes, k blocks starting inside a
// quantization block (small kcMax), the GEMV fallback (m ≤ 8), with and
// without the assembly panel kernels.
func TestMatMulBTQuantBF16(t *testing.T) {
	defer func(v int) { kcMax = v }(kcMax)
	defer func(v bool) { useQuantPanel = v }(useQuantPanel)
	defer func(v int) { inlineFlops = v }(inlineFlops)
	inlineFlops = 0
	rng := rand.New(rand.NewPCG(9, 10))
	types := []weights.DType{weights.Q8_0, weights.Q4_0, weights.Q4_1, weights.Q5_0, weights.Q5_1,
		weights.Q2_K, weights.Q3_K, weights.Q4_K, weights.Q5_K, weights.Q6_K}
	shapes := [][3]int{{9, 5, 256}, {16, 70, 768}, {37, 33, 512}, {4, 48, 512}, {70, 131, 1280}}
	for _, panel := range []bool{true, false} {
		useQuantPanel = panel && useQuantPanel
		for _, kc := range []int{1024, 200} {
			kcMax = kc
			for _, dt := range types {
				for _, sz := range shapes {
					m, n, k := sz[0], sz[1], sz[2]
					name := fmt.Sprintf("%v m=%d n=%d k=%d kc=%d panel=%v", dt, m, n, k, kc, useQuantPanel)
					b := randomQuant(t, rng, dt, n, k)
					rb, _ := dt.RowBytes(k)
					bf := make([]float32, n*k)
					dequantRows(bf, b, weights.DequantBlock(dt), dt, n, k, rb)
					a := make([]float32, m*k)
					for i := range a {
						a[i] = float32(rng.NormFloat64())
					}
					bias := make([]float32, n)
					for i := range bias {
						bias[i] = float32(rng.NormFloat64())
					}
					got, want := make([]float32, m*n), make([]float32, m*n)
					if err := MatMulBTQuantBF16Ctx(t.Context(), got, a, b, dt, bias, m, n, k); err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					var err error
					if m <= gemvMaxM {
						err = MatMulBTQuantCtx(t.Context(), want, a, b, dt, bias, m, n, k)
					} else {
						err = MatMulBTF32BF16Ctx(t.Context(), want, a, bf, bias, m, n, k)
					}
					if err != nil {
						t.Fatalf("%s: reference: %v", name, err)
					}
					for i := range want {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("%s: C[%d,%d] = %g, want %g", name, i/n, i%n, got[i], want[i])
						}
					}
				}
			}
		}
	}
}

// TestMatMulBTQuantBF16Errors: bad shapes and dtypes are errors, not
// panics, on both sides of the GEMV cut.
func TestMatMulBTQuantBF16Errors(t *testing.T) {
	for _, m := range []int{2, 16} {
		a, c := make([]float32, m*64), make([]float32, m*4)
		b := make([]byte, 4*2*weights.Q8_0.BlockBytes())
		for name, f := range map[string]func() error{
			"k not a block multiple": func() error {
				return MatMulBTQuantBF16Ctx(t.Context(), c, a[:m*48], b, weights.Q8_0, nil, m, 4, 48)
			},
			"short B": func() error { return MatMulBTQuantBF16Ctx(t.Context(), c, a, b[:10], weights.Q8_0, nil, m, 4, 64) },
			"not quantized": func() error {
				return MatMulBTQuantBF16Ctx(t.Context(), c, a, b, weights.BF16, nil, m, 4, 64)
			},
			"short C": func() error { return MatMulBTQuantBF16Ctx(t.Context(), c[:1], a, b, weights.Q8_0, nil, m, 4, 64) },
		} {
			if err := f(); err == nil {
				t.Errorf("m=%d %s: no error", m, name)
			}
		}
	}
}
