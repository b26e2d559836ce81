package zimage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/internal/fixture"
	"github.com/zimage/zimage/zimage/lora"
)

func loraPath(t testing.TB, file string) string {
	return fixturefs.Path(t, "fixtures/e2e_lora/"+file)
}

func loraRequest(c fixturefs.LoRACase, runtime bool) Request {
	req := Request{Prompt: c.Prompt, Width: c.Width, Height: c.Height, Seed: c.Seed, Steps: c.Steps, Guidance: c.Guidance}
	if runtime {
		for _, l := range c.LoRAs {
			req.LoRAs = append(req.LoRAs, LoRA{Name: l.Adapter, Scale: l.Scale})
		}
	}
	return req
}

// TestLoRAFixtures runs every e2e_lora case at run time (registered
// adapters selected per request) and merged at Load: latents after every
// step (stored noise and embeddings) rel_l2 ≤ 1e-4, PNG ≥ 99.9% of values
// within ±1 and none off by more than 4, merged image = run-time image ±1.
func TestLoRAFixtures(t *testing.T) {
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	p, err := Load(context.Background(), dir, WithDevice("cpu"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cases := fixturefs.LoRACases(t)
	for _, c := range cases {
		for _, l := range c.LoRAs {
			if err := p.LoadLoRA(l.Adapter, loraPath(t, l.File)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := p.LoRAs(); len(got) != 3 || got[0].Name != "comfyui" || got[1].Format != lora.FormatDiffusers || got[2].Modules != 42 {
		t.Errorf("LoRAs() = %+v", got)
	}
	base := fixture.Open(t, "fixtures/e2e/en_64x64_seed42.safetensors")
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			fx := fixture.Open(t, "fixtures/e2e_lora/"+c.Name+".safetensors")
			want := pngRGB(t, "fixtures/e2e_lora/"+c.Name+".png")

			// Latents from the stored noise and embeddings.
			pl, err := p.validate(loraRequest(c, true))
			if err != nil {
				t.Fatal(err)
			}
			var worst float64
			x, _, err := p.denoise(context.Background(), pl, base.F32(t, "noise"), base.F32(t, "prompt_embeds"), nil, func(i int, x []float32) {
				s := fixture.Check(t, fmt.Sprintf("latents.%d", i-1), x, fx.F32(t, fmt.Sprintf("latents.%d", i-1)), fixture.Latents)
				worst = max(worst, s.RelL2)
			})
			if err != nil {
				t.Fatal(err)
			}
			fixture.Check(t, "final_latents", x, fx.F32(t, "final_latents"), fixture.Latents)

			// Whole runs: run time, then merged at Load.
			res, err := p.Run(context.Background(), loraRequest(c, true))
			if err != nil {
				t.Fatal(err)
			}
			rt := rgbBytes(res)
			ps := fixture.ComparePixels(rt, want)
			if ps.FracOff1 > 0.001 || ps.MaxDiff > 4 {
				t.Errorf("run-time image vs reference PNG: %+v", ps)
			}
			if testing.Short() && c.Name != cases[len(cases)-1].Name {
				return
			}
			var opts []Option
			for _, l := range c.LoRAs {
				opts = append(opts, WithLoRA(loraPath(t, l.File), l.Scale))
			}
			pm, err := Load(context.Background(), dir, append(opts, WithDevice("cpu"))...)
			if err != nil {
				t.Fatal(err)
			}
			defer pm.Close()
			mres, err := pm.Run(context.Background(), loraRequest(c, false))
			if err != nil {
				t.Fatal(err)
			}
			ms := fixture.ComparePixels(rgbBytes(mres), rt)
			if ms.MaxDiff > 1 {
				t.Errorf("merged vs run-time image: %+v", ms)
			}
			mp := fixture.ComparePixels(rgbBytes(mres), want)
			t.Logf("latents worst rel_l2 %.2g; run time vs PNG %d/%d differ (max %d); merged vs run time %d differ (max %d), vs PNG max %d",
				worst, ps.Differ, ps.Total, ps.MaxDiff, ms.Differ, ms.MaxDiff, mp.MaxDiff)
		})
	}

	// A plain request after LoRA requests is the plain model again.
	c := cases[0]
	res, err := p.Run(context.Background(), loraRequest(c, false))
	if err != nil {
		t.Fatal(err)
	}
	checkReferencePNG(t, "no-LoRA run after LoRA runs", res, "fixtures/e2e/en_64x64_seed42.png")
}

// TestLoRAErrors checks that every bad LoRA input is a typed error and the
// pipeline stays usable.
func TestLoRAErrors(t *testing.T) {
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	p, err := Load(context.Background(), dir, WithDevice("cpu"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	tmp := t.TempDir()
	write := func(name string, ts ...*weights.Tensor) string {
		path := filepath.Join(tmp, name)
		if err := weights.WriteFile(path, ts, nil); err != nil {
			t.Fatal(err)
		}
		return path
	}
	mat := func(name string, r, c int) *weights.Tensor {
		return &weights.Tensor{Name: name, DType: weights.F32, Shape: []int{r, c}, Data: make([]byte, 4*r*c)}
	}
	lokr := write("lokr.safetensors", mat("lora_unet_layers_0_attention_to_q.lokr_w1", 2, 2))
	unmatched := write("far.safetensors", mat("transformer.layers.99.attention.to_q.lora_A.weight", 4, 288), mat("transformer.layers.99.attention.to_q.lora_B.weight", 288, 4))
	shape := write("shape.safetensors", mat("transformer.layers.0.attention.to_q.lora_A.weight", 4, 100), mat("transformer.layers.0.attention.to_q.lora_B.weight", 288, 4))

	var ue *lora.UnsupportedError
	if err := p.LoadLoRA("x", lokr); !errors.As(err, &ue) {
		t.Errorf("LoKr: %v", err)
	}
	var um *lora.UnmatchedError
	if err := p.LoadLoRA("x", unmatched); !errors.As(err, &um) || !strings.Contains(err.Error(), "layers.99.attention.to_q.lora_A.weight") {
		t.Errorf("unmatched: %v", err)
	}
	var mm *lora.MismatchError
	if err := p.LoadLoRA("x", shape); !errors.As(err, &mm) {
		t.Errorf("shape: %v", err)
	}
	if err := p.LoadLoRA("x", filepath.Join(tmp, "missing.safetensors")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Load(context.Background(), dir, WithDevice("cpu"), WithLoRA(unmatched, 1)); !errors.As(err, &um) {
		t.Errorf("WithLoRA: %v", err)
	}
	if err := p.LoadLoRA("good", loraPath(t, "lora_comfyui.safetensors")); err != nil {
		t.Fatal(err)
	}

	req := Request{Prompt: "a fox", Width: 64, Height: 64, Seed: 1, Steps: 1}
	for _, c := range []struct {
		loras []LoRA
		check func(error) bool
	}{
		{[]LoRA{{Name: "nope"}}, func(err error) bool {
			var u *UnknownLoRAError
			var re *RequestError
			return errors.As(err, &u) && errors.As(err, &re) && re.Field == "loras" && strings.Contains(err.Error(), "available: good")
		}},
		{[]LoRA{{Name: "good", Path: "x"}}, func(err error) bool { var re *RequestError; return errors.As(err, &re) }},
		{[]LoRA{{}}, func(err error) bool { var re *RequestError; return errors.As(err, &re) }},
		{[]LoRA{{Name: "good", Scale: float32(posInf())}}, func(err error) bool { var re *RequestError; return errors.As(err, &re) }},
		{[]LoRA{{Name: "good"}, {Path: unmatched}}, func(err error) bool { return errors.As(err, &um) }},
	} {
		r := req
		r.LoRAs = c.loras
		if _, err := p.Run(context.Background(), r); !c.check(err) {
			t.Errorf("%+v: %v (%T)", c.loras, err, err)
		}
	}
	// Still usable, with and without the adapter.
	r := req
	r.LoRAs = []LoRA{{Name: "good", Scale: 0.5}}
	if _, err := p.Run(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if err := p.UnloadLoRA("good"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Run(context.Background(), r); err == nil {
		t.Error("unloaded adapter still usable")
	}
}

func posInf() float64 { return 1 / zero }

var zero float64

// fusedQKVLoRA rewrites lora_diffusers.safetensors in the ComfyUI
// single-file naming: attention.qkv with A = [A_q; A_k; A_v] and a
// block-diagonal B (the exact fused equivalent, rank 3r), attention.out for
// to_out.0, under diffusion_model.
func fusedQKVLoRA(t *testing.T) string {
	t.Helper()
	src, err := weights.OpenFile(loraPath(t, "lora_diffusers.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	get := func(name string) ([]float32, []int) {
		x, ok := src.Tensor(name)
		if !ok {
			t.Fatalf("missing %s", name)
		}
		v, err := x.Float32()
		if err != nil {
			t.Fatal(err)
		}
		return v, x.Shape
	}
	mk := func(name string, v []float32, shape ...int) *weights.Tensor {
		x := &weights.Tensor{Name: name, DType: weights.F32, Shape: shape, Data: make([]byte, 4*len(v))}
		weights.EncodeF32(x.Data, v)
		return x
	}
	var out []*weights.Tensor
	for _, name := range src.Names() {
		mod, ok := strings.CutSuffix(strings.TrimPrefix(name, "transformer."), ".lora_A.weight")
		if !ok {
			continue
		}
		p, isQ := strings.CutSuffix(mod, ".attention.to_q")
		switch {
		case isQ:
			var as, bs [][]float32
			var r, in, d int
			for _, pr := range []string{"to_q", "to_k", "to_v"} {
				a, as0 := get("transformer." + p + ".attention." + pr + ".lora_A.weight")
				b, bs0 := get("transformer." + p + ".attention." + pr + ".lora_B.weight")
				r, in, d = as0[0], as0[1], bs0[0]
				as, bs = append(as, a), append(bs, b)
			}
			var aCat []float32
			for _, a := range as {
				aCat = append(aCat, a...)
			}
			bBlk := make([]float32, 3*d*3*r)
			for i, b := range bs {
				for o := 0; o < d; o++ {
					copy(bBlk[(i*d+o)*3*r+i*r:], b[o*r:(o+1)*r])
				}
			}
			out = append(out, mk("diffusion_model."+p+".attention.qkv.lora_A.weight", aCat, 3*r, in),
				mk("diffusion_model."+p+".attention.qkv.lora_B.weight", bBlk, 3*d, 3*r))
		case strings.HasSuffix(mod, ".attention.to_k") || strings.HasSuffix(mod, ".attention.to_v"):
		default:
			dst := strings.Replace(mod, ".attention.to_out.0", ".attention.out", 1)
			a, as := get(name)
			b, bs := get("transformer." + mod + ".lora_B.weight")
			out = append(out, mk("diffusion_model."+dst+".lora_A.weight", a, as...), mk("diffusion_model."+dst+".lora_B.weight", b, bs...))
		}
	}
	path := filepath.Join(t.TempDir(), "lora_qkv.safetensors")
	if err := weights.WriteFile(path, out, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLoRALayouts: a LoRA made for the ComfyUI single-file layout (fused
// qkv, attention.out) applies to the diffusers-layout model, and both it and
// the diffusers LoRA apply to a ComfyUI single-file model, all giving the
// reference image of the diffusers LoRA.
func TestLoRALayouts(t *testing.T) {
	if testing.Short() {
		t.Skip("four tiny-model runs")
	}
	var c fixturefs.LoRACase
	for _, x := range fixturefs.LoRACases(t) {
		if x.Name == "en_64x64_seed42_diffusers_s1.0" {
			c = x
		}
	}
	want := pngRGB(t, "fixtures/e2e_lora/"+c.Name+".png")
	qkv := fusedQKVLoRA(t)
	f, err := lora.Open(qkv)
	if err != nil {
		t.Fatal(err)
	}
	if f.Format != lora.FormatComfyUI || len(f.Modules) != 42/7*5 { // per block: qkv, out, w1, w2, w3
		t.Errorf("fused file: %s, %d modules", f.Format, len(f.Modules))
	}
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	dit, te, vae, _ := comfyFiles(t)
	for _, m := range []struct {
		name string
		opts []Option
	}{{"diffusers-layout", nil}, {"single-file", []Option{WithSingleFiles(dit, te, vae, "")}}} {
		p, err := Load(context.Background(), model, append(m.opts, WithDevice("cpu"))...)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		for _, file := range []string{loraPath(t, "lora_diffusers.safetensors"), qkv} {
			req := loraRequest(c, false)
			req.LoRAs = []LoRA{{Path: file, Scale: 1}}
			res, err := p.Run(context.Background(), req)
			if err != nil {
				t.Fatalf("%s, %s: %v", m.name, filepath.Base(file), err)
			}
			ps := fixture.ComparePixels(rgbBytes(res), want)
			t.Logf("%s, %s: %d/%d differ (max %d)", m.name, filepath.Base(file), ps.Differ, ps.Total, ps.MaxDiff)
			if ps.FracOff1 > 0.001 || ps.MaxDiff > 4 {
				t.Errorf("%s, %s: image vs reference PNG: %+v", m.name, filepath.Base(file), ps)
			}
		}
	}
}
