// Package lora reads Z-Image LoRA adapters in the key spellings the
// community ships them in (diffusers/PEFT, ComfyUI exports, kohya
// lora_unet_, dotted lora.down/up), normalizes them to the DiT's diffusers
// module paths, binds them to a loaded transformer, and merges them into
// copies of the touched weights. The rules mirror upstream diffusers
// (ZImageLoraLoaderMixin, _convert_non_diffusers_z_image_lora_to_diffusers)
// and PEFT's LoRA merge; see parse.go and merge.go.
package lora

import (
	"fmt"
	"strings"

	"github.com/zimage/zimage/weights"
)

// Format names a LoRA file's key spelling.
type Format string

const (
	// FormatDiffusers: transformer.<module>.lora_A.weight / lora_B.weight (PEFT).
	FormatDiffusers Format = "diffusers"
	// FormatComfyUI: diffusion_model.<module>.lora_A/lora_B (or lora_down/up)
	// .weight, possibly named for the original single-file layout (fused qkv).
	FormatComfyUI Format = "comfyui"
	// FormatKohya: lora_unet_<module with _>.lora_down.weight / lora_up.weight, .alpha.
	FormatKohya Format = "kohya"
	// FormatDot: <module>.lora.down.weight / lora.up.weight (some trainers).
	FormatDot Format = "dot"
)

// Module is one low-rank update of a Linear weight W [Out, In]:
// ΔW = scale · B·A. A file's alpha is already folded into A and B at load,
// as upstream does, so the factor applied later is the user's scale alone.
type Module struct {
	// Target is the DiT module path in diffusers naming
	// ("layers.0.attention.to_q"), or in the original layout's naming for
	// modules only that layout has ("layers.0.attention.qkv",
	// "x_embedder", "final_layer.linear"); Bind resolves those.
	Target   string
	Keys     []string // the file's keys for this module (A, B, alpha)
	Rank     int
	In, Out  int
	Alpha    float64 // stored alpha; Rank when the file has none
	HasAlpha bool
	// Factor multiplies the user's scale: lora_alpha/r from a diffusers
	// file's adapter metadata (PEFT applies it at run time); 1 otherwise.
	Factor float64
	A      []float32 // [Rank, In], alpha share folded in, rounded to the file's dtype
	B      []float32 // [Out, Rank]
}

// File is a parsed LoRA file.
type File struct {
	Path     string
	Format   Format
	DType    weights.DType // dtype of the A/B tensors
	Modules  []*Module     // sorted by Target
	Dropped  []string      // keys dropped as duplicates, as upstream does
	Metadata map[string]string
}

// Ranks returns the distinct ranks, ascending.
func (f *File) Ranks() []int {
	seen := map[int]bool{}
	var out []int
	for _, m := range f.Modules {
		if !seen[m.Rank] {
			seen[m.Rank] = true
			out = append(out, m.Rank)
		}
	}
	sortInts(out)
	return out
}

// UnsupportedError refuses a LoRA variant or part this package does not
// apply (LoKr, LoHa, DoRA, text-encoder LoRAs, LoRA biases, …), by name.
type UnsupportedError struct {
	Path string
	Kind string // "LoKr", "LoHa", "DoRA", "text-encoder LoRA", ...
	Key  string // the first key that shows it
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("lora: %s: %s adapters are not supported (key %q)", e.Path, e.Kind, e.Key)
}

// KeyError lists keys that are not a LoRA weight this package understands,
// or that lack their partner (lora_A without lora_B, an alpha alone).
type KeyError struct {
	Path   string
	Keys   []string
	Reason string
}

func (e *KeyError) Error() string {
	return fmt.Sprintf("lora: %s: %s: %s", e.Path, e.Reason, listKeys(e.Keys))
}

// ShapeError reports a LoRA tensor with an unusable shape or dtype.
type ShapeError struct {
	Path   string
	Key    string
	Shape  []int
	Reason string
}

func (e *ShapeError) Error() string {
	return fmt.Sprintf("lora: %s: tensor %q %v: %s", e.Path, e.Key, e.Shape, e.Reason)
}

// UnmatchedError lists LoRA keys whose module is not a weight of the model
// (nothing is applied then).
type UnmatchedError struct {
	Path string
	Keys []string
}

func (e *UnmatchedError) Error() string {
	return fmt.Sprintf("lora: %s: %d key(s) match no weight of the model: %s", e.Path, len(e.Keys), listKeys(e.Keys))
}

// MismatchError reports a LoRA module whose [out, in] differs from the
// model weight it targets.
type MismatchError struct {
	Path   string
	Tensor string // the model weight
	Weight []int  // its shape
	LoRA   []int  // [out, in] of B·A
	Key    string // the LoRA key
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("lora: %s: %q is %v in the model but the LoRA (%s) makes %v", e.Path, e.Tensor, e.Weight, e.Key, e.LoRA)
}

func listKeys(keys []string) string {
	const max = 20
	if len(keys) <= max {
		return strings.Join(keys, ", ")
	}
	return strings.Join(keys[:max], ", ") + fmt.Sprintf(", … (%d more)", len(keys)-max)
}

func sortInts(s []int) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
