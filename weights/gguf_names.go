package weights

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// LayoutLlamaCpp is the naming of llama.cpp's GGUF conversions of the Qwen3
// text encoder (convert_hf_to_gguf.py: token_embd, blk.N.attn_q, ...,
// output_norm). Its Qwen3 path writes the q/k projection rows unpermuted
// (only the LLaMA converter permutes them, for ggml's interleaved RoPE;
// llama.cpp runs Qwen2/Qwen3 with the NEOX half-split RoPE that
// transformers uses), so mapping the names is all that is needed.
const LayoutLlamaCpp Layout = "llama.cpp"

const (
	llamaTEMarker  = "token_embd.weight"
	llamaTEMarker2 = "blk.0.attn_q.weight"
)

// llamaLayerNames maps llama.cpp's per-block tensor names to transformers'.
var llamaLayerNames = map[string]string{
	"attn_norm":   "input_layernorm",
	"attn_q":      "self_attn.q_proj",
	"attn_k":      "self_attn.k_proj",
	"attn_v":      "self_attn.v_proj",
	"attn_output": "self_attn.o_proj",
	"attn_q_norm": "self_attn.q_norm",
	"attn_k_norm": "self_attn.k_norm",
	"ffn_norm":    "post_attention_layernorm",
	"ffn_gate":    "mlp.gate_proj",
	"ffn_up":      "mlp.up_proj",
	"ffn_down":    "mlp.down_proj",
}

// llamaTEName reports whether n is a llama.cpp text-model tensor name.
func llamaTEName(n string) bool {
	return strings.HasPrefix(n, "blk.") || n == "token_embd.weight" || n == "output_norm.weight" || n == "output.weight"
}

func countLlamaTE(names []string) int {
	n := 0
	for _, name := range names {
		if llamaTEName(name) {
			n++
		}
	}
	return n
}

// llamaToHF returns the transformers name (without "model.") of a
// llama.cpp Qwen3 tensor name, or "" if it has none.
func llamaToHF(name string) string {
	switch name {
	case "token_embd.weight":
		return "embed_tokens.weight"
	case "output_norm.weight":
		return "norm.weight"
	case "output.weight":
		return "lm_head.weight"
	}
	rest, ok := strings.CutPrefix(name, "blk.")
	if !ok {
		return ""
	}
	idx, rest, ok := strings.Cut(rest, ".")
	if !ok || idx == "" || strings.Trim(idx, "0123456789") != "" {
		return ""
	}
	base, suffix, ok := strings.Cut(rest, ".")
	hf, known := llamaLayerNames[base]
	if !ok || !known {
		return ""
	}
	return "layers." + idx + "." + hf + "." + suffix
}

// mapQwen3LlamaCpp renames a llama.cpp Qwen3 tensor set to transformers
// names (without the "model." prefix, like ComfyUI's qwen_3_4b file).
func mapQwen3LlamaCpp(file string, in map[string]*Tensor) (map[string]*Tensor, error) {
	out := make(map[string]*Tensor, len(in))
	for _, name := range slices.Sorted(maps.Keys(in)) {
		hf := llamaToHF(name)
		if hf == "" {
			return nil, &SetError{Path: file, Tensor: name, Reason: "not a Qwen3 tensor name of llama.cpp's GGUF layout"}
		}
		if _, dup := out[hf]; dup {
			return nil, &SetError{Path: file, Tensor: name, Reason: fmt.Sprintf("maps to %q twice", hf)}
		}
		out[hf] = in[name]
	}
	return out, nil
}

// openGGUFSet opens a GGUF file as a Set (tensor names as stored).
func openGGUFSet(path string) (*Set, error) {
	g, err := OpenGGUF(path)
	if err != nil {
		return nil, err
	}
	s := &Set{path: path, gguf: g, tensors: g.tensors, total: -1}
	s.names = slices.Sorted(maps.Keys(g.tensors))
	return s, nil
}

// GGUF returns the GGUF file the set was opened from, or nil.
func (s *Set) GGUF() *GGUFFile { return s.gguf }
