package bench

import (
	"context"
	"fmt"
	"image"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zimage/zimage/cuda/synthetic"
	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage"
	"github.com/zimage/zimage/zimage/cpu"
	"github.com/zimage/zimage/zimage/vae"
)

// BenchmarkRealArchEncoder times the VAE encoder of the real architecture
// (FLUX VAE: 128/256/512/512 channels, spec §1.3) with random bf16 weights on
// the CPU backend, one encode per iteration, at ZIMAGE_BENCH_SIZES (square
// sides, default 512). Skipped unless ZIMAGE_BENCH_REAL_ARCH=1.
//
//	ZIMAGE_BENCH_REAL_ARCH=1 ZIMAGE_BENCH_SIZES=512,1024 \
//	  go test -run '^$' -bench RealArchEncoder -benchtime 1x -timeout 30m ./bench/
func BenchmarkRealArchEncoder(b *testing.B) {
	if os.Getenv("ZIMAGE_BENCH_REAL_ARCH") != "1" {
		b.Skip("set ZIMAGE_BENCH_REAL_ARCH=1 (real-size encoder; 1024² needs ~3 GB and a minute on 2 cores)")
	}
	sizes := []int{512}
	if s := os.Getenv("ZIMAGE_BENCH_SIZES"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 16 || n%16 != 0 {
				b.Fatalf("ZIMAGE_BENCH_SIZES: bad size %q (want multiples of 16)", f)
			}
			sizes = append(sizes, n)
		}
	}
	cfg := weights.DefaultVAEConfig()
	be := cpu.New()
	enc, err := vae.NewEncoder(be, cfg, randomWeights(synthetic.VAEEncoder(cfg)))
	if err != nil {
		b.Fatal(err)
	}
	defer enc.Close()
	for _, n := range sizes {
		b.Run(fmt.Sprintf("%dx%d", n, n), func(b *testing.B) {
			img := make([]float32, 3*n*n)
			r := rand.New(rand.NewPCG(1, uint64(n)))
			for i := range img {
				img[i] = 2*r.Float32() - 1
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := enc.Encode(context.Background(), img, n, n, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "encode-ms")
		})
	}
}

// BenchmarkImg2Img runs whole generations, text-to-image and image-to-image
// at strength 0.6 (5 of 8 steps plus a VAE encode), on the model and size of
// BenchmarkPipeline (tiny fixture model at 96×64 by default; same
// ZIMAGE_BENCH_* variables). The init image is a synthetic gradient.
//
//	go test -run '^$' -bench Img2Img -benchtime 3x ./bench/
func BenchmarkImg2Img(b *testing.B) {
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
	device := os.Getenv("ZIMAGE_BENCH_DEVICE")
	if device == "" {
		device = "cpu"
	}
	p, err := zimage.Load(context.Background(), model, zimage.WithDevice(device),
		zimage.WithThreads(pipelineEnvInt(b, "ZIMAGE_BENCH_THREADS", 0)))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	init := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := init.PixOffset(x, y)
			init.Pix[i], init.Pix[i+1], init.Pix[i+2], init.Pix[i+3] = uint8(255*x/w), uint8(255*y/h), 128, 255
		}
	}
	steps := pipelineEnvInt(b, "ZIMAGE_BENCH_STEPS", zimage.DefaultSteps)
	for _, c := range []struct {
		name string
		img  image.Image
	}{{"txt2img", nil}, {"img2img-0.6", init}} {
		b.Run(c.name, func(b *testing.B) {
			req := zimage.Request{Prompt: "A red fox sitting in a snowy forest at dawn, photorealistic", Width: w, Height: h,
				Seed: 42, Steps: steps, Image: c.img}
			if c.img != nil {
				req.Strength = 0.6
			}
			var sum zimage.Timings
			run := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				res, err := p.Run(context.Background(), req)
				if err != nil {
					b.Fatal(err)
				}
				t := res.Timings
				sum.EncodeImage += t.EncodeImage
				sum.Denoise += t.Denoise
				sum.VAE += t.VAE
				sum.Total += t.Total
				run += len(t.Steps)
			}
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(b.N) }
			b.ReportMetric(ms(sum.EncodeImage), "encode-ms")
			b.ReportMetric(ms(sum.Denoise), "denoise-ms")
			b.ReportMetric(ms(sum.VAE), "vae-ms")
			b.ReportMetric(ms(sum.Total), "total-ms")
			b.ReportMetric(float64(run)/float64(b.N), "steps")
		})
	}
}
