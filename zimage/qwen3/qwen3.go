// Package qwen3 is the Z-Image text encoder: the Qwen3 decoder stack run up to
// hidden_states[-2] (the raw output of the second-to-last decoder layer, no
// final norm), which is what ZImagePipeline hands to the DiT as caption
// features.
package qwen3

import (
	"context"
	"fmt"
	"math"
	"strconv"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/internal/nn"
)

// Prefix is the key prefix of the text-encoder tensors in the checkpoint
// (a Qwen3ForCausalLM file read as Qwen3Model).
const Prefix = "model."

// Encoder is the Qwen3 text encoder bound to a backend. Only the layers that
// feed hidden_states[-2] are bound (layers 0..N-2); the last layer and the
// final norm are never read.
type Encoder struct {
	cfg    weights.Qwen3Config
	b      compute.Backend
	ld     *nn.Loader
	embed  compute.Tensor // model.embed_tokens.weight [V, D]; rows gathered per prompt
	layers []*layer
}

// layer is one decoder layer (model.layers.i.*).
type layer struct {
	inputNorm compute.Tensor // input_layernorm.weight [D]
	q, k, v   compute.Tensor // self_attn.{q,k,v}_proj.weight [H*hd, D], [KV*hd, D], [KV*hd, D]
	o         compute.Tensor // self_attn.o_proj.weight [D, H*hd]
	qNorm     compute.Tensor // self_attn.q_norm.weight [hd]
	kNorm     compute.Tensor // self_attn.k_norm.weight [hd]
	postNorm  compute.Tensor // post_attention_layernorm.weight [D]
	gate, up  compute.Tensor // mlp.{gate,up}_proj.weight [I, D]
	down      compute.Tensor // mlp.down_proj.weight [D, I]
}

// ConfigError reports a config value the encoder cannot run with.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("qwen3: config %s: %s", e.Field, e.Reason)
}

func checkConfig(c weights.Qwen3Config) error {
	switch {
	case c.HiddenSize <= 0:
		return &ConfigError{"hidden_size", "must be positive"}
	case c.NumHiddenLayers < 2:
		return &ConfigError{"num_hidden_layers", "need at least 2 layers (hidden_states[-2] is used)"}
	case c.NumAttentionHeads <= 0 || c.NumKeyValueHeads <= 0 || c.NumAttentionHeads%c.NumKeyValueHeads != 0:
		return &ConfigError{"num_key_value_heads", fmt.Sprintf("%d query heads are not a multiple of %d kv heads", c.NumAttentionHeads, c.NumKeyValueHeads)}
	case headDim(c) <= 0 || headDim(c)%2 != 0:
		return &ConfigError{"head_dim", "must be positive and even"}
	case c.IntermediateSize <= 0:
		return &ConfigError{"intermediate_size", "must be positive"}
	case c.VocabSize <= 0:
		return &ConfigError{"vocab_size", "must be positive"}
	case c.RopeTheta <= 0:
		return &ConfigError{"rope_theta", "must be positive"}
	case c.HiddenAct != "" && c.HiddenAct != "silu":
		return &ConfigError{"hidden_act", fmt.Sprintf("%q is not supported (silu only)", c.HiddenAct)}
	case c.AttentionBias:
		return &ConfigError{"attention_bias", "attention biases are not supported"}
	}
	return nil
}

// headDim is config head_dim, or hidden/heads when the config omits it.
func headDim(c weights.Qwen3Config) int {
	if c.HeadDim > 0 {
		return c.HeadDim
	}
	if c.NumAttentionHeads == 0 {
		return 0
	}
	return c.HiddenSize / c.NumAttentionHeads
}

// New binds the encoder's tensors from src (names with the "model." prefix).
// Weights stay in their storage dtype; nothing is copied to float32 except
// the embedding rows gathered per prompt.
func New(b compute.Backend, cfg weights.Qwen3Config, src nn.Source) (*Encoder, error) {
	if err := checkConfig(cfg); err != nil {
		return nil, err
	}
	D, H, KV, hd, I := cfg.HiddenSize, cfg.NumAttentionHeads, cfg.NumKeyValueHeads, headDim(cfg), cfg.IntermediateSize
	e := &Encoder{cfg: cfg, b: b, ld: nn.NewLoader(b, src)}
	m := e.ld.Sub("model")
	e.embed = m.Get("embed_tokens.weight", cfg.VocabSize, D)
	for i := 0; i < cfg.NumHiddenLayers-1; i++ {
		p := m.Sub("layers." + strconv.Itoa(i))
		e.layers = append(e.layers, &layer{
			inputNorm: p.Get("input_layernorm.weight", D),
			q:         p.Get("self_attn.q_proj.weight", H*hd, D),
			k:         p.Get("self_attn.k_proj.weight", KV*hd, D),
			v:         p.Get("self_attn.v_proj.weight", KV*hd, D),
			o:         p.Get("self_attn.o_proj.weight", D, H*hd),
			qNorm:     p.Get("self_attn.q_norm.weight", hd),
			kNorm:     p.Get("self_attn.k_norm.weight", hd),
			postNorm:  p.Get("post_attention_layernorm.weight", D),
			gate:      p.Get("mlp.gate_proj.weight", I, D),
			up:        p.Get("mlp.up_proj.weight", I, D),
			down:      p.Get("mlp.down_proj.weight", D, I),
		})
	}
	if err := e.ld.Err(); err != nil {
		e.ld.Free()
		return nil, fmt.Errorf("qwen3: %w", err)
	}
	return e, nil
}

// Config returns the configuration the encoder was built with.
func (e *Encoder) Config() weights.Qwen3Config { return e.cfg }

// Close releases the backend handles (the checkpoint Set is the caller's).
func (e *Encoder) Close() {
	if e.ld != nil {
		e.ld.Free()
		e.ld = nil
	}
}

// IDError reports a token id outside the vocabulary.
type IDError struct {
	Index, ID, Vocab int
}

func (e *IDError) Error() string {
	return fmt.Sprintf("qwen3: token %d has id %d outside the vocabulary [0, %d)", e.Index, e.ID, e.Vocab)
}

// Encode runs the real (unpadded) token ids through layers 0..N-2 and returns
// hidden_states[-2] as float32 [n, hidden]. Running only the n real tokens is
// exact: the reference pads on the right and attention is causal.
// tr (may be nil) receives "hidden_states.k" for k = 0..N-1 ([n, hidden]).
// ctx is checked after every layer.
func (e *Encoder) Encode(ctx context.Context, ids []int, tr nn.Trace) ([]float32, error) {
	n := len(ids)
	if n == 0 {
		return nil, fmt.Errorf("qwen3: no tokens to encode")
	}
	for i, id := range ids {
		if id < 0 || id >= e.cfg.VocabSize {
			return nil, &IDError{Index: i, ID: id, Vocab: e.cfg.VocabSize}
		}
	}
	b := e.b
	c := e.cfg
	H, KV, hd := c.NumAttentionHeads, c.NumKeyValueHeads, headDim(c)
	eps := float32(c.RMSNormEps)
	scale := float32(1 / math.Sqrt(float64(hd)))

	cosH, sinH := RopeTables(n, hd, c.RopeTheta)
	cos := b.FromHost(cosH, n, hd/2) // [n, hd/2]
	sin := b.FromHost(sinH, n, hd/2) // [n, hd/2]
	defer b.Free(cos, sin)

	h := b.Embedding(e.embed, ids) // [n, D]
	tr.Emit("hidden_states.0", h)
	for i, l := range e.layers {
		x := b.RMSNorm(h, l.inputNorm, eps) // [n, D]
		q := b.MatMul(x, l.q, nil)          // [n, H*hd]
		k := b.MatMul(x, l.k, nil)          // [n, KV*hd]
		v := b.MatMul(x, l.v, nil)          // [n, KV*hd]
		b.Free(x)
		qn := b.RMSNorm(b.Reshape(q, n*H, hd), l.qNorm, eps)  // per-head norm [n*H, hd]
		kn := b.RMSNorm(b.Reshape(k, n*KV, hd), l.kNorm, eps) // [n*KV, hd]
		b.Free(q, k)
		qr := b.RoPE(b.Reshape(qn, n, H*hd), cos, sin, H, false)   // half-split rotation [n, H*hd]
		kr := b.RoPE(b.Reshape(kn, n, KV*hd), cos, sin, KV, false) // [n, KV*hd]
		b.Free(qn, kn)
		a := b.Attention(qr, kr, v, H, KV, scale, true) // causal GQA [n, H*hd]
		b.Free(qr, kr, v)
		o := b.MatMul(a, l.o, nil) // [n, D]
		b.Free(a)
		h1 := b.Add(h, o) // [n, D]
		b.Free(h, o)

		x = b.RMSNorm(h1, l.postNorm, eps) // [n, D]
		g := b.MatMul(x, l.gate, nil)      // [n, I]
		u := b.MatMul(x, l.up, nil)        // [n, I]
		b.Free(x)
		m := b.SwiGLU(g, u) // silu(g) ⊙ u [n, I]
		b.Free(g, u)
		d := b.MatMul(m, l.down, nil) // [n, D]
		b.Free(m)
		h = b.Add(h1, d) // [n, D]
		b.Free(h1, d)
		tr.Emit("hidden_states."+strconv.Itoa(i+1), h)

		if err := b.Err(); err != nil {
			b.Free(h)
			return nil, fmt.Errorf("qwen3: layer %d: %w", i, err)
		}
		if err := ctx.Err(); err != nil {
			b.Free(h)
			return nil, err
		}
	}
	out := b.ToHost(h) // [n, D]
	b.Free(h)
	if err := b.Err(); err != nil {
		return nil, fmt.Errorf("qwen3: %w", err)
	}
	return out, nil
}

// RopeTables returns the half-split RoPE cosines and sines [n, hd/2] for
// positions 0..n-1, computed like transformers' default rotary embedding in
// float32: inv_freq[j] = 1 / θ^(2j/hd) in float32, angle = p·inv_freq[j] as a
// float32 product, then cos/sin of that float32 angle.
func RopeTables(n, hd int, theta float64) (cos, sin []float32) {
	half := hd / 2
	inv := make([]float32, half)
	for j := range inv {
		// torch: arange(0, hd, 2).float() / hd, then θ ** that (float32 pow), then 1.0 / it.
		ex := float32(2*j) / float32(hd)
		p := float32(math.Pow(float64(float32(theta)), float64(ex)))
		inv[j] = 1 / p
	}
	cos = make([]float32, n*half)
	sin = make([]float32, n*half)
	for p := 0; p < n; p++ {
		for j, f := range inv {
			a := float32(p) * f
			cos[p*half+j] = float32(math.Cos(float64(a)))
			sin[p*half+j] = float32(math.Sin(float64(a)))
		}
	}
	return cos, sin
}
