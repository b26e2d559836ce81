package nettest

import (
	"context"
	"errors"
	"testing"

	"github.com/zimage/zimage/cuda"
	"github.com/zimage/zimage/cuda/internal/fakecuda"
	"github.com/zimage/zimage/cuda/internal/hostshim"
	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/zimage"
	"github.com/zimage/zimage/zimage/imageproc"
)

func loadCase(t *testing.T, name string) fixturefs.E2ECase {
	t.Helper()
	for _, c := range fixturefs.E2ECases(t) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no e2e case %s", name)
	return fixturefs.E2ECase{}
}

// fakeBackend returns a CUDA backend on a fake GPU running kernels on the CPU.
func fakeBackend(t *testing.T, prec cuda.Precision) *cuda.Backend {
	t.Helper()
	b, _ := fakeBackendAndFake(t, prec)
	return b
}

// fakeBackendAndFake is fakeBackend that also returns the fake driver (for
// launch counts).
func fakeBackendAndFake(t *testing.T, prec cuda.Precision) (*cuda.Backend, *fakecuda.Fake) {
	t.Helper()
	lib, err := hostshim.Load()
	if errors.Is(err, hostshim.ErrNoCompiler) {
		t.Skip("g++ not installed")
	}
	if err != nil {
		t.Fatal(err)
	}
	f := fakecuda.New()
	f.Shim = lib
	f.TotalMem = 4 << 30
	bl := fakecuda.NewBLAS(f)
	b, err := cuda.New(cuda.Options{Precision: prec, Driver: f.API, BLAS: bl.API})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
		if l := f.Leaks(); l != "" {
			t.Errorf("leaked: %s", l)
		}
		if err := f.Err(); err != nil {
			t.Errorf("fake driver saw misuse: %v", err)
		}
	})
	return b, f
}

// TestPipelineOnFakeGPU generates a fixture image through the whole pipeline
// on the CUDA backend and compares it with the reference PNG: in f32 the same
// criterion as the CPU backend (≤ 0.1% of values more than one level off); in
// bf16 a looser one.
func TestPipelineOnFakeGPU(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: the kernels run on CPU threads")
	}
	c := loadCase(t, "en_64x64_seed42")
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	want := fixturefs.ReadPNG(t, fixturefs.Path(t, "fixtures/e2e/"+c.Name+".png"))
	for _, prec := range []cuda.Precision{cuda.F32, cuda.BF16} {
		t.Run(prec.String(), func(t *testing.T) {
			b := fakeBackend(t, prec)
			p, err := zimage.Load(context.Background(), dir, zimage.WithBackend(b))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			res, err := p.Run(context.Background(), zimage.Request{Prompt: c.Prompt, Width: c.Width, Height: c.Height, Seed: c.Seed, Steps: c.Steps})
			if err != nil {
				t.Fatal(err)
			}
			d := fixturefs.ComparePixels(t, fixturefs.RGB(res.Image), want)
			t.Logf("%s: %.3f%% values >1 level off, max %d, mean |Δ| %.3f; peak device memory %d B", prec, 100*d.FracOff1(), d.Max, d.Mean, b.PeakBytes())
			switch prec {
			case cuda.F32:
				if d.FracOff1() > 0.001 || d.Max > 4 {
					t.Errorf("f32 image differs from the reference")
				}
			default:
				if d.Mean > 3 {
					t.Errorf("bf16 image differs from the reference by a mean of %.2f levels", d.Mean)
				}
			}
		})
	}
}

// TestEditOnFakeGPU runs an img2img and an inpaint fixture case (VAE encoder,
// noising, blend, decode) through the pipeline on the CUDA backend: in f32
// the CPU backend's criterion against the reference PNG; in bf16 a mean
// difference below 3 levels.
func TestEditOnFakeGPU(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: the kernels run on CPU threads")
	}
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	var cases []fixturefs.EditCase
	for _, c := range fixturefs.EditCases(t) {
		if c.Name == "en_64x96_seed42_strength0.6" || c.Name == "en_64x96_seed42_strength0.7" {
			cases = append(cases, c)
		}
	}
	if len(cases) != 2 {
		t.Fatalf("%d edit cases", len(cases))
	}
	for _, prec := range []cuda.Precision{cuda.F32, cuda.BF16} {
		t.Run(prec.String(), func(t *testing.T) {
			b := fakeBackend(t, prec)
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
					t.Fatalf("%s: %v", c.Name, err)
				}
				want := fixturefs.ReadPNG(t, fixturefs.Path(t, "fixtures/"+c.Dir+"/"+c.Name+".png"))
				d := fixturefs.ComparePixels(t, fixturefs.RGB(res.Image), want)
				t.Logf("%s %s/%s: %.3f%% values >1 level off, max %d, mean |Δ| %.3f", prec, c.Dir, c.Name, 100*d.FracOff1(), d.Max, d.Mean)
				if prec == cuda.F32 && (d.FracOff1() > 0.001 || d.Max > 4) || d.Mean > 3 {
					t.Errorf("%s/%s: image differs from the reference", c.Dir, c.Name)
				}
			}
		})
	}
}
