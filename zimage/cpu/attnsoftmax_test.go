package cpu

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestSoftmaxRowBF16 checks the bf16 tile's fused softmax row step against
// the unfused one (onlineSoftmaxRow, then the Go bf16 rounding): the same
// pair words, running max, sum and rescale factor, bit for bit, for lengths
// the fused pass takes (multiples of 16) and those it leaves to the
// fallback, on a first block (m = -Inf) and a later one.
func TestSoftmaxRowBF16(t *testing.T) {
	if !hasBF16Dot {
		t.Log("CPU lacks AVX512-BF16: only the fallback runs")
	}
	r := rand.New(rand.NewPCG(81, 82))
	for _, c := range []struct{ lim, bk int }{{256, 256}, {16, 16}, {32, 40}, {48, 64}, {100, 128}, {1, 7}, {255, 256}} {
		for _, m0 := range []float32{float32(math.Inf(-1)), 0.5, 30} {
			row := make([]float32, c.bk)
			for i := range row {
				row[i] = float32(r.NormFloat64() * 8)
			}
			row[r.IntN(c.lim)] = 25 // a new maximum in some cases, not others
			ref := append([]float32(nil), row...)
			mRef, lRef := m0, 3.0
			aRef := onlineSoftmaxRow(ref, c.lim, &mRef, &lRef)
			want := make([]uint32, (c.bk+1)/2)
			toBF16PairsGo(want, ref)

			got := make([]uint32, len(want))
			for i := range got {
				got[i] = 0xdeadbeef // must be overwritten, zeros past lim
			}
			m, l := m0, 3.0
			a := softmaxRowBF16(got, append([]float32(nil), row...), c.lim, &m, &l)
			if a != aRef || m != mRef || l != lRef {
				t.Fatalf("lim=%d bk=%d m0=%g: alpha, m, l = %g, %g, %g; want %g, %g, %g", c.lim, c.bk, m0, a, m, l, aRef, mRef, lRef)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("lim=%d bk=%d m0=%g: word %d = %#08x, want %#08x", c.lim, c.bk, m0, i, got[i], want[i])
				}
			}
		}
	}
}

// TestScaleToBF16Pairs checks the AVX-512 scaled conversion of query rows
// against the Go rounding.
func TestScaleToBF16Pairs(t *testing.T) {
	r := rand.New(rand.NewPCG(83, 84))
	for _, n := range []int{0, 1, 15, 16, 17, 64, 128, 131} {
		src := randVec(r, n)
		got, want := make([]uint32, (n+1)/2), make([]uint32, (n+1)/2)
		scaleToBF16Pairs(got, src, 0.0883883)
		scaleToBF16PairsGo(want, src, 0.0883883)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("n=%d: word %d = %#08x, want %#08x", n, i, got[i], want[i])
			}
		}
	}
}
