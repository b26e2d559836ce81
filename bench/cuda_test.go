//go:build gpu

package bench

// CUDA benchmarks at full size with synthetic bf16 weights (no checkpoint):
//
//	go test -tags gpu -run '^$' -bench CUDA -benchtime 5x ./bench/
//
// Each builds the network it times once (cuda/synthetic fills the Turbo
// shapes on the device) and reports ns/op plus the backend's peak device
// memory as peak-GB. scripts/gpu-check.sh prints the same figures as a table
// (cuda/gpucheck.Run). Without a usable GPU the benchmarks skip.

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/zimage/zimage/cuda"
	"github.com/zimage/zimage/cuda/synthetic"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/dit"
	"github.com/zimage/zimage/zimage/qwen3"
	"github.com/zimage/zimage/zimage/vae"
)

var cudaState struct {
	once sync.Once
	b    *cuda.Backend
	err  error
}

func cudaBackend(b *testing.B) *cuda.Backend {
	b.Helper()
	cudaState.once.Do(func() {
		if cudaState.err = cuda.Available(); cudaState.err == nil {
			cudaState.b, cudaState.err = cuda.New(cuda.Options{SyntheticWeights: true})
		}
	})
	if cudaState.err != nil {
		b.Skipf("no usable GPU: %v", cudaState.err)
	}
	return cudaState.b
}

func reportPeak(b *testing.B, be *cuda.Backend) {
	b.ReportMetric(float64(be.PeakBytes())/1e9, "peak-GB")
}

func BenchmarkCUDATextEncoder(b *testing.B) {
	be := cudaBackend(b)
	cfg := weights.DefaultQwen3Config()
	te, err := qwen3.New(be, cfg, synthetic.TextEncoder(cfg))
	if err != nil {
		b.Fatal(err)
	}
	defer te.Close()
	rng := rand.New(rand.NewPCG(1, 1))
	ids := make([]int, 100)
	for i := range ids {
		ids[i] = rng.IntN(151643)
	}
	if _, err := te.Encode(context.Background(), ids, nil); err != nil { // warm-up
		b.Fatal(err)
	}
	be.ResetPeak()
	b.ResetTimer()
	for range b.N {
		if _, err := te.Encode(context.Background(), ids, nil); err != nil {
			b.Fatal(err)
		}
	}
	reportPeak(b, be)
}

func benchDiT(b *testing.B, w, h int) {
	be := cudaBackend(b)
	cfg := weights.DefaultDiTConfig()
	m, err := dit.New(be, cfg, synthetic.DiT(cfg))
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	rng := rand.New(rand.NewPCG(2, 2))
	feats := make([]float32, 100*cfg.CapFeatDim)
	for i := range feats {
		feats[i] = float32(rng.NormFloat64())
	}
	capt, err := m.PrepareCaption(context.Background(), feats, 100, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer capt.Free()
	hl, wl := h/8, w/8
	x := make([]float32, cfg.InChannels*hl*wl)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	if _, err := m.Forward(context.Background(), x, hl, wl, 0.5, capt, nil); err != nil {
		b.Fatal(err)
	}
	be.ResetPeak()
	b.ResetTimer()
	for range b.N {
		if _, err := m.Forward(context.Background(), x, hl, wl, 0.5, capt, nil); err != nil {
			b.Fatal(err)
		}
	}
	reportPeak(b, be)
}

func BenchmarkCUDADiTStep1024(b *testing.B) { benchDiT(b, 1024, 1024) }
func BenchmarkCUDADiTStep512(b *testing.B)  { benchDiT(b, 512, 512) }

func benchVAE(b *testing.B, w, h int) {
	be := cudaBackend(b)
	cfg := weights.DefaultVAEConfig()
	d, err := vae.New(be, cfg, synthetic.VAE(cfg))
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	rng := rand.New(rand.NewPCG(3, 3))
	hl, wl := h/8, w/8
	x := make([]float32, cfg.LatentChannels*hl*wl)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	if _, err := d.Decode(context.Background(), x, hl, wl, nil); err != nil {
		b.Fatal(err)
	}
	be.ResetPeak()
	b.ResetTimer()
	for range b.N {
		if _, err := d.Decode(context.Background(), x, hl, wl, nil); err != nil {
			b.Fatal(err)
		}
	}
	reportPeak(b, be)
}

func BenchmarkCUDAVAE1024(b *testing.B) { benchVAE(b, 1024, 1024) }
func BenchmarkCUDAVAE512(b *testing.B)  { benchVAE(b, 512, 512) }
