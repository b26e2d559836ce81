package weights

import (
	"strings"
	"testing"
)

func count(specs []TensorSpec, keep func(TensorSpec) bool) (n int, params int64) {
	for _, s := range specs {
		if !keep(s) {
			continue
		}
		p := int64(1)
		for _, d := range s.Shape {
			p *= int64(d)
		}
		n++
		params += p
	}
	return n, params
}

// The real Z-Image-Turbo counts from the spec (§4.1–4.5) follow from the
// default configs through the same code as the tiny fixture.
func TestSpecCountsRealConfig(t *testing.T) {
	all := func(TensorSpec) bool { return true }
	dit := DiTTensors(DefaultDiTConfig())
	if n, p := count(dit, all); n != 521 || p != 6_154_908_736 {
		t.Errorf("DiT: %d tensors, %d params; want 521, 6154908736", n, p)
	}
	q := Qwen3Tensors(DefaultQwen3Config())
	stored := func(s TensorSpec) bool { return s.Name != "lm_head.weight" }
	if n, p := count(q, stored); n != 398 || p != 4_022_468_096 {
		t.Errorf("Qwen3: %d tensors, %d params; want 398, 4022468096", n, p)
	}
	vae := DefaultVAEConfig()
	v := VAETensors(vae)
	dec := func(s TensorSpec) bool { return strings.HasPrefix(s.Name, "decoder.") }
	enc := func(s TensorSpec) bool { return strings.HasPrefix(s.Name, "encoder.") }
	if n, p := count(v, dec); n != 138 || p != 49_545_475 {
		t.Errorf("VAE decoder: %d tensors, %d params; want 138, 49545475", n, p)
	}
	if n, p := count(v, enc); n != 106 || p != 34_274_208 {
		t.Errorf("VAE encoder: %d tensors, %d params; want 106, 34274208", n, p)
	}
	for _, s := range v {
		if dec(s) == s.Optional {
			t.Errorf("%s: optional=%v", s.Name, s.Optional)
		}
	}
	// Spot checks of derived shapes.
	want := map[string][]int{
		"layers.29.feed_forward.w2.weight":                     {3840, 10240},
		"layers.0.adaLN_modulation.0.weight":                   {15360, 256},
		"all_x_embedder.2-1.weight":                            {3840, 64},
		"all_final_layer.2-1.linear.weight":                    {64, 3840},
		"context_refiner.1.attention.norm_k.weight":            {128},
		"t_embedder.mlp.2.weight":                              {256, 1024},
		"model.layers.35.self_attn.q_proj.weight":              {4096, 2560},
		"model.layers.0.self_attn.k_proj.weight":               {1024, 2560},
		"decoder.up_blocks.2.resnets.0.conv_shortcut.weight":   {256, 512, 1, 1},
		"decoder.up_blocks.3.resnets.0.conv1.weight":           {128, 256, 3, 3},
		"decoder.conv_out.weight":                              {3, 128, 3, 3},
		"encoder.conv_out.weight":                              {32, 512, 3, 3},
		"encoder.down_blocks.1.resnets.0.conv_shortcut.weight": {256, 128, 1, 1},
	}
	found := 0
	for _, list := range [][]TensorSpec{dit, q, v} {
		for _, s := range list {
			if w, ok := want[s.Name]; ok {
				found++
				if !equalInts(s.Shape, w) {
					t.Errorf("%s: %v, want %v", s.Name, s.Shape, w)
				}
			}
		}
	}
	if found != len(want) {
		t.Errorf("found %d of %d spot-check names", found, len(want))
	}
	for _, s := range dit {
		if strings.HasPrefix(s.Name, "context_refiner.") && strings.Contains(s.Name, "adaLN") {
			t.Errorf("context refiner has modulation: %s", s.Name)
		}
	}
	if n, _ := count(v, func(s TensorSpec) bool { return strings.Contains(s.Name, "upsamplers") }); n != 6 {
		t.Errorf("%d upsampler tensors, want 6 (3 blocks)", n)
	}
}

func TestSpecEdgeConfigs(t *testing.T) {
	// n_kv_heads is ignored like upstream: k/v keep n_heads heads.
	c := DefaultDiTConfig()
	c.NKVHeads = 1
	for _, s := range DiTTensors(c) {
		if s.Name == "layers.0.attention.to_k.weight" && !equalInts(s.Shape, []int{3840, 3840}) {
			t.Errorf("to_k with n_kv_heads 1: %v", s.Shape)
		}
	}
	// Invalid configs give no specs rather than a panic.
	bad := DefaultDiTConfig()
	bad.NHeads = 0
	if DiTTensors(bad) != nil {
		t.Error("DiTTensors accepted n_heads 0")
	}
	q := DefaultQwen3Config()
	q.NumKeyValueHeads = 0
	if Qwen3Tensors(q) != nil {
		t.Error("Qwen3Tensors accepted 0 kv heads")
	}
	v := DefaultVAEConfig()
	v.BlockOutChannels = nil
	if VAETensors(v) != nil {
		t.Error("VAETensors accepted no blocks")
	}
	// Options that add tensors.
	q = DefaultQwen3Config()
	q.AttentionBias = true
	if n := len(Qwen3Tensors(q)); n != 399+36*4 {
		t.Errorf("attention_bias: %d specs", n)
	}
	v = DefaultVAEConfig()
	v.UsePostQuantConv = true
	no := false
	v.MidBlockAddAttention = &no
	found := false
	for _, s := range VAETensors(v) {
		if s.Name == "post_quant_conv.weight" {
			found = !s.Optional
		}
		if strings.Contains(s.Name, "attentions") {
			t.Errorf("%s present without mid-block attention", s.Name)
		}
	}
	if !found {
		t.Error("post_quant_conv not required with use_post_quant_conv")
	}
	qk := false
	c = DefaultDiTConfig()
	c.QKNorm = &qk
	if n := len(DiTTensors(c)); n != 521-34*2 {
		t.Errorf("qk_norm false: %d specs", n)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
