package zimage

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
)

var _ compute.Cancellable = (*cpu.Backend)(nil)

// TestCancelMidLayer cancels a CPU generation inside a DiT layer and
// expects Run to return within a second. The tiny fixture model at 2048²
// has 16384 image tokens: its first noise-refiner layer (attention on
// 48-wide heads) takes several seconds on two cores, so without
// cancellation inside the ops Run would only return after that layer.
// The next generation must succeed.
func TestCancelMidLayer(t *testing.T) {
	if testing.Short() {
		t.Skip("large generation")
	}
	p := tinyPipeline(t)
	if p.Backend().Name() != "cpu" {
		t.Skipf("backend %s", p.Backend().Name())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu          sync.Mutex
		cancelledAt time.Time
		timer       *time.Timer
	)
	req := Request{Prompt: "a cat", Width: 2048, Height: 2048, Seed: 3, Steps: 2}
	req.Progress = func(pr Progress) {
		if pr.Stage == "denoise" && pr.Step == 0 {
			// Well inside noise_refiner.0 (the caption refiner and the
			// patch embedding take a few ms).
			timer = time.AfterFunc(300*time.Millisecond, func() {
				mu.Lock()
				cancelledAt = time.Now()
				mu.Unlock()
				cancel()
			})
		}
	}
	_, err := p.Run(ctx, req)
	returned := time.Now()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Run: %v", err)
	}
	if timer != nil {
		timer.Stop()
	}
	mu.Lock()
	at := cancelledAt
	mu.Unlock()
	if at.IsZero() {
		t.Fatal("Run ended before the cancel")
	}
	lat := returned.Sub(at)
	t.Logf("Run returned %v after cancel", lat)
	if lat > time.Second {
		t.Errorf("Run returned %v after cancel, want < 1s", lat)
	}

	res, err := p.Run(context.Background(), Request{Prompt: "a cat", Width: 64, Height: 64, Seed: 3, Steps: 2})
	if err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	if res.Image == nil || res.Image.Bounds().Dx() != 64 {
		t.Fatalf("Run after cancel: bad image")
	}
}
