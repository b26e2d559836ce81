package gemm

import (
	"fmt"
	"os"
	"testing"

	"github.com/zimage/zimage/weights"
)

// BenchmarkKernelBF16 measures the VDPBF16PS micro-kernel on panels that
// stay in L1/L2 (kc = 256 pairs = 512 k values): its single-thread peak.
// GFLOP/s counts 2 flops per multiply-add of the bf16 products.
func BenchmarkKernelBF16(b *testing.B) {
	kern, ok := archBF16Kernel()
	if !ok {
		b.Skip("CPU lacks AVX512-BF16")
	}
	kq := 256
	a := make([]float32, kern.mr*kq)
	bp := make([]float32, kern.nr*kq)
	c := make([]float32, kern.mr*kern.nr)
	b.Run(fmt.Sprintf("%s/%dx%d", kern.name, kern.mr, kern.nr), func(b *testing.B) {
		c0 := cpuTime()
		for b.Loop() {
			kern.fn(kq, a, bp, c, kern.nr, kern.nr, true)
		}
		flops := float64(2*kern.mr*kern.nr*2*kq) * float64(b.N)
		b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		b.ReportMetric(flops/(cpuTime()-c0).Seconds()/1e9, "GFLOP/cpu-s")
	})
}

// BenchmarkGEMMBF16 compares whole GEMMs with bf16 weights (the networks'
// C = A·Bᵀ) in float32 and bf16 compute, at the configured thread count.
// GEMM_SHAPE=MxKxN picks one shape.
func BenchmarkGEMMBF16(b *testing.B) {
	shapes := []shape{{1024, 3840, 3840}, {4096, 3840, 3840}, {512, 2560, 9728}}
	if s := os.Getenv("GEMM_SHAPE"); s != "" {
		var sh shape
		fmt.Sscanf(s, "%dx%dx%d", &sh.m, &sh.k, &sh.n)
		shapes = []shape{sh}
	}
	for _, sh := range shapes {
		a := make([]float32, sh.m*sh.k)
		for i := range a {
			a[i] = float32(i%7) - 3
		}
		bv := make([]float32, sh.n*sh.k)
		for i := range bv {
			bv[i] = float32(i%5) - 2
		}
		bw := make([]byte, 2*len(bv))
		weights.EncodeBF16(bw, bv)
		c := make([]float32, sh.m*sh.n)
		flops := 2 * float64(sh.m) * float64(sh.n) * float64(sh.k)
		for _, mode := range []string{"f32", "bf16"} {
			b.Run(fmt.Sprintf("%s/%dx%dx%d", mode, sh.m, sh.k, sh.n), func(b *testing.B) {
				for b.Loop() {
					var err error
					if mode == "bf16" {
						err = MatMulBTBF16(c, a, bw, weights.BF16, nil, sh.m, sh.n, sh.k)
					} else {
						err = MatMulBT(c, a, bw, weights.BF16, nil, sh.m, sh.n, sh.k)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
