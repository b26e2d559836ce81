package gemm

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/zimage/zimage/weights"
)

// bf16Kernels lists the bf16-mode kernels to test: VDPBF16PS (skipped with
// the reason where the CPU lacks AVX512-BF16) and the rounding fallback on
// every float32 kernel of this machine, the generic Go one included.
func forEachBF16Kernel(t *testing.T, f func(t *testing.T)) {
	var ks []kernel
	if k, ok := archBF16Kernel(); ok {
		ks = append(ks, k)
	} else {
		t.Run("avx512bf16", func(t *testing.T) { t.Skip("CPU lacks AVX512-BF16 (VDPBF16PS)") })
	}
	for _, k := range kernels {
		ks = append(ks, roundingKernel(k))
	}
	for _, kern := range ks {
		t.Run(kern.name, func(t *testing.T) {
			prev := bf16Kernel
			bf16Kernel = kern
			defer func() { bf16Kernel = prev }()
			f(t)
		})
	}
}

func roundAll(v []float32) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = roundBF16(x)
	}
	return out
}

// TestMatMulBTBF16 checks the bf16 GEMM against the float64 reference of the
// bf16-rounded operands (products are exact in float32, so only the
// summation order differs), on ragged shapes, every B dtype, with and
// without bias; m ≤ gemvMaxM runs the float32 GEMV and is checked unrounded.
func TestMatMulBTBF16(t *testing.T) {
	forEachBF16Kernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		shapes := append(testShapes(r, testing.Short()), shape{9, 64, 2}, shape{12, 130, 33}, shape{7, 70, 31}, shape{70, 200, 1025})
		for _, sh := range shapes {
			for _, dt := range []weights.DType{weights.BF16, weights.F32, weights.F16, weights.F8E4M3} {
				a := randSlice(r, sh.m*sh.k)
				raw, dec := encode(t, randSlice(r, sh.n*sh.k), dt)
				var bias []float32
				if sh.n%2 == 1 {
					bias = randSlice(r, sh.n)
				}
				got := make([]float32, sh.m*sh.n)
				if err := MatMulBTBF16(got, a, raw, dt, bias, sh.m, sh.n, sh.k); err != nil {
					t.Fatal(err)
				}
				if sh.m <= gemvMaxM {
					check(t, got, a, dec, true, bias, sh.m, sh.n, sh.k)
					continue
				}
				check(t, got, roundAll(a), roundAll(dec), true, bias, sh.m, sh.n, sh.k)
			}
			// float32 B (activations as the right operand).
			a, b := randSlice(r, sh.m*sh.k), randSlice(r, sh.n*sh.k)
			got := make([]float32, sh.m*sh.n)
			if err := MatMulBTF32BF16Ctx(t.Context(), got, a, b, nil, sh.m, sh.n, sh.k); err != nil {
				t.Fatal(err)
			}
			if sh.m > gemvMaxM {
				a, b = roundAll(a), roundAll(b)
			}
			check(t, got, a, b, true, nil, sh.m, sh.n, sh.k)
			// float32 B stored [k, n] (the convolutions' im2col matrix).
			a, b = randSlice(r, sh.m*sh.k), randSlice(r, sh.n*sh.k)
			if err := MatMulBF16Ctx(t.Context(), got, a, b, sh.m, sh.n, sh.k); err != nil {
				t.Fatal(err)
			}
			if sh.m > gemvMaxM {
				a, b = roundAll(a), roundAll(b)
			}
			check(t, got, a, b, false, nil, sh.m, sh.n, sh.k)
		}
	})
}

// TestBF16Blocking forces tiny, odd cache blocks (odd kc is rounded up to
// whole pairs), the scalar pair packing and several threads.
func TestBF16Blocking(t *testing.T) {
	defer func(k, m, n, f int, tr bool) {
		kcMax, mcMax, ncMax, inlineFlops, useTranspose = k, m, n, f, tr
	}(kcMax, mcMax, ncMax, inlineFlops, useTranspose)
	forEachBF16Kernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(5, 6))
		for _, tr := range []bool{true, false} {
			useTranspose = tr
			for _, blk := range [][3]int{{41, 50, 70}, {32, 12, 128}, {7, 13, 64}} {
				kcMax, mcMax, ncMax, inlineFlops = blk[0], blk[1], blk[2], 0
				for _, sh := range []shape{{9, 17, 5}, {50, 130, 97}, {61, 257, 200}, {13, 64, 64}} {
					a := randSlice(r, sh.m*sh.k)
					raw, dec := encode(t, randSlice(r, sh.n*sh.k), weights.BF16)
					bias := randSlice(r, sh.n)
					got := make([]float32, sh.m*sh.n)
					if err := MatMulBTBF16(got, a, raw, weights.BF16, bias, sh.m, sh.n, sh.k); err != nil {
						t.Fatal(err)
					}
					check(t, got, roundAll(a), dec, true, bias, sh.m, sh.n, sh.k)
				}
			}
		}
	})
}

// TestBF16Rounding checks the packing's float32→bf16 rounding against
// weights.F32ToBF16 (nearest, ties to even, NaN kept) on edge values.
func TestBF16Rounding(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	vals := []float32{0, 1, -1, 1.00390625, 1.01171875, 3.4e38, 1e-40, float32(nan()), float32(inf())}
	for range 1000 {
		vals = append(vals, float32frombits(r.Uint32()))
	}
	for _, v := range vals {
		if got, want := uint16(toBF16(v)), weights.F32ToBF16(v); got != want {
			t.Fatalf("toBF16(%g) = %#04x, want %#04x", v, got, want)
		}
	}
}

func TestBF16KernelName(t *testing.T) {
	t.Logf("bf16 kernel: %s (VDPBF16PS: %v)", BF16KernelName(), HasBF16Dot())
	if _, ok := archBF16Kernel(); ok && !HasBF16Dot() {
		t.Fatal("AVX512-BF16 present but the VDPBF16PS kernel is not selected")
	}
}

func nan() float64                     { return math.NaN() }
func inf() float64                     { return math.Inf(1) }
func float32frombits(u uint32) float32 { return math.Float32frombits(u) }
