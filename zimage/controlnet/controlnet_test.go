package controlnet_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/controlnet"
	"github.com/zimage/zimage/zimage/cpu"
	"github.com/zimage/zimage/zimage/dit"
	"github.com/zimage/zimage/zimage/internal/fixture"
)

// Case is one case of fixtures/e2e_controlnet/e2e_controlnet.json.
type Case struct {
	Name     string  `json:"name"`
	Pipeline string  `json:"pipeline"`
	Prompt   string  `json:"prompt"`
	Height   int     `json:"height"`
	Width    int     `json:"width"`
	Seed     int64   `json:"seed"`
	Steps    int     `json:"num_inference_steps"`
	Scale    float32 `json:"controlnet_conditioning_scale"`
	NoCtl    struct {
		E2ECase string `json:"e2e_case"`
	} `json:"no_control_reference"`
}

const dir = "fixtures/e2e_controlnet"

func cases(t *testing.T) []Case {
	raw, err := os.ReadFile(fixturefs.Path(t, dir+"/e2e_controlnet.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Cases []Case }
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Cases
}

// loadDiT binds the tiny model's transformer on b.
func loadDiT(t *testing.T, b compute.Backend) *dit.Model {
	cfg := weights.DefaultDiTConfig()
	src := fixture.TinyComponent(t, "transformer", &cfg)
	d, err := dit.New(b, cfg, src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// openCN opens the fixture ControlNet: the diffusers directory, or the single
// file with its config inferred from the tensors. The single file upstream
// loads (controlnet_single_file.safetensors) is a byte copy of the diffusers
// weights file (e2e_controlnet.json: single_file_bytes_equal_diffusers_file),
// so testdata keeps one and the test copies it alone into a temp dir. A
// ControlNet not laid out like a release (see releaseLike) needs its
// config.json beside the file, as upstream's from_single_file needs config=.
func openCN(t *testing.T, d weights.DiTConfig, single bool) *controlnet.Checkpoint {
	p := filepath.Join(fixturefs.Path(t, dir), "controlnet")
	if single {
		tmp := t.TempDir()
		files := map[string]string{"diffusion_pytorch_model.safetensors": "controlnet_single_file.safetensors"}
		if !releaseLike(t, d) {
			files["config.json"] = "config.json"
		}
		for from, to := range files {
			data, err := os.ReadFile(filepath.Join(p, from))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(tmp, to), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		p = filepath.Join(tmp, "controlnet_single_file.safetensors")
	}
	ck, err := controlnet.Open(p, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ck.Close() })
	return ck
}

// releaseLike reports whether the fixture ControlNet is laid out like the
// released files, whose config InferConfig derives: N control blocks spread
// evenly over the layers (k·n_layers/N) and, with refiner hints, one on every
// noise-refiner layer.
func releaseLike(t *testing.T, d weights.DiTConfig) bool {
	c, err := controlnet.ReadConfig(filepath.Join(fixturefs.Path(t, dir), "controlnet", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	n := len(c.ControlLayersPlaces)
	if d.NLayers%n != 0 {
		return false
	}
	for k, p := range c.ControlLayersPlaces {
		if p != k*d.NLayers/n {
			return false
		}
	}
	if c.Refiner() == controlnet.RefinerNone {
		return true
	}
	if len(c.ControlRefinerLayersPlaces) != d.NRefinerLayers {
		return false
	}
	for i, p := range c.ControlRefinerLayersPlaces {
		if p != i {
			return false
		}
	}
	return true
}

// TestInferConfig: the single file's inferred config equals config.json.
func TestInferConfig(t *testing.T) {
	d := weights.DefaultDiTConfig()
	fixture.TinyComponent(t, "transformer", &d)
	if !releaseLike(t, d) {
		t.Skip("the fixture ControlNet is not laid out like a release: its single file needs config.json")
	}
	a, b := openCN(t, d, false), openCN(t, d, true)
	if !b.Inferred || a.Inferred {
		t.Fatalf("inferred: dir %v, file %v", a.Inferred, b.Inferred)
	}
	ja, _ := json.Marshal(a.Config)
	jb, _ := json.Marshal(b.Config)
	if string(ja) != string(jb) {
		t.Errorf("inferred config\n%s\nwant\n%s", jb, ja)
	}
}

// TestDenoiseFixtures runs every case's 8 steps from the recorded noise and
// control context through dit.ForwardHook (both the diffusers directory
// and the single file) and compares the step-0 hints, every step's DiT output
// and the final latents.
func TestDenoiseFixtures(t *testing.T) {
	b := cpu.New()
	d := loadDiT(t, b)
	for _, single := range []bool{false, true} {
		ck := openCN(t, d.Config(), single)
		cn, err := controlnet.New(b, ck.Config, d, ck.Set)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cn.Close)
		for i, c := range cases(t) {
			if single && i > 0 {
				break // the single file has the same tensors: one case suffices
			}
			t.Run(fmt.Sprintf("%s/single=%v", c.Name, single), func(t *testing.T) {
				runCase(t, b, d, cn, c)
			})
		}
	}
}

func runCase(t *testing.T, b compute.Backend, d *dit.Model, cn *controlnet.Model, c Case) {
	ctx := context.Background()
	fx := fixture.Open(t, dir+"/"+c.Name+".safetensors")
	e2e := fixture.Open(t, "fixtures/e2e/"+c.NoCtl.E2ECase+".safetensors")
	cfg := d.Config()
	feats := e2e.F32(t, "prompt_embeds")
	capT, err := d.PrepareCaption(ctx, feats, len(feats)/cfg.CapFeatDim, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer capT.Free()
	hl, wl := c.Height/8, c.Width/8
	hook, err := cn.Hook(fx.F32(t, "control_context"), hl, wl, c.Scale)
	if err != nil {
		t.Fatal(err)
	}
	hints := map[string][]float32{}
	hook.Trace = func(name string, x compute.Tensor) { hints[name] = b.ToHost(x) }
	x := fx.F32(t, "noise")
	ts, sig := fx.F32(t, "dit_t"), fx.F32(t, "sigmas")
	for i := 0; i < c.Steps; i++ {
		v, err := d.ForwardHook(ctx, x, hl, wl, ts[i], capT, hook, nil)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			hook.Trace = nil
			for _, p := range cn.Config().ControlLayersPlaces {
				name := fmt.Sprintf("controlnet_out.step0.layer%d", p)
				if fx.Has(name) {
					fixture.Check(t, name, hints[fmt.Sprint("hint.", p)], fx.F32(t, name), fixture.DiT)
				}
			}
			fixture.Check(t, "transformer_out.0", v, fx.F32(t, "transformer_out.0"), fixture.DiT)
		}
		dt := sig[i+1] - sig[i]
		for j := range x {
			x[j] += dt * -v[j]
		}
	}
	s := fixture.Check(t, "final_latents", x, fx.F32(t, "final_latents"), fixture.Latents)
	t.Logf("final latents rel-L2 %.3g", s.RelL2)
}

// TestMismatch: a ControlNet for another transformer is refused with a
// *MismatchError, and a config that cannot work with a *ConfigError.
func TestMismatch(t *testing.T) {
	b := cpu.New()
	d := loadDiT(t, b)
	ck := openCN(t, d.Config(), false)
	for name, mut := range map[string]func(*controlnet.Config){
		"dim":          func(c *controlnet.Config) { c.Dim *= 2 },
		"heads":        func(c *controlnet.Config) { c.NHeads = 1 },
		"places":       func(c *controlnet.Config) { c.ControlLayersPlaces = []int{0, d.Config().NLayers} },
		"refinerPlace": func(c *controlnet.Config) { c.ControlRefinerLayersPlaces = []int{0, 7} },
		"inDim":        func(c *controlnet.Config) { c.ControlInDim = 4 },
	} {
		cfg := ck.Config
		cfg.ControlLayersPlaces = append([]int(nil), cfg.ControlLayersPlaces...)
		mut(&cfg)
		_, err := controlnet.New(b, cfg, d, ck.Set)
		var me *controlnet.MismatchError
		if !errors.As(err, &me) {
			t.Errorf("%s: got %v, want *MismatchError", name, err)
		}
	}
	// A file of another kind (the transformer itself) is not a ControlNet.
	_, err := controlnet.Open(filepath.Join(fixturefs.Path(t, "fixtures/tiny-z-image-turbo"), "vae"), d.Config())
	var ce *controlnet.ConfigError
	if !errors.As(err, &ce) {
		t.Errorf("vae as controlnet: got %v, want *ConfigError", err)
	}
}
