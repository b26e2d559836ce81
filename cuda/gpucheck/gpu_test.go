//go:build gpu

package gpucheck

// GPU checks, run with `go test -tags gpu ./cuda/gpucheck` on a machine with
// an NVIDIA GPU (compute capability 8.0+); they skip when cuda.Available
// fails. scripts/gpu-check.sh runs them step by step with time limits.

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zimage/zimage/cuda"
	"github.com/zimage/zimage/cuda/driver"
	"github.com/zimage/zimage/cuda/internal/parity"
	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage"
)

func gpuBackend(t testing.TB, o cuda.Options) *cuda.Backend {
	t.Helper()
	if err := cuda.Available(); err != nil {
		t.Skipf("no usable GPU: %v", err)
	}
	// The checks test the kernels themselves, not the self-test's
	// fallbacks (TestGPUSelfTest runs the self-test).
	if o.SelfTest == cuda.SelfTestDefault {
		o.SelfTest = cuda.SelfTestOff
	}
	b, err := cuda.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func TestGPUDevice(t *testing.T) {
	b := gpuBackend(t, cuda.Options{})
	p := b.Device().Props()
	free, total, err := b.MemInfo()
	if err != nil {
		t.Fatal(err)
	}
	api, _ := driver.Probe()
	var v int32
	api.DriverGetVersion(&v)
	t.Logf("%s: sm_%d, %d SMs, %.1f GB (%.1f GB free), driver CUDA %d.%d, smem opt-in %d KiB",
		p.Name, p.CC(), p.SMs, float64(total)/1e9, float64(free)/1e9, v/1000, v%1000/10, p.MaxSharedOptin>>10)
}

func TestGPUParity(t *testing.T) {
	for _, prec := range []cuda.Precision{cuda.F32, cuda.BF16} {
		t.Run(prec.String(), func(t *testing.T) {
			b := gpuBackend(t, cuda.Options{Precision: prec})
			parity.Run(t, b, prec == cuda.BF16, parity.Cases)
			parity.Run(t, b, prec == cuda.BF16, parity.LargeCases)
			if err := b.Sync(); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("bf16-gemm-attention", func(t *testing.T) {
		b := gpuBackend(t, cuda.Options{Precision: cuda.BF16, Attention: "gemm"})
		var cases []parity.Case
		for _, c := range parity.LargeCases {
			if c.Name[:min(9, len(c.Name))] == "Attention" {
				cases = append(cases, c)
			}
		}
		parity.Run(t, b, true, cases)
	})
}

// TestGPUFlashVsGemm compares the fused attention kernels (tensor-core and
// generic) with the cuBLASLt path at the networks' full sizes (no CPU
// reference at this size) and logs each one's device time.
func TestGPUFlashVsGemm(t *testing.T) {
	flash := gpuBackend(t, cuda.Options{})
	generic := gpuBackend(t, cuda.Options{Attention: "generic"})
	gemm := gpuBackend(t, cuda.Options{Attention: "gemm"})
	for _, c := range []struct {
		name                  string
		lq, lk, heads, kv, dh int
		causal                bool
	}{
		{"dit-1024", 4224, 4224, 30, 30, 128, false},
		{"dit-512", 1152, 1152, 30, 30, 128, false},
		{"qwen3", 113, 113, 32, 8, 128, true},
		{"ragged", 77, 200, 4, 2, 128, false},
		{"vae-1024", 16384, 16384, 1, 1, 512, false},
		{"vae-512", 4096, 4096, 1, 1, 512, false},
		{"ragged-512", 1000, 777, 2, 1, 512, true},
		{"d256", 900, 900, 4, 4, 256, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			run := func(b *cuda.Backend) ([]float32, time.Duration) {
				in := parity.NewInputs(b, 3)
				q, k, v := in.Act(1, c.lq, c.heads*c.dh), in.Act(1, c.lk, c.kv*c.dh), in.Act(1, c.lk, c.kv*c.dh)
				b.Sync()
				tm, err := b.StartTimer()
				if err != nil {
					t.Fatal(err)
				}
				out := b.Attention(q, k, v, c.heads, c.kv, 1/float32(math.Sqrt(float64(c.dh))), c.causal)
				d, err := tm.Stop()
				if err != nil {
					t.Fatal(err)
				}
				res := b.ToHost(out)
				b.Free(q, k, v, out)
				return res, d
			}
			a, ta := run(flash)
			g, tg := run(generic)
			r, tr := run(gemm)
			if err := errors.Join(flash.Err(), generic.Err(), gemm.Err()); err != nil {
				t.Fatal(err)
			}
			for _, cmp := range []struct {
				name string
				got  []float32
			}{{"flash", a}, {"generic", g}} {
				maxRel, l2 := parity.Compare(cmp.got, r)
				t.Logf("flash vs gemm %s (%s): max error %.3g, rel L2 %.3g", c.name, cmp.name, maxRel, l2)
				if l2 > 1e-2 || maxRel > 5e-2 {
					t.Errorf("%s and GEMM attention disagree", cmp.name)
				}
			}
			// "flash vs gemm" lines reach the summary of scripts/gpu-check.sh.
			t.Logf("flash vs gemm %s device time: auto %v, generic %v, gemm %v", c.name, ta, tg, tr)
		})
	}
}

// TestGPUMemoryErrors: an over-budget request and a request larger than the
// device both fail with ErrOutOfMemory and leave the backend usable.
func TestGPUMemoryErrors(t *testing.T) {
	b := gpuBackend(t, cuda.Options{MemoryBudget: 1 << 30, SyntheticWeights: true})
	b.Weight(&weights.Tensor{Name: "big.weight", DType: weights.BF16, Shape: []int{1 << 20, 1024}}) // 2 GiB
	var be *cuda.BudgetError
	if err := b.Err(); !errors.As(err, &be) || !errors.Is(err, cuda.ErrOutOfMemory) {
		t.Fatalf("over budget: %v", err)
	}
	b.ResetErr()
	huge := gpuBackend(t, cuda.Options{SyntheticWeights: true})
	_, total, _ := huge.MemInfo()
	rows := int(total/2/4096) + 1<<20 // more than the whole device
	huge.Weight(&weights.Tensor{Name: "huge.weight", DType: weights.BF16, Shape: []int{rows, 4096}})
	if err := huge.Err(); !errors.Is(err, cuda.ErrOutOfMemory) {
		t.Fatalf("larger than the device: %v", err)
	}
	huge.ResetErr()
	for _, bb := range []*cuda.Backend{b, huge} {
		if got := bb.ToHost(bb.FromHost([]float32{1, 2, 3}, 3)); bb.Err() != nil || got[2] != 3 {
			t.Fatalf("backend unusable after an allocation failure: %v", bb.Err())
		}
	}
}

// TestGPUPipeline generates every Turbo fixture image on the GPU with the
// tiny model: in f32 within the CPU backend's criterion (≤ 0.1% of values
// more than one level off the reference PNG), in bf16 a mean difference
// below 3 levels.
func TestGPUPipeline(t *testing.T) {
	cases := fixturefs.E2ECases(t)
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	for _, prec := range []cuda.Precision{cuda.F32, cuda.BF16} {
		t.Run(prec.String(), func(t *testing.T) {
			b := gpuBackend(t, cuda.Options{Precision: prec})
			p, err := zimage.Load(context.Background(), dir, zimage.WithBackend(b))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			for _, c := range cases {
				if c.Guidance != 0 {
					continue
				}
				res, err := p.Run(context.Background(), zimage.Request{Prompt: c.Prompt, Width: c.Width, Height: c.Height, Seed: c.Seed, Steps: c.Steps})
				if err != nil {
					t.Fatalf("%s: %v", c.Name, err)
				}
				want := fixturefs.ReadPNG(t, fixturefs.Path(t, filepath.Join("fixtures/e2e", c.Name+".png")))
				d := fixturefs.ComparePixels(t, fixturefs.RGB(res.Image), want)
				t.Logf("%s %s: %.3f%% >1 level off, max %d, mean %.3f (%v total)", prec, c.Name, 100*d.FracOff1(), d.Max, d.Mean, res.Timings.Total)
				if prec == cuda.F32 && (d.FracOff1() > 0.001 || d.Max > 4) || d.Mean > 3 {
					t.Errorf("%s: image differs from the reference", c.Name)
				}
			}
		})
	}
}

// TestGPUBenchmark runs the full-size synthetic benchmark (Turbo config,
// bf16, 1024² and 512², 8 steps) and writes the table to
// $GPU_CHECK_OUT/gpu-check-bench.txt when set.
func TestGPUBenchmark(t *testing.T) {
	b := gpuBackend(t, cuda.Options{SyntheticWeights: true})
	r, err := Run(context.Background(), b, DefaultConfig(), func(s string) { t.Log(s) })
	if err != nil {
		t.Fatal(err)
	}
	tab := r.Table()
	t.Log("\n" + tab)
	if dir := os.Getenv("GPU_CHECK_OUT"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, "gpu-check-bench.txt"), []byte(tab), 0o644); err != nil {
			t.Error(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "gpu-check-bench.md"), []byte(r.Markdown()), 0o644); err != nil {
			t.Error(err)
		}
	}
}
