//go:build !amd64 || purego

package cpu

const (
	useAVX512 = false
	useAVX2   = false
)

// rowMax returns max(m, max(x)).
func rowMax(x []float32, m float32) float32 {
	for _, v := range x {
		m = max(m, v)
	}
	return m
}

// expSub sets x[i] = exp(x[i]-mx) and returns their sum.
func expSub(x []float32, mx float32) float64 {
	var sum float64
	for j, v := range x {
		p := expf(v - mx)
		x[j] = p
		sum += float64(p)
	}
	return sum
}

// scaleAdd sets o[i] = o[i]·a + t[i].
func scaleAdd(o, t []float32, a float32) {
	t = t[:len(o)]
	for j := range o {
		o[j] = o[j]*a + t[j]
	}
}
