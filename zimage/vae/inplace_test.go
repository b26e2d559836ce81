package vae_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/zimage/zimage/cuda/fused"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
	"github.com/zimage/zimage/zimage/cpu/gemm"
	"github.com/zimage/zimage/zimage/vae"
)

// sequenceOnly hides the CPU backend's upsampling convolution and in-place
// ops, so the decoder runs the plain op sequence; the fused chains stay
// (the in-place GroupNormSiLU is their arithmetic).
type sequenceOnly struct {
	compute.Backend
	fused.Ops
}

// raggedConfig has channel counts that are not multiples of 16, a channel
// change in every up block and three upsampling levels.
func raggedConfig() weights.VAEConfig { return smallConfig([]int{24, 40, 72, 72}, 8) }

// TestDecodeInPlaceMatchesSequence decodes odd-sized latents with the CPU
// backend's upsampling convolution and in-place ops and with the plain op
// sequence: the images are identical bit for bit, in fp32 and bf16, with
// the bf16 3×3 convolutions as Winograd and direct, decoded whole and in
// tiles.
func TestDecodeInPlaceMatchesSequence(t *testing.T) {
	defer gemm.SetWinograd(gemm.SetWinograd(gemm.WinogradAuto))
	cfg := raggedConfig()
	src := newRandomVAE(cfg, 9)
	rng := rand.New(rand.NewPCG(10, 11))
	for _, bf := range []bool{false, true} {
		for _, mode := range []gemm.WinogradMode{gemm.WinogradOff, gemm.WinogradOn} {
			if !bf && mode == gemm.WinogradOn {
				continue // fp32 has no Winograd
			}
			gemm.SetWinograd(mode)
			for _, sz := range [][2]int{{5, 7}, {4, 4}} {
				h, w := sz[0], sz[1]
				name := fmt.Sprintf("bf16=%v wino=%d %dx%d", bf, mode, h, w)
				lat := make([]float32, cfg.LatentChannels*h*w)
				for i := range lat {
					lat[i] = float32(rng.NormFloat64())
				}
				decode := func(b compute.Backend) []float32 {
					d, err := vae.New(b, cfg, src)
					if err != nil {
						t.Fatal(err)
					}
					defer d.Close()
					img, err := d.Decode(context.Background(), lat, h, w, nil)
					if err != nil {
						t.Fatal(name, err)
					}
					tiled, err := d.DecodeTiled(context.Background(), lat, h, w, 16)
					if err != nil {
						t.Fatal(name, err)
					}
					return append(img, tiled...)
				}
				got := decode(cpu.New(cpu.WithBF16(bf)))
				sb := cpu.New(cpu.WithBF16(bf))
				want := decode(sequenceOnly{sb, sb})
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("%s: image[%d] = %v, sequence %v", name, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// TestDecodeCancelMidway cancels a decode after its first up block: Decode
// returns the context's error, and after ResetErr the same decoder decodes
// the latent as before.
func TestDecodeCancelMidway(t *testing.T) {
	cfg := raggedConfig()
	b := cpu.New(cpu.WithBF16(true))
	d, err := vae.New(b, cfg, newRandomVAE(cfg, 12))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	h, w := 6, 5
	lat := make([]float32, cfg.LatentChannels*h*w)
	for i := range lat {
		lat[i] = float32(i%7) - 3
	}
	want, err := d.Decode(context.Background(), lat, h, w, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.SetContext(ctx)
	_, err = d.Decode(ctx, lat, h, w, func(name string, _ compute.Tensor) {
		if name == "up_blocks.0" {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled decode: err %v, want context.Canceled", err)
	}
	b.SetContext(nil)
	b.ResetErr()
	got, err := d.Decode(context.Background(), lat, h, w, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("decode after cancellation: image[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}
