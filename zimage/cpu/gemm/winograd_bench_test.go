package gemm

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkConvWinograd compares the direct bf16 3×3 convolution with Winograd
// on VAE-like shapes (ci→co channels, side² map, pad 1). GFLOP/s counts the
// direct convolution's flops (2·co·ci·9 per output pixel), so Winograd's
// figure is "effective"; GFLOP/cpu-s is per CPU second of the process (all
// threads), steadier on a shared machine.
//
//	go test -run '^$' -bench ConvWinograd ./zimage/cpu/gemm/
func BenchmarkConvWinograd(b *testing.B) {
	needBF16Dot(b)
	shapes := []struct{ ci, co, side int }{
		{16, 128, 32}, {16, 128, 64}, {32, 32, 64}, {64, 64, 64}, {64, 64, 128}, {64, 64, 256},
		{128, 128, 16}, {128, 128, 32}, {128, 128, 64}, {128, 128, 128}, {128, 64, 256},
		{256, 256, 64}, {512, 512, 16}, {512, 512, 32},
	}
	r := rand.New(rand.NewPCG(45, 46))
	for _, s := range shapes {
		a := randSlice(r, s.co*s.ci*9)
		x := randSlice(r, s.ci*s.side*s.side)
		bias := randSlice(r, s.co)
		c := make([]float32, s.co*s.side*s.side)
		for _, mode := range []WinogradMode{WinogradOff, WinogradOn} {
			name := fmt.Sprintf("%dto%d/%d/direct", s.ci, s.co, s.side)
			if mode == WinogradOn {
				name = name[:len(name)-len("direct")] + "winograd"
			}
			b.Run(name, func(b *testing.B) {
				defer SetWinograd(SetWinograd(mode))
				c0 := cpuTime()
				for b.Loop() {
					if err := ConvBiasCtx(b.Context(), true, c, a, x, bias, s.co, s.ci, s.side, s.side, 3, 3, 1, s.side, s.side); err != nil {
						b.Fatal(err)
					}
				}
				flops := 2 * float64(s.co*s.ci*9*s.side*s.side)
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				b.ReportMetric(flops*float64(b.N)/(cpuTime()-c0).Seconds()/1e9, "GFLOP/cpu-s")
			})
		}
	}
}
