package nettest

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/zimage/zimage/cuda"
	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage"
)

// TestGGUFOnFakeGPU runs the tiny model converted to GGUF (DiT and text
// encoder) through the pipeline on the CUDA backend (bf16) and reports the
// PSNR against the same backend on the safetensors model. The CUDA backend
// does not take quantized weights: they are expanded to bf16 at bind time
// (compute.ExpandQuantized), so a BF16 GGUF must give the identical image.
// ZIMAGE_GGUF_ALL=1 adds Q4_0.
func TestGGUFOnFakeGPU(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: the kernels run on CPU threads")
	}
	c := loadCase(t, "en_64x64_seed42")
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	req := zimage.Request{Prompt: c.Prompt, Width: c.Width, Height: c.Height, Seed: c.Seed, Steps: c.Steps}
	run := func(opts ...zimage.Option) []byte {
		t.Helper()
		b := fakeBackend(t, cuda.BF16)
		p, err := zimage.Load(context.Background(), dir, append(opts, zimage.WithBackend(b))...)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		res, err := p.Run(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return fixturefs.RGB(res.Image)
	}
	want := run()
	m, err := weights.OpenModel(dir)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	types := []weights.DType{weights.BF16, weights.Q8_0}
	if os.Getenv("ZIMAGE_GGUF_ALL") != "" {
		types = append(types, weights.Q4_0)
	}
	for _, dt := range types {
		dit, te := filepath.Join(tmp, dt.String()+"-dit.gguf"), filepath.Join(tmp, dt.String()+"-te.gguf")
		s, err := m.OpenTransformer()
		if err != nil {
			t.Fatal(err)
		}
		err = weights.WriteComponentGGUF(s, weights.CompTransformer, dit, weights.GGUFConvertOptions{Type: dt, DiTKey: m.DiT.EmbedderKey(0)})
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if s, err = m.OpenTextEncoder(); err != nil {
			t.Fatal(err)
		}
		err = weights.WriteComponentGGUF(s, weights.CompTextEncoder, te, weights.GGUFConvertOptions{Type: dt, TextEncoder: &m.TextEncoder})
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		got := run(zimage.WithSingleFiles(dit, te, "", ""))
		var se float64
		for i := range got {
			d := float64(got[i]) - float64(want[i])
			se += d * d
		}
		db := math.Inf(1)
		if se > 0 {
			db = 10 * math.Log10(255*255/(se/float64(len(got))))
		}
		t.Logf("%s GGUF on the fake GPU (bf16): PSNR %.2f dB vs the safetensors model", dt, db)
		switch {
		case dt == weights.BF16 && !math.IsInf(db, 1):
			t.Errorf("BF16 GGUF differs: %.2f dB", db)
		case dt == weights.Q8_0 && db < 40:
			t.Errorf("Q8_0 PSNR %.2f dB < 40", db)
		case db < 15:
			t.Errorf("PSNR %.2f dB: broken", db)
		}
	}
}
