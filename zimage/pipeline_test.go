package zimage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/sampler"
	"github.com/zimage/zimage/zimage/internal/fixture"
)

// e2eCase is one entry of e2e/e2e.json.
type e2eCase struct {
	Name           string  `json:"name"`
	Prompt         string  `json:"prompt"`
	NegativePrompt *string `json:"negative_prompt"`
	Height         int     `json:"height"`
	Width          int     `json:"width"`
	Seed           int64   `json:"seed"`
	Steps          int     `json:"num_inference_steps"`
	Guidance       float32 `json:"guidance_scale"`
	NumTokens      int     `json:"num_tokens"`
}

func (c e2eCase) request() Request {
	r := Request{Prompt: c.Prompt, Width: c.Width, Height: c.Height, Seed: c.Seed, Steps: c.Steps, Guidance: c.Guidance}
	if c.NegativePrompt != nil {
		r.NegativePrompt = *c.NegativePrompt
	}
	return r
}

func e2eCases(t testing.TB) []e2eCase {
	t.Helper()
	data, err := os.ReadFile(fixturefs.Path(t, "fixtures/e2e/e2e.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Cases []e2eCase `json:"cases"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Cases) == 0 {
		t.Fatal("no e2e cases")
	}
	return doc.Cases
}

var (
	loadOnce sync.Once
	shared   *Pipeline
	loadErr  error
)

// tinyPipeline loads the fixture model once per test binary.
func tinyPipeline(t testing.TB) *Pipeline {
	t.Helper()
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	loadOnce.Do(func() { shared, loadErr = Load(context.Background(), dir, WithDevice("cpu")) })
	if loadErr != nil {
		t.Fatal(loadErr)
	}
	return shared
}

// rgbBytes returns the RGB bytes of res.Image in HWC order.
func rgbBytes(res *Result) []byte {
	img := res.Image
	w, h := img.Rect.Dx(), img.Rect.Dy()
	out := make([]byte, 0, 3*w*h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := y*img.Stride + 4*x
			out = append(out, img.Pix[i:i+3]...)
		}
	}
	return out
}

// TestE2EFromEmbeddings feeds every e2e case's stored noise and prompt
// embeddings through the sampling loop and the VAE: latents after every step
// rel_l2 ≤ 1e-4, decoded max abs ≤ 2e-4, uint8 image within ±1 with at most
// 0.5% of values differing (fixtures README). The schedule must match
// exactly and the tokenizer must give the stored ids.
func TestE2EFromEmbeddings(t *testing.T) {
	p := tinyPipeline(t)
	for _, c := range e2eCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			fx := fixture.Open(t, "fixtures/e2e/"+c.Name+".safetensors")
			pl, err := p.validate(c.request())
			if err != nil {
				t.Fatal(err)
			}

			ids, _, err := p.tok.EncodeZImage(c.Prompt, pl.maxLen)
			if err != nil {
				t.Fatal(err)
			}
			if want := fx.I64(t, "input_ids")[:c.NumTokens]; !slices.Equal(ids, want) {
				t.Errorf("token ids differ from the reference:\n got %v\nwant %v", ids, want)
			}

			sched, err := sampler.NewSchedule(p.model.Scheduler, pl.steps, pl.imageTokens)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []struct {
				name string
				got  []float32
			}{{"sigmas", sched.Sigmas}, {"timesteps", sched.Timesteps}, {"dit_t", sched.DiTTime}} {
				if !slices.Equal(s.got, fx.F32(t, s.name)) {
					t.Errorf("%s = %v, want %v", s.name, s.got, fx.F32(t, s.name))
				}
			}

			pos := fx.F32(t, "prompt_embeds")
			var neg []float32
			if pl.cfg {
				neg = fx.F32(t, "negative_prompt_embeds")
			}
			var worst float64
			x, _, err := p.denoise(context.Background(), pl, fx.F32(t, "noise"), pos, neg, func(i int, x []float32) {
				s := fixture.Check(t, fmt.Sprintf("latents.%d", i-1), x, fx.F32(t, fmt.Sprintf("latents.%d", i-1)), fixture.Latents)
				worst = max(worst, s.RelL2)
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.openVAE(); err != nil {
				t.Fatal(err)
			}
			img, err := p.vae.Decode(context.Background(), x, pl.hl, pl.wl, nil)
			if err != nil {
				t.Fatal(err)
			}
			ds := fixture.Check(t, "decoded", img, fx.F32(t, "decoded"), fixture.Decoded)
			rgba, err := p.decode(context.Background(), x, pl.hl, pl.wl)
			if err != nil {
				t.Fatal(err)
			}
			ps := fixture.ComparePixels(rgbBytes(&Result{Image: rgba}), fx.U8(t, "image_u8"))
			if ps.MaxDiff > 1 || float64(ps.Differ) > 0.005*float64(ps.Total) {
				t.Errorf("image_u8: %+v", ps)
			}
			t.Logf("latents worst rel_l2 %.2g, decoded max_abs %.2g, u8 %d/%d differ (max %d)", worst, ds.MaxAbs, ps.Differ, ps.Total, ps.MaxDiff)
		})
	}
}

// TestEncodeMatchesE2E checks the text encoder stage of the pipeline on the
// e2e prompts (and the CFG negative prompt) against the stored embeddings.
func TestEncodeMatchesE2E(t *testing.T) {
	p := tinyPipeline(t)
	for _, c := range e2eCases(t) {
		if c.Seed != 42 && c.NegativePrompt == nil {
			continue // the embeddings depend on the prompt only
		}
		t.Run(c.Name, func(t *testing.T) {
			fx := fixture.Open(t, "fixtures/e2e/"+c.Name+".safetensors")
			ids, _, _ := p.tok.EncodeZImage(c.Prompt, 0)
			var neg []int
			if c.NegativePrompt != nil {
				neg, _, _ = p.tok.EncodeZImage(*c.NegativePrompt, 0)
			}
			caps, err := p.encode(context.Background(), ids, neg)
			if err != nil {
				t.Fatal(err)
			}
			fixture.Check(t, "prompt_embeds", caps[0], fx.F32(t, "prompt_embeds"), fixture.TextEncoder)
			if neg != nil {
				fixture.Check(t, "negative_prompt_embeds", caps[1], fx.F32(t, "negative_prompt_embeds"), fixture.TextEncoder)
			}
		})
	}
}

// TestRunMatchesPNG runs the whole pipeline from prompt and seed (tokenizer,
// torch-compatible noise, text encoder, DiT, VAE) and compares with the
// reference PNG: ≥ 99.9% of values within ±1 and none more than 4 off.
func TestRunMatchesPNG(t *testing.T) {
	p := tinyPipeline(t)
	for _, c := range e2eCases(t) {
		if testing.Short() && c.Seed != 7 && c.Name != "zh_64x96_seed42" {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			res := runStages(t, p, c.request(), "tokenize", "text_encoder", "denoise", "vae", "done")
			if res.Seed != c.Seed || res.Steps != c.Steps || res.Width != c.Width || res.Height != c.Height || res.Tokens != c.NumTokens || res.Truncated {
				t.Errorf("result metadata %+v", res)
			}
			if len(res.Timings.Steps) != c.Steps || res.Timings.Total <= 0 {
				t.Errorf("timings %+v", res.Timings)
			}
			checkReferencePNG(t, "image vs reference PNG", res, "fixtures/e2e/"+c.Name+".png")
		})
	}
}

// pngRGB is the fixture PNG rel as packed RGB values.
func pngRGB(t *testing.T, rel string) []byte {
	t.Helper()
	return fixturefs.ReadPNG(t, fixturefs.Path(t, rel))
}

func TestRequestErrors(t *testing.T) {
	p := tinyPipeline(t)
	for _, tc := range []struct {
		req   Request
		field string
	}{
		{Request{Width: 60, Height: 64}, "width"},
		{Request{Width: 64, Height: 0}, "height"},
		{Request{Width: 8192, Height: 64}, "width"},
		{Request{Width: 64, Height: 64, Steps: -1}, "steps"},
		{Request{Width: 64, Height: 64, Guidance: -1}, "guidance"},
		{Request{Width: 64, Height: 64, Seed: -2}, "seed"},
		{Request{Width: 64, Height: 64, MaxSequenceLength: 513}, "max_sequence_length"},
		{Request{Width: 64, Height: 64, CFGTruncation: -0.5}, "cfg_truncation"},
	} {
		tc.req.Prompt = "a cat"
		_, err := p.Run(context.Background(), tc.req)
		var re *RequestError
		if !errors.As(err, &re) || re.Field != tc.field {
			t.Errorf("%+v: got %v, want a *RequestError for %s", tc.req, err, tc.field)
		}
	}
	var te interface{ Error() string }
	if _, err := p.Run(context.Background(), Request{Prompt: "\xff", Width: 64, Height: 64}); err == nil || !errors.As(err, &te) {
		t.Errorf("invalid UTF-8 prompt: %v", err)
	}
}

// TestCancel cancels a Run mid-denoise and checks the pipeline still gives
// the same image afterwards.
func TestCancel(t *testing.T) {
	p := tinyPipeline(t)
	ctx, cancel := context.WithCancel(context.Background())
	req := Request{Prompt: "a cat", Width: 64, Height: 64, Seed: 3, Steps: 4}
	req.Progress = func(pr Progress) {
		if pr.Stage == "denoise" && pr.Step == 2 {
			cancel()
		}
	}
	if _, err := p.Run(ctx, req); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Run: %v", err)
	}
	req.Progress = nil
	a, err := p.Run(context.Background(), req)
	if err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	b, err := p.Run(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Image.Pix, b.Image.Pix) {
		t.Error("same request gave different images")
	}
	// Already-cancelled context: fails fast with ctx.Err().
	if _, err := p.Run(ctx, req); !errors.Is(err, context.Canceled) {
		t.Errorf("Run with a cancelled ctx: %v", err)
	}
}

func TestRandomSeedReported(t *testing.T) {
	p := tinyPipeline(t)
	res, err := p.Run(context.Background(), Request{Prompt: "x", Width: 32, Height: 32, Seed: -1, Steps: 1})
	if err != nil {
		t.Fatal(err)
	}
	again, err := p.Run(context.Background(), Request{Prompt: "x", Width: 32, Height: 32, Seed: res.Seed, Steps: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Seed < 0 || !slices.Equal(res.Image.Pix, again.Image.Pix) {
		t.Errorf("seed %d did not reproduce the random-seed image", res.Seed)
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(context.Background(), t.TempDir()); err == nil {
		t.Error("empty directory: want an error")
	}
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	var de *DeviceError
	if _, err := Load(context.Background(), dir, WithDevice("tpu")); !errors.As(err, &de) {
		t.Errorf("unknown device: %v", err)
	}
	if _, err := Load(context.Background(), dir, WithDevice("cuda")); !errors.As(err, &de) {
		t.Errorf("cuda (not built): %v", err)
	}
}

func TestClose(t *testing.T) {
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	p, err := Load(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := p.Generate(context.Background(), "x", 64, 64, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close: %v", err)
	}
}

// TestTokenizerMatchesTextEncoderFixture checks that the pipeline's tokens
// for every text_encoder.safetensors prompt are the reference ids (the
// long prompt truncated to 512 like the reference).
func TestTokenizerMatchesTextEncoderFixture(t *testing.T) {
	p := tinyPipeline(t)
	data, err := os.ReadFile(fixturefs.Path(t, "fixtures/text_encoder.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Cases []struct {
			ID        string `json:"id"`
			Prompt    string `json:"prompt"`
			Truncated bool   `json:"truncated"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	fx := fixture.Open(t, "fixtures/text_encoder.safetensors")
	for _, c := range doc.Cases {
		ids, truncated, err := p.tok.EncodeZImage(c.Prompt, 0)
		if err != nil {
			t.Fatal(err)
		}
		mask := fx.I64(t, c.ID+"/attention_mask")
		n := 0
		for _, m := range mask {
			n += m
		}
		if want := fx.I64(t, c.ID+"/input_ids")[:n]; !slices.Equal(ids, want) || truncated != c.Truncated {
			t.Errorf("%s: ids (truncated %v) differ from the reference (truncated %v)", c.ID, truncated, c.Truncated)
		}
	}
}

// TestLazyResidency: Load binds no network; a Run binds the DiT and VAE
// (kept for the next Run) while the text encoder is bound only inside its
// stage.
func TestLazyResidency(t *testing.T) {
	p, err := Load(context.Background(), fixturefs.Path(t, "fixtures/tiny-z-image-turbo"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.dit != nil || p.vae != nil || p.ditSet != nil || p.vaeSet != nil {
		t.Error("Load bound a network")
	}
	if _, err := p.Generate(context.Background(), "x", 32, 32, 1); err != nil {
		t.Fatal(err)
	}
	if p.dit == nil || p.vae == nil {
		t.Error("DiT/VAE not kept after a Run")
	}
}

// TestConcurrentRuns: Runs from several goroutines are serialized and give
// the same image as a lone Run.
func TestConcurrentRuns(t *testing.T) {
	p := tinyPipeline(t)
	req := Request{Prompt: "a boat", Width: 32, Height: 48, Seed: 5, Steps: 2}
	want, err := p.Run(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := p.Run(context.Background(), req)
			if err == nil && !slices.Equal(res.Image.Pix, want.Image.Pix) {
				err = fmt.Errorf("concurrent Run gave a different image")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestEmptyPromptRejected(t *testing.T) {
	p, err := Load(context.Background(), fixturefs.Path(t, "fixtures/tiny-z-image-turbo"), WithDevice("cpu"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, prompt := range []string{"", "  \n\t"} {
		_, err := p.Generate(context.Background(), prompt, 64, 64, 1)
		var re *RequestError
		if !errors.As(err, &re) || re.Field != "prompt" {
			t.Errorf("prompt %q: got %v, want a RequestError for field prompt", prompt, err)
		}
	}
}
