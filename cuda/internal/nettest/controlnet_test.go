package nettest

import (
	"context"
	"image"
	"path/filepath"
	"testing"

	"github.com/zimage/zimage/cuda"
	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/zimage"
	"github.com/zimage/zimage/zimage/imageproc"
)

// controlRequest is the Run request of a ControlNet fixture case.
func controlRequest(t *testing.T, c fixturefs.ControlCase) zimage.Request {
	t.Helper()
	dir := "fixtures/e2e_controlnet/"
	dec := func(name string) image.Image {
		img, err := imageproc.DecodeFile(fixturefs.Path(t, dir+name), 0)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	req := zimage.Request{Prompt: c.Prompt, Width: c.Width, Height: c.Height, Seed: c.Seed, Steps: c.Steps,
		Control: &zimage.Control{Image: dec(c.ControlPNG), Scale: c.Scale}}
	if c.InitPNG != "" {
		req.Image, req.Mask = dec(c.InitPNG), dec(c.MaskPNG)
	}
	return req
}

// TestControlNetOnFakeGPU runs the ControlNet-inpaint case (f32) and a
// ControlNet case with a control image resized 2× → 1× (bf16) through the
// pipeline on the CUDA backend (control blocks, hints added after the main layers, VAE mode
// encodes): in f32 the CPU backend's criterion against the reference PNG;
// in bf16 a mean difference below 3 levels.
func TestControlNetOnFakeGPU(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: the kernels run on CPU threads")
	}
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	cn := filepath.Join(fixturefs.Path(t, "fixtures/e2e_controlnet"), "controlnet")
	var cases []fixturefs.ControlCase
	for _, c := range fixturefs.ControlCases(t) {
		if c.InitPNG != "" {
			cases = append([]fixturefs.ControlCase{c}, cases...)
		} else if c.Resized && len(cases) < 2 {
			cases = append(cases, c)
		}
	}
	if len(cases) != 2 {
		t.Fatalf("%d controlnet cases", len(cases))
	}
	// One case per precision keeps the test short (the kernels run on CPU threads).
	for i, prec := range []cuda.Precision{cuda.F32, cuda.BF16} {
		cases := cases[i : i+1]
		t.Run(prec.String(), func(t *testing.T) {
			b := fakeBackend(t, prec)
			p, err := zimage.Load(context.Background(), dir, zimage.WithBackend(b), zimage.WithControlNet(cn))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			for _, c := range cases {
				res, err := p.Run(context.Background(), controlRequest(t, c))
				if err != nil {
					t.Fatalf("%s: %v", c.Name, err)
				}
				want := fixturefs.ReadPNG(t, fixturefs.Path(t, "fixtures/e2e_controlnet/"+c.Name+".png"))
				d := fixturefs.ComparePixels(t, fixturefs.RGB(res.Image), want)
				t.Logf("%s %s: %.3f%% values >1 level off, max %d, mean |Δ| %.3f", prec, c.Name, 100*d.FracOff1(), d.Max, d.Mean)
				if prec == cuda.F32 && (d.FracOff1() > 0.001 || d.Max > 4) || d.Mean > 3 {
					t.Errorf("%s: image differs from the reference", c.Name)
				}
			}
		})
	}
}
