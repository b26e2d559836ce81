package zimage

import (
	"context"
	"errors"
	"image"
	"slices"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/zimage/imageproc"
	"github.com/zimage/zimage/zimage/internal/fixture"
)

// editCase is one case of e2e_img2img.json / e2e_inpaint.json.
type editCase struct{ fixturefs.EditCase }

func editCases(t testing.TB) []editCase {
	t.Helper()
	var out []editCase
	for _, c := range fixturefs.EditCases(t) {
		out = append(out, editCase{c})
	}
	if len(out) < 6 {
		t.Fatalf("%d edit cases", len(out))
	}
	return out
}

func decodeFixture(t testing.TB, rel string) image.Image {
	t.Helper()
	img, err := imageproc.DecodeFile(fixturefs.Path(t, rel), 0)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func (c editCase) request(t testing.TB) Request {
	r := Request{Prompt: c.Prompt, Width: c.Width, Height: c.Height, Seed: c.Seed, Steps: c.Steps,
		Guidance: c.Guidance, Strength: c.Strength, Image: decodeFixture(t, "fixtures/"+c.Dir+"/"+c.InitPNG)}
	if c.MaskPNG != "" {
		r.Mask = decodeFixture(t, "fixtures/"+c.Dir+"/"+c.MaskPNG)
	}
	return r
}

// TestEditStages runs every img2img and inpaint case stage by stage against
// diffusers: t_start, the latent mask (exact), the posterior-sample and noise
// draws of the generator (exact), image and start latents, the latents after
// every step and the final latents (rel_l2 ≤ 1e-4; the inpaint's preserved
// area ends exactly at image_latents, as upstream).
func TestEditStages(t *testing.T) {
	p := tinyPipeline(t)
	for _, c := range editCases(t) {
		t.Run(c.Dir+"/"+c.Name, func(t *testing.T) {
			fx := fixture.Open(t, "fixtures/"+c.Dir+"/"+c.Name+".safetensors")
			pl, err := p.validate(c.request(t))
			if err != nil {
				t.Fatal(err)
			}
			if pl.edit == nil || pl.edit.tStart != c.TStart {
				t.Fatalf("t_start %+v, want %d", pl.edit, c.TStart)
			}
			if !slices.Equal(pl.edit.image, fx.F32(t, "init_image_preprocessed")) {
				t.Error("preprocessed image differs")
			}
			if c.MaskPNG != "" && !slices.Equal(pl.edit.mask, fx.F32(t, "mask_latent")) {
				t.Errorf("mask_latent differs")
			}
			start, err := p.prepareEdit(context.Background(), pl, Plan{})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(pl.edit.noise, fx.F32(t, "noise")) {
				fixture.Check(t, "noise", pl.edit.noise, fx.F32(t, "noise"), fixture.Tol{MaxAbs: 3e-6})
			}
			fixture.Check(t, "image_latents", pl.edit.imageLatents, fx.F32(t, "image_latents"), fixture.VAE)
			fixture.Check(t, "start_latents", start, fx.F32(t, "start_latents"), fixture.Latents)

			ids, _, err := p.tok.EncodeZImage(c.Prompt, DefaultMaxSequenceLen)
			if err != nil {
				t.Fatal(err)
			}
			caps, err := p.encode(context.Background(), ids, nil)
			if err != nil {
				t.Fatal(err)
			}
			steps := 0
			final, _, err := p.denoise(context.Background(), pl, start, caps[0], nil, func(i int, x []float32) {
				steps++
				fixture.Check(t, "latents."+string(rune('0'+i-1)), x, fx.F32(t, "latents."+string(rune('0'+i-1))), fixture.Latents)
			})
			if err != nil {
				t.Fatal(err)
			}
			if steps != c.Steps-c.TStart {
				t.Errorf("%d steps run, want %d", steps, c.Steps-c.TStart)
			}
			s := fixture.Check(t, "final_latents", final, fx.F32(t, "final_latents"), fixture.Latents)
			t.Logf("final latents rel_l2 %.2g", s.RelL2)
			if c.MaskPNG != "" {
				hw := len(pl.edit.mask)
				for i, v := range final {
					if pl.edit.mask[i%hw] == 0 && v != pl.edit.imageLatents[i] {
						t.Fatalf("preserved latent %d = %v, want image latent %v", i, v, pl.edit.imageLatents[i])
					}
				}
			}
		})
	}
}

// TestEditRunMatchesPNG runs every case through Run: ≥ 99.9% of the PNG's
// values within ±1 of diffusers', none off by more than 4.
func TestEditRunMatchesPNG(t *testing.T) {
	p := tinyPipeline(t)
	for _, c := range editCases(t) {
		t.Run(c.Dir+"/"+c.Name, func(t *testing.T) {
			res := runStages(t, p, c.request(t), "tokenize", "text_encoder", "image_encoder", "denoise", "vae", "done")
			if len(res.Timings.Steps) != c.Steps-c.TStart || res.Timings.EncodeImage <= 0 {
				t.Errorf("timings %+v", res.Timings)
			}
			checkReferencePNG(t, "image vs reference PNG", res, "fixtures/"+c.Dir+"/"+c.Name+".png")
		})
	}
}

// TestEditDefaults: Width/Height 0 take the image's size; Strength 0 is
// upstream's default for the mode (0.6 img2img → t_start 3 of 8; 1.0
// inpaint → 0); an image of another size is resized to the request's.
func TestEditDefaults(t *testing.T) {
	p := tinyPipeline(t)
	img := decodeFixture(t, "fixtures/e2e_img2img/init_64x96.png")
	mask := decodeFixture(t, "fixtures/e2e_inpaint/mask_rect_64x96.png")
	pl, err := p.validate(Request{Prompt: "a fox", Image: img})
	if err != nil {
		t.Fatal(err)
	}
	if pl.req.Width != 96 || pl.req.Height != 64 || pl.edit.strength != DefaultImg2ImgStrength || pl.edit.tStart != 3 {
		t.Errorf("img2img defaults: %dx%d strength %v t_start %d", pl.req.Width, pl.req.Height, pl.edit.strength, pl.edit.tStart)
	}
	pl, err = p.validate(Request{Prompt: "a fox", Image: img, Mask: mask})
	if err != nil {
		t.Fatal(err)
	}
	if pl.edit.strength != DefaultInpaintStrength || pl.edit.tStart != 0 || pl.edit.mask == nil {
		t.Errorf("inpaint defaults: strength %v t_start %d", pl.edit.strength, pl.edit.tStart)
	}
	pl, err = p.validate(Request{Prompt: "a fox", Image: img, Mask: mask, Width: 32, Height: 48})
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.edit.image) != 3*32*48 || len(pl.edit.mask) != 4*6 {
		t.Errorf("resized: %d image values, %d mask cells", len(pl.edit.image), len(pl.edit.mask))
	}
	// 1 step at low strength still runs one step.
	pl, err = p.validate(Request{Prompt: "a fox", Image: img, Strength: 0.01})
	if err != nil || pl.edit.tStart != 7 {
		t.Errorf("strength 0.01: %v, t_start %+v", err, pl.edit)
	}
}

// TestEditRequestErrors: bad image inputs are *RequestError naming the field,
// and the pipeline still generates afterwards.
func TestEditRequestErrors(t *testing.T) {
	p := tinyPipeline(t)
	img := decodeFixture(t, "fixtures/e2e_img2img/init_64x96.png")
	mask := decodeFixture(t, "fixtures/e2e_inpaint/mask_rect_64x96.png")
	small := image.NewGray(image.Rect(0, 0, 48, 32))
	for _, tc := range []struct {
		req   Request
		field string
	}{
		{Request{Image: img, Strength: 1.5}, "strength"},
		{Request{Image: img, Strength: -0.1}, "strength"},
		{Request{Image: img, Mask: small}, "mask"},
		{Request{Mask: mask, Width: 64, Height: 64}, "mask"},
		{Request{Strength: 0.5, Width: 64, Height: 64}, "strength"},
		{Request{Image: image.NewGray(image.Rect(0, 0, 10, 10))}, "width"},
		{Request{Image: image.NewGray(image.Rect(0, 0, 0, 0)), Width: 64, Height: 64}, "image"},
	} {
		tc.req.Prompt = "a cat"
		_, err := p.Run(context.Background(), tc.req)
		var re *RequestError
		if !errors.As(err, &re) || re.Field != tc.field {
			t.Errorf("%+v: got %v, want a *RequestError for %s", tc.req, err, tc.field)
		}
	}
	c := editCases(t)[0]
	res, err := p.Run(context.Background(), c.request(t))
	if err != nil {
		t.Fatal(err)
	}
	checkReferencePNG(t, "after errors", res, "fixtures/"+c.Dir+"/"+c.Name+".png")
}

// TestResidencyTiledEdit: when the plan tiles the VAE, the encoder is tiled
// too; an img2img image stays within ±1 of the untiled CPU result.
func TestResidencyTiledEdit(t *testing.T) {
	req := residencyRequest()
	req.Width, req.Height = 128, 96
	req.Image = decodeFixture(t, "fixtures/e2e_img2img/init_64x96.png")
	req.Strength = 0.6
	want := reference(t, req)
	probe, _ := fakePipeline(t, 1<<40)
	fp, _ := probe.footprint()
	total := findTotal(t, *fp, req, tokensOf(t, probe, req), func(cold, warm Plan) bool {
		return warm.Keep.DiT && warm.VAETile > 0 && cold.VAETile > 0
	})
	p, _ := fakePipeline(t, total)
	res, err := p.Run(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Memory
	t.Logf("peak %d B of %d B (predicted %d B): %v", m.Peak, total, m.Plan.Peak, m.Plan)
	if m.Plan.VAETile == 0 || m.Peak > total {
		t.Errorf("plan %v, measured peak %d B of %d B", m.Plan, m.Peak, total)
	}
	ps := fixture.ComparePixels(rgbBytes(res), rgbBytes(want))
	if ps.MaxDiff > 1 || ps.FracOff1 > 0 || float64(ps.Differ) > 0.001*float64(ps.Total) {
		t.Errorf("tiled edit vs untiled: %+v", ps)
	}
}

// TestResidencyEditPeak: on a device with room for everything, the image
// encode stays within the plan's predicted peak (the decode stage's bound
// covers it: the encoder's weights and activations are smaller).
func TestResidencyEditPeak(t *testing.T) {
	for _, sz := range [][2]int{{128, 96}, {64, 256}} {
		req := residencyRequest()
		req.Width, req.Height = sz[0], sz[1]
		req.Image = decodeFixture(t, "fixtures/e2e_img2img/init_64x96.png")
		req.Mask = decodeFixture(t, "fixtures/e2e_inpaint/mask_rect_64x96.png")
		p, _ := fakePipeline(t, 1<<40)
		res, err := p.Run(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		m := res.Memory
		t.Logf("%v: peak %d B, predicted %d B: %v", sz, m.Peak, m.Plan.Peak, m.Plan)
		if m.Peak > m.Plan.Peak {
			t.Errorf("%v: measured peak %d B above the plan's %d B", sz, m.Peak, m.Plan.Peak)
		}
	}
}

// TestEditCancel: a Run cancelled while the image is encoded returns
// ctx.Err(), and the pipeline then gives the reference image.
func TestEditCancel(t *testing.T) {
	p := tinyPipeline(t)
	c := editCases(t)[0]
	ctx, cancel := context.WithCancel(context.Background())
	req := c.request(t)
	req.Progress = func(pr Progress) {
		if pr.Stage == "image_encoder" {
			cancel()
		}
	}
	if _, err := p.Run(ctx, req); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	res, err := p.Run(context.Background(), c.request(t))
	if err != nil {
		t.Fatal(err)
	}
	checkReferencePNG(t, "after the cancel", res, "fixtures/"+c.Dir+"/"+c.Name+".png")
}

// TestEditSingleFileVAE: img2img with the VAE from a FLUX-layout
// ae.safetensors (encoder.down.N.block.M…, 1×1-conv attention) gives the
// same image as from the diffusers directory.
func TestEditSingleFileVAE(t *testing.T) {
	dit, te, vaeFile, _ := comfyFiles(t)
	c := editCases(t)[3] // inpaint
	want, err := tinyPipeline(t).Run(context.Background(), c.request(t))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Load(context.Background(), fixturefs.Path(t, "fixtures/tiny-z-image-turbo"), WithDevice("cpu"), WithSingleFiles(dit, te, vaeFile, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	got, err := p.Run(context.Background(), c.request(t))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Image.Pix, want.Image.Pix) {
		t.Error("image differs from the diffusers directory's")
	}
}

// TestEditWithLoRA: a run-time LoRA composes with img2img and inpainting:
// the request runs, the LoRA changes the image, and the pipeline then gives
// the reference image without it.
func TestEditWithLoRA(t *testing.T) {
	p := tinyPipeline(t)
	for _, c := range []editCase{editCases(t)[0], editCases(t)[4]} {
		plain, err := p.Run(context.Background(), c.request(t))
		if err != nil {
			t.Fatal(err)
		}
		req := c.request(t)
		req.LoRAs = []LoRA{{Path: fixturefs.Path(t, "fixtures/e2e_lora/lora_diffusers.safetensors"), Scale: 1}}
		with, err := p.Run(context.Background(), req)
		if err != nil {
			t.Fatalf("%s with a LoRA: %v", c.Name, err)
		}
		if slices.Equal(with.Image.Pix, plain.Image.Pix) {
			t.Errorf("%s: the LoRA changed nothing", c.Name)
		}
		again, err := p.Run(context.Background(), c.request(t))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(again.Image.Pix, plain.Image.Pix) {
			t.Errorf("%s: the image without the LoRA changed after a LoRA request", c.Name)
		}
	}
}
