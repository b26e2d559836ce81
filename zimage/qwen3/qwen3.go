// Package qwen3 is the Z-Image text encoder: the Qwen3 decoder stack run up to
// hidden_states[-2] (the raw output of the second-to-last decoder layer, no
// final norm), which is what ZImagePipeline hands to the DiT as caption
// features.
package qwen3

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/zimage/zimage/cuda/fused"
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
//
// The embedding table stays in the checkpoint: only the rows of a prompt's
// tokens are read and uploaded (the table is 0.78 GB for Qwen3-4B). A source
// without tensor data (synthetic weights filled by the backend) binds the
// table and gathers on the backend instead.
type Encoder struct {
	cfg       weights.Qwen3Config
	b         compute.Backend
	src       nn.Source
	ld        *nn.Loader
	embedHost *weights.Tensor // model.embed_tokens.weight [V, D], read row by row
	embed     compute.Tensor  // the bound table when embedHost is nil
	layers    []*layer        // nil when streaming
	stream    bool
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
	return newEncoder(b, cfg, src, false)
}

// NewStreaming is New for a device that cannot hold every layer: only the
// embedding is set up here, and each Encode binds the layers one at a time,
// issuing the upload of layer i+1 as soon as layer i's work is queued (on a
// backend that queues work, such as CUDA, the copy overlaps layer i; on the
// CPU the same code runs synchronously) and releasing layer i after it. At
// most two layers' weights are held. Every layer tensor's name, dtype and
// shape is checked here, so a broken checkpoint fails before any encoding.
// Results are identical to New's.
func NewStreaming(b compute.Backend, cfg weights.Qwen3Config, src nn.Source) (*Encoder, error) {
	return newEncoder(b, cfg, src, true)
}

func newEncoder(b compute.Backend, cfg weights.Qwen3Config, src nn.Source, stream bool) (*Encoder, error) {
	if err := checkConfig(cfg); err != nil {
		return nil, err
	}
	e := &Encoder{cfg: cfg, b: b, src: src, ld: nn.NewLoader(b, src), stream: stream}
	m := e.ld.Sub("model")
	if t, err := embedTable(cfg, src); err != nil {
		return nil, fmt.Errorf("qwen3: %w", err)
	} else if t.Data != nil {
		e.embedHost = t
	} else {
		e.embed = m.Get("embed_tokens.weight", cfg.VocabSize, cfg.HiddenSize)
	}
	for i := 0; i < cfg.NumHiddenLayers-1; i++ {
		p := m.Sub("layers." + strconv.Itoa(i))
		if stream {
			if err := checkLayer(cfg, src, Prefix+"layers."+strconv.Itoa(i)+"."); err != nil {
				e.ld.Free()
				return nil, fmt.Errorf("qwen3: %w", err)
			}
			continue
		}
		e.layers = append(e.layers, bindLayer(cfg, p))
	}
	if err := e.ld.Err(); err != nil {
		e.ld.Free()
		return nil, fmt.Errorf("qwen3: %w", err)
	}
	return e, nil
}

// embedTable looks up and checks the embedding table.
func embedTable(cfg weights.Qwen3Config, src nn.Source) (*weights.Tensor, error) {
	name := Prefix + "embed_tokens.weight"
	want := []int{cfg.VocabSize, cfg.HiddenSize}
	t, ok := src.Tensor(name)
	switch {
	case !ok:
		return nil, &nn.TensorError{Name: name, Want: want, Reason: "missing from the checkpoint"}
	case !t.DType.IsFloat() && !t.DType.IsQuantized():
		return nil, &nn.TensorError{Name: name, Reason: fmt.Sprintf("dtype %s is not a float type", t.DType)}
	case !slices.Equal(t.Shape, want):
		return nil, &nn.TensorError{Name: name, Want: want, Got: t.Shape}
	case t.Data != nil && int64(len(t.Data)) != tensorBytes(t):
		return nil, &nn.TensorError{Name: name, Reason: fmt.Sprintf("%d bytes of data for shape %v", len(t.Data), t.Shape)}
	}
	return t, nil
}

// tensorBytes is the storage size of t's shape in its dtype (-1 when the
// rows are not whole blocks of a quantized dtype).
func tensorBytes(t *weights.Tensor) int64 {
	n, ok := t.DType.TensorBytes(t.Shape)
	if !ok {
		return -1
	}
	return n
}

// layerTensors lists one decoder layer's tensors: name under the layer
// prefix, shape, and where the bound handle goes.
func layerTensors(cfg weights.Qwen3Config) []struct {
	name  string
	shape []int
	field func(*layer) *compute.Tensor
} {
	D, H, KV, hd, I := cfg.HiddenSize, cfg.NumAttentionHeads, cfg.NumKeyValueHeads, headDim(cfg), cfg.IntermediateSize
	type spec = struct {
		name  string
		shape []int
		field func(*layer) *compute.Tensor
	}
	return []spec{
		{"input_layernorm.weight", []int{D}, func(l *layer) *compute.Tensor { return &l.inputNorm }},
		{"self_attn.q_proj.weight", []int{H * hd, D}, func(l *layer) *compute.Tensor { return &l.q }},
		{"self_attn.k_proj.weight", []int{KV * hd, D}, func(l *layer) *compute.Tensor { return &l.k }},
		{"self_attn.v_proj.weight", []int{KV * hd, D}, func(l *layer) *compute.Tensor { return &l.v }},
		{"self_attn.o_proj.weight", []int{D, H * hd}, func(l *layer) *compute.Tensor { return &l.o }},
		{"self_attn.q_norm.weight", []int{hd}, func(l *layer) *compute.Tensor { return &l.qNorm }},
		{"self_attn.k_norm.weight", []int{hd}, func(l *layer) *compute.Tensor { return &l.kNorm }},
		{"post_attention_layernorm.weight", []int{D}, func(l *layer) *compute.Tensor { return &l.postNorm }},
		{"mlp.gate_proj.weight", []int{I, D}, func(l *layer) *compute.Tensor { return &l.gate }},
		{"mlp.up_proj.weight", []int{I, D}, func(l *layer) *compute.Tensor { return &l.up }},
		{"mlp.down_proj.weight", []int{D, I}, func(l *layer) *compute.Tensor { return &l.down }},
	}
}

// bindLayer binds one layer's tensors through p (model.layers.i).
func bindLayer(cfg weights.Qwen3Config, p *nn.Loader) *layer {
	l := &layer{}
	for _, t := range layerTensors(cfg) {
		*t.field(l) = p.Get(t.name, t.shape...)
	}
	return l
}

// checkLayer checks one layer's tensors in src without binding them, as
// nn.Loader.Get would.
func checkLayer(cfg weights.Qwen3Config, src nn.Source, prefix string) error {
	for _, s := range layerTensors(cfg) {
		name := prefix + s.name
		t, ok := src.Tensor(name)
		switch {
		case !ok:
			return &nn.TensorError{Name: name, Want: s.shape, Reason: "missing from the checkpoint"}
		case !t.DType.IsFloat() && !t.DType.IsQuantized():
			return &nn.TensorError{Name: name, Reason: fmt.Sprintf("dtype %s is not a float type", t.DType)}
		case !slices.Equal(t.Shape, s.shape):
			return &nn.TensorError{Name: name, Want: s.shape, Got: t.Shape}
		}
	}
	return nil
}

// Streaming reports whether the encoder binds its layers per Encode.
func (e *Encoder) Streaming() bool { return e.stream }

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
	out, err := e.encode(ctx, [][]int{ids}, tr)
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// EncodeAll is Encode for several prompts (a prompt and its negative) in one
// pass over the layers: each layer runs every prompt while it is bound,
// which halves the uploads of a streaming encoder.
func (e *Encoder) EncodeAll(ctx context.Context, prompts ...[]int) ([][]float32, error) {
	return e.encode(ctx, prompts, nil)
}

func (e *Encoder) encode(ctx context.Context, prompts [][]int, tr nn.Trace) ([][]float32, error) {
	if len(prompts) == 0 {
		return nil, fmt.Errorf("qwen3: no prompts to encode")
	}
	for _, ids := range prompts {
		if len(ids) == 0 {
			return nil, fmt.Errorf("qwen3: no tokens to encode")
		}
		for i, id := range ids {
			if id < 0 || id >= e.cfg.VocabSize {
				return nil, &IDError{Index: i, ID: id, Vocab: e.cfg.VocabSize}
			}
		}
	}
	b := e.b
	c := e.cfg
	hd := headDim(c)
	hs := make([]compute.Tensor, len(prompts))  // residual streams [n, D]
	cos := make([]compute.Tensor, len(prompts)) // [n, hd/2]
	sin := make([]compute.Tensor, len(prompts)) // [n, hd/2]
	defer func() { b.Free(cos...); b.Free(sin...); b.Free(hs...) }()
	for s, ids := range prompts {
		n := len(ids)
		cosH, sinH := RopeTables(n, hd, c.RopeTheta)
		cos[s], sin[s] = b.FromHost(cosH, n, hd/2), b.FromHost(sinH, n, hd/2)
		hs[s] = e.embedRows(ids) // [n, D]
	}
	tr.Emit("hidden_states.0", hs[0])

	nl := c.NumHiddenLayers - 1
	l, err := e.layer(0)
	if err != nil {
		return nil, err
	}
	for i := 0; i < nl; i++ {
		for s := range prompts {
			h := e.block(l.layer, hs[s], cos[s], sin[s])
			b.Free(hs[s])
			hs[s] = h
		}
		tr.Emit("hidden_states."+strconv.Itoa(i+1), hs[0])
		// Bind the next layer now: its upload runs while this layer's queued
		// work executes. Only then release this layer (stream-ordered).
		var next boundLayer
		if i+1 < nl && b.Err() == nil && ctx.Err() == nil {
			next, err = e.layer(i + 1)
		}
		l.free()
		if err != nil {
			return nil, err
		}
		if err := b.Err(); err != nil {
			next.free()
			return nil, fmt.Errorf("qwen3: layer %d: %w", i, err)
		}
		if err := ctx.Err(); err != nil {
			next.free()
			return nil, err
		}
		l = next
	}
	out := make([][]float32, len(prompts))
	for s := range prompts {
		out[s] = b.ToHost(hs[s]) // [n, D]
	}
	if err := b.Err(); err != nil {
		return nil, fmt.Errorf("qwen3: %w", err)
	}
	return out, nil
}

// boundLayer is a layer ready to run; free releases it when it was bound
// for this use only (streaming).
type boundLayer struct {
	*layer
	ld *nn.Loader
}

func (l boundLayer) free() {
	if l.ld != nil {
		l.ld.Free()
	}
}

// layer returns layer i: the resident one, or freshly bound when streaming.
func (e *Encoder) layer(i int) (boundLayer, error) {
	if !e.stream {
		return boundLayer{layer: e.layers[i]}, nil
	}
	ld := nn.NewLoader(e.b, e.src)
	l := bindLayer(e.cfg, ld.Sub("model").Sub("layers."+strconv.Itoa(i)))
	if err := ld.Err(); err != nil {
		ld.Free()
		return boundLayer{}, fmt.Errorf("qwen3: layer %d: %w", i, err)
	}
	return boundLayer{layer: l, ld: ld}, nil
}

// embedRows returns the embedding rows of ids [n, D]: read from the
// checkpoint on the host, or gathered from the bound table.
func (e *Encoder) embedRows(ids []int) compute.Tensor {
	D := e.cfg.HiddenSize
	if e.embedHost == nil {
		return e.b.Embedding(e.embed, ids)
	}
	t := e.embedHost
	rb, _ := t.DType.RowBytes(D) // whole blocks for quantized tables (checked in New)
	rows := make([]float32, len(ids)*D)
	for r, id := range ids {
		// Cannot fail: the table's dtype and size were checked in New.
		_ = weights.DecodeF32(rows[r*D:(r+1)*D], t.Data[id*rb:(id+1)*rb], t.DType)
	}
	return e.b.FromHost(rows, len(ids), D)
}

// block runs decoder layer l on the residual stream h [n, D] and returns the
// new stream (h is not freed).
func (e *Encoder) block(l *layer, h, cos, sin compute.Tensor) compute.Tensor {
	b := e.b
	c := e.cfg
	H, KV, hd := c.NumAttentionHeads, c.NumKeyValueHeads, headDim(c)
	eps := float32(c.RMSNormEps)
	scale := float32(1 / math.Sqrt(float64(hd)))

	x := b.RMSNorm(h, l.inputNorm, eps) // [n, D] (n tokens)
	q := b.MatMul(x, l.q, nil)          // [n, H*hd]
	k := b.MatMul(x, l.k, nil)          // [n, KV*hd]
	v := b.MatMul(x, l.v, nil)          // [n, KV*hd]
	b.Free(x)
	qr := fused.HeadRMSNormRoPE(b, q, l.qNorm, cos, sin, H, eps, false)  // per-head norm, half-split rotation [n, H*hd]
	kr := fused.HeadRMSNormRoPE(b, k, l.kNorm, cos, sin, KV, eps, false) // [n, KV*hd]
	b.Free(q, k)
	a := b.Attention(qr, kr, v, H, KV, scale, true) // causal GQA [n, H*hd]
	b.Free(qr, kr, v)
	o := b.MatMul(a, l.o, nil) // [n, D]
	b.Free(a)
	h1, x := fused.AddRMSNorm(b, h, o, l.postNorm, eps) // residual [n, D] and its norm [n, D]
	b.Free(o)

	g := b.MatMul(x, l.gate, nil) // [n, I]
	u := b.MatMul(x, l.up, nil)   // [n, I]
	b.Free(x)
	m := b.SwiGLU(g, u) // silu(g) ⊙ u [n, I]
	b.Free(g, u)
	d := b.MatMul(m, l.down, nil) // [n, D]
	b.Free(m)
	out := b.Add(h1, d) // [n, D]
	b.Free(h1, d)
	return out
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
