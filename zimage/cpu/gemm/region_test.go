package gemm

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/zimage/zimage/weights"
)

// TestOneRegionSameBits checks forBlocks's one-region mode (every k block
// of a one-block A packed up front, each task running its k blocks in
// order) against the per-k-block regions, bit for bit: float32 and bf16
// products from raw bytes, pre-packed and multi-weight bf16 products,
// with and without bias, on ragged shapes and three threads.
func TestOneRegionSameBits(t *testing.T) {
	defer func(kc, ak int) { kcMax, allKMax = kc, ak }(kcMax, allKMax)
	kcMax = 64
	SetThreads(3)
	defer SetThreads(0)
	r := rand.New(rand.NewPCG(11, 12))
	ctx := context.Background()
	for _, sh := range []struct{ m, n, k int }{{7, 33, 200}, {50, 100, 129}, {130, 70, 257}, {20, 64, 65}} {
		m, n, k := sh.m, sh.n, sh.k
		a := randSlice(r, m*k)
		bias := randSlice(r, n)
		raw, _ := encode(t, randSlice(r, n*k), weights.BF16)
		raw2, _ := encode(t, randSlice(r, 2*n*k), weights.BF16)
		p, err := PackBF16(raw, weights.BF16, n, k)
		if err != nil {
			t.Fatal(err)
		}
		rawP, err := RawBF16(raw2, weights.BF16, 2*n, k)
		if err != nil {
			t.Fatal(err)
		}
		runs := map[string]func(c []float32) error{
			"f32":    func(c []float32) error { return MatMulBT(c, a, raw, weights.BF16, bias, m, n, k) },
			"bf16":   func(c []float32) error { return MatMulBTBF16(c, a, raw, weights.BF16, bias, m, n, k) },
			"packed": func(c []float32) error { return MatMulBTBF16PackedCtx(ctx, c, a, p, bias, m, n, k) },
			"multi": func(c []float32) error {
				return MatMulBTBF16MultiCtx(ctx, [][]float32{c[:m*n], c[m*n:]}, a, []*BF16Packed{p, rawP}, [][]float32{bias, nil}, m, k)
			},
		}
		for name, run := range runs {
			size := m * n
			if name == "multi" {
				size = 3 * m * n
			}
			got, want := make([]float32, size), make([]float32, size)
			allKMax = 4 << 20
			if err := run(got); err != nil {
				t.Fatal(err)
			}
			allKMax = 0
			if err := run(want); err != nil {
				t.Fatal(err)
			}
			sameBits(t, fmt.Sprintf("%s %d×%d×%d", name, m, n, k), got, want)
		}
	}
}

// TestJoinSameBits checks that tasks sharing their rows with threads that
// ran out of tasks (joinBoard) give the bits of the same products without
// joining, with 2–4 threads on shapes whose tasks end unevenly.
func TestJoinSameBits(t *testing.T) {
	defer func(v bool) { useJoin = v }(useJoin)
	defer SetThreads(0)
	r := rand.New(rand.NewPCG(13, 14))
	ctx := context.Background()
	for _, th := range []int{2, 3, 4} {
		SetThreads(th)
		for _, sh := range []struct{ m, n, k int }{{61, 200, 96}, {130, 333, 64}, {300, 1024, 130}, {17, 70, 2500}} {
			m, n, k := sh.m, sh.n, sh.k
			a := randSlice(r, m*k)
			bias := randSlice(r, n)
			raw, _ := encode(t, randSlice(r, n*k), weights.BF16)
			p, err := PackBF16(raw, weights.BF16, n, k)
			if err != nil {
				t.Fatal(err)
			}
			rawP, err := RawBF16(raw, weights.BF16, n, k)
			if err != nil {
				t.Fatal(err)
			}
			runs := map[string]func(c []float32) error{
				"f32":  func(c []float32) error { return MatMulBT(c, a, raw, weights.BF16, bias, m, n, k) },
				"bf16": func(c []float32) error { return MatMulBTBF16(c, a, raw, weights.BF16, bias, m, n, k) },
				"multi": func(c []float32) error {
					return MatMulBTBF16MultiCtx(ctx, [][]float32{c[:m*n], c[m*n:]}, a, []*BF16Packed{p, rawP}, [][]float32{bias, nil}, m, k)
				},
			}
			for name, run := range runs {
				size := m * n
				if name == "multi" {
					size = 2 * m * n
				}
				got, want := make([]float32, size), make([]float32, size)
				for rep := 0; rep < 3; rep++ {
					useJoin = true
					if err := run(got); err != nil {
						t.Fatal(err)
					}
					useJoin = false
					if err := run(want); err != nil {
						t.Fatal(err)
					}
					sameBits(t, fmt.Sprintf("%d threads %s %d×%d×%d", th, name, m, n, k), got, want)
				}
			}
		}
	}
}
