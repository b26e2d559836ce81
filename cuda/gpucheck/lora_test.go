//go:build gpu

package gpucheck

import (
	"context"
	"testing"

	"github.com/zimage/zimage/cuda"
	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/zimage"
)

// TestGPULoRA generates every e2e_lora fixture image on the GPU with LoRA
// adapters applied at run time (registered, selected per request), and the
// stacked case merged at Load: in f32 within the CPU criterion (≤ 0.1% of
// values more than one level off, none more than 4), in bf16 a mean
// difference below 3 levels.
func TestGPULoRA(t *testing.T) {
	cases := fixturefs.LoRACases(t)
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	lpath := func(f string) string { return fixturefs.Path(t, "fixtures/e2e_lora/"+f) }
	check := func(t *testing.T, prec cuda.Precision, name, mode string, res *zimage.Result) {
		want := fixturefs.ReadPNG(t, lpath(name+".png"))
		d := fixturefs.ComparePixels(t, fixturefs.RGB(res.Image), want)
		t.Logf("lora %s %s %s: %.3f%% >1 level off, max %d, mean %.3f (%v total)", mode, prec, name, 100*d.FracOff1(), d.Max, d.Mean, res.Timings.Total)
		if prec == cuda.F32 && (d.FracOff1() > 0.001 || d.Max > 4) || d.Mean > 3 {
			t.Errorf("%s %s: image differs from the reference", mode, name)
		}
	}
	for _, prec := range []cuda.Precision{cuda.F32, cuda.BF16} {
		t.Run(prec.String(), func(t *testing.T) {
			b := gpuBackend(t, cuda.Options{Precision: prec})
			p, err := zimage.Load(context.Background(), dir, zimage.WithBackend(b))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			var last fixturefs.LoRACase
			for _, c := range cases {
				req := zimage.Request{Prompt: c.Prompt, Width: c.Width, Height: c.Height, Seed: c.Seed, Steps: c.Steps}
				for _, l := range c.LoRAs {
					if err := p.LoadLoRA(l.Adapter, lpath(l.File)); err != nil {
						t.Fatal(err)
					}
					req.LoRAs = append(req.LoRAs, zimage.LoRA{Name: l.Adapter, Scale: l.Scale})
				}
				res, err := p.Run(context.Background(), req)
				if err != nil {
					t.Fatalf("%s: %v", c.Name, err)
				}
				check(t, prec, c.Name, "runtime", res)
				last = c
			}
			var opts []zimage.Option
			for _, l := range last.LoRAs {
				opts = append(opts, zimage.WithLoRA(lpath(l.File), l.Scale))
			}
			pm, err := zimage.Load(context.Background(), dir, append(opts, zimage.WithBackend(b))...)
			if err != nil {
				t.Fatal(err)
			}
			defer pm.Close()
			res, err := pm.Run(context.Background(), zimage.Request{Prompt: last.Prompt, Width: last.Width, Height: last.Height, Seed: last.Seed, Steps: last.Steps})
			if err != nil {
				t.Fatal(err)
			}
			check(t, prec, last.Name, "merged", res)
		})
	}
}
