//go:build amd64 && !purego

package cpu

// siluAVX512 sets dst[i] = silu(src[i]) for i < n (n a multiple of 16).
//
//go:noescape
func siluAVX512(dst, src *float32, n int)

// swigluAVX512 sets dst[i] = silu(gate[i])·up[i] for i < n (n a multiple of 16).
//
//go:noescape
func swigluAVX512(dst, gate, up *float32, n int)

// sumAVX512 stores the 16 lane sums of x[:n] (n a multiple of 16).
//
//go:noescape
func sumAVX512(x *float32, n int, lanes *[16]float32)

// sqDevAVX512 stores the 16 lane sums of (x[i]-mu)² (n a multiple of 16).
//
//go:noescape
func sqDevAVX512(x *float32, n int, mu float32, lanes *[16]float32)

// affineAVX512 sets dst[i] = (src[i]-mu)·sc + sh (n a multiple of 16).
//
//go:noescape
func affineAVX512(dst, src *float32, n int, mu, sc, sh float32)

// The AVX2 versions work on multiples of 8.
//
//go:noescape
func siluAVX2(dst, src *float32, n int)

//go:noescape
func swigluAVX2(dst, gate, up *float32, n int)

//go:noescape
func sumAVX2(x *float32, n int, lanes *[8]float32)

//go:noescape
func sqDevAVX2(x *float32, n int, mu float32, lanes *[8]float32)

//go:noescape
func affineAVX2(dst, src *float32, n int, mu, sc, sh float32)

// vecLen returns how many leading elements of an n-element run the active
// vector path handles (0 when none).
func vecLen(n int) int {
	switch {
	case useAVX512:
		return n &^ 15
	case useAVX2:
		return n &^ 7
	}
	return 0
}

// siluVec sets dst[i] = silu(src[i]).
func siluVec(dst, src []float32) {
	dst = dst[:len(src)]
	n := vecLen(len(src))
	if n > 0 {
		if useAVX512 {
			siluAVX512(&dst[0], &src[0], n)
		} else {
			siluAVX2(&dst[0], &src[0], n)
		}
	}
	for i := n; i < len(src); i++ {
		dst[i] = silu(src[i])
	}
}

// swigluVec sets dst[i] = silu(gate[i])·up[i].
func swigluVec(dst, gate, up []float32) {
	dst, up = dst[:len(gate)], up[:len(gate)]
	n := vecLen(len(gate))
	if n > 0 {
		if useAVX512 {
			swigluAVX512(&dst[0], &gate[0], &up[0], n)
		} else {
			swigluAVX2(&dst[0], &gate[0], &up[0], n)
		}
	}
	for i := n; i < len(gate); i++ {
		dst[i] = silu(gate[i]) * up[i]
	}
}

// sumBlock returns Σ x (len(x) ≤ sumBlockLen, so float32 lanes lose
// nothing that matters before the float64 total).
func sumBlock(x []float32) float64 {
	var s float64
	n := vecLen(len(x))
	if n > 0 {
		var lanes [16]float32
		if useAVX512 {
			sumAVX512(&x[0], n, &lanes)
		} else {
			sumAVX2(&x[0], n, (*[8]float32)(lanes[:8]))
		}
		for _, v := range lanes {
			s += float64(v)
		}
	}
	for _, v := range x[n:] {
		s += float64(v)
	}
	return s
}

// sqDevBlock returns Σ (x-mu)² (len(x) ≤ sumBlockLen).
func sqDevBlock(x []float32, mu float32) float64 {
	var s float64
	n := vecLen(len(x))
	if n > 0 {
		var lanes [16]float32
		if useAVX512 {
			sqDevAVX512(&x[0], n, mu, &lanes)
		} else {
			sqDevAVX2(&x[0], n, mu, (*[8]float32)(lanes[:8]))
		}
		for _, v := range lanes {
			s += float64(v)
		}
	}
	for _, v := range x[n:] {
		d := float64(v - mu)
		s += d * d
	}
	return s
}

// affine sets dst[i] = (src[i]-mu)·sc + sh.
//
// The vector kernels fuse the multiply-add; the values past the last whole
// vector go through the same kernel in a padded copy, so every value gets
// the same arithmetic wherever a parallel loop cuts the range (GroupNorm's
// channel-parallel pass cuts it by thread count).
func affine(dst, src []float32, mu, sc, sh float32) {
	dst = dst[:len(src)]
	n := vecLen(len(src))
	kern := affineAVX2
	switch {
	case useAVX512:
		kern = affineAVX512
	case !useAVX2:
		for i, v := range src {
			dst[i] = float32((v-mu)*sc) + sh
		}
		return
	}
	if n > 0 {
		kern(&dst[0], &src[0], n, mu, sc, sh)
	}
	if r := len(src) - n; r > 0 {
		var in, out [16]float32
		copy(in[:], src[n:])
		kern(&out[0], &in[0], 16, mu, sc, sh)
		copy(dst[n:], out[:r])
	}
}
