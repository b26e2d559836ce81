package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/zimage"
)

// BenchmarkPipeline times one whole generation per iteration and reports each
// stage in milliseconds (tokenize-ms, text-encoder-ms, denoise-ms, step-ms,
// vae-ms, total-ms).
//
// By default it runs the tiny fixture model at 64×96, 8 steps, on the CPU.
// Environment overrides:
//
//	ZIMAGE_BENCH_MODEL   model directory (e.g. the real Z-Image-Turbo)
//	ZIMAGE_BENCH_SIZE    WxH, e.g. 256x256 (default 96x64)
//	ZIMAGE_BENCH_STEPS   denoising steps (default 8)
//	ZIMAGE_BENCH_DEVICE  cpu | cuda | auto (default cpu)
//	ZIMAGE_BENCH_THREADS CPU threads (default all cores)
//	ZIMAGE_BENCH_PRECISION fp32 | bf16 (default fp32)
//
// Run: go test -run '^$' -bench Pipeline -benchtime 3x ./bench/
func BenchmarkPipeline(b *testing.B) {
	model := os.Getenv("ZIMAGE_BENCH_MODEL")
	if model == "" {
		p, err := fixturefs.Materialize("fixtures/tiny-z-image-turbo")
		if err != nil {
			b.Fatal(err)
		}
		model = p
	}
	w, h := 96, 64
	if s := os.Getenv("ZIMAGE_BENCH_SIZE"); s != "" {
		if _, err := fmt.Sscanf(s, "%dx%d", &w, &h); err != nil {
			b.Fatalf("ZIMAGE_BENCH_SIZE=%q: want WxH", s)
		}
	}
	steps := pipelineEnvInt(b, "ZIMAGE_BENCH_STEPS", zimage.DefaultSteps)
	threads := pipelineEnvInt(b, "ZIMAGE_BENCH_THREADS", 0)
	device := os.Getenv("ZIMAGE_BENCH_DEVICE")
	if device == "" {
		device = "cpu"
	}

	prec := zimage.Float32
	if s := os.Getenv("ZIMAGE_BENCH_PRECISION"); s != "" {
		var err error
		if prec, err = zimage.ParsePrecision(s); err != nil {
			b.Fatal(err)
		}
	}

	t0 := time.Now()
	p, err := zimage.Load(context.Background(), model, zimage.WithDevice(device), zimage.WithThreads(threads), zimage.WithPrecision(prec))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	b.Logf("model %s on %s, load %s", model, p.Backend().Name(), time.Since(t0).Round(time.Millisecond))

	req := zimage.Request{Prompt: "A red fox sitting in a snowy forest at dawn, photorealistic", Width: w, Height: h, Seed: 42, Steps: steps}
	var sum zimage.Timings
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := p.Run(context.Background(), req)
		if err != nil {
			b.Fatal(err)
		}
		t := res.Timings
		sum.Tokenize += t.Tokenize
		sum.TextEncoder += t.TextEncoder
		sum.Denoise += t.Denoise
		sum.VAE += t.VAE
		sum.Total += t.Total
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(b.N) }
	b.ReportMetric(ms(sum.Tokenize), "tokenize-ms")
	b.ReportMetric(ms(sum.TextEncoder), "text-encoder-ms")
	b.ReportMetric(ms(sum.Denoise), "denoise-ms")
	b.ReportMetric(ms(sum.Denoise)/float64(steps), "step-ms")
	b.ReportMetric(ms(sum.VAE), "vae-ms")
	b.ReportMetric(ms(sum.Total), "total-ms")
}

func pipelineEnvInt(b *testing.B, key string, def int) int {
	s := os.Getenv(key)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		b.Fatalf("%s=%q: %v", key, s, err)
	}
	return n
}
