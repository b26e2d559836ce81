package controlnet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/controlnet"
	"github.com/zimage/zimage/zimage/cpu"
	"github.com/zimage/zimage/zimage/internal/fixture"
)

// TestModes runs the Union v1 (add_control_noise_refiner null) and 2.0
// ("control_layers") block arrangements against one upstream forward each
// (fixtures/e2e_controlnet/modes): the scaled hints and the DiT output with
// them. v1 also loads as a single file (config inferred from the tensors).
func TestModes(t *testing.T) {
	b := cpu.New()
	d := loadDiT(t, b)
	root := fixturefs.Path(t, dir+"/modes")
	fx := fixture.Open(t, dir+"/modes/modes.safetensors")
	wdir := filepath.Join(root, "controlnet")

	// The single file: its inferred config must be the v1 config.json.
	data, err := os.ReadFile(filepath.Join(wdir, "diffusion_pytorch_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	single := filepath.Join(t.TempDir(), "union-v1.safetensors")
	if err := os.WriteFile(single, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ck, err := controlnet.Open(single, d.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	v1, err := controlnet.ReadConfig(filepath.Join(wdir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if ja, jb := jsonOf(ck.Config), jsonOf(v1); ja != jb {
		t.Errorf("inferred %s, want %s", ja, jb)
	}
	v20, err := controlnet.ReadConfig(filepath.Join(root, "config_control_layers.json"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := weights.Open(wdir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()

	cfg := d.Config()
	x, feats, cc := fx.F32(t, "x"), fx.F32(t, "cap_feats"), fx.F32(t, "control_context")
	ts := fx.F32(t, "t")
	xs := fx.Shape(t, "x")
	hl, wl := xs[1], xs[2]
	for _, m := range []struct {
		name string
		cfg  controlnet.Config
	}{{"v1", v1}, {"control_layers", v20}} {
		t.Run(m.name, func(t *testing.T) {
			cn, err := controlnet.New(b, m.cfg, d, set)
			if err != nil {
				t.Fatal(err)
			}
			defer cn.Close()
			capT, err := d.PrepareCaption(context.Background(), feats, len(feats)/cfg.CapFeatDim, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer capT.Free()
			hook, err := cn.Hook(cc, hl, wl, 0.7)
			if err != nil {
				t.Fatal(err)
			}
			hints := map[string][]float32{}
			hook.Trace = func(name string, x compute.Tensor) { hints[name] = b.ToHost(x) }
			out, err := d.ForwardHook(context.Background(), x, hl, wl, ts[0], capT, hook, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range m.cfg.ControlLayersPlaces {
				fixture.Check(t, fmt.Sprintf("hint.%d", p), hints[fmt.Sprint("hint.", p)], fx.F32(t, fmt.Sprintf("%s.hint.layer%d", m.name, p)), fixture.DiT)
			}
			s := fixture.Check(t, "transformer_out", out, fx.F32(t, m.name+".transformer_out"), fixture.DiT)
			t.Logf("transformer_out rel-L2 %.3g", s.RelL2)
		})
	}
}

func jsonOf(c controlnet.Config) string {
	b, _ := json.Marshal(c)
	return string(b)
}
