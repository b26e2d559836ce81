package nettest

import (
	"context"
	"testing"

	"github.com/zimage/zimage/cuda"
	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/zimage"
)

// TestLoRAOnFakeGPU runs the stacked-LoRA fixture case on the CUDA backend
// (f32) at run time (two registered adapters) and merged at Load, and
// compares both with the same requests on the CPU backend and with the
// reference PNG.
func TestLoRAOnFakeGPU(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: the kernels run on CPU threads")
	}
	var c fixturefs.LoRACase
	for _, x := range fixturefs.LoRACases(t) {
		if len(x.LoRAs) == 2 {
			c = x
		}
	}
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	want := fixturefs.ReadPNG(t, fixturefs.Path(t, "fixtures/e2e_lora/"+c.Name+".png"))
	req := zimage.Request{Prompt: c.Prompt, Width: c.Width, Height: c.Height, Seed: c.Seed, Steps: c.Steps}
	var merge []zimage.Option
	for _, l := range c.LoRAs {
		req.LoRAs = append(req.LoRAs, zimage.LoRA{Name: l.Adapter, Scale: l.Scale})
		merge = append(merge, zimage.WithLoRA(fixturefs.Path(t, "fixtures/e2e_lora/"+l.File), l.Scale))
	}
	run := func(t *testing.T, opts []zimage.Option, register bool) []byte {
		t.Helper()
		p, err := zimage.Load(context.Background(), dir, opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		r := req
		if register {
			for _, l := range c.LoRAs {
				if err := p.LoadLoRA(l.Adapter, fixturefs.Path(t, "fixtures/e2e_lora/"+l.File)); err != nil {
					t.Fatal(err)
				}
			}
		} else {
			r.LoRAs = nil
		}
		res, err := p.Run(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		return fixturefs.RGB(res.Image)
	}
	for _, mode := range []string{"runtime", "merged"} {
		t.Run(mode, func(t *testing.T) {
			var opts []zimage.Option
			if mode == "merged" {
				opts = merge
			}
			cpu := run(t, append(opts, zimage.WithDevice("cpu")), mode == "runtime")
			b := fakeBackend(t, cuda.F32)
			gpu := run(t, append(opts, zimage.WithBackend(b)), mode == "runtime")
			d := fixturefs.ComparePixels(t, gpu, cpu)
			r := fixturefs.ComparePixels(t, gpu, want)
			t.Logf("%s: fake GPU f32 vs CPU: %d values differ (max %d); vs reference PNG max %d; peak device memory %d B", mode, d.Off1, d.Max, r.Max, b.PeakBytes())
			if d.Max > 1 {
				t.Errorf("fake GPU f32 differs from the CPU by up to %d levels", d.Max)
			}
			if r.FracOff1() > 0.001 || r.Max > 4 {
				t.Errorf("fake GPU image vs reference PNG: %+v", r)
			}
		})
	}
}
