package weights

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
)

// Writing GGUF checkpoints: the transformer in the original/ComfyUI names
// (fused qkv) with the metadata ComfyUI-GGUF's converter writes
// (general.architecture "lumina2", as it detects Z-Image), the text
// encoder in llama.cpp's Qwen3 names with its "qwen3.*" hyper-parameters.

// ggufFileType maps a quantized dtype to llama.cpp's general.file_type
// (LlamaFileType: MOSTLY_Q4_0 = 2, ..., MOSTLY_Q6_K = 18).
var ggufFileType = map[DType]uint32{
	F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q8_0: 7, Q5_0: 8, Q5_1: 9, Q2_K: 10,
	Q3_K: 12, Q4_K: 15, Q5_K: 17, Q6_K: 18, BF16: 32,
}

// ggufFallback is the type a tensor gets when its rows are not whole
// blocks of the requested k-quant (llama.cpp's llama_tensor_get_type does
// the same).
var ggufFallback = map[DType]DType{Q2_K: Q4_0, Q3_K: Q4_0, Q4_K: Q5_0, Q5_K: Q5_1, Q6_K: Q8_0}

// ggufMinQuantElems: tensors this small stay unquantized (ComfyUI-GGUF's
// QUANTIZATION_THRESHOLD).
const ggufMinQuantElems = 1024

// GGUFTensorType picks the stored type of one tensor, as WriteComponentGGUF
// stores it: 1-D, small and pad-token tensors as F32; the rest as qt, or
// its fallback when rows are not whole qt blocks, or else unquantized
// (the source's F16/BF16, otherwise F32).
func GGUFTensorType(name string, t *Tensor, qt DType) DType {
	keep := t.DType
	if keep != F16 && keep != BF16 && keep != F32 {
		keep = F32
	}
	if !qt.IsQuantized() {
		return qt
	}
	if len(t.Shape) < 2 || t.NumElements() <= ggufMinQuantElems || strings.Contains(name, "pad_token") {
		return F32
	}
	for dt := qt; dt != Invalid; dt = ggufFallback[dt] {
		if _, ok := dt.RowBytes(t.Shape[len(t.Shape)-1]); ok && QuantizeBlock(dt) != nil {
			return dt
		}
	}
	return keep
}

// GGUFConvertOptions says how WriteComponentGGUF stores a component.
type GGUFConvertOptions struct {
	Type   DType  // Q8_0, Q6_K, Q5_K, Q4_K, Q4_0, ... or F16/BF16/F32
	DiTKey string // DiT embedder key ("2-1"), see DiTConfig.EmbedderKey
	// TextEncoder is the Qwen3 config written as qwen3.* metadata.
	TextEncoder *Qwen3Config
	Log         *slog.Logger
	Ctx         context.Context
	// Meta is appended to the metadata (e.g. TokenizerGGUFMeta's entries).
	Meta []GGUFKV
}

// WriteComponentGGUF writes a component set in diffusers names (as
// Model.OpenTransformer/OpenTextEncoder return them) as a GGUF file:
// tensor by tensor, quantizing rows chunk by chunk from the source
// mapping, so memory stays at a few MiB of scratch whatever the size.
func WriteComponentGGUF(s *Set, component, dst string, o GGUFConvertOptions) error {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx := o.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	if !o.Type.IsQuantized() && o.Type != F16 && o.Type != BF16 && o.Type != F32 {
		return &DTypeError{DType: o.Type, Op: "write GGUF"}
	}
	if o.Type.IsQuantized() && QuantizeBlock(o.Type) == nil {
		return &DTypeError{DType: o.Type, Op: "quantize (not implemented)"}
	}
	var tensors []*Tensor
	parts := map[string][]*Tensor{} // fused tensors written from their parts
	kvs := []GGUFKV{}
	switch component {
	case CompTransformer:
		key := o.DiTKey
		if key == "" {
			key = "2-1"
		}
		// The fused qkv weights are streamed from to_q, to_k and to_v (rows
		// are whole blocks, so quantizing the parts in turn gives the bytes
		// of the fused tensor) instead of being concatenated in memory.
		rest := map[string]*Tensor{}
		for _, name := range s.Names() {
			t, _ := s.Tensor(name)
			p, ok := strings.CutSuffix(name, ".attention.to_q.weight")
			if !ok {
				if !strings.HasSuffix(name, ".attention.to_k.weight") && !strings.HasSuffix(name, ".attention.to_v.weight") {
					rest[name] = t
				}
				continue
			}
			k, okk := s.Tensor(p + ".attention.to_k.weight")
			v, okv := s.Tensor(p + ".attention.to_v.weight")
			if !okk || !okv || k.DType != t.DType || v.DType != t.DType || !slices.Equal(k.Shape, t.Shape) || !slices.Equal(v.Shape, t.Shape) || len(t.Shape) != 2 {
				return &SetError{Path: s.Path(), Tensor: name, Reason: "to_q, to_k and to_v must exist with equal 2-D shapes and dtypes to fuse"}
			}
			fused := p + ".attention.qkv.weight"
			parts[fused] = []*Tensor{t, k, v}
			tensors = append(tensors, &Tensor{Name: fused, DType: t.DType, Shape: []int{3 * t.Shape[0], t.Shape[1]}, File: t.File})
		}
		ts, err := SingleFileTensors(derivedSet(s, rest), CompTransformer, LayoutOriginal, "", key)
		if err != nil {
			return err
		}
		tensors = append(tensors, ts...)
		kvs = append(kvs, GGUFKV{"general.architecture", GGUFStr("lumina2")})
	case CompTextEncoder:
		for _, name := range s.Names() {
			t, _ := s.Tensor(name)
			ln := hfToLlama(strings.TrimPrefix(name, "model."))
			if ln == "" {
				return &SetError{Path: s.Path(), Tensor: name, Reason: "no llama.cpp name for this Qwen3 tensor"}
			}
			c := *t
			c.Name = ln
			tensors = append(tensors, &c)
		}
		kvs = append(kvs, GGUFKV{"general.architecture", GGUFStr("qwen3")})
		if c := o.TextEncoder; c != nil {
			hd := c.HeadDim
			if hd == 0 {
				hd = c.HiddenSize / c.NumAttentionHeads
			}
			u := func(k string, v int) { kvs = append(kvs, GGUFKV{"qwen3." + k, GGUFU32(uint32(v))}) }
			u("block_count", c.NumHiddenLayers)
			u("context_length", c.MaxPositions)
			u("embedding_length", c.HiddenSize)
			u("feed_forward_length", c.IntermediateSize)
			u("attention.head_count", c.NumAttentionHeads)
			u("attention.head_count_kv", c.NumKeyValueHeads)
			u("attention.key_length", hd)
			u("attention.value_length", hd)
			kvs = append(kvs,
				GGUFKV{"qwen3.rope.freq_base", GGUFValue{Type: GGUFFloat32, V: float32(c.RopeTheta)}},
				GGUFKV{"qwen3.attention.layer_norm_rms_epsilon", GGUFValue{Type: GGUFFloat32, V: float32(c.RMSNormEps)}})
		}
	default:
		return fmt.Errorf("weights: write GGUF: component %q (want %s or %s)", component, CompTransformer, CompTextEncoder)
	}
	kvs = append(kvs,
		GGUFKV{"general.quantization_version", GGUFU32(2)},
		GGUFKV{"general.file_type", GGUFU32(ggufFileType[o.Type])})
	kvs = append(kvs, o.Meta...)
	slices.SortFunc(tensors, func(a, b *Tensor) int { return strings.Compare(a.Name, b.Name) })
	f32 := make([]float32, convertChunk)
	out := make([]byte, convertChunk*4)
	var outs []GGUFTensorOut
	for _, t := range tensors {
		dt := GGUFTensorType(t.Name, t, o.Type)
		src := parts[t.Name]
		if src == nil {
			src = []*Tensor{t}
		}
		outs = append(outs, GGUFTensorOut{Name: t.Name, DType: dt, Shape: t.Shape, Write: func(w io.Writer) error {
			log.Debug("weights: tensor", "name", t.Name, "from", t.DType.String(), "to", dt.String(), "shape", t.Shape)
			for _, p := range src {
				if err := quantizeTensor(ctx, w, p, dt, f32, out); err != nil {
					return err
				}
			}
			return nil
		}})
	}
	log.Info("weights: writing GGUF", "component", component, "dst", dst, "type", o.Type.String(), "tensors", len(outs))
	return WriteGGUF(dst, kvs, outs, 0)
}

// quantizeTensor streams t into w as dtype dt, a chunk of whole rows at a
// time (chunks of convertChunk elements when rows are longer).
func quantizeTensor(ctx context.Context, w io.Writer, t *Tensor, dt DType, f32 []float32, out []byte) error {
	defer release(t.Data)
	if dt == t.DType {
		_, err := w.Write(t.Data)
		return err
	}
	sbs, sbb := t.DType.BlockSize(), t.DType.BlockBytes()
	n := t.NumElements()
	step := convertChunk
	if bs := dt.BlockSize(); bs > 1 {
		step = convertChunk / bs * bs
	}
	for i := 0; i < n; i += step {
		if err := ctx.Err(); err != nil {
			return err
		}
		m := min(step, n-i)
		if err := DecodeF32(f32[:m], t.Data[i/sbs*sbb:(i+m)/sbs*sbb], t.DType); err != nil {
			return fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		var o []byte
		switch dt {
		case F32:
			o = out[:4*m]
			EncodeF32(o, f32[:m])
		case BF16:
			o = out[:2*m]
			EncodeBF16(o, f32[:m])
		case F16:
			o = out[:2*m]
			EncodeF16(o, f32[:m])
		default:
			o = out[:m/dt.BlockSize()*dt.BlockBytes()]
			if err := Quantize(o, f32[:m], dt); err != nil {
				return fmt.Errorf("tensor %q: %w", t.Name, err)
			}
		}
		if _, err := w.Write(o); err != nil {
			return err
		}
	}
	return nil
}

// hfToLlama is the inverse of llamaToHF ("" when n has no llama.cpp name).
func hfToLlama(n string) string {
	switch n {
	case "embed_tokens.weight":
		return "token_embd.weight"
	case "norm.weight":
		return "output_norm.weight"
	case "lm_head.weight":
		return "output.weight"
	}
	rest, ok := strings.CutPrefix(n, "layers.")
	if !ok {
		return ""
	}
	idx, rest, ok := strings.Cut(rest, ".")
	if !ok {
		return ""
	}
	for ll, hf := range llamaLayerNames {
		if suffix, ok := strings.CutPrefix(rest, hf+"."); ok {
			return "blk." + idx + "." + ll + "." + suffix
		}
	}
	return ""
}
