package zimage

import (
	"bytes"
	"context"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/zimage/cpu"
)

// TestPackedWeightsPipeline runs the tiny model in BFloat16 with the CPU
// backend's pre-packed weights (the default) and without them
// (WithPackBudget(0)): plain requests, a LoRA merged at Load (packs made
// from the merged bytes) and run-time LoRAs on packed base weights all
// give the same image bytes, run after run.
func TestPackedWeightsPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the tiny pipeline a dozen times")
	}
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	c := fixturefs.LoRACases(t)[0]
	var merge []Option
	for _, l := range c.LoRAs {
		merge = append(merge, WithLoRA(loraPath(t, l.File), l.Scale))
	}
	for _, mode := range []string{"plain", "merged", "run-time"} {
		t.Run(mode, func(t *testing.T) {
			var images [2][][]byte
			var packed int64
			for i, budget := range []int64{-1, 0} {
				opts := []Option{WithDevice("cpu"), WithPrecision(BFloat16), WithPackBudget(budget)}
				if mode == "merged" {
					opts = append(opts, merge...)
				}
				p, err := Load(context.Background(), dir, opts...)
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				req := loraRequest(c, mode == "run-time")
				req.Steps = 4 // packed from the second run's third step on
				if mode == "run-time" {
					for _, l := range c.LoRAs {
						if err := p.LoadLoRA(l.Adapter, loraPath(t, l.File)); err != nil {
							t.Fatal(err)
						}
					}
					// A plain run first, so the base weights are packed.
					if _, err := p.Run(context.Background(), loraRequest(c, false)); err != nil {
						t.Fatal(err)
					}
				}
				for range 2 {
					res, err := p.Run(context.Background(), req)
					if err != nil {
						t.Fatal(err)
					}
					images[i] = append(images[i], rgbBytes(res))
				}
				if i == 0 {
					packed = p.b.(*cpu.Backend).PackedBytes()
				} else if n := p.b.(*cpu.Backend).PackedBytes(); n != 0 {
					t.Errorf("WithPackBudget(0): %d bytes packed", n)
				}
			}
			if packed == 0 {
				t.Error("nothing was packed with the default budget")
			}
			for r := range images[0] {
				if !bytes.Equal(images[0][r], images[1][r]) {
					t.Errorf("run %d: the image with packed weights differs from the unpacked one", r)
				}
			}
		})
	}
}

// TestPackedWeightsAreDiTs runs a CFG request (the text encoder runs twice:
// prompt and negative prompt) and checks that only transformer weights are
// packed, never the text encoder's.
func TestPackedWeightsAreDiTs(t *testing.T) {
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	p, err := Load(context.Background(), dir, WithDevice("cpu"), WithPrecision(BFloat16))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	req := Request{Prompt: "a cat", NegativePrompt: "a dog", Width: 64, Height: 64, Seed: 1, Steps: 3, Guidance: 2}
	for range 2 {
		if _, err := p.Run(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	names := p.b.(*cpu.Backend).PackedWeights()
	if len(names) == 0 {
		t.Fatal("nothing packed")
	}
	te, err := p.model.OpenTextEncoder()
	if err != nil {
		t.Fatal(err)
	}
	defer te.Close()
	for _, n := range names {
		if _, ok := te.Tensor(n); ok {
			t.Errorf("text encoder weight %s is packed", n)
		}
	}
	t.Logf("%d weights packed, e.g. %s", len(names), names[0])
}
