package cpu

import (
	"math"
	"math/rand/v2"
	"testing"
)

// ewVec returns n values at a random offset into a larger buffer (so the
// vector kernels see unaligned starts), a share of them special: ±0, ±Inf,
// NaN, denormals and values whose products overflow or underflow.
func ewVec(r *rand.Rand, n int, special bool) []float32 {
	off := r.IntN(4)
	v := make([]float32, n+off)[off:]
	specials := []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)),
		float32(math.NaN()), 1e-40, -3e-42, 1e38, -2e37, 1e-30, math.MaxFloat32}
	for i := range v {
		if special && r.IntN(8) == 0 {
			v[i] = specials[r.IntN(len(specials))]
		} else {
			v[i] = float32(r.NormFloat64() * 3)
		}
	}
	return v
}

// sameBits reports whether got and want agree bit for bit (any NaN matches
// any NaN: the payload of a NaN made from two NaNs depends on operand order).
func sameBits(t *testing.T, name string, n int, got, want []float32) {
	t.Helper()
	for i := range want {
		g, w := got[i], want[i]
		if math.Float32bits(g) != math.Float32bits(w) && !(g != g && w != w) {
			t.Fatalf("%s n=%d [%d]: got %v (%#08x), want %v (%#08x)", name, n, i, g, math.Float32bits(g), w, math.Float32bits(w))
		}
	}
}

// ewLengths are the run lengths the kernel tests try: every ragged length
// up to 67 and a DiT row with a tail.
var ewLengths = func() []int {
	var l []int
	for n := 0; n <= 67; n++ {
		l = append(l, n)
	}
	return append(l, 128, 3840+13)
}()

// TestEWKernels compares every element-wise row kernel on the active vector
// path with its Go reference, bit for bit (TestVectorPaths reruns it on each
// path the machine has).
func TestEWKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 7))
	for _, special := range []bool{false, true} {
		for _, n := range ewLengths {
			a, c, w, g := ewVec(r, n, special), ewVec(r, n, special), ewVec(r, n, special), ewVec(r, n, special)
			s, sh := float32(r.NormFloat64()), float32(r.NormFloat64())
			if special && n%5 == 0 {
				s = []float32{0, float32(math.Inf(1)), float32(math.NaN()), 1e-40, 3e38}[n/5%5]
			}
			got, want := make([]float32, n), make([]float32, n)

			scaleRow(got, a, s)
			scaleRowGo(want, a, s)
			sameBits(t, "scaleRow", n, got, want)

			scaleMulRow(got, a, w, s)
			scaleMulRowGo(want, a, w, s)
			sameBits(t, "scaleMulRow", n, got, want)

			scaleShiftRow(got, a, s, sh)
			scaleShiftRowGo(want, a, s, sh)
			sameBits(t, "scaleShiftRow", n, got, want)

			addRow(got, a, c)
			addRowGo(want, a, c)
			sameBits(t, "addRow", n, got, want)

			mulRow(got, a, c)
			mulRowGo(want, a, c)
			sameBits(t, "mulRow", n, got, want)

			gatedAddRow(got, a, g, c)
			gatedAddRowGo(want, a, g, c)
			sameBits(t, "gatedAddRow", n, got, want)

			// In place, as the fused norms call them.
			copy(got, c)
			copy(want, c)
			addRow(got, a, got)
			addRowGo(want, a, want)
			sameBits(t, "addRow in place", n, got, want)
			mulRow(got, got, w)
			mulRowGo(want, want, w)
			sameBits(t, "mulRow in place", n, got, want)
			gatedAddRow(got, a, g, got)
			gatedAddRowGo(want, a, g, want)
			sameBits(t, "gatedAddRow in place", n, got, want)

			h := n / 2
			co, si := ewVec(r, h, special), ewVec(r, h, special)
			ropePairs(got, a[:2*h], co, si)
			ropePairsGo(want, a[:2*h], co, si)
			sameBits(t, "ropePairs", 2*h, got[:2*h], want[:2*h])

			ropeHalves(got[:h], got[h:2*h], a[:h], a[h:2*h], co, si)
			ropeHalvesGo(want[:h], want[h:2*h], a[:h], a[h:2*h], co, si)
			sameBits(t, "ropeHalves", 2*h, got[:2*h], want[:2*h])

			g2, w2 := make([]float32, 2*n), make([]float32, 2*n)
			dupPairs(g2, a)
			dupPairsGo(w2, a)
			sameBits(t, "dupPairs", n, g2, w2)
			g3, w3 := make([]float32, 2*n), make([]float32, 2*n)
			dupPairs2(g2, g3, c)
			dupPairs2Go(w2, w3, c)
			sameBits(t, "dupPairs2", n, append(g2, g3...), append(w2, w3...))
		}
	}
}

// TestEWShortOperand checks that a short operand panics in Go (a bounds
// check) rather than letting a vector kernel read past it.
func TestEWShortOperand(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("addRow with a short operand did not panic")
		}
	}()
	addRow(make([]float32, 64), make([]float32, 64), make([]float32, 63))
}

// TestSumRuns checks sqDevRun against a plain loop of sqDevBlock over
// sumBlockLen blocks, bit for bit.
func TestSumRuns(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 9))
	for _, n := range []int{0, 1, 17, 1023, 1024, 4095, 4096, 4096 + 5, 3 * 4096, 3*4096 + 1024 + 7, 5*4096 + 3000} {
		x := ewVec(r, n, false)
		for i := range x {
			x[i] = x[i]*0.1 + 2
		}
		mu := float32(1.9)
		var wq float64
		for i := 0; i < n; i += sumBlockLen {
			wq += sqDevBlock(x[i:min(i+sumBlockLen, n)], mu)
		}
		if gq := sqDevRun(x, mu); math.Float64bits(gq) != math.Float64bits(wq) {
			t.Fatalf("sqDevRun n=%d: got %v, want %v", n, gq, wq)
		}
	}
}
