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

// TestSoftmaxTileBF16 checks the one-call tile softmax against the row
// step: the same maxima, the rescale factors to float32 rounding, the
// probabilities' bf16 values within one unit of the last place and their
// sums within 2e-5 (the tile's degree-4 exp is within 5.3e-6 of the full
// one, and it adds its lane sums as a tree); then scaleRows against its Go
// loop.
func TestSoftmaxTileBF16(t *testing.T) {
	if !hasBF16Dot {
		t.Skip("CPU lacks AVX512-BF16: the tile softmax does not run (the row step covers it)")
	}
	r := rand.New(rand.NewPCG(87, 88))
	const rows, lds, ldp = 9, 272, 140
	for _, n := range []int{16, 32, 256} {
		s := make([]float32, rows*lds)
		for i := range s {
			s[i] = float32(r.NormFloat64() * 6)
		}
		m0 := []float32{float32(math.Inf(-1)), 0, 3, 20, -5, 1, 2, 7, float32(math.Inf(-1))}
		m, mRef := append([]float32(nil), m0...), append([]float32(nil), m0...)
		l, lRef := make([]float64, rows), make([]float64, rows)
		for i := range l {
			l[i] = float64(i) * 0.5
			lRef[i] = l[i]
		}
		alpha, aRef := make([]float32, rows), make([]float32, rows)
		p, pRef := make([]uint32, rows*ldp), make([]uint32, rows*ldp)
		if !softmaxTileBF16(s, lds, p, ldp, rows, n, m, l, alpha) {
			t.Fatal("tile softmax declined a multiple of 16")
		}
		for i := range rows {
			row := append([]float32(nil), s[i*lds:i*lds+n]...)
			aRef[i] = softmaxRowBF16(pRef[i*ldp:i*ldp+n/2], row, n, &mRef[i], &lRef[i])
		}
		for i := range rows {
			if m[i] != mRef[i] {
				t.Fatalf("n=%d row %d: m = %g, want %g", n, i, m[i], mRef[i])
			}
			if math.Abs(float64(alpha[i]-aRef[i])) > 2e-7*float64(aRef[i]) {
				t.Fatalf("n=%d row %d: alpha = %g, want %g", n, i, alpha[i], aRef[i])
			}
			if math.Abs(l[i]-lRef[i]) > 2e-5*lRef[i] {
				t.Fatalf("n=%d row %d: l = %g, want %g", n, i, l[i], lRef[i])
			}
		}
		for i := range p {
			for _, sh := range []uint{0, 16} {
				d := int32(p[i]>>sh&0xffff) - int32(pRef[i]>>sh&0xffff)
				if d < -1 || d > 1 {
					t.Fatalf("n=%d: pair word %d = %#08x, want %#08x (±1 in each half)", n, i, p[i], pRef[i])
				}
			}
		}
	}
	o := randVec(r, 7*144)
	want := append([]float32(nil), o...)
	a := []float32{1, 0.5, 1, 0, 2.5, 1, 0.125}
	scaleRows(o, 144, 7, 128, a)
	scaleRowsGo(want, 144, 7, 128, a)
	for i := range o {
		if o[i] != want[i] {
			t.Fatalf("scaleRows: [%d] = %g, want %g", i, o[i], want[i])
		}
	}
}
