package zimage

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/zimage/internal/fixture"
)

// TestControlNetWithLoRA composes a ControlNet with a LoRA (the diffusers
// fixture LoRA, which targets the noise refiner, the context refiner and
// the main layers). As upstream (ZImageControlNetModel.from_transformer
// shares the transformer's refiners and embedders; the LoRA is loaded into
// the transformer), the adapter changes the DiT, refiners included, also
// where the ControlNet runs them, and never the control blocks: the
// adapter binds to transformer weights only, and the ControlNet's own
// blocks are other tensors. Checked: scale 0 gives the no-LoRA result
// exactly (merged at Load: the whole image; at run time: the final
// latents), and at scale 1 the merged and the run-time image agree ±1 and
// differ from the no-LoRA image.
func TestControlNetWithLoRA(t *testing.T) {
	p := controlPipeline(t)
	c := controlCases(t)[0]
	if c.InitPNG != "" {
		t.Fatalf("case %s: want a plain control case first", c.Name)
	}
	file := loraPath(t, "lora_diffusers.safetensors")
	if err := p.LoadLoRA("cn-lora", file); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.UnloadLoRA("cn-lora") })
	ad := p.lora.registered["cn-lora"].ad
	for _, d := range ad.Deltas {
		if strings.HasPrefix(d.Weight, "control_") {
			t.Errorf("LoRA delta on the ControlNet's own weight %s", d.Weight)
		}
	}

	run := func(p *Pipeline, loras []LoRA) []byte {
		t.Helper()
		req := c.request(t)
		req.LoRAs = loras
		res, err := p.Run(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return rgbBytes(res)
	}
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	cn := filepath.Join(fixturefs.Path(t, controlDir), "controlnet")
	loadMerged := func(scale float32) *Pipeline {
		t.Helper()
		pm, err := Load(context.Background(), dir, WithDevice("cpu"), WithControlNet(cn), WithLoRA(file, scale))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pm.Close() })
		return pm
	}
	base := run(p, nil)

	// Scale 0 merged: W + 0·B·A rounds back to W, the same image.
	if got := run(loadMerged(0), nil); !bytes.Equal(got, base) {
		t.Errorf("merged at scale 0 vs no LoRA: %+v", fixture.ComparePixels(got, base))
	}

	// Scale 0 at run time (Request.LoRAs cannot say 0: it means 1): the
	// denoising loop with the adapter applied at scale 0 gives the no-LoRA
	// latents bit for bit.
	withLoRA := c.request(t)
	withLoRA.LoRAs = []LoRA{{Name: "cn-lora"}}
	scale0 := func(pl *plan) {
		for i := range pl.loras {
			pl.loras[i].scale = 0
		}
	}
	if !slices.Equal(controlDenoise(t, p, c, withLoRA, scale0), controlDenoise(t, p, c, c.request(t), nil)) {
		t.Error("run-time LoRA at scale 0: final latents differ from the no-LoRA latents")
	}

	// Scale 1: merged and run time agree ±1 and the adapter changed the image.
	rt := run(p, []LoRA{{Name: "cn-lora", Scale: 1}})
	merged := run(loadMerged(1), nil)
	ms := fixture.ComparePixels(merged, rt)
	if ms.MaxDiff > 1 {
		t.Errorf("ControlNet + LoRA, merged vs run time: %+v", ms)
	}
	bs := fixture.ComparePixels(rt, base)
	if bs.MaxDiff < 2 {
		t.Errorf("the LoRA did not change the ControlNet image: %+v", bs)
	}
	t.Logf("merged vs run time: %d/%d values differ (max %d); LoRA vs none: max %d", ms.Differ, ms.Total, ms.MaxDiff, bs.MaxDiff)
}
