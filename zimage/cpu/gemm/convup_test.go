package gemm

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// upsampled returns the nearest-neighbour 2× upsampling of x [c, h, w].
func upsampled(x []float32, c, h, w int) []float32 {
	u := make([]float32, c*4*h*w)
	for ch := range c {
		for y := range 2 * h {
			for xo := range 2 * w {
				u[(ch*2*h+y)*2*w+xo] = x[(ch*h+y/2)*w+xo/2]
			}
		}
	}
	return u
}

// TestConvUp2 checks ConvUp2BiasCtx against ConvBiasCtx on the upsampled
// image, bit for bit, on every reader of the image: fp32 and bf16, Winograd
// forced on and off (the padded bf16 image), few output channels (the
// float32 packers), 1×1 and 5×3 kernels, odd low-resolution sides and
// channel counts that are not multiples of 16, small and default
// blockings; on every bf16 kernel (the rounding ones pack float32).
func TestConvUp2(t *testing.T) { forEachBF16Kernel(t, testConvUp2) }

func testConvUp2(t *testing.T) {
	defer SetWinograd(SetWinograd(WinogradAuto))
	keepBlocking(t)
	r := rand.New(rand.NewPCG(71, 72))
	cases := []struct{ m, ci, h, w, kh, kw, pad int }{
		{70, 67, 9, 13, 3, 3, 1},
		{17, 3, 5, 7, 3, 3, 1},
		{33, 20, 16, 17, 3, 3, 0},
		{64, 64, 23, 40, 3, 3, 1},
		{5, 9, 6, 5, 3, 3, 1}, // GEMV-sized m: the float32 packer
		{24, 7, 4, 9, 1, 1, 0},
		{12, 5, 7, 6, 5, 3, 2},
		{9, 1, 1, 1, 3, 3, 1},
	}
	modes := []WinogradMode{WinogradOff, WinogradOn}
	for _, blk := range [][3]int{{1024, 1536, 128}, {10, 12, 64}} {
		kcMax, mcMax, ncMax, inlineFlops = blk[0], blk[1], blk[2], 0
		for _, c := range cases {
			for _, bf := range []bool{false, true} {
				for _, mode := range modes {
					name := fmt.Sprintf("blk%v/%+v/bf16=%v/wino=%d", blk, c, bf, mode)
					H, W := 2*c.h, 2*c.w
					ho, wo := H+2*c.pad-c.kh+1, W+2*c.pad-c.kw+1
					k, n := c.ci*c.kh*c.kw, ho*wo
					a, x, bias := randSlice(r, c.m*k), randSlice(r, c.ci*c.h*c.w), randSlice(r, c.m)
					SetWinograd(mode)
					want := make([]float32, c.m*n)
					if err := ConvBiasCtx(t.Context(), bf, want, a, upsampled(x, c.ci, c.h, c.w), bias, c.m, c.ci, H, W, c.kh, c.kw, c.pad, ho, wo); err != nil {
						t.Fatal(name, err)
					}
					got := make([]float32, c.m*n)
					if err := ConvUp2BiasCtx(t.Context(), bf, got, a, x, bias, c.m, c.ci, c.h, c.w, c.kh, c.kw, c.pad, ho, wo); err != nil {
						t.Fatal(name, err)
					}
					for i := range want {
						if got[i] != want[i] {
							t.Fatalf("%s: C[%d] = %v, want %v", name, i, got[i], want[i])
						}
					}
				}
			}
		}
	}
	if err := ConvUp2BiasCtx(t.Context(), true, make([]float32, 9*36), make([]float32, 9*9), make([]float32, 8), nil, 9, 1, 3, 3, 3, 3, 1, 6, 6); err == nil {
		t.Fatal("short image accepted")
	}
	if err := ConvUp2BiasCtx(t.Context(), true, make([]float32, 9*36), make([]float32, 9*9), make([]float32, 9), nil, 9, 1, 3, 3, 3, 3, 1, 3, 3); err == nil {
		t.Fatal("output of the low-resolution size accepted")
	}
}

// TestUpRow checks the row duplication at every start parity and length.
func TestUpRow(t *testing.T) {
	src := make([]float32, 41)
	for i := range src {
		src[i] = float32(i + 1)
	}
	for a := range 2 * len(src) {
		for n := 0; a+n <= 2*len(src); n++ {
			dst := make([]float32, n+1)
			dst[n] = -1
			upRow(dst[:n], src, a)
			for i := range n {
				if dst[i] != src[(a+i)/2] {
					t.Fatalf("a=%d n=%d: dst[%d] = %v, want %v", a, n, i, dst[i], src[(a+i)/2])
				}
			}
			if dst[n] != -1 {
				t.Fatalf("a=%d n=%d: wrote past the end", a, n)
			}
		}
	}
}

// TestConvRows checks the stepped panel packer against convRow row by row
// on panels inside one output row and across rows, at every tap offset,
// of stored and upsampled images.
func TestConvRows(t *testing.T) {
	r := rand.New(rand.NewPCG(73, 74))
	for _, g := range []convGeom{
		{ci: 3, h: 5, w: 7, kh: 3, kw: 3, pad: 1, ho: 5, wo: 7},
		{ci: 2, h: 9, w: 70, kh: 3, kw: 3, pad: 1, ho: 9, wo: 70},
		{ci: 4, h: 6, w: 8, kh: 5, kw: 3, pad: 2, ho: 6, wo: 10},
		{ci: 3, h: 4, w: 5, kh: 3, kw: 3, pad: 0, ho: 2, wo: 3},
		{ci: 5, h: 3, w: 64, kh: 1, kw: 1, pad: 0, ho: 3, wo: 64},
		{ci: 3, h: 10, w: 14, kh: 3, kw: 3, pad: 1, ho: 10, wo: 14, up: true},
		{ci: 2, h: 6, w: 70, kh: 3, kw: 3, pad: 0, ho: 4, wo: 68, up: true},
	} {
		sh, sw := g.srcDims()
		x := randSlice(r, g.ci*sh*sw)
		k, n := g.ci*g.kh*g.kw, g.ho*g.wo
		for _, nr := range []int{4, 16, 64} {
			for j := 0; j < n; j += 3 {
				cols := min(nr, n-j)
				for p0 := 0; p0 < k; p0 += 5 {
					kb := min(7, k-p0)
					got := make([]float32, kb*nr)
					want := make([]float32, kb*nr)
					convRows(got, nr, cols, x, &g, p0, kb, j)
					for p := range kb {
						convRow(want[p*nr:p*nr+cols], x, &g, p0+p, j)
					}
					for i := range want {
						if got[i] != want[i] {
							t.Fatalf("%+v nr=%d j=%d p0=%d: [%d] = %v, want %v", g, nr, j, p0, i, got[i], want[i])
						}
					}
				}
			}
		}
	}
}
