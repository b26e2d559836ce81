//go:build gpu

package gpucheck

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/zimage/zimage/cuda"
	"github.com/zimage/zimage/cuda/synthetic"
	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage"
	"github.com/zimage/zimage/zimage/imageproc"
	"github.com/zimage/zimage/zimage/vae"
)

// TestGPUEdit runs every img2img and inpaint fixture case (VAE encoder with
// its stride-2 downsamples, noising, inpaint blend, decode) on the GPU with
// the tiny model: in f32 the CPU backend's criterion against the reference
// PNG, in bf16 a mean difference below 3 levels.
func TestGPUEdit(t *testing.T) {
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	cases := fixturefs.EditCases(t)
	for _, prec := range []cuda.Precision{cuda.F32, cuda.BF16} {
		t.Run(prec.String(), func(t *testing.T) {
			b := gpuBackend(t, cuda.Options{Precision: prec})
			p, err := zimage.Load(context.Background(), dir, zimage.WithBackend(b))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			for _, c := range cases {
				req := zimage.Request{Prompt: c.Prompt, Width: c.Width, Height: c.Height, Seed: c.Seed, Steps: c.Steps, Strength: c.Strength}
				if req.Image, err = imageproc.DecodeFile(fixturefs.Path(t, "fixtures/"+c.Dir+"/"+c.InitPNG), 0); err != nil {
					t.Fatal(err)
				}
				if c.MaskPNG != "" {
					if req.Mask, err = imageproc.DecodeFile(fixturefs.Path(t, "fixtures/"+c.Dir+"/"+c.MaskPNG), 0); err != nil {
						t.Fatal(err)
					}
				}
				res, err := p.Run(context.Background(), req)
				if err != nil {
					t.Fatalf("%s/%s: %v", c.Dir, c.Name, err)
				}
				want := fixturefs.ReadPNG(t, fixturefs.Path(t, "fixtures/"+c.Dir+"/"+c.Name+".png"))
				d := fixturefs.ComparePixels(t, fixturefs.RGB(res.Image), want)
				t.Logf("%s %s/%s: %.3f%% >1 level off, max %d, mean %.3f (encode %v, total %v)", prec, c.Dir, c.Name,
					100*d.FracOff1(), d.Max, d.Mean, res.Timings.EncodeImage, res.Timings.Total)
				if prec == cuda.F32 && (d.FracOff1() > 0.001 || d.Max > 4) || d.Mean > 3 {
					t.Errorf("%s/%s: image differs from the reference", c.Dir, c.Name)
				}
			}
		})
	}
}

// TestGPUEditEncoder times the real-size VAE encoder (synthetic bf16
// weights) at 512² and 1024²: warm-up, then the timed encode, with the
// backend's peak memory above the weights.
func TestGPUEditEncoder(t *testing.T) {
	b := gpuBackend(t, cuda.Options{SyntheticWeights: true})
	cfg := weights.DefaultVAEConfig()
	enc, err := vae.NewEncoder(b, cfg, synthetic.VAEEncoder(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	for _, n := range []int{512, 1024} {
		img := make([]float32, 3*n*n)
		r := rand.New(rand.NewPCG(1, uint64(n)))
		for i := range img {
			img[i] = 2*r.Float32() - 1
		}
		resident := b.CurrentBytes()
		b.ResetPeak()
		var d time.Duration
		for i := 0; i < 2; i++ {
			t0 := time.Now()
			if _, err := enc.Encode(context.Background(), img, n, n, nil); err != nil {
				t.Fatalf("%d²: %v", n, err)
			}
			d = time.Since(t0)
		}
		t.Logf("encoder %dx%d: %v, activation peak %.2f GB", n, n, d.Round(10*time.Microsecond), float64(b.PeakBytes()-resident)/1e9)
	}
}
