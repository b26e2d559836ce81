package gemm

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// TestMatMulBTQ80PackedMulti checks that several packed Q8_0 products on
// one A in one pass equal q8Reference bit for bit, for every Q8_0 kernel,
// ragged widths (a narrow output between wide ones), with and without
// bias, inline and threaded.
func TestMatMulBTQ80PackedMulti(t *testing.T) {
	defer func(f int) { inlineFlops = f }(inlineFlops)
	defer func(b, w int) { q8ABlock, q8AWhole = b, w }(q8ABlock, q8AWhole)
	block, whole := q8ABlock, q8AWhole
	forEachQ8Kernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(43, 44))
		// A swept whole, then in blocks of one and of two row panels
		// (K = 320): the same bits.
		for bi, blk := range []int{block, 1, 2 * q8MR * (320 + 40)} {
			q8ABlock, q8AWhole = blk, whole
			if bi > 0 {
				q8AWhole = 0
			}
			for _, inline := range []int{0, 1 << 30} {
				inlineFlops = inline
				for _, sh := range []shape{{1, 1, 32}, {3, 47, 64}, {9, 100, 320}, {33, 96, 256}, {70, 145, 512}, {5, 7, 0}} {
					a := randSlice(r, sh.m*sh.k)
					ns := []int{sh.n, max(1, sh.n/5), sh.n + 49}
					var ps []*Q80Packed
					var cs, want, biases [][]float32
					for i, n := range ns {
						b := randQ80(r, n, sh.k)
						var bias []float32
						if i != 1 {
							bias = randSlice(r, n)
						}
						w := make([]float32, sh.m*n)
						q8Reference(w, a, b, bias, sh.m, n, sh.k)
						p, err := PackQ80(b, n, sh.k)
						if err != nil {
							t.Fatal(err)
						}
						ps, want, biases = append(ps, p), append(want, w), append(biases, bias)
						cs = append(cs, make([]float32, sh.m*n))
					}
					if err := MatMulBTQ80PackedMultiCtx(t.Context(), cs, a, ps, biases, sh.m); err != nil {
						t.Fatal(err)
					}
					for i := range ns {
						for j := range want[i] {
							if math.Float32bits(cs[i][j]) != math.Float32bits(want[i][j]) {
								t.Fatalf("%+v A block %d bytes: output %d: element %d = %g, reference %g", sh, blk, i, j, cs[i][j], want[i][j])
							}
						}
					}
				}
			}
		}
	})
	r := rand.New(rand.NewPCG(1, 1))
	p32, _ := PackQ80(randQ80(r, 4, 32), 4, 32)
	p64, _ := PackQ80(randQ80(r, 4, 64), 4, 64)
	c := make([]float32, 8)
	for name, err := range map[string]error{
		"k mismatch": MatMulBTQ80PackedMultiCtx(t.Context(), [][]float32{c, c}, make([]float32, 64), []*Q80Packed{p32, p64}, nil, 2),
		"counts":     MatMulBTQ80PackedMultiCtx(t.Context(), [][]float32{c}, make([]float32, 64), []*Q80Packed{p32, p32}, nil, 2),
		"short C":    MatMulBTQ80PackedMultiCtx(t.Context(), [][]float32{c[:7]}, make([]float32, 64), []*Q80Packed{p32}, nil, 2),
		"nil":        MatMulBTQ80PackedMultiCtx(t.Context(), [][]float32{c}, make([]float32, 64), []*Q80Packed{nil}, nil, 2),
	} {
		if !errors.Is(err, ErrShape) {
			t.Errorf("%s: %v, want ErrShape", name, err)
		}
	}
}
