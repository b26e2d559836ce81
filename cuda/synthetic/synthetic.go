// Package synthetic describes full-size Z-Image checkpoints without their
// data: every tensor name and shape of the DiT, the Qwen3 text encoder and
// the VAE decoder (spec §4), derived from the configs, with no bytes behind
// them. A cuda backend created with Options.SyntheticWeights fills such
// tensors with pseudo-random values on the device, so the networks can be
// built and benchmarked at full size without downloading a checkpoint.
package synthetic

import (
	"sort"
	"strconv"

	"github.com/zimage/zimage/weights"
)

// Source is a checkpoint of data-less bf16 tensors (weights.Tensor.Data is
// nil). It satisfies the networks' tensor source interface.
type Source struct {
	tensors map[string]*weights.Tensor
}

// Tensor returns the named tensor.
func (s *Source) Tensor(name string) (*weights.Tensor, bool) {
	t, ok := s.tensors[name]
	return t, ok
}

// Names returns every tensor name, sorted.
func (s *Source) Names() []string {
	out := make([]string, 0, len(s.tensors))
	for n := range s.tensors {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Params returns the total element count.
func (s *Source) Params() int64 {
	var n int64
	for _, t := range s.tensors {
		n += int64(t.NumElements())
	}
	return n
}

func (s *Source) add(name string, shape ...int) {
	if s.tensors == nil {
		s.tensors = map[string]*weights.Tensor{}
	}
	s.tensors[name] = &weights.Tensor{Name: name, DType: weights.BF16, Shape: shape}
}

// DiT returns the transformer's tensors (diffusers names, spec §4.2).
func DiT(c weights.DiTConfig) *Source {
	s := &Source{}
	D, A, P, C := c.Dim, c.AdaLNDim(), c.PatchSize(), c.InChannels
	F, hd := c.FFNDim(), c.HeadDim()
	key := strconv.Itoa(P) + "-" + strconv.Itoa(c.AllFPatchSize[0])
	s.add("all_x_embedder."+key+".weight", D, P*P*C)
	s.add("all_x_embedder."+key+".bias", D)
	s.add("x_pad_token", 1, D)
	s.add("cap_pad_token", 1, D)
	s.add("cap_embedder.0.weight", c.CapFeatDim)
	s.add("cap_embedder.1.weight", D, c.CapFeatDim)
	s.add("cap_embedder.1.bias", D)
	s.add("t_embedder.mlp.0.weight", 1024, 256)
	s.add("t_embedder.mlp.0.bias", 1024)
	s.add("t_embedder.mlp.2.weight", A, 1024)
	s.add("t_embedder.mlp.2.bias", A)
	s.add("all_final_layer."+key+".adaLN_modulation.1.weight", D, A)
	s.add("all_final_layer."+key+".adaLN_modulation.1.bias", D)
	s.add("all_final_layer."+key+".linear.weight", P*P*C, D)
	s.add("all_final_layer."+key+".linear.bias", P*P*C)
	block := func(p string, modulated bool) {
		for _, n := range []string{"to_q", "to_k", "to_v", "to_out.0"} {
			s.add(p+".attention."+n+".weight", D, D)
		}
		s.add(p+".attention.norm_q.weight", hd)
		s.add(p+".attention.norm_k.weight", hd)
		for _, n := range []string{"attention_norm1", "attention_norm2", "ffn_norm1", "ffn_norm2"} {
			s.add(p+"."+n+".weight", D)
		}
		s.add(p+".feed_forward.w1.weight", F, D)
		s.add(p+".feed_forward.w3.weight", F, D)
		s.add(p+".feed_forward.w2.weight", D, F)
		if modulated {
			s.add(p+".adaLN_modulation.0.weight", 4*D, A)
			s.add(p+".adaLN_modulation.0.bias", 4*D)
		}
	}
	for i := 0; i < c.NLayers; i++ {
		block("layers."+strconv.Itoa(i), true)
	}
	for i := 0; i < c.NRefinerLayers; i++ {
		block("noise_refiner."+strconv.Itoa(i), true)
		block("context_refiner."+strconv.Itoa(i), false)
	}
	return s
}

// TextEncoder returns the Qwen3 encoder's tensors (spec §4.4, with the
// "model." prefix; no lm_head).
func TextEncoder(c weights.Qwen3Config) *Source {
	s := &Source{}
	D, H, KV, I := c.HiddenSize, c.NumAttentionHeads, c.NumKeyValueHeads, c.IntermediateSize
	hd := c.HeadDim
	if hd == 0 {
		hd = D / H
	}
	s.add("model.embed_tokens.weight", c.VocabSize, D)
	s.add("model.norm.weight", D)
	for i := 0; i < c.NumHiddenLayers; i++ {
		p := "model.layers." + strconv.Itoa(i) + "."
		s.add(p+"input_layernorm.weight", D)
		s.add(p+"post_attention_layernorm.weight", D)
		s.add(p+"self_attn.q_proj.weight", H*hd, D)
		s.add(p+"self_attn.k_proj.weight", KV*hd, D)
		s.add(p+"self_attn.v_proj.weight", KV*hd, D)
		s.add(p+"self_attn.o_proj.weight", D, H*hd)
		s.add(p+"self_attn.q_norm.weight", hd)
		s.add(p+"self_attn.k_norm.weight", hd)
		s.add(p+"mlp.gate_proj.weight", I, D)
		s.add(p+"mlp.up_proj.weight", I, D)
		s.add(p+"mlp.down_proj.weight", D, I)
	}
	return s
}

// VAE returns the decoder's tensors (spec §4.5; the encoder is not needed).
func VAE(c weights.VAEConfig) *Source {
	s := &Source{}
	n := len(c.BlockOutChannels)
	rev := make([]int, n)
	for i, ch := range c.BlockOutChannels {
		rev[n-1-i] = ch
	}
	res := func(p string, ci, co int) {
		s.add(p+".norm1.weight", ci)
		s.add(p+".norm1.bias", ci)
		s.add(p+".conv1.weight", co, ci, 3, 3)
		s.add(p+".conv1.bias", co)
		s.add(p+".norm2.weight", co)
		s.add(p+".norm2.bias", co)
		s.add(p+".conv2.weight", co, co, 3, 3)
		s.add(p+".conv2.bias", co)
		if ci != co {
			s.add(p+".conv_shortcut.weight", co, ci, 1, 1)
			s.add(p+".conv_shortcut.bias", co)
		}
	}
	c0 := rev[0]
	s.add("decoder.conv_in.weight", c0, c.LatentChannels, 3, 3)
	s.add("decoder.conv_in.bias", c0)
	res("decoder.mid_block.resnets.0", c0, c0)
	res("decoder.mid_block.resnets.1", c0, c0)
	a := "decoder.mid_block.attentions.0."
	s.add(a+"group_norm.weight", c0)
	s.add(a+"group_norm.bias", c0)
	for _, p := range []string{"to_q", "to_k", "to_v", "to_out.0"} {
		s.add(a+p+".weight", c0, c0)
		s.add(a+p+".bias", c0)
	}
	prev := c0
	for i, co := range rev {
		p := "decoder.up_blocks." + strconv.Itoa(i)
		for j := 0; j <= c.LayersPerBlock; j++ {
			ci := co
			if j == 0 {
				ci = prev
			}
			res(p+".resnets."+strconv.Itoa(j), ci, co)
		}
		if i < n-1 {
			s.add(p+".upsamplers.0.conv.weight", co, co, 3, 3)
			s.add(p+".upsamplers.0.conv.bias", co)
		}
		prev = co
	}
	s.add("decoder.conv_norm_out.weight", prev)
	s.add("decoder.conv_norm_out.bias", prev)
	s.add("decoder.conv_out.weight", c.OutChannels, prev, 3, 3)
	s.add("decoder.conv_out.bias", c.OutChannels)
	return s
}
