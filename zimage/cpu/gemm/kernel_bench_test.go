package gemm

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/zimage/zimage/weights"
)

// envInt overrides a tuning knob from the environment (benchmarks only).
func envInt(name string, v *int) {
	if x, err := strconv.Atoi(os.Getenv(name)); err == nil && x > 0 {
		*v = x
	}
}

// BenchmarkKernel measures one micro-kernel on panels that stay in L1/L2
// (kc=256), i.e. its peak single-thread throughput.
func BenchmarkKernel(b *testing.B) {
	for _, kern := range kernels {
		kc := 256
		envInt("GEMM_KC", &kc)
		a := make([]float32, kern.mr*kc)
		bp := make([]float32, kern.nr*kc)
		c := make([]float32, kern.mr*kern.nr)
		for i := range a {
			a[i] = 1
		}
		b.Run(fmt.Sprintf("%s/%dx%d", kern.name, kern.mr, kern.nr), func(b *testing.B) {
			c0 := cpuTime()
			for b.Loop() {
				kern.fn(kc, a, bp, c, kern.nr, kern.nr, true)
			}
			flops := float64(2*kern.mr*kern.nr*kc) * float64(b.N)
			b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			b.ReportMetric(flops/(cpuTime()-c0).Seconds()/1e9, "GFLOP/cpu-s")
		})
	}
}

// BenchmarkBlocked runs whole GEMMs (float32 B, 2 threads) once per kernel;
// it is the tuning loop for the block sizes.
func BenchmarkBlocked(b *testing.B) {
	defer func(k, m, n int) { kcMax, mcMax, ncMax = k, m, n }(kcMax, mcMax, ncMax)
	envInt("GEMM_KC", &kcMax)
	envInt("GEMM_MC", &mcMax)
	envInt("GEMM_NC", &ncMax)
	shapes := []shape{{1024, 3840, 3840}, {512, 9728, 2560}}
	if s := os.Getenv("GEMM_SHAPE"); s != "" {
		var sh shape
		fmt.Sscanf(s, "%dx%dx%d", &sh.m, &sh.k, &sh.n)
		shapes = []shape{sh}
	}
	for _, sh := range shapes {
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
				c0 := cpuTime()
				for b.Loop() {
					if err := MatMulBTF32(c, a, bm, nil, sh.m, sh.n, sh.k); err != nil {
						b.Fatal(err)
					}
				}
				flops := 2 * float64(sh.m*sh.n*sh.k) * float64(b.N)
				b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				b.ReportMetric(flops/(cpuTime()-c0).Seconds()/1e9, "GFLOP/cpu-s")
			})
		}
	}
}

// BenchmarkGEMVBF16 is one M = 1 product with a bf16 matrix, single- and
// multi-threaded; GB/s counts weight bytes.
func BenchmarkGEMVBF16(b *testing.B) {
	for _, sh := range []shape{{1, 3840, 256}, {1, 15360, 3840}} {
		for _, th := range []int{1, 2} {
			a := make([]float32, sh.k)
			raw := make([]byte, sh.n*sh.k*2)
			for i := range raw {
				raw[i] = byte(i*7 + i>>9)
			}
			c := make([]float32, sh.n)
			b.Run(fmt.Sprintf("t%d/1x%dx%d", th, sh.k, sh.n), func(b *testing.B) {
				SetThreads(th)
				defer SetThreads(0)
				for b.Loop() {
					if err := MatMulBT(c, a, raw, weights.BF16, nil, 1, sh.n, sh.k); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(raw))*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
			})
		}
	}
}

// BenchmarkSmall covers the CPU backend's attention tiles (scores Q·Kᵀ and
// P·V) and a VAE conv slice, single-threaded: per-call overhead matters here.
func BenchmarkSmall(b *testing.B) {
	SetThreads(1)
	defer SetThreads(0)
	for _, tc := range []struct {
		name    string
		m, n, k int
		bt      bool
	}{
		{"QK", 256, 512, 128, true},
		{"PV", 256, 128, 512, false},
		{"QK64", 64, 64, 128, true},
		{"conv3", 3, 4096, 1152, false},
		{"conv128", 128, 4096, 1152, false},
	} {
		a := make([]float32, tc.m*tc.k)
		bm := make([]float32, tc.n*tc.k)
		c := make([]float32, tc.m*tc.n)
		b.Run(fmt.Sprintf("%s/%dx%dx%d", tc.name, tc.m, tc.k, tc.n), func(b *testing.B) {
			c0 := cpuTime()
			for b.Loop() {
				var err error
				if tc.bt {
					err = MatMulBTF32(c, a, bm, nil, tc.m, tc.n, tc.k)
				} else {
					err = MatMul(c, a, bm, tc.m, tc.n, tc.k)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			flops := 2 * float64(tc.m*tc.n*tc.k) * float64(b.N)
			b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			b.ReportMetric(flops/(cpuTime()-c0).Seconds()/1e9, "GFLOP/cpu-s")
		})
	}
}

// BenchmarkSmallM compares the unpacked (dot) path with the packed path for
// few rows of A and a bf16 B (text-encoder shapes); it sets gemvMaxM.
func BenchmarkSmallM(b *testing.B) {
	defer func(v int) { gemvMaxM = v }(gemvMaxM)
	const n, k = 4096, 2560
	raw := make([]byte, n*k*2)
	for i := range raw {
		raw[i] = byte(i*7 + i>>9)
	}
	for _, m := range []int{1, 4, 8, 12, 16, 32, 64} {
		a := make([]float32, m*k)
		c := make([]float32, m*n)
		for _, path := range []string{"dot", "packed"} {
			b.Run(fmt.Sprintf("%s/m%d", path, m), func(b *testing.B) {
				gemvMaxM = 0
				if path == "dot" {
					gemvMaxM = m
				}
				c0 := cpuTime()
				for b.Loop() {
					if err := MatMulBT(c, a, raw, weights.BF16, nil, m, n, k); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/op")
				b.ReportMetric(float64((cpuTime()-c0).Microseconds())/float64(b.N), "cpu-µs/op")
			})
		}
	}
}
