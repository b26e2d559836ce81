package gemm

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/zimage/zimage/weights"
)

// TestNarrowEdgeExact: the ragged last row panel computed by the narrow
// kernels (narrowPanel) gives the same bits as the full-height kernel did,
// for float32 and bf16 compute, unpacked and pre-packed weights, with and
// without bias, over one and several k blocks.
func TestNarrowEdgeExact(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	defer func(v bool) { narrowEdges = v }(narrowEdges)
	for _, m := range []int{7, 13, 20, 65} {
		for _, n := range []int{64, 70, 130} {
			for _, k := range []int{90, 1100, 2731} {
				a := make([]float32, m*k)
				for i := range a {
					a[i] = float32(r.NormFloat64())
				}
				b := make([]byte, 2*n*k)
				for i := 0; i < n*k; i++ {
					binary.LittleEndian.PutUint16(b[2*i:], uint16(math.Float32bits(float32(r.NormFloat64()))>>16))
				}
				bias := make([]float32, n)
				for i := range bias {
					bias[i] = float32(r.NormFloat64())
				}
				p, err := PackBF16(b, weights.BF16, n, k)
				if err != nil {
					t.Fatal(err)
				}
				ctx := context.Background()
				for _, tc := range []struct {
					name string
					mul  func(c []float32, bias []float32) error
				}{
					{"fp32", func(c, bias []float32) error { return MatMulBTCtx(ctx, c, a, b, weights.BF16, bias, m, n, k) }},
					{"bf16", func(c, bias []float32) error { return MatMulBTBF16Ctx(ctx, c, a, b, weights.BF16, bias, m, n, k) }},
					{"packed", func(c, bias []float32) error { return MatMulBTBF16PackedCtx(ctx, c, a, p, bias, m, n, k) }},
				} {
					for _, bs := range [][]float32{nil, bias} {
						got, want := make([]float32, m*n), make([]float32, m*n)
						narrowEdges = true
						if err := tc.mul(got, bs); err != nil {
							t.Fatal(err)
						}
						narrowEdges = false
						if err := tc.mul(want, bs); err != nil {
							t.Fatal(err)
						}
						for i := range got {
							if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
								t.Fatalf("%s m=%d n=%d k=%d bias=%v: [%d,%d] = %v, want %v", tc.name, m, n, k, bs != nil, i/n, i%n, got[i], want[i])
							}
						}
					}
				}
			}
		}
	}
}
