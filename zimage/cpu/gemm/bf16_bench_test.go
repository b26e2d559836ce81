package gemm

import (
	"fmt"
	"math/rand/v2"
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

// BenchmarkGEMMQ80 runs the Q8_0 GEMM (VPDPBUSD) next to the float32 GEMM
// on bf16 weights of the same shape. GOP/s counts 2 ops per multiply-add;
// GOP/cpu-s divides by the process's CPU time (steadier on a shared
// machine). GEMM_SHAPE=MxKxN picks one shape.
func BenchmarkGEMMQ80(b *testing.B) {
	shapes := []shape{{1024, 3840, 3840}, {512, 2560, 9728}}
	if s := os.Getenv("GEMM_SHAPE"); s != "" {
		var sh shape
		fmt.Sscanf(s, "%dx%dx%d", &sh.m, &sh.k, &sh.n)
		shapes = []shape{sh}
	}
	r := rand.New(rand.NewPCG(1, 1))
	for _, sh := range shapes {
		a := randSlice(r, sh.m*sh.k)
		bq := randQ80(r, sh.n, sh.k)
		bw := make([]byte, 2*sh.n*sh.k)
		weights.EncodeBF16(bw, randSlice(r, sh.n*sh.k))
		c := make([]float32, sh.m*sh.n)
		ops := 2 * float64(sh.m) * float64(sh.n) * float64(sh.k)
		pb, err := PackQ80(bq, sh.n, sh.k)
		if err != nil {
			b.Fatal(err)
		}
		for _, mode := range []string{"f32", "bf16", "q8_0", "q8_0packed"} {
			b.Run(fmt.Sprintf("%s/%dx%dx%d", mode, sh.m, sh.k, sh.n), func(b *testing.B) {
				c0 := cpuTime()
				for b.Loop() {
					var err error
					switch mode {
					case "q8_0":
						err = MatMulBTQ80(c, a, bq, nil, sh.m, sh.n, sh.k)
					case "q8_0packed":
						err = MatMulBTQ80PackedCtx(b.Context(), c, a, pb, nil, sh.m)
					case "bf16":
						err = MatMulBTBF16(c, a, bw, weights.BF16, nil, sh.m, sh.n, sh.k)
					default:
						err = MatMulBT(c, a, bw, weights.BF16, nil, sh.m, sh.n, sh.k)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(ops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GOP/s")
				b.ReportMetric(ops*float64(b.N)/(cpuTime()-c0).Seconds()/1e9, "GOP/cpu-s")
			})
		}
	}
}

// BenchmarkKernelQ8 measures the Q8_0 tile kernel on panels in L1/L2 (64
// blocks = 2048 k values): its single-thread peak, in GOP (2 per int8
// multiply-add).
func BenchmarkKernelQ8(b *testing.B) {
	const nb = 64
	a := make([]byte, nb*q8Block*q8MR)
	da := make([]float32, nb*q8MR)
	bq := make([]int8, nb*q8Block*q8NR)
	db := make([]float32, nb*q8NR)
	corr := make([]int32, nb*q8NR)
	c := make([]float32, q8MR*q8NR)
	ks, _ := archQ8Kernels()
	for _, k := range append([]q8Tile{genericQ8}, ks...) {
		b.Run(k.name, func(b *testing.B) {
			c0 := cpuTime()
			for b.Loop() {
				k.fn(a, da, bq, db, corr, c, q8NR, nb)
			}
			ops := float64(2*q8MR*q8NR*nb*q8Block) * float64(b.N)
			b.ReportMetric(ops/b.Elapsed().Seconds()/1e9, "GOP/s")
			b.ReportMetric(ops/(cpuTime()-c0).Seconds()/1e9, "GOP/cpu-s")
		})
	}
}
