package gemm

import (
	"fmt"
	"testing"
)

// BenchmarkKernel measures one micro-kernel on panels that stay in L1/L2
// (kc=256), i.e. its peak single-thread throughput.
func BenchmarkKernel(b *testing.B) {
	for _, kern := range kernels {
		const kc = 256
		a := make([]float32, kern.mr*kc)
		bp := make([]float32, kern.nr*kc)
		c := make([]float32, kern.mr*kern.nr)
		for i := range a {
			a[i] = 1
		}
		b.Run(fmt.Sprintf("%s/%dx%d", kern.name, kern.mr, kern.nr), func(b *testing.B) {
			for b.Loop() {
				kern.fn(kc, a, bp, c, kern.nr, true)
			}
			b.ReportMetric(float64(2*kern.mr*kern.nr*kc)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkBlocked runs whole GEMMs (float32 B, 2 threads) once per kernel;
// it is the tuning loop for the block sizes.
func BenchmarkBlocked(b *testing.B) {
	for _, sh := range []shape{{1024, 3840, 3840}, {512, 9728, 2560}} {
		a := make([]float32, sh.m*sh.k)
		bm := make([]float32, sh.n*sh.k)
		c := make([]float32, sh.m*sh.n)
		for i := range a {
			a[i] = float32(i%7) - 3
		}
		for i := range bm {
			bm[i] = float32(i%5) - 2
		}
		for _, kern := range kernels[:len(kernels)-1] {
			b.Run(fmt.Sprintf("%s/%dx%dx%d", kern.name, sh.m, sh.k, sh.n), func(b *testing.B) {
				prev, _ := useKernel(kern.name)
				defer func() { active = prev }()
				for b.Loop() {
					if err := MatMulBTF32(c, a, bm, nil, sh.m, sh.n, sh.k); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(2*float64(sh.m*sh.n*sh.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
