package zimage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/zimage/controlnet"
	"github.com/zimage/zimage/zimage/internal/fixture"
)

// controlCase is one case of e2e_controlnet.json.
type controlCase struct{ fixturefs.ControlCase }

const controlDir = "fixtures/e2e_controlnet"

func controlCases(t testing.TB) []controlCase {
	t.Helper()
	var out []controlCase
	for _, c := range fixturefs.ControlCases(t) {
		out = append(out, controlCase{c})
	}
	if len(out) < 2 {
		t.Fatalf("%d controlnet cases", len(out))
	}
	return out
}

func (c controlCase) request(t testing.TB) Request {
	r := Request{Prompt: c.Prompt, Width: c.Width, Height: c.Height, Seed: c.Seed, Steps: c.Steps,
		Guidance: c.Guidance, Control: &Control{Image: decodeFixture(t, controlDir+"/"+c.ControlPNG), Scale: c.Scale}}
	if c.InitPNG != "" {
		r.Image = decodeFixture(t, controlDir+"/"+c.InitPNG)
		r.Mask = decodeFixture(t, controlDir+"/"+c.MaskPNG)
	}
	return r
}

var (
	cnOnce sync.Once
	cnPipe *Pipeline
	cnErr  error
)

// controlPipeline is the tiny model with the fixture ControlNet (diffusers
// directory), shared by the tests.
func controlPipeline(t testing.TB) *Pipeline {
	t.Helper()
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	cn := filepath.Join(fixturefs.Path(t, controlDir), "controlnet")
	cnOnce.Do(func() { cnPipe, cnErr = Load(context.Background(), dir, WithDevice("cpu"), WithControlNet(cn)) })
	if cnErr != nil {
		t.Fatal(cnErr)
	}
	return cnPipe
}

// TestControlStages checks the control context of every case (control image
// preprocessing exact, VAE mode latents and, for inpainting, the keep mask
// and masked-init latents) against diffusers, with the encoder whole and
// tiled.
func TestControlStages(t *testing.T) {
	p := controlPipeline(t)
	for _, c := range controlCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			fx := fixture.Open(t, controlDir+"/"+c.Name+".safetensors")
			pl, err := p.validate(c.request(t))
			if err != nil {
				t.Fatal(err)
			}
			if pl.edit != nil || pl.control == nil {
				t.Fatalf("plan: edit %v control %v", pl.edit, pl.control)
			}
			fixture.Check(t, "control_image_preprocessed", pl.control.control, fx.F32(t, "control_image_preprocessed"), fixture.Tol{MaxAbs: 1e-6})
			for _, tile := range []int{0, 24} { // whole, and tiled as the planner may ask
				if err := p.prepareControl(context.Background(), pl, Plan{VAETile: tile}, &Result{}, func(string, int, int) {}); err != nil {
					t.Fatal(err)
				}
				got := pl.control.hook
				if got == nil {
					t.Fatal("no hook")
				}
				want := fx.F32(t, "control_context")
				fixture.Check(t, fmt.Sprintf("control_context (tile %d)", tile), got.Context(), want, fixture.VAE)
			}
		})
	}
}

// TestControlRunMatchesPNG runs every case through Run: final image ≥ 99.9%
// of the PNG values within ±1 of diffusers', none off by more than 4.
func TestControlRunMatchesPNG(t *testing.T) {
	p := controlPipeline(t)
	for _, c := range controlCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			res := runStages(t, p, c.request(t), "tokenize", "text_encoder", "image_encoder", "denoise", "vae", "done")
			if len(res.Timings.Steps) != c.Steps {
				t.Errorf("%d steps run, want %d", len(res.Timings.Steps), c.Steps)
			}
			checkReferencePNG(t, "image vs reference PNG", res, controlDir+"/"+c.Name+".png")
		})
	}
}

// TestControlLatents runs every case's denoising loop from the recorded
// noise and compares the final latents (rel-L2 ≤ 1e-4).
func TestControlLatents(t *testing.T) {
	p := controlPipeline(t)
	for _, c := range controlCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			fx := fixture.Open(t, controlDir+"/"+c.Name+".safetensors")
			final := controlDenoise(t, p, c, c.request(t), nil)
			s := fixture.Check(t, "final_latents", final, fx.F32(t, "final_latents"), fixture.Latents)
			t.Logf("final latents rel_l2 %.2g", s.RelL2)
		})
	}
}

// controlDenoise runs case c's denoising loop for req from the recorded
// noise and returns the final latents; tweak (if not nil) may change the
// validated plan first.
func controlDenoise(t *testing.T, p *Pipeline, c controlCase, req Request, tweak func(*plan)) []float32 {
	t.Helper()
	pl, err := p.validate(req)
	if err != nil {
		t.Fatal(err)
	}
	if tweak != nil {
		tweak(&pl)
	}
	if err := p.prepareControl(context.Background(), pl, Plan{}, &Result{}, func(string, int, int) {}); err != nil {
		t.Fatal(err)
	}
	ids, _, err := p.tok.EncodeZImage(c.Prompt, DefaultMaxSequenceLen)
	if err != nil {
		t.Fatal(err)
	}
	caps, err := p.encode(context.Background(), ids, nil)
	if err != nil {
		t.Fatal(err)
	}
	fx := fixture.Open(t, controlDir+"/"+c.Name+".safetensors")
	final, _, err := p.denoise(context.Background(), pl, fx.F32(t, "noise"), caps[0], nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return final
}

// TestControlErrors: a control image without a ControlNet, bad control
// requests and a ControlNet for another transformer are typed errors; the
// pipelines still generate afterwards.
func TestControlErrors(t *testing.T) {
	plain := tinyPipeline(t)
	c := controlCases(t)[0]
	_, err := plain.Run(context.Background(), c.request(t))
	var re *RequestError
	if !errors.As(err, &re) || re.Field != "control" {
		t.Errorf("control without a ControlNet: got %v, want a *RequestError for control", err)
	}
	p := controlPipeline(t)
	var ic controlCase // the inpainting case
	for _, k := range controlCases(t) {
		if k.InitPNG != "" {
			ic = k
		}
	}
	img := decodeFixture(t, controlDir+"/"+ic.InitPNG)
	mask := decodeFixture(t, controlDir+"/"+ic.MaskPNG)
	ctl := decodeFixture(t, controlDir+"/"+c.ControlPNG)
	for _, tc := range []struct {
		req   Request
		field string
	}{
		{Request{Control: &Control{}, Width: 64, Height: 64}, "control"},
		{Request{Control: &Control{Image: image.NewGray(image.Rect(0, 0, 0, 0))}, Width: 64, Height: 64}, "control"},
		{Request{Control: &Control{Image: ctl, Scale: float32(math.Inf(1))}}, "control_scale"},
		{Request{Control: &Control{Image: ctl}, Image: img}, "image"},
		{Request{Control: &Control{Image: ctl}, Image: img, Mask: mask, Strength: 0.5}, "strength"},
		{Request{Control: &Control{Image: image.NewGray(image.Rect(0, 0, 10, 10))}}, "width"},
	} {
		tc.req.Prompt = "a cat"
		_, err := p.Run(context.Background(), tc.req)
		if !errors.As(err, &re) || re.Field != tc.field {
			t.Errorf("%+v: got %v, want a *RequestError for %s", tc.req, err, tc.field)
		}
	}
	// Width/Height 0 take the control image's size.
	pl, err := p.validate(Request{Prompt: "a fox", Control: &Control{Image: ctl}})
	cb := ctl.Bounds()
	if err != nil || pl.req.Width != cb.Dx()/p.mult*p.mult || pl.req.Height != cb.Dy()/p.mult*p.mult || pl.control.scale != DefaultControlScale {
		t.Errorf("defaults: %v %dx%d %+v", err, pl.req.Width, pl.req.Height, pl.control)
	}
	// A ControlNet for another transformer: refused at Load.
	cfg, err := controlnet.ReadConfig(filepath.Join(fixturefs.Path(t, controlDir), "controlnet", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ControlLayersPlaces = []int{0, 5}
	bad := t.TempDir()
	data, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(bad, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := os.ReadFile(filepath.Join(fixturefs.Path(t, controlDir), "controlnet", "diffusion_pytorch_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bad, "diffusion_pytorch_model.safetensors"), w, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(context.Background(), fixturefs.Path(t, "fixtures/tiny-z-image-turbo"), WithDevice("cpu"), WithControlNet(bad))
	var me *controlnet.MismatchError
	if !errors.As(err, &me) {
		t.Errorf("mismatched ControlNet: got %v, want *controlnet.MismatchError", err)
	}
	_, err = Load(context.Background(), fixturefs.Path(t, "fixtures/tiny-z-image-turbo"), WithDevice("cpu"), WithControlNet(filepath.Join(bad, "nope")))
	var mde *ModelError
	if !errors.As(err, &mde) {
		t.Errorf("missing ControlNet: got %v, want *ModelError", err)
	}
	// Still usable.
	res, err := p.Run(context.Background(), c.request(t))
	if err != nil {
		t.Fatal(err)
	}
	checkReferencePNG(t, "after errors", res, controlDir+"/"+c.Name+".png")
}

// TestControlAfterDiTRelease: the residency planner may release the DiT
// between runs; the ControlNet, bound to it, is released with it and bound
// again to the new one (same image). Its weights count with the DiT's.
func TestControlAfterDiTRelease(t *testing.T) {
	p := controlPipeline(t)
	c := controlCases(t)[1]
	want := pngRGB(t, controlDir+"/"+c.Name+".png")
	for i := 0; i < 2; i++ {
		res, err := p.Run(context.Background(), c.request(t))
		if err != nil {
			t.Fatal(err)
		}
		if ps := fixture.ComparePixels(rgbBytes(res), want); ps.FracOff1 > 0.001 || ps.MaxDiff > 4 {
			t.Errorf("run %d: %+v", i, ps)
		}
		p.mu.Lock()
		p.releaseDiT()
		if p.cn.m != nil {
			t.Error("ControlNet still bound after releaseDiT")
		}
		p.mu.Unlock()
	}
	if n := p.controlNetBytes(2); n < 2*5_000_000 {
		t.Errorf("controlnet bytes %d", n)
	}
}

// TestControlCFG: with CFG the ControlNet steers both passes (as upstream,
// which repeats the control context for the negative batch half); the
// result differs from the unguided one and from CFG without control.
func TestControlCFG(t *testing.T) {
	p := controlPipeline(t)
	c := controlCases(t)[0]
	req := c.request(t)
	req.Guidance, req.Steps = 3, 2
	a, err := p.Run(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	req.Control = nil
	b, err := p.Run(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if ps := fixture.ComparePixels(rgbBytes(a), rgbBytes(b)); ps.Differ < ps.Total/2 {
		t.Errorf("control changed only %d of %d values under CFG", ps.Differ, ps.Total)
	}
}

// TestControlActivation: the planner counts the hints of every control
// place, plus two streams, at the request's size.
func TestControlActivation(t *testing.T) {
	p := controlPipeline(t)
	c := controlCases(t)[0]
	pl, err := p.validate(c.request(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := p.cn.ck.Config
	L := (pl.imageTokens+31)/32*32 + 64 // 40 tokens → 64 rows
	if got, want := p.controlActivation(pl, 40, 2), uint64((len(cfg.ControlLayersPlaces)+2)*L*cfg.Dim*2); got != want {
		t.Errorf("control activation %d, want %d", got, want)
	}
	pl.control = nil
	if p.controlActivation(pl, 40, 2) != 0 {
		t.Error("activation without control")
	}
}

// TestControlCancel: cancelling a ControlNet run returns ctx.Err() and
// leaves the pipeline usable.
func TestControlCancel(t *testing.T) {
	p := controlPipeline(t)
	c := controlCases(t)[0]
	ctx, cancel := context.WithCancel(context.Background())
	req := c.request(t)
	req.Progress = func(pr Progress) {
		if pr.Stage == "denoise" && pr.Step == 1 {
			cancel()
		}
	}
	if _, err := p.Run(ctx, req); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	res, err := p.Run(context.Background(), c.request(t))
	if err != nil {
		t.Fatal(err)
	}
	checkReferencePNG(t, "after cancel", res, controlDir+"/"+c.Name+".png")
}

// TestLoadControlNetLater attaches a ControlNet to a loaded pipeline,
// keeps it when a bad one is offered, and removes it.
func TestLoadControlNetLater(t *testing.T) {
	p, err := Load(context.Background(), fixturefs.Path(t, "fixtures/tiny-z-image-turbo"), WithDevice("cpu"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := controlCases(t)[0]
	if err := p.LoadControlNet(context.Background(), filepath.Join(fixturefs.Path(t, controlDir), "controlnet")); err != nil {
		t.Fatal(err)
	}
	if err := p.LoadControlNet(context.Background(), filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("missing ControlNet: no error")
	}
	res, err := p.Run(context.Background(), c.request(t))
	if err != nil {
		t.Fatal(err)
	}
	checkReferencePNG(t, "with a ControlNet loaded later", res, controlDir+"/"+c.Name+".png")
	if err := p.LoadControlNet(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	var re *RequestError
	if _, err := p.Run(context.Background(), c.request(t)); !errors.As(err, &re) || re.Field != "control" {
		t.Errorf("after unloading: %v", err)
	}
}
