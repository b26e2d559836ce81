//go:build amd64 && !purego

package cpu

import "golang.org/x/sys/cpu"

// Vector paths, chosen at start-up (tests switch them off to cover the
// portable code). x/sys/cpu reports AVX-512 and AVX only when the OS saves
// the registers.
var (
	useAVX512 = cpu.X86.HasAVX512F
	useAVX2   = cpu.X86.HasAVX2 && cpu.X86.HasFMA
)

// expSubAVX512 sets x[i] = exp(x[i]-mx) for i < n (n a multiple of 16) and
// stores the 16 lane sums in sums.
//
//go:noescape
func expSubAVX512(x *float32, n int, mx float32, sums *[16]float32)

// maxAVX512 stores the 16 lane maxima of x[:n] (n a positive multiple of 16).
//
//go:noescape
func maxAVX512(x *float32, n int, maxes *[16]float32)

// scaleAddAVX512 sets o[i] = o[i]·a + t[i] for i < n (n a multiple of 16).
//
//go:noescape
func scaleAddAVX512(o, t *float32, n int, a float32)

// The AVX2 versions work on multiples of 8.
//
//go:noescape
func expSubAVX2(x *float32, n int, mx float32, sums *[8]float32)

//go:noescape
func maxAVX2(x *float32, n int, maxes *[8]float32)

//go:noescape
func scaleAddAVX2(o, t *float32, n int, a float32)

// rowMax returns max(m, max(x)).
func rowMax(x []float32, m float32) float32 {
	n := 0
	switch {
	case useAVX512 && len(x) >= 16:
		n = len(x) &^ 15
		var lanes [16]float32
		maxAVX512(&x[0], n, &lanes)
		for _, v := range lanes {
			m = max(m, v)
		}
	case useAVX2 && len(x) >= 8:
		n = len(x) &^ 7
		var lanes [8]float32
		maxAVX2(&x[0], n, &lanes)
		for _, v := range lanes {
			m = max(m, v)
		}
	}
	for _, v := range x[n:] {
		m = max(m, v)
	}
	return m
}

// expSub sets x[i] = exp(x[i]-mx) and returns their sum.
func expSub(x []float32, mx float32) float64 {
	n := 0
	var sum float64
	switch {
	case useAVX512 && len(x) >= 16:
		n = len(x) &^ 15
		var lanes [16]float32
		expSubAVX512(&x[0], n, mx, &lanes)
		for _, v := range lanes {
			sum += float64(v)
		}
	case useAVX2 && len(x) >= 8:
		n = len(x) &^ 7
		var lanes [8]float32
		expSubAVX2(&x[0], n, mx, &lanes)
		for _, v := range lanes {
			sum += float64(v)
		}
	}
	for j, v := range x[n:] {
		p := expf(v - mx)
		x[n+j] = p
		sum += float64(p)
	}
	return sum
}

// scaleAdd sets o[i] = o[i]·a + t[i].
func scaleAdd(o, t []float32, a float32) {
	t = t[:len(o)]
	n := 0
	switch {
	case useAVX512 && len(o) >= 16:
		n = len(o) &^ 15
		scaleAddAVX512(&o[0], &t[0], n, a)
	case useAVX2 && len(o) >= 8:
		n = len(o) &^ 7
		scaleAddAVX2(&o[0], &t[0], n, a)
	}
	for j := n; j < len(o); j++ {
		o[j] = o[j]*a + t[j]
	}
}
