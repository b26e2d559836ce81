package bench

import (
	"context"
	"testing"
	"time"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/cpu/gemm"
)

// BenchmarkVAEDecodeWinograd decodes with the MEDIUM decoder of
// BenchmarkVAEDecodeMedium in bf16, each iteration once with the direct
// 3×3 convolutions (gemm.WinogradOff) and once with gemm.WinogradAuto,
// alternating so that both see the same machine load; it reports seconds
// and CPU seconds per decode of each:
//
//	go test -run '^$' -bench VAEDecodeWinograd -benchtime 3x ./bench/
//
// The "real" cases use the real decoder's channels (128/256/512/512).
func BenchmarkVAEDecodeWinograd(b *testing.B) {
	medium := weights.DefaultVAEConfig()
	medium.BlockOutChannels = []int{64, 128, 128, 128}
	real := weights.DefaultVAEConfig()
	for _, c := range []struct {
		name string
		cfg  weights.VAEConfig
		side int
	}{{"256", medium, 256}, {"512", medium, 512}, {"real/256", real, 256}, {"real/512", real, 512}} {
		cfg, side := c.cfg, c.side
		b.Run(c.name, func(b *testing.B) {
			d, x, hl := randomDecoder(b, cfg, true, side)
			defer d.Close()
			defer gemm.SetWinograd(gemm.SetWinograd(gemm.WinogradAuto))
			modes := []gemm.WinogradMode{gemm.WinogradOff, gemm.WinogradAuto}
			var wall, cpuS [2]float64
			b.ResetTimer()
			for range b.N {
				for i, m := range modes {
					gemm.SetWinograd(m)
					t0, c0 := time.Now(), cpuSeconds()
					if _, err := d.Decode(context.Background(), x, hl, hl, nil); err != nil {
						b.Fatal(err)
					}
					wall[i] += time.Since(t0).Seconds()
					cpuS[i] += cpuSeconds() - c0
				}
			}
			n := float64(b.N)
			b.ReportMetric(wall[0]/n, "direct-s/op")
			b.ReportMetric(wall[1]/n, "wino-s/op")
			b.ReportMetric(cpuS[0]/n, "direct-cpu-s/op")
			b.ReportMetric(cpuS[1]/n, "wino-cpu-s/op")
		})
	}
}
