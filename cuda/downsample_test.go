package cuda

import (
	"math/rand/v2"
	"testing"

	"github.com/zimage/zimage/cuda/internal/parity"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/cpu"
)

// TestDownsample2D: the strided kernel on the host shim against the CPU
// backend's strided conv and against this backend's composed path (the
// conv-strided family off), over ragged sizes (odd H/2 and W/2, one output
// row or column, chunks of output positions that split rows); f32 must be
// bit-exact to the composed path (same products, same GEMM) and within the
// f32 parity tolerance of the CPU; bf16 within the bf16 one. Odd H or W is a
// typed error, the backend usable after ResetErr.
func TestDownsample2D(t *testing.T) {
	defer func(v int) { colBudget = v }(colBudget)
	ref := cpu.New()
	for _, prec := range []Precision{F32, BF16} {
		b, f, _ := newFake(t, prec, true)
		s2 := "zk_im2col_s2_" + dtypeSuffix[b.dt]
		for _, sz := range [][4]int{{6, 5, 10, 14}, {3, 4, 2, 18}, {2, 3, 22, 2}, {5, 7, 18, 30}} {
			ci, co, h, w := sz[0], sz[1], sz[2], sz[3]
			r := rand.New(rand.NewPCG(uint64(h), uint64(w)))
			vals := func(n int, s float64) []float32 {
				v := make([]float32, n)
				for i := range v {
					v[i] = weights.BF16ToF32(weights.F32ToBF16(float32(r.NormFloat64() * s)))
				}
				return v
			}
			xv, wv, bv := vals(ci*h*w, 1), vals(co*ci*9, 0.2), vals(co, 1)
			want := ref.ToHost(ref.Downsample2D(ref.FromHost(xv, ci, h, w), ref.FromHost(wv, co, ci, 3, 3), ref.FromHost(bv, co)))
			for _, budget := range []int{256 << 20, 7 * ci * 9 * b.esize} { // whole, then chunks of 7 positions
				colBudget = budget
				x, wt, bt := b.FromHost(xv, ci, h, w), b.FromHost(wv, co, ci, 3, 3), b.FromHost(bv, co)
				n0 := f.Launched(s2)
				y := b.Downsample2D(x, wt, bt)
				if sh := y.Shape(); sh[0] != co || sh[1] != h/2 || sh[2] != w/2 {
					t.Fatalf("shape %v", sh)
				}
				got := b.ToHost(y)
				if f.Launched(s2) == n0 {
					t.Errorf("%v: %s not launched", sz, s2)
				}
				b.setFamily(FamConvStrided, false)
				yc := b.downsampleComposed(x, wt, bt)
				comp := b.ToHost(yc)
				b.setFamily(FamConvStrided, true)
				if err := b.Err(); err != nil {
					t.Fatal(err)
				}
				b.Free(x, wt, bt, y, yc)
				maxRel, l2 := parity.Compare(got, want)
				tm, tl := parity.Tolerances(prec == BF16)
				if maxRel > tm || l2 > tl {
					t.Errorf("%s %v budget %d: vs CPU max %.3g, rel L2 %.3g", prec, sz, budget, maxRel, l2)
				}
				if prec == F32 {
					for i := range got {
						if got[i] != comp[i] {
							t.Fatalf("%v: [%d] strided %v, composed %v", sz, i, got[i], comp[i])
						}
					}
				}
			}
		}
		x, wt := b.FromHost(make([]float32, 2*3*4), 2, 3, 4), b.FromHost(make([]float32, 18), 1, 2, 3, 3)
		b.Downsample2D(x, wt, nil)
		if b.Err() == nil {
			t.Error("odd H: no error")
		}
		b.ResetErr()
		b.Free(x, wt)
	}
}
