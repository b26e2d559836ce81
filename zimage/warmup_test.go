package zimage

import (
	"bytes"
	"context"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/zimage/cpu"
)

// TestWarmup checks WithWarmup: Load reserves the estimated memory on a CPU
// backend and binds the DiT and the VAE (the plan keeps both), the image is bit-identical to one without the warm-up (fp32 and
// bf16), a Run at another size works, and the reserve ends with the Run.
func TestWarmup(t *testing.T) {
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	c := e2eCases(t)[0]
	for _, prec := range []Precision{Float32, BFloat16} {
		run := func(b *cpu.Backend, opts ...Option) []byte {
			t.Helper()
			p, err := Load(context.Background(), dir, append(opts, WithBackend(b), WithPrecision(prec))...)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if len(opts) > 0 && (b.ReservedBytes() == 0 || p.dit == nil || p.vae == nil) {
				t.Fatalf("WithWarmup: reserve %d bytes, DiT bound %v, VAE bound %v", b.ReservedBytes(), p.dit != nil, p.vae != nil)
			}
			// bf16: the DiT's per-token weights are packed at Load.
			if packed := b.PackedBytes() > 0; len(opts) > 0 && packed != (prec == BFloat16) {
				t.Fatalf("%v: WithWarmup pre-packed weights: %v", prec, packed)
			}
			if len(opts) == 0 && (p.dit != nil || p.vae != nil) {
				t.Fatal("networks bound at Load without WithWarmup")
			}
			res, err := p.Run(context.Background(), c.request())
			if err != nil {
				t.Fatal(err)
			}
			if b.ReservedBytes() != 0 {
				t.Fatal("the reserve outlived the Run")
			}
			req := c.request()
			req.Width, req.Height = req.Width+16, req.Height+32
			if _, err := p.Run(context.Background(), req); err != nil {
				t.Fatalf("another size after a warm-up: %v", err)
			}
			return rgbBytes(res)
		}
		bf := prec == BFloat16
		cold := run(cpu.New(cpu.WithBF16(bf)))
		warm := run(cpu.New(cpu.WithBF16(bf)), WithWarmup(c.Width, c.Height))
		if !bytes.Equal(cold, warm) {
			t.Fatalf("%v: the warmed-up image differs", prec)
		}
	}
	m := tinyPipeline(t).Model()
	if warmupBytes(m, 8, 0, 64) != 0 || warmupBytes(m, 8, 60, 64) != 0 || warmupBytes(m, 8, 64, 64) == 0 {
		t.Fatal("warmupBytes: unusable sizes must give 0, usable ones not")
	}
}

// TestPoolKeptBetweenRuns checks the Pipeline's end-of-Run trim: without a
// memory budget the CPU pool keeps its buffers for the next Run (which then
// allocates nothing new at the same size), with one it is emptied.
func TestPoolKeptBetweenRuns(t *testing.T) {
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	req := e2eCases(t)[0].request()
	for _, budget := range []uint64{0, 64 << 30} {
		b := cpu.New()
		p, err := Load(context.Background(), dir, WithBackend(b), WithMemoryBudget(budget))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Run(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		kept := b.PooledBytes()
		if budget == 0 && kept == 0 || budget > 0 && kept != 0 {
			t.Errorf("budget %d: %d pooled bytes after the Run", budget, kept)
		}
		if _, err := p.Run(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		if budget == 0 && b.PooledBytes() != kept {
			t.Errorf("a second Run at the same size changed the pool: %d bytes, then %d", kept, b.PooledBytes())
		}
		p.Close()
	}
}
