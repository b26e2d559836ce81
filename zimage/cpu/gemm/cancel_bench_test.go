package gemm

import (
	"context"
	"fmt"
	"testing"

	"github.com/zimage/zimage/weights"
)

// BenchmarkCancelOverhead times one DiT-sized bf16 product through the
// plain entry point and through MatMulBTCtx with a live cancellable
// context (the per-task flag load is the only difference).
func BenchmarkCancelOverhead(b *testing.B) {
	const m, k, n = 1024, 3840, 3840
	a := make([]float32, m*k)
	for i := range a {
		a[i] = float32(i%7) - 3
	}
	raw := make([]byte, 2*n*k)
	for i := 0; i < n*k; i++ {
		v := weights.F32ToBF16(float32(i%5) - 2)
		raw[2*i], raw[2*i+1] = byte(v), byte(v>>8)
	}
	c := make([]float32, m*n)
	b.Run(fmt.Sprintf("plain/%dx%dx%d", m, k, n), func(b *testing.B) {
		for b.Loop() {
			if err := MatMulBT(c, a, raw, weights.BF16, nil, m, n, k); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
	b.Run(fmt.Sprintf("ctx/%dx%dx%d", m, k, n), func(b *testing.B) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		for b.Loop() {
			if err := MatMulBTCtx(ctx, c, a, raw, weights.BF16, nil, m, n, k); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
}
