package nettest

import (
	"context"
	"encoding/json"
	"errors"
	"image/png"
	"os"
	"testing"

	"github.com/zimage/zimage/cuda"
	"github.com/zimage/zimage/cuda/internal/fakecuda"
	"github.com/zimage/zimage/cuda/internal/hostshim"
	"github.com/zimage/zimage/internal/testdata"
	"github.com/zimage/zimage/zimage"
)

type e2eCase struct {
	Name   string  `json:"name"`
	Prompt string  `json:"prompt"`
	Height int     `json:"height"`
	Width  int     `json:"width"`
	Seed   int64   `json:"seed"`
	Steps  int     `json:"num_inference_steps"`
	Guid   float32 `json:"guidance_scale"`
}

func loadCase(t *testing.T, name string) e2eCase {
	t.Helper()
	b, err := os.ReadFile(testdata.Path(t, "fixtures/e2e/e2e.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Cases []e2eCase `json:"cases"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, c := range doc.Cases {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no e2e case %s", name)
	return e2eCase{}
}

// fakeBackend returns a CUDA backend on a fake GPU running kernels on the CPU.
func fakeBackend(t *testing.T, prec cuda.Precision) *cuda.Backend {
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
	return b
}

func pngRGB(t *testing.T, rel string) []byte {
	t.Helper()
	f, err := os.Open(testdata.Path(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	bd := img.Bounds()
	var out []byte
	for y := bd.Min.Y; y < bd.Max.Y; y++ {
		for x := bd.Min.X; x < bd.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			out = append(out, uint8(r>>8), uint8(g>>8), uint8(b>>8))
		}
	}
	return out
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
	dir := testdata.Path(t, "fixtures/tiny-z-image-turbo")
	want := pngRGB(t, "fixtures/e2e/"+c.Name+".png")
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
			img := res.Image
			var got []byte
			for y := 0; y < img.Rect.Dy(); y++ {
				for x := 0; x < img.Rect.Dx(); x++ {
					o := img.PixOffset(x, y)
					got = append(got, img.Pix[o], img.Pix[o+1], img.Pix[o+2])
				}
			}
			var off1, maxd int
			var sum float64
			for i := range want {
				d := int(got[i]) - int(want[i])
				if d < 0 {
					d = -d
				}
				if d > 1 {
					off1++
				}
				maxd = max(maxd, d)
				sum += float64(d)
			}
			frac := float64(off1) / float64(len(want))
			t.Logf("%s: %.3f%% values >1 level off, max %d, mean |Δ| %.3f; peak device memory %d B", prec, 100*frac, maxd, sum/float64(len(want)), b.PeakBytes())
			switch prec {
			case cuda.F32:
				if frac > 0.001 || maxd > 4 {
					t.Errorf("f32 image differs from the reference")
				}
			default:
				if sum/float64(len(want)) > 3 {
					t.Errorf("bf16 image differs from the reference by a mean of %.2f levels", sum/float64(len(want)))
				}
			}
		})
	}
}
