package weights

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkQuantize: one 3840×256 weight (983040 values) per op, per type.
func BenchmarkQuantize(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, 3840*256)
	for i := range x {
		x[i] = float32(0.02 * rng.NormFloat64())
	}
	for _, dt := range []DType{Q4_0, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K} {
		q := make([]byte, len(x)/dt.BlockSize()*dt.BlockBytes())
		b.Run(dt.String(), func(b *testing.B) {
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				if err := Quantize(q, x, dt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
