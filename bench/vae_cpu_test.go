package bench

import (
	"context"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/zimage/zimage/cuda/synthetic"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/cpu"
	"github.com/zimage/zimage/zimage/vae"
)

// BenchmarkVAEDecodeMedium times one CPU VAE decode per iteration with the
// cpu-anchor MEDIUM model's decoder (FLUX layout, channels 64/128/128/128,
// 2 layers per block, 32 groups; random weights) in float32 and bf16 at
// 256² and 512². The profile target of the VAE convolution work:
//
//	go test -run '^$' -bench VAEDecodeMedium/512 -benchtime 2x -cpuprofile vae.prof ./bench/
func BenchmarkVAEDecodeMedium(b *testing.B) {
	cfg := weights.DefaultVAEConfig()
	cfg.BlockOutChannels = []int{64, 128, 128, 128}
	for _, side := range []int{256, 512} {
		for _, prec := range []string{"fp32", "bf16"} {
			b.Run(strconv.Itoa(side)+"/"+prec, func(b *testing.B) {
				d, x, hl := randomDecoder(b, cfg, prec == "bf16", side)
				defer d.Close()
				b.ResetTimer()
				for range b.N {
					if _, err := d.Decode(context.Background(), x, hl, hl, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// randomDecoder builds a CPU VAE decoder of cfg with random weights and a
// random latent for a side×side image ([C, hl, hl], hl = side/8).
func randomDecoder(b *testing.B, cfg weights.VAEConfig, bf16 bool, side int) (d *vae.Decoder, x []float32, hl int) {
	b.Helper()
	d, err := vae.New(cpu.New(cpu.WithBF16(bf16)), cfg, randomWeights(synthetic.VAE(cfg)))
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 3))
	hl = side / 8
	x = make([]float32, cfg.LatentChannels*hl*hl)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return d, x, hl
}
