package weights

import (
	"fmt"
	"slices"
	"strings"
)

// TensorSpec is one tensor a component's config implies: its checkpoint
// name and shape. Optional tensors may be absent (e.g. the unused final norm
// of the text encoder, or the VAE encoder).
type TensorSpec struct {
	Name     string
	Shape    []int
	Optional bool
}

// DiT architecture constants that are not in the config (diffusers'
// ZImageTransformer2DModel).
const (
	ditFreqEmbedSize = 256  // sinusoidal timestep features
	ditTMLPHidden    = 1024 // t_embedder mid size
)

// EmbedderKey returns the key "p-f" naming the i-th x/final-layer embedder
// (all_x_embedder.2-1 for patch 2, frame patch 1).
func (c *DiTConfig) EmbedderKey(i int) string {
	return fmt.Sprintf("%d-%d", c.AllPatchSize[i], c.AllFPatchSize[i])
}

// qkNorm reports whether q/k RMSNorm is enabled (diffusers' default when the
// key is null or absent is true).
func (c *DiTConfig) qkNorm() bool { return c.QKNorm == nil || *c.QKNorm }

// DiTTensors lists every tensor of a ZImageTransformer2DModel checkpoint in
// the diffusers naming, derived from cfg (521 for Z-Image-Turbo); nil if cfg
// does not validate.
func DiTTensors(cfg DiTConfig) []TensorSpec {
	if cfg.Validate() != nil {
		return nil
	}
	var s []TensorSpec
	add := func(name string, shape ...int) { s = append(s, TensorSpec{Name: name, Shape: shape}) }
	dim, hd := cfg.Dim, cfg.HeadDim()
	ada := cfg.AdaLNDim()
	for i := range cfg.AllPatchSize {
		p, f := cfg.AllPatchSize[i], cfg.AllFPatchSize[i]
		patch := f * p * p * cfg.InChannels
		key := cfg.EmbedderKey(i)
		add("all_x_embedder."+key+".weight", dim, patch)
		add("all_x_embedder."+key+".bias", dim)
		add("all_final_layer."+key+".adaLN_modulation.1.weight", dim, ada)
		add("all_final_layer."+key+".adaLN_modulation.1.bias", dim)
		add("all_final_layer."+key+".linear.weight", patch, dim)
		add("all_final_layer."+key+".linear.bias", patch)
	}
	add("x_pad_token", 1, dim)
	add("cap_pad_token", 1, dim)
	add("cap_embedder.0.weight", cfg.CapFeatDim)
	add("cap_embedder.1.weight", dim, cfg.CapFeatDim)
	add("cap_embedder.1.bias", dim)
	add("t_embedder.mlp.0.weight", ditTMLPHidden, ditFreqEmbedSize)
	add("t_embedder.mlp.0.bias", ditTMLPHidden)
	add("t_embedder.mlp.2.weight", ada, ditTMLPHidden)
	add("t_embedder.mlp.2.bias", ada)
	block := func(p string, modulated bool) {
		add(p+".attention.to_q.weight", cfg.NHeads*hd, dim)
		// n_kv_heads is accepted but unused upstream: k and v have n_heads heads.
		add(p+".attention.to_k.weight", cfg.NHeads*hd, dim)
		add(p+".attention.to_v.weight", cfg.NHeads*hd, dim)
		add(p+".attention.to_out.0.weight", dim, cfg.NHeads*hd)
		if cfg.qkNorm() {
			add(p+".attention.norm_q.weight", hd)
			add(p+".attention.norm_k.weight", hd)
		}
		add(p+".attention_norm1.weight", dim)
		add(p+".attention_norm2.weight", dim)
		add(p+".ffn_norm1.weight", dim)
		add(p+".ffn_norm2.weight", dim)
		add(p+".feed_forward.w1.weight", cfg.FFNDim(), dim)
		add(p+".feed_forward.w2.weight", dim, cfg.FFNDim())
		add(p+".feed_forward.w3.weight", cfg.FFNDim(), dim)
		if modulated {
			add(p+".adaLN_modulation.0.weight", 4*dim, ada)
			add(p+".adaLN_modulation.0.bias", 4*dim)
		}
	}
	for i := range cfg.NRefinerLayers {
		block(fmt.Sprintf("noise_refiner.%d", i), true)
	}
	for i := range cfg.NRefinerLayers {
		block(fmt.Sprintf("context_refiner.%d", i), false)
	}
	for i := range cfg.NLayers {
		block(fmt.Sprintf("layers.%d", i), true)
	}
	return s
}

// Qwen3Tensors lists the tensors of a Qwen3 text-encoder checkpoint in the
// Qwen3ForCausalLM naming ("model." prefix): 398 for Qwen3-4B. The final
// norm (unused by Z-Image) and lm_head.weight (tied) are optional. nil if
// cfg does not validate.
func Qwen3Tensors(cfg Qwen3Config) []TensorSpec {
	if cfg.Validate() != nil {
		return nil
	}
	var s []TensorSpec
	add := func(name string, shape ...int) { s = append(s, TensorSpec{Name: name, Shape: shape}) }
	h, hd := cfg.HiddenSize, cfg.HeadDim
	q, kv := cfg.NumAttentionHeads*hd, cfg.NumKeyValueHeads*hd
	add("model.embed_tokens.weight", cfg.VocabSize, h)
	for i := range cfg.NumHiddenLayers {
		p := fmt.Sprintf("model.layers.%d.", i)
		add(p+"input_layernorm.weight", h)
		add(p+"self_attn.q_proj.weight", q, h)
		add(p+"self_attn.k_proj.weight", kv, h)
		add(p+"self_attn.v_proj.weight", kv, h)
		add(p+"self_attn.o_proj.weight", h, q)
		if cfg.AttentionBias {
			add(p+"self_attn.q_proj.bias", q)
			add(p+"self_attn.k_proj.bias", kv)
			add(p+"self_attn.v_proj.bias", kv)
			add(p+"self_attn.o_proj.bias", h)
		}
		add(p+"self_attn.q_norm.weight", hd)
		add(p+"self_attn.k_norm.weight", hd)
		add(p+"post_attention_layernorm.weight", h)
		add(p+"mlp.gate_proj.weight", cfg.IntermediateSize, h)
		add(p+"mlp.up_proj.weight", cfg.IntermediateSize, h)
		add(p+"mlp.down_proj.weight", h, cfg.IntermediateSize)
	}
	s = append(s, TensorSpec{Name: "model.norm.weight", Shape: []int{h}, Optional: true})
	s = append(s, TensorSpec{Name: "lm_head.weight", Shape: []int{cfg.VocabSize, h}, Optional: true})
	return s
}

// VAETensors lists the tensors of a diffusers AutoencoderKL checkpoint
// derived from cfg: the decoder (138 for the FLUX VAE) is required, the
// encoder (106) and quant convs are optional. post_quant_conv is required
// when use_post_quant_conv is set. nil if cfg does not validate.
func VAETensors(cfg VAEConfig) []TensorSpec {
	if cfg.Validate() != nil {
		return nil
	}
	var s []TensorSpec
	optional := false
	add := func(name string, shape ...int) {
		s = append(s, TensorSpec{Name: name, Shape: shape, Optional: optional})
	}
	conv := func(p string, out, in, k int) {
		add(p+".weight", out, in, k, k)
		add(p+".bias", out)
	}
	norm := func(p string, c int) {
		add(p+".weight", c)
		add(p+".bias", c)
	}
	resnet := func(p string, in, out int) {
		norm(p+".norm1", in)
		conv(p+".conv1", out, in, 3)
		norm(p+".norm2", out)
		conv(p+".conv2", out, out, 3)
		if in != out {
			conv(p+".conv_shortcut", out, in, 1)
		}
	}
	boc := cfg.BlockOutChannels
	top := boc[len(boc)-1]
	mid := func(p string) {
		resnet(p+".resnets.0", top, top)
		if cfg.MidBlockAddAttention == nil || *cfg.MidBlockAddAttention {
			a := p + ".attentions.0"
			norm(a+".group_norm", top)
			for _, l := range []string{"to_q", "to_k", "to_v", "to_out.0"} {
				add(a+"."+l+".weight", top, top)
				add(a+"."+l+".bias", top)
			}
		}
		resnet(p+".resnets.1", top, top)
	}
	nres := cfg.LayersPerBlock + 1

	// Decoder: up blocks walk block_out_channels reversed; every block but
	// the last ends with a 2× upsampler.
	conv("decoder.conv_in", top, cfg.LatentChannels, 3)
	mid("decoder.mid_block")
	prev := top
	for i := range boc {
		out := boc[len(boc)-1-i]
		for j := range nres {
			in := out
			if j == 0 {
				in = prev
			}
			resnet(fmt.Sprintf("decoder.up_blocks.%d.resnets.%d", i, j), in, out)
		}
		if i < len(boc)-1 {
			conv(fmt.Sprintf("decoder.up_blocks.%d.upsamplers.0.conv", i), out, out, 3)
		}
		prev = out
	}
	norm("decoder.conv_norm_out", boc[0])
	conv("decoder.conv_out", cfg.OutChannels, boc[0], 3)
	if cfg.UsePostQuantConv {
		conv("post_quant_conv", cfg.LatentChannels, cfg.LatentChannels, 1)
	}

	// Encoder: down blocks with layers_per_block resnets and a downsampler on
	// all but the last; conv_out emits mean and logvar (2×latent).
	optional = true
	conv("encoder.conv_in", boc[0], cfg.InChannels, 3)
	prev = boc[0]
	for i, out := range boc {
		for j := range cfg.LayersPerBlock {
			in := out
			if j == 0 {
				in = prev
			}
			resnet(fmt.Sprintf("encoder.down_blocks.%d.resnets.%d", i, j), in, out)
		}
		if i < len(boc)-1 {
			conv(fmt.Sprintf("encoder.down_blocks.%d.downsamplers.0.conv", i), out, out, 3)
		}
		prev = out
	}
	mid("encoder.mid_block")
	norm("encoder.conv_norm_out", top)
	conv("encoder.conv_out", 2*cfg.LatentChannels, top, 3)
	conv("quant_conv", 2*cfg.LatentChannels, 2*cfg.LatentChannels, 1)
	if !cfg.UsePostQuantConv {
		conv("post_quant_conv", cfg.LatentChannels, cfg.LatentChannels, 1)
	}
	return s
}

// CheckDiT compares a transformer tensor set with DiTTensors(cfg) and
// reports every difference in one *TensorSetError.
func CheckDiT(cfg DiTConfig, s *Set) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	return checkSet("transformer", DiTTensors(cfg), s, nil)
}

// CheckQwen3 compares a text-encoder set (names with the "model." prefix, as
// OpenTextEncoder returns them) with Qwen3Tensors(cfg).
func CheckQwen3(cfg Qwen3Config, s *Set) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	return checkSet("text_encoder", Qwen3Tensors(cfg), s, nil)
}

// CheckVAE compares a VAE set with VAETensors(cfg). Decoder tensors are
// required; any encoder.* or quant_conv.* tensor is accepted (shape-checked
// when the config implies it).
func CheckVAE(cfg VAEConfig, s *Set) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	return checkSet("vae", VAETensors(cfg), s, func(name string) bool {
		return strings.HasPrefix(name, "encoder.") || strings.HasPrefix(name, "quant_conv.")
	})
}

// checkSet finds missing, unexpected and mismatched tensors. extraOK says
// whether a name outside the spec is tolerated.
func checkSet(component string, specs []TensorSpec, s *Set, extraOK func(string) bool) error {
	e := &TensorSetError{Component: component, Files: s.Files()}
	want := make(map[string]bool, len(specs))
	for _, sp := range specs {
		want[sp.Name] = true
		t, ok := s.Tensor(sp.Name)
		if !ok {
			if !sp.Optional {
				e.Missing = append(e.Missing, sp.Name)
			}
			continue
		}
		switch {
		case !t.DType.IsFloat() && !t.DType.IsQuantized():
			e.Mismatched = append(e.Mismatched, Mismatch{Name: sp.Name, Want: sp.Shape, Got: t.Shape, DType: t.DType})
		case !slices.Equal(t.Shape, sp.Shape):
			e.Mismatched = append(e.Mismatched, Mismatch{Name: sp.Name, Want: sp.Shape, Got: t.Shape})
		}
	}
	for _, name := range s.Names() {
		if !want[name] && (extraOK == nil || !extraOK(name)) {
			e.Unexpected = append(e.Unexpected, name)
		}
	}
	if len(e.Missing)+len(e.Unexpected)+len(e.Mismatched) == 0 {
		return nil
	}
	slices.Sort(e.Missing)
	return e
}
