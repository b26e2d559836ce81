package gemm

import (
	"fmt"
	"sync"
	"testing"
)

// BenchmarkNested runs attention-sized products from 2 goroutines at once
// (as the CPU backend's parallel attention does), with the GEMM itself
// using 1 or 2 threads.
func BenchmarkNested(b *testing.B) {
	const m, n, k = 256, 512, 128
	for _, th := range []int{1, 2} {
		b.Run(fmt.Sprintf("inner%d", th), func(b *testing.B) {
			SetThreads(th)
			defer SetThreads(0)
			c0 := cpuTime()
			for b.Loop() {
				var wg sync.WaitGroup
				for g := 0; g < 2; g++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						a := make([]float32, m*k)
						bm := make([]float32, n*k)
						c := make([]float32, m*n)
						for r := 0; r < 16; r++ {
							_ = MatMulBTF32(c, a, bm, nil, m, n, k)
						}
					}()
				}
				wg.Wait()
			}
			flops := 2 * 2 * 16 * float64(m*n*k) * float64(b.N)
			b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			b.ReportMetric(flops/(cpuTime()-c0).Seconds()/1e9, "GFLOP/cpu-s")
		})
	}
}
