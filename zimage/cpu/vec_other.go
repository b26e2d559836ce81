//go:build !amd64 || purego

package cpu

// siluVec sets dst[i] = silu(src[i]).
func siluVec(dst, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = silu(v)
	}
}

// swigluVec sets dst[i] = silu(gate[i])·up[i].
func swigluVec(dst, gate, up []float32) {
	dst, up = dst[:len(gate)], up[:len(gate)]
	for i, v := range gate {
		dst[i] = silu(v) * up[i]
	}
}

// sumBlock returns Σ x.
func sumBlock(x []float32) float64 {
	var s float64
	for _, v := range x {
		s += float64(v)
	}
	return s
}

// sqDevBlock returns Σ (x-mu)².
func sqDevBlock(x []float32, mu float32) float64 {
	var s float64
	for _, v := range x {
		d := float64(v - mu)
		s += d * d
	}
	return s
}

// affine sets dst[i] = (src[i]-mu)·sc + sh.
func affine(dst, src []float32, mu, sc, sh float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = float32((v-mu)*sc) + sh
	}
}
