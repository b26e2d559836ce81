package gemm

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// explicitIm2col is the materialized column matrix ConvCtx packs implicitly.
func explicitIm2col(x []float32, ci, h, w, kh, kw, pad, ho, wo int) []float32 {
	n := ho * wo
	col := make([]float32, ci*kh*kw*n)
	for c := 0; c < ci; c++ {
		for dy := 0; dy < kh; dy++ {
			for dx := 0; dx < kw; dx++ {
				r := (c*kh+dy)*kw + dx
				for y := 0; y < ho; y++ {
					for xo := 0; xo < wo; xo++ {
						iy, ix := y+dy-pad, xo+dx-pad
						if iy >= 0 && iy < h && ix >= 0 && ix < w {
							col[r*n+y*wo+xo] = x[(c*h+iy)*w+ix]
						}
					}
				}
			}
		}
	}
	return col
}

// TestConvCtxMatchesIm2col checks the implicit-im2col product against the
// GEMM of the explicit column matrix, bit for bit, in float32 and bf16, on
// ragged shapes (m below the micro-tile and the gemv bound, widths that
// are not a multiple of the panel, paddings 0–2).
func TestConvCtxMatchesIm2col(t *testing.T) {
	defer SetWinograd(SetWinograd(WinogradOff)) // the direct path (Winograd: winograd_test.go)
	rng := rand.New(rand.NewPCG(7, 11))
	cases := []struct{ m, ci, h, w, kh, kw, pad int }{
		{1, 3, 5, 7, 3, 3, 1},
		{3, 8, 17, 9, 3, 3, 1},
		{7, 5, 6, 70, 3, 3, 0},
		{20, 4, 13, 13, 3, 3, 2},
		{64, 16, 24, 33, 3, 3, 1},
		{13, 6, 9, 11, 1, 3, 1},
		{40, 2, 3, 130, 3, 3, 1},
	}
	for _, c := range cases {
		ho, wo := c.h+2*c.pad-c.kh+1, c.w+2*c.pad-c.kw+1
		k, n := c.ci*c.kh*c.kw, ho*wo
		a := make([]float32, c.m*k)
		x := make([]float32, c.ci*c.h*c.w)
		for i := range a {
			a[i] = float32(rng.NormFloat64())
		}
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		col := explicitIm2col(x, c.ci, c.h, c.w, c.kh, c.kw, c.pad, ho, wo)
		for _, bf := range []bool{false, true} {
			want := make([]float32, c.m*n)
			var err error
			if bf {
				err = MatMulBF16Ctx(context.Background(), want, a, col, c.m, n, k)
			} else {
				err = MatMulCtx(context.Background(), want, a, col, c.m, n, k)
			}
			if err != nil {
				t.Fatal(err)
			}
			got := make([]float32, c.m*n)
			if err := ConvCtx(context.Background(), bf, got, a, x, c.m, c.ci, c.h, c.w, c.kh, c.kw, c.pad, ho, wo); err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%+v bf16=%v: C[%d] = %v, want %v", c, bf, i, got[i], want[i])
				}
			}
		}
	}
	if err := ConvCtx(context.Background(), false, make([]float32, 9), make([]float32, 9), make([]float32, 9), 1, 1, 3, 3, 3, 3, 1, 4, 3); err == nil {
		t.Fatal("ConvCtx accepted a wrong output size")
	}
}

// TestConvBiasCtx checks that the bias added tile by tile equals a pass
// over the product afterwards bit for bit, in float32 and bf16, with several
// k blocks, split rows of A (narrow B), edge tiles and m below the gemv
// bound.
func TestConvBiasCtx(t *testing.T) {
	defer SetWinograd(SetWinograd(WinogradOff))
	keepBlocking(t)
	r := rand.New(rand.NewPCG(23, 24))
	cases := []struct{ m, ci, h, w, kh, kw, pad int }{
		{3, 4, 9, 11, 3, 3, 1},
		{13, 5, 7, 70, 3, 3, 1},
		{40, 6, 3, 4, 3, 3, 1},
		{7, 3, 5, 5, 3, 3, 0},
	}
	for _, blk := range [][3]int{{1024, 1536, 128}, {10, 12, 64}} {
		kcMax, mcMax, ncMax, inlineFlops = blk[0], blk[1], blk[2], 0
		for _, c := range cases {
			for _, bf := range []bool{false, true} {
				ho, wo := c.h+2*c.pad-c.kh+1, c.w+2*c.pad-c.kw+1
				k, n := c.ci*c.kh*c.kw, ho*wo
				a, x, bias := randSlice(r, c.m*k), randSlice(r, c.ci*c.h*c.w), randSlice(r, c.m)
				want := make([]float32, c.m*n)
				if err := ConvCtx(t.Context(), bf, want, a, x, c.m, c.ci, c.h, c.w, c.kh, c.kw, c.pad, ho, wo); err != nil {
					t.Fatal(err)
				}
				for i := range c.m {
					for j := range n {
						want[i*n+j] += bias[i]
					}
				}
				got := make([]float32, c.m*n)
				if err := ConvBiasCtx(t.Context(), bf, got, a, x, bias, c.m, c.ci, c.h, c.w, c.kh, c.kw, c.pad, ho, wo); err != nil {
					t.Fatal(err)
				}
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("blocks %v %+v bf16=%v: C[%d] = %v, want %v", blk, c, bf, i, got[i], want[i])
					}
				}
			}
		}
	}
	if err := ConvBiasCtx(t.Context(), false, make([]float32, 18), make([]float32, 18), make([]float32, 9), make([]float32, 1), 2, 1, 3, 3, 3, 3, 1, 3, 3); err == nil {
		t.Fatal("short bias accepted")
	}
}

// TestAddScalar checks the (assembly) row bias add on ragged lengths
// against the Go loop, writing nothing past the row.
func TestAddScalar(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	for n := 0; n <= 40; n++ {
		row := randSlice(r, n+1)
		want := append([]float32(nil), row...)
		v := float32(r.NormFloat64())
		addScalar(row[:n], v)
		addScalarGo(want[:n], v)
		for i := range row {
			if row[i] != want[i] {
				t.Fatalf("n %d: value %d = %v, want %v", n, i, row[i], want[i])
			}
		}
	}
}

// TestConvBF16Cancel: a bf16 convolution cancelled while it runs (during
// the image conversion or the GEMM, or the Winograd transforms) returns the
// context's error promptly, and the next call gives the full result.
func TestConvBF16Cancel(t *testing.T) {
	for name, mode := range map[string]WinogradMode{"direct": WinogradOff, "winograd": WinogradOn} {
		t.Run(name, func(t *testing.T) {
			defer SetWinograd(SetWinograd(mode))
			testConvBF16Cancel(t)
		})
	}
}

func testConvBF16Cancel(t *testing.T) {
	const m, ci, side = 64, 64, 96
	r := rand.New(rand.NewPCG(27, 28))
	a, x, bias := randSlice(r, m*ci*9), randSlice(r, ci*side*side), randSlice(r, m)
	c := make([]float32, m*side*side)
	for _, after := range []time.Duration{0, 100 * time.Microsecond, 2 * time.Millisecond} {
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(after, cancel)
		start := time.Now()
		err := ConvBiasCtx(ctx, true, c, a, x, bias, m, ci, side, side, 3, 3, 1, side, side)
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("cancel after %v: %v", after, err)
		}
		if d := time.Since(start); err != nil && d > cancelLatency+after {
			t.Fatalf("cancel after %v returned after %v", after, d)
		}
		cancel()
	}
	want := make([]float32, m*side*side)
	if err := ConvBiasCtx(t.Context(), true, want, a, x, bias, m, ci, side, side, 3, 3, 1, side, side); err != nil {
		t.Fatal(err)
	}
	if err := ConvBiasCtx(t.Context(), true, c, a, x, bias, m, ci, side, side, 3, 3, 1, side, side); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if c[i] != want[i] {
			t.Fatalf("C[%d] = %v after cancelled calls, want %v", i, c[i], want[i])
		}
	}
}
