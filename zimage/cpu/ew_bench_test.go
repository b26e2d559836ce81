package cpu

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkEW times each element-wise row kernel against its Go reference
// on a DiT row (3840 values, L1-resident); the metric is ns per element of
// the first input.
func BenchmarkEW(b *testing.B) {
	const n = 3840
	r := rand.New(rand.NewPCG(3, 4))
	a, c, w, g := randVec(r, n), randVec(r, n), randVec(r, n), randVec(r, n)
	co, si := randVec(r, n/2), randVec(r, n/2)
	dst, d2, d4 := make([]float32, n), make([]float32, 2*n), make([]float32, 4*n)
	for _, k := range []struct {
		name     string
		vec, ref func()
	}{
		{"scale", func() { scaleRow(dst, a, 1.5) }, func() { scaleRowGo(dst, a, 1.5) }},
		{"scaleMul", func() { scaleMulRow(dst, a, w, 1.5) }, func() { scaleMulRowGo(dst, a, w, 1.5) }},
		{"scaleShift", func() { scaleShiftRow(dst, a, 1.5, 2) }, func() { scaleShiftRowGo(dst, a, 1.5, 2) }},
		{"add", func() { addRow(dst, a, c) }, func() { addRowGo(dst, a, c) }},
		{"mul", func() { mulRow(dst, a, c) }, func() { mulRowGo(dst, a, c) }},
		{"gatedAdd", func() { gatedAddRow(dst, a, g, c) }, func() { gatedAddRowGo(dst, a, g, c) }},
		{"ropePairs", func() { ropePairs(dst, a, co, si) }, func() { ropePairsGo(dst, a, co, si) }},
		{"ropeHalves", func() { ropeHalves(dst[:n/2], dst[n/2:], a[:n/2], a[n/2:], co, si) },
			func() { ropeHalvesGo(dst[:n/2], dst[n/2:], a[:n/2], a[n/2:], co, si) }},
		{"dupPairs", func() { dupPairs(d2, a) }, func() { dupPairsGo(d2, a) }},
		{"dupPairs2", func() { dupPairs2(d4[:2*n], d4[2*n:], a) }, func() { dupPairs2Go(d4[:2*n], d4[2*n:], a) }},
	} {
		for _, impl := range []struct {
			name string
			f    func()
		}{{"vec", k.vec}, {"go", k.ref}} {
			b.Run(k.name+"/"+impl.name, func(b *testing.B) {
				for b.Loop() {
					impl.f()
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/elem")
			})
		}
	}
}

// BenchmarkSqDevRun times sqDevRun against the block-by-block loop it
// replaces (the same sums) on a 16384-value run in L1/L2.
func BenchmarkSqDevRun(b *testing.B) {
	const n = 16384
	x := randVec(rand.New(rand.NewPCG(1, 1)), n)
	b.Run("run", func(b *testing.B) {
		for b.Loop() {
			sqDevRun(x, 0.5)
		}
	})
	b.Run("blocks", func(b *testing.B) {
		for b.Loop() {
			var s float64
			for i := 0; i < n; i += sumBlockLen {
				s += sqDevBlock(x[i:i+sumBlockLen], 0.5)
			}
		}
	})
}
