package gemm

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/zimage/zimage/weights"
)

// BenchmarkGEMMBF16Stream runs the DiT's linear shapes at 256² (M = 288
// tokens, K = 1024) over 24 distinct bf16 weight matrices (192 MB, more than
// the L3), so that every call reads its weights from memory as a denoising
// step does, in float32 and bf16 compute. GFLOP/cpu-s divides by the
// process's CPU time (steadier on a shared machine).
func BenchmarkGEMMBF16Stream(b *testing.B) {
	const m, k, n, nw = 288, 1024, 4096, 24
	r := rand.New(rand.NewPCG(1, 2))
	a := randSlice(r, m*k)
	ws := make([][]byte, nw)
	for i := range ws {
		ws[i] = make([]byte, 2*n*k)
		weights.EncodeBF16(ws[i], randSlice(r, n*k))
	}
	c := make([]float32, m*n)
	for _, mode := range []string{"f32", "bf16"} {
		b.Run(fmt.Sprintf("%s/%dx%dx%d", mode, m, k, n), func(b *testing.B) {
			c0 := cpuTime()
			calls := 0
			for b.Loop() {
				for _, w := range ws {
					var err error
					if mode == "bf16" {
						err = MatMulBTBF16(c, a, w, weights.BF16, nil, m, n, k)
					} else {
						err = MatMulBT(c, a, w, weights.BF16, nil, m, n, k)
					}
					if err != nil {
						b.Fatal(err)
					}
					calls++
				}
			}
			flops := 2 * float64(m*n*k) * float64(calls)
			b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			b.ReportMetric(flops/(cpuTime()-c0).Seconds()/1e9, "GFLOP/cpu-s")
		})
	}
}
