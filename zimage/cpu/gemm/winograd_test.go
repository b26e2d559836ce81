package gemm

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// withWinograd runs f with the Winograd mode set to m.
func withWinograd(t testing.TB, m WinogradMode, f func()) {
	prev := SetWinograd(m)
	defer SetWinograd(prev)
	f()
}

func needBF16Dot(t testing.TB) {
	if !HasBF16Dot() {
		t.Skip("Winograd runs on the VDPBF16PS kernel: this CPU lacks AVX512-BF16")
	}
}

// winoRef is the exact convolution (float64) of x [ci, h, w] with a
// [m, ci, 3, 3], pad pad, plus bias; and two error scales per output:
// direct = Σ|w||x| and wino = Σ_ci Σ_ξ |Aᵀ(o, ξ)|·|U_ξ|·|V_ξ| with |U| and
// |V| bounded by the transforms of |g| and |d| (the magnitudes Winograd
// rounds to bf16).
func winoRef(x, a, bias []float32, m, ci, h, w, pad int) (ref, direct, wino []float64) {
	ho, wo := h+2*pad-2, w+2*pad-2
	ref = make([]float64, m*ho*wo)
	direct = make([]float64, m*ho*wo)
	wino = make([]float64, m*ho*wo)
	at := func(c, y, xx int) float64 {
		if y < 0 || y >= h || xx < 0 || xx >= w {
			return 0
		}
		return float64(x[(c*h+y)*w+xx])
	}
	// |G|·|g|·|G|ᵀ and |Bᵀ|·|d|·|B|: G, B with absolute entries.
	G := [4][3]float64{{1, 0, 0}, {.5, .5, .5}, {.5, .5, .5}, {0, 0, 1}}
	B := [4][4]float64{{1, 0, 1, 0}, {0, 1, 1, 1}, {0, 1, 1, 0}, {0, 0, 0, 1}} // |B|, B = (Bᵀ)ᵀ
	// |Aᵀ| rows for output (0,·) and (1,·).
	A := [2][4]float64{{1, 1, 1, 0}, {0, 1, 1, 1}}
	uabs := make([][16]float64, m*ci)
	for co := range m {
		for c := range ci {
			var u [16]float64
			for i := range 4 {
				for j := range 4 {
					for p := range 3 {
						for q := range 3 {
							u[4*i+j] += G[i][p] * G[j][q] * math.Abs(float64(a[((co*ci+c)*3+p)*3+q]))
						}
					}
				}
			}
			uabs[co*ci+c] = u
		}
	}
	for co := range m {
		for y := range ho {
			for xo := range wo {
				s, d := 0.0, 0.0
				if bias != nil {
					s = float64(bias[co])
				}
				for c := range ci {
					for p := range 3 {
						for q := range 3 {
							wv := float64(a[((co*ci+c)*3+p)*3+q])
							xv := at(c, y+p-pad, xo+q-pad)
							s += wv * xv
							d += math.Abs(wv * xv)
						}
					}
				}
				ref[(co*ho+y)*wo+xo] = s
				direct[(co*ho+y)*wo+xo] = d
			}
		}
	}
	// Per tile: V bounds, then Σ over ξ for each of the 4 outputs.
	for ty := 0; 2*ty < ho; ty++ {
		for tx := 0; 2*tx < wo; tx++ {
			vabs := make([][16]float64, ci)
			for c := range ci {
				for i := range 4 {
					for j := range 4 {
						for r := range 4 {
							for s := range 4 {
								vabs[c][4*i+j] += B[r][i] * B[s][j] * math.Abs(at(c, 2*ty-pad+r, 2*tx-pad+s))
							}
						}
					}
				}
			}
			for co := range m {
				for oy := range 2 {
					for ox := range 2 {
						y, xo := 2*ty+oy, 2*tx+ox
						if y >= ho || xo >= wo {
							continue
						}
						e := 0.0
						for c := range ci {
							for xi := range 16 {
								e += A[oy][xi/4] * A[ox][xi%4] * uabs[co*ci+c][xi] * vabs[c][xi]
							}
						}
						wino[(co*ho+y)*wo+xo] = e
					}
				}
			}
		}
	}
	return ref, direct, wino
}

// winoTol is the error bound of the Winograd result at scale s (see
// winoRef): bf16 rounding of U and V (2⁻⁹ relative each) and float32 sums
// over ci and the 16 ξ.
func winoTol(s float64, ci int) float64 {
	return (math.Ldexp(1, -8) + math.Ldexp(1, -17) + float64(ci+24)*math.Ldexp(1, -23)) * s
}

// TestWinogradConv checks the Winograd bf16 convolution against the exact
// convolution within the bf16 bound derived above, on ragged shapes (odd
// maps from 1×1, channels not multiples of 2, 6 or 64, pads 0–2, several
// chunks and channel groups, chunk widths past one kernel panel) and
// against the direct bf16 path within the sum of both bounds.
func TestWinogradConv(t *testing.T) {
	needBF16Dot(t)
	defer func(c, r, f int) { winoCols, winoRows, inlineFlops = c, r, f }(winoCols, winoRows, inlineFlops)
	rng := rand.New(rand.NewPCG(41, 42))
	cases := []struct{ m, ci, h, w, pad int }{
		{9, 1, 1, 1, 1},
		{9, 3, 2, 2, 1},
		{10, 5, 3, 3, 0},
		{13, 7, 7, 9, 1},
		{11, 2, 4, 5, 1},
		{16, 33, 9, 7, 1},
		{9, 4, 6, 6, 2},
		{20, 6, 5, 8, 0},
		{17, 13, 23, 19, 1},
		{70, 65, 12, 31, 1},
		{12, 2, 41, 40, 1},
		{9, 3, 1, 2, 2},
		{10, 4, 5, 3, 3},
		{64, 64, 13, 15, 1},
		{16, 6, 5, 131, 0}, // runs starting mid-row
		{12, 4, 6, 200, 2},
	}
	for _, blk := range [][3]int{{64, 48, 1 << 18}, {128, 6, 0}, {64, 12, 0}} {
		winoCols, winoRows, inlineFlops = blk[0], blk[1], blk[2]
		for _, c := range cases {
			name := fmt.Sprintf("%d/%dx%dx%dx%d/pad%d", blk[0]+blk[1], c.m, c.ci, c.h, c.w, c.pad)
			ho, wo := c.h+2*c.pad-2, c.w+2*c.pad-2
			if ho <= 0 || wo <= 0 {
				continue
			}
			a, x, bias := randSlice(rng, c.m*c.ci*9), randSlice(rng, c.ci*c.h*c.w), randSlice(rng, c.m)
			if c.ci%2 == 0 {
				bias = nil
			}
			ref, direct, wino := winoRef(x, a, bias, c.m, c.ci, c.h, c.w, c.pad)
			var got, dir []float32
			for _, mode := range []WinogradMode{WinogradOn, WinogradOff} {
				out := make([]float32, c.m*ho*wo)
				for i := range out {
					out[i] = float32(math.NaN()) // every value must be written
				}
				withWinograd(t, mode, func() {
					if err := ConvBiasCtx(context.Background(), true, out, a, x, bias, c.m, c.ci, c.h, c.w, 3, 3, c.pad, ho, wo); err != nil {
						t.Fatal(err)
					}
				})
				if mode == WinogradOn {
					got = out
				} else {
					dir = out
				}
			}
			worst := 0.0 // err / (2⁻⁸·Σ|w||x|)
			for i, r := range ref {
				e := math.Abs(float64(got[i]) - r)
				if tol := winoTol(wino[i], c.ci); !(e <= tol) {
					t.Fatalf("%s: y[%d] = %v, want %v ± %.3g", name, i, got[i], r, tol)
				}
				dtol := winoTol(wino[i], c.ci) + (math.Ldexp(1, -8)+float64(9*c.ci+2)*math.Ldexp(1, -23))*direct[i]
				if d := math.Abs(float64(got[i]) - float64(dir[i])); !(d <= dtol) {
					t.Fatalf("%s: y[%d] = %v, direct bf16 %v, differ by more than %.3g", name, i, got[i], dir[i], dtol)
				}
				if direct[i] > 0 {
					worst = max(worst, e/(math.Ldexp(1, -8)*direct[i]))
				}
			}
			t.Logf("%s: max |err| / (2⁻⁸·Σ|w||x|) = %.2f", name, worst)
		}
	}
}

// TestWinogradCancellation: output values near zero that are sums of large
// terms of both signs stay within the bound (the bound follows the terms'
// magnitudes, not the result's), and an input that is constant, which the
// transforms cancel exactly in the interior, gives the exact result.
func TestWinogradCancellation(t *testing.T) {
	needBF16Dot(t)
	const m, ci, h, w = 12, 8, 10, 11
	rng := rand.New(rand.NewPCG(43, 44))
	a := randSlice(rng, m*ci*9)
	x := make([]float32, ci*h*w)
	for i := range x {
		// Large values in a checkerboard of signs plus a small noise.
		s := float32(1000)
		if (i/w+i%w)%2 == 1 {
			s = -1000
		}
		x[i] = s + float32(rng.NormFloat64())
	}
	ref, _, wino := winoRef(x, a, nil, m, ci, h, w, 1)
	got := make([]float32, m*h*w)
	withWinograd(t, WinogradOn, func() {
		if err := ConvBiasCtx(t.Context(), true, got, a, x, nil, m, ci, h, w, 3, 3, 1, h, w); err != nil {
			t.Fatal(err)
		}
	})
	for i, r := range ref {
		if e, tol := math.Abs(float64(got[i])-r), winoTol(wino[i], ci); !(e <= tol) {
			t.Fatalf("y[%d] = %v, want %v ± %.3g", i, got[i], r, tol)
		}
	}

	// Weights and image exact in bf16 with few bits: every product and
	// partial sum is exact, so the result is exact.
	for i := range a {
		a[i] = float32(rng.IntN(9) - 4)
	}
	for i := range x {
		x[i] = float32(rng.IntN(17)-8) * 0.25
	}
	ref, _, _ = winoRef(x, a, nil, m, ci, h, w, 1)
	withWinograd(t, WinogradOn, func() {
		if err := ConvBiasCtx(t.Context(), true, got, a, x, nil, m, ci, h, w, 3, 3, 1, h, w); err != nil {
			t.Fatal(err)
		}
	})
	for i, r := range ref {
		if float64(got[i]) != r {
			t.Fatalf("small integers: y[%d] = %v, want %v exactly", i, got[i], r)
		}
	}
}

// TestWinogradChoice: Auto picks Winograd only for 3×3 kernels on the
// VDPBF16PS kernel with enough channels and pixels; Off and On force it.
func TestWinogradChoice(t *testing.T) {
	big := &convGeom{ci: 64, h: 64, w: 64, kh: 3, kw: 3, pad: 1, ho: 64, wo: 64}
	small := &convGeom{ci: 64, h: 32, w: 32, kh: 3, kw: 3, pad: 1, ho: 32, wo: 32}
	k5 := &convGeom{ci: 64, h: 64, w: 64, kh: 5, kw: 5, pad: 2, ho: 64, wo: 64}
	dot := HasBF16Dot()
	withWinograd(t, WinogradAuto, func() {
		if useWinograd(big, 128) != dot || useWinograd(small, 128) || useWinograd(k5, 128) || useWinograd(big, 4) {
			t.Error("auto choice")
		}
	})
	withWinograd(t, WinogradOff, func() {
		if useWinograd(big, 128) {
			t.Error("Off picked Winograd")
		}
	})
	withWinograd(t, WinogradOn, func() {
		if useWinograd(small, 128) != dot || useWinograd(k5, 128) {
			t.Error("On choice")
		}
	})
}

// TestWinogradTransforms checks the transforms (assembly where the CPU
// has it) against the Go loops bit for bit, writing nothing else, and runs
// the convolution test on the Go loops.
func TestWinogradTransforms(t *testing.T) {
	rng := rand.New(rand.NewPCG(47, 48))
	for nblk := 1; nblk <= 3; nblk++ {
		l := 32*nblk + 2
		var p [4][]float32
		for r := range p {
			p[r] = randSlice(rng, l)
		}
		// Rounding edge cases: NaN, ±Inf, denormals, ties.
		p[1][3], p[2][5], p[0][7] = float32(math.NaN()), float32(math.Inf(1)), math.Float32frombits(0x00000123)
		p[3][9] = math.Float32frombits(0x3f808000) // a tie as an input value
		for hi := range 2 {
			ds := 32*nblk + 10
			got, want := make([]uint16, 16*ds), make([]uint16, 16*ds)
			for i := range got {
				got[i] = uint16(rng.Uint32())
			}
			copy(want, got)
			winoIn(got, ds, hi, p[0], p[1], p[2], p[3], nblk)
			winoInGo(want, ds, hi, p[0], p[1], p[2], p[3], nblk)
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("winoIn nblk %d hi %d: [%d] = %#x, want %#x", nblk, hi, i, got[i], want[i])
				}
			}
		}

		ms := 16*nblk + 3
		m := randSlice(rng, 16*ms)
		bias := float32(rng.NormFloat64())
		g0, g1 := randSlice(rng, 32*nblk+4), randSlice(rng, 32*nblk+4)
		w0, w1 := append([]float32(nil), g0...), append([]float32(nil), g1...)
		winoOut(g0, g1, m, ms, bias, nblk)
		winoOutGo(w0, w1, m, ms, bias, nblk)
		for i := range w0 {
			if math.Float32bits(g0[i]) != math.Float32bits(w0[i]) || math.Float32bits(g1[i]) != math.Float32bits(w1[i]) {
				t.Fatalf("winoOut nblk %d: [%d] = %v, %v, want %v, %v", nblk, i, g0[i], g1[i], w0[i], w1[i])
			}
		}
	}
	if useWinoAsm {
		defer func() { useWinoAsm = true }()
		useWinoAsm = false
		t.Run("Go", TestWinogradConv)
	}
}
