package nettest

import (
	"context"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/zimage/zimage/cuda"
	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/internal/tinygguf"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage"
)

// TestGGUFOnFakeGPU runs the tiny model converted to GGUF (DiT and text
// encoder) through the pipeline on the CUDA backend (bf16) and reports the
// PSNR against the same backend on the safetensors model (a BF16 GGUF must
// give the identical image). Quantized weights stay in their blocks on the
// device (dequantized per MatMul): the device memory the pipeline holds
// after the run shrinks by exactly the quantized tensors' savings, less the
// dequantization scratch. ZIMAGE_GGUF_ALL=1 adds Q4_0 and Q4_K.
func TestGGUFOnFakeGPU(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: the kernels run on CPU threads")
	}
	c := loadCase(t, "en_64x64_seed42")
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	req := zimage.Request{Prompt: c.Prompt, Width: c.Width, Height: c.Height, Seed: c.Seed, Steps: c.Steps}
	var held, scratch uint64
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
		held, scratch = b.CurrentBytes(), b.QuantScratchBytes()
		return fixturefs.RGB(res.Image)
	}
	want := run()
	heldBF16 := held
	m, err := weights.OpenModel(dir)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	types := []weights.DType{weights.BF16, weights.Q8_0}
	if os.Getenv("ZIMAGE_GGUF_ALL") != "" {
		types = append(types, weights.Q4_0, weights.Q4_K)
	}
	for _, dt := range types {
		dit, te := tinygguf.Write(t, tmp, dt)
		got := run(zimage.WithSingleFiles(dit, te, "", ""))
		saved := quantSavings(t, dit, te, m.TextEncoder.NumHiddenLayers)
		t.Logf("%s: device memory held after the run %d B (safetensors %d B; quantized tensors save %d B, scratch %d B)", dt, held, heldBF16, saved, scratch)
		if held != heldBF16-saved+scratch {
			t.Errorf("%s: the pipeline holds %d device bytes, want %d (quantized weights kept in their blocks)", dt, held, heldBF16-saved+scratch)
		}
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

// quantSavings is the device memory that keeping the quantized tensors of
// the GGUF DiT and of the text encoder's layers in their blocks saves
// against bf16 (the pipeline binds every DiT tensor and the text layers it
// runs).
func quantSavings(t *testing.T, dit, te string, layers int) uint64 {
	t.Helper()
	var saved uint64
	for _, path := range []string{dit, te} {
		s, err := weights.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range s.Names() {
			w, _ := s.Tensor(name)
			if !w.DType.IsQuantized() || path == te && !textLayerRun(name, layers) {
				continue
			}
			n, _ := w.DType.TensorBytes(w.Shape)
			saved += uint64(2*w.NumElements()) - uint64(n)
		}
		s.Close()
	}
	return saved
}

// textLayerRun reports whether a text encoder tensor (llama.cpp name)
// belongs to a layer the pipeline runs: all but the last; the embedding
// table is read on the host.
func textLayerRun(name string, layers int) bool {
	rest, ok := strings.CutPrefix(name, "blk.")
	if !ok {
		return false
	}
	idx, _, _ := strings.Cut(rest, ".")
	i, err := strconv.Atoi(idx)
	return err == nil && i < layers-1
}

// TestGGUFQuantF32MatchesCPU runs the tiny model as Q4_K GGUF files on the
// fake GPU in f32 (weights dequantized on the device, exactly the values
// the CPU backend's quantized GEMM reads) and on the CPU backend: the
// images agree within the f32 criterion of TestPipelineOnFakeGPU.
func TestGGUFQuantF32MatchesCPU(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: the kernels run on CPU threads")
	}
	c := loadCase(t, "en_64x64_seed42")
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	tmp := t.TempDir()
	dit, te := tinygguf.Write(t, tmp, weights.Q4_K)
	req := zimage.Request{Prompt: c.Prompt, Width: c.Width, Height: c.Height, Seed: c.Seed, Steps: c.Steps}
	run := func(opt zimage.Option) []byte {
		t.Helper()
		p, err := zimage.Load(context.Background(), dir, zimage.WithSingleFiles(dit, te, "", ""), opt)
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
	b := fakeBackend(t, cuda.F32)
	gpu := run(zimage.WithBackend(b))
	cpu := run(zimage.WithDevice("cpu"))
	d := fixturefs.ComparePixels(t, gpu, cpu)
	t.Logf("Q4_K GGUF, fake GPU f32 vs CPU: %.3f%% values >1 level off, max %d, mean |Δ| %.3f", 100*d.FracOff1(), d.Max, d.Mean)
	if d.FracOff1() > 0.001 || d.Max > 4 {
		t.Errorf("the fake GPU's f32 image of the quantized model differs from the CPU's")
	}
}
