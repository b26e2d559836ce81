//go:build gpu

package gpucheck

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/zimage/zimage/cuda"
	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/zimage"
	"github.com/zimage/zimage/zimage/imageproc"
)

// TestGPUControlNet runs every ControlNet and ControlNet-inpaint fixture case
// (control blocks, hints after the main layers, VAE mode encodes) on the GPU
// with the tiny model and the fixture ControlNet: in f32 the CPU backend's
// criterion against the reference PNG, in bf16 a mean difference below 3
// levels.
func TestGPUControlNet(t *testing.T) {
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	cn := filepath.Join(fixturefs.Path(t, "fixtures/e2e_controlnet"), "controlnet")
	cases := fixturefs.ControlCases(t)
	for _, prec := range []cuda.Precision{cuda.F32, cuda.BF16} {
		t.Run(prec.String(), func(t *testing.T) {
			b := gpuBackend(t, cuda.Options{Precision: prec})
			p, err := zimage.Load(context.Background(), dir, zimage.WithBackend(b), zimage.WithControlNet(cn))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			for _, c := range cases {
				req := zimage.Request{Prompt: c.Prompt, Width: c.Width, Height: c.Height, Seed: c.Seed, Steps: c.Steps,
					Control: &zimage.Control{Scale: c.Scale}}
				if req.Control.Image, err = imageproc.DecodeFile(fixturefs.Path(t, "fixtures/e2e_controlnet/"+c.ControlPNG), 0); err != nil {
					t.Fatal(err)
				}
				if c.InitPNG != "" {
					if req.Image, err = imageproc.DecodeFile(fixturefs.Path(t, "fixtures/e2e_controlnet/"+c.InitPNG), 0); err != nil {
						t.Fatal(err)
					}
					if req.Mask, err = imageproc.DecodeFile(fixturefs.Path(t, "fixtures/e2e_controlnet/"+c.MaskPNG), 0); err != nil {
						t.Fatal(err)
					}
				}
				res, err := p.Run(context.Background(), req)
				if err != nil {
					t.Fatalf("%s: %v", c.Name, err)
				}
				want := fixturefs.ReadPNG(t, fixturefs.Path(t, "fixtures/e2e_controlnet/"+c.Name+".png"))
				d := fixturefs.ComparePixels(t, fixturefs.RGB(res.Image), want)
				t.Logf("%s %s: %.3f%% >1 level off, max %d, mean %.3f (encode %v, total %v)", prec, c.Name,
					100*d.FracOff1(), d.Max, d.Mean, res.Timings.EncodeImage, res.Timings.Total)
				if prec == cuda.F32 && (d.FracOff1() > 0.001 || d.Max > 4) || d.Mean > 3 {
					t.Errorf("%s: image differs from the reference", c.Name)
				}
			}
		})
	}
}
