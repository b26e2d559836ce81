package gemm

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/zimage/zimage/weights"
)

// BenchmarkGEMMBF16Packed compares, per shape M×K×N with bf16 weights, the
// bf16 GEMM packing B on every call ("bf16"), on a pre-packed B
// ("packed"), and ws products of the same A ("sep": ws separate calls on
// packed weights; "multi": one MatMulBTBF16MultiCtx) — q, k, v (ws = 3)
// and w1, w3 (ws = 2). GFLOP/cpu-s divides by the process's CPU time
// (steadier on a shared machine). GEMM_SHAPE=MxKxN picks one shape,
// GEMM_WS the number of shared-input weights.
func BenchmarkGEMMBF16Packed(b *testing.B) {
	type bshape struct {
		shape // {m, n, k}
		ws    int
	}
	shapes := []bshape{{shape{1024, 3840, 3840}, 3}, {shape{288, 1024, 1024}, 3}, {shape{1056, 2730, 1024}, 2}, {shape{1056, 1024, 2730}, 1}}
	if s := os.Getenv("GEMM_SHAPE"); s != "" {
		var sh bshape
		fmt.Sscanf(s, "%dx%dx%d", &sh.m, &sh.k, &sh.n)
		sh.ws = 3
		envInt("GEMM_WS", &sh.ws)
		shapes = []bshape{sh}
	}
	ctx := context.Background()
	for _, sh := range shapes {
		a := make([]float32, sh.m*sh.k)
		for i := range a {
			a[i] = float32(i%7) - 3
		}
		var raws [][]byte
		var ps []*BF16Packed
		var cs [][]float32
		for w := range sh.ws {
			bv := make([]float32, sh.n*sh.k)
			for i := range bv {
				bv[i] = float32((i+w)%5) - 2
			}
			bw := make([]byte, 2*len(bv))
			weights.EncodeBF16(bw, bv)
			p, err := PackBF16(bw, weights.BF16, sh.n, sh.k)
			if err != nil {
				b.Fatal(err)
			}
			raws, ps, cs = append(raws, bw), append(ps, p), append(cs, make([]float32, sh.m*sh.n))
		}
		modes := []string{"bf16", "packed"}
		if sh.ws > 1 {
			modes = append(modes, "sep", "multi")
		}
		for _, mode := range modes {
			nw := 1
			if mode == "sep" || mode == "multi" {
				nw = sh.ws
			}
			flops := 2 * float64(sh.m) * float64(sh.n) * float64(sh.k) * float64(nw)
			b.Run(fmt.Sprintf("%s/%dx%dx%dx%d", mode, sh.m, sh.k, sh.n, nw), func(b *testing.B) {
				c0 := cpuTime()
				for b.Loop() {
					var err error
					switch mode {
					case "bf16":
						err = MatMulBTBF16Ctx(ctx, cs[0], a, raws[0], weights.BF16, nil, sh.m, sh.n, sh.k)
					case "packed":
						err = MatMulBTBF16PackedCtx(ctx, cs[0], a, ps[0], nil, sh.m, sh.n, sh.k)
					case "sep":
						for i := range ps {
							if err = MatMulBTBF16PackedCtx(ctx, cs[i], a, ps[i], nil, sh.m, sh.n, sh.k); err != nil {
								break
							}
						}
					case "multi":
						err = MatMulBTBF16MultiCtx(ctx, cs, a, ps, nil, sh.m, sh.k)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				b.ReportMetric(flops*float64(b.N)/(cpuTime()-c0).Seconds()/1e9, "GFLOP/cpu-s")
			})
		}
	}
}
