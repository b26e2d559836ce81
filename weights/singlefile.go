package weights

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Component names: the folders of a diffusers model directory.
const (
	CompTransformer = "transformer"
	CompTextEncoder = "text_encoder"
	CompVAE         = "vae"
)

// Layout names the tensor naming a checkpoint part uses.
type Layout string

const (
	// LayoutDiffusers is the diffusers/transformers naming of a model
	// directory (also found in single files saved from those classes).
	LayoutDiffusers Layout = "diffusers"
	// LayoutOriginal is the naming of the original releases as ComfyUI
	// distributes them: the Lumina-2 "NextDiT" transformer with fused qkv
	// (z_image_turbo_bf16.safetensors) and the FLUX autoencoder
	// (ae.safetensors). The Qwen3 text encoder has one naming, with or
	// without the "model." prefix, and is reported as LayoutDiffusers.
	LayoutOriginal Layout = "original"
)

// Part is one model component found in a checkpoint.
type Part struct {
	Component string // CompTransformer, CompTextEncoder or CompVAE
	Layout    Layout
	// Prefix is the key prefix of the component inside the file:
	// "model.diffusion_model.", "text_encoders.qwen3_4b.transformer.",
	// "vae." or "first_stage_model." in all-in-one checkpoints, "" otherwise.
	Prefix  string
	Tensors int
}

// componentSource is where Model reads a component that does not come from
// the model directory's own folder.
type componentSource struct {
	path      string // file, shard index or directory, for Open
	part      Part
	converted bool // a converted copy written by ConvertF32 (diffusers names)
}

// Well-known keys used to recognise each component.
const (
	ditPrefixAIO = "model.diffusion_model."
	ditMarker    = "layers.0.adaLN_modulation.0.weight"
	ditMarker2   = "noise_refiner.0.adaLN_modulation.0.weight"
	teMarker     = "embed_tokens.weight"
	vaeMarker    = "decoder.conv_in.weight"
)

// DetectParts lists the Z-Image components a tensor set holds, with their
// naming and key prefix: one part for a component file, three for an
// all-in-one (AIO) checkpoint. Parts are in the order transformer, text
// encoder, VAE.
func DetectParts(s *Set) []Part {
	names := s.Names()
	has := func(n string) bool { _, ok := s.Tensor(n); return ok }
	count := func(prefix string) int {
		n := 0
		for _, name := range names {
			if strings.HasPrefix(name, prefix) {
				n++
			}
		}
		return n
	}
	var parts []Part

	// Transformer: the block modulation weights are unique to it.
	for _, p := range []string{ditPrefixAIO, ""} {
		if !has(p+ditMarker) && !has(p+ditMarker2) {
			continue
		}
		layout := LayoutOriginal
		for _, name := range names {
			if strings.HasPrefix(name, p+"all_x_embedder.") || strings.HasSuffix(name, ".attention.to_q.weight") && strings.HasPrefix(name, p) {
				layout = LayoutDiffusers
				break
			}
		}
		n := count(p)
		if p == "" {
			// A file with unprefixed transformer keys may still carry other
			// parts under their own prefixes.
			n = 0
			for _, name := range names {
				if !strings.HasPrefix(name, "text_encoders.") && !strings.HasPrefix(name, "vae.") &&
					!strings.HasPrefix(name, "first_stage_model.") && !strings.HasPrefix(name, ditPrefixAIO) {
					n++
				}
			}
		}
		parts = append(parts, Part{Component: CompTransformer, Layout: layout, Prefix: p, Tensors: n})
		break
	}

	// Text encoder: the prefix is whatever precedes "[model.]embed_tokens.weight".
	for _, name := range names {
		pre, ok := strings.CutSuffix(name, teMarker)
		if !ok {
			continue
		}
		pre = strings.TrimSuffix(pre, "model.")
		if pre != "" && !strings.HasSuffix(pre, ".") {
			continue
		}
		parts = append(parts, Part{Component: CompTextEncoder, Layout: LayoutDiffusers, Prefix: pre, Tensors: countTE(names, pre)})
		break
	}

	// Text encoder in llama.cpp's GGUF names (token_embd, blk.N.attn_q, ...).
	if has(llamaTEMarker) && has(llamaTEMarker2) {
		parts = append(parts, Part{Component: CompTextEncoder, Layout: LayoutLlamaCpp, Tensors: countLlamaTE(names)})
	}

	// VAE: "[prefix]decoder.conv_in.weight"; FLUX names have "decoder.mid.".
	for _, name := range names {
		pre, ok := strings.CutSuffix(name, vaeMarker)
		if !ok || pre != "" && !strings.HasSuffix(pre, ".") || strings.HasPrefix(pre, ditPrefixAIO) {
			continue
		}
		layout := LayoutDiffusers
		if has(pre+"decoder.mid.block_1.conv1.weight") || has(pre+"decoder.up.0.block.0.conv1.weight") {
			layout = LayoutOriginal
		}
		n := 0
		for _, nm := range names {
			if strings.HasPrefix(nm, pre) && vaeName(strings.TrimPrefix(nm, pre)) {
				n++
			}
		}
		parts = append(parts, Part{Component: CompVAE, Layout: layout, Prefix: pre, Tensors: n})
		break
	}
	return parts
}

// countTE counts the text-encoder tensors under prefix.
func countTE(names []string, pre string) int {
	n := 0
	for _, name := range names {
		if rest, ok := strings.CutPrefix(name, pre); ok && teName(rest) {
			n++
		}
	}
	return n
}

// teName reports whether a (prefix-stripped) name belongs to a Qwen3 model.
func teName(n string) bool {
	n = strings.TrimPrefix(n, "model.")
	return strings.HasPrefix(n, "layers.") || n == "embed_tokens.weight" || n == "norm.weight" || strings.HasPrefix(n, "lm_head.")
}

// vaeName reports whether a (prefix-stripped) name belongs to an autoencoder.
func vaeName(n string) bool {
	return strings.HasPrefix(n, "decoder.") || strings.HasPrefix(n, "encoder.") ||
		strings.HasPrefix(n, "quant_conv.") || strings.HasPrefix(n, "post_quant_conv.")
}

// scaledFP8 reports a tensor name used by scaled-fp8 checkpoints, whose
// weights need a per-tensor scale this package does not apply.
func scaledFP8(n string) bool {
	return n == "scaled_fp8" || strings.HasSuffix(n, ".scale_weight") || strings.HasSuffix(n, ".weight_scale") ||
		strings.HasSuffix(n, ".scale_input") || strings.HasSuffix(n, ".input_scale") || strings.HasSuffix(n, ".comfy_quant")
}

// Rows returns rows [lo, hi) of a row-major tensor (the first dimension)
// as a tensor sharing t's bytes: a row block is one contiguous byte range,
// so nothing is copied.
func (t *Tensor) Rows(lo, hi int) (*Tensor, error) {
	if len(t.Shape) == 0 || lo < 0 || hi < lo || hi > t.Shape[0] {
		return nil, fmt.Errorf("weights: tensor %q %v: rows [%d, %d) out of range", t.Name, t.Shape, lo, hi)
	}
	// One row of a quantized tensor is whole blocks (the last dimension is
	// a multiple of the block size), so row views work for them too.
	row64, ok := t.DType.TensorBytes(t.Shape[1:])
	row := int(row64)
	if !ok || len(t.Data) != t.Shape[0]*row {
		return nil, fmt.Errorf("weights: tensor %q %v: %d data bytes, want %d", t.Name, t.Shape, len(t.Data), t.Shape[0]*row)
	}
	shape := append([]int{hi - lo}, t.Shape[1:]...)
	return &Tensor{Name: t.Name, DType: t.DType, Shape: shape, Data: t.Data[lo*row : hi*row : hi*row], File: t.File}, nil
}

// MapPart returns the tensors of part p of s under the diffusers names of
// its component (the names CheckDiT, CheckQwen3 and CheckVAE expect; text
// encoder names are returned as stored, without the AIO prefix). The
// result shares s's files and their lifetime; no tensor data is copied:
// a fused qkv weight becomes three row views, 1×1-conv attention weights
// are reshaped views. ditKey names the DiT embedder ("2-1" for Z-Image,
// see DiTConfig.EmbedderKey).
func MapPart(s *Set, p Part, ditKey string) (*Set, error) {
	in := map[string]*Tensor{}
	for _, name := range s.Names() {
		rest, ok := strings.CutPrefix(name, p.Prefix)
		if !ok {
			continue
		}
		switch p.Component {
		case CompTextEncoder:
			ok = teName(rest) || p.Layout == LayoutLlamaCpp && llamaTEName(rest)
		case CompVAE:
			ok = vaeName(rest)
		case CompTransformer:
			// Unprefixed transformer keys share the file with nothing else,
			// except in AIO files, whose other parts have their own prefixes.
			ok = p.Prefix != "" || !strings.HasPrefix(name, "text_encoders.") && !strings.HasPrefix(name, "vae.") &&
				!strings.HasPrefix(name, "first_stage_model.") && !strings.HasPrefix(name, ditPrefixAIO)
		default:
			return nil, fmt.Errorf("weights: unknown component %q", p.Component)
		}
		if !ok {
			continue
		}
		if scaledFP8(rest) {
			return nil, &SetError{Path: s.Path(), Tensor: name, Reason: "scaled fp8 checkpoints (per-tensor weight scales) are not supported; use a bf16, fp16 or plain fp8_e4m3fn file"}
		}
		t, _ := s.Tensor(name)
		in[rest] = t
	}
	if len(in) == 0 {
		return nil, &SetError{Path: s.Path(), Reason: fmt.Sprintf("no %s tensors under prefix %q", p.Component, p.Prefix)}
	}
	out := in
	var err error
	if p.Layout == LayoutLlamaCpp && p.Component == CompTextEncoder {
		if out, err = mapQwen3LlamaCpp(s.Path(), in); err != nil {
			return nil, err
		}
	}
	if p.Layout == LayoutOriginal {
		switch p.Component {
		case CompTransformer:
			out, err = mapDiTOriginal(s.Path(), in, ditKey)
		case CompVAE:
			out, err = mapVAEOriginal(s.Path(), in)
		}
		if err != nil {
			return nil, err
		}
	}
	return derivedSet(s, out), nil
}

// derivedSet is a Set of the given tensors (renamed to their keys) sharing
// s's files.
func derivedSet(s *Set, tensors map[string]*Tensor) *Set {
	out := &Set{path: s.path, index: s.index, files: s.files, gguf: s.gguf, total: s.total, tensors: make(map[string]*Tensor, len(tensors))}
	for name, t := range tensors {
		if t.Name != name {
			c := *t
			c.Name = name
			t = &c
		}
		out.tensors[name] = t
	}
	out.names = slices.Sorted(maps.Keys(out.tensors))
	return out
}

// mapDiTOriginal maps Lumina-2/ComfyUI transformer names to diffusers names
// (spec 4.3): embedder and final-layer renames, fused qkv split in thirds
// (rows q|k|v), out → to_out.0, q_norm/k_norm → norm_q/norm_k, and the
// unused norm_final dropped.
func mapDiTOriginal(file string, in map[string]*Tensor, key string) (map[string]*Tensor, error) {
	out := make(map[string]*Tensor, len(in)+2*len(in)/13)
	from := map[string]string{}
	put := func(src, dst string, t *Tensor) error {
		if prev, dup := from[dst]; dup {
			return &SetError{Path: file, Tensor: dst, Reason: fmt.Sprintf("both %q and %q map to it", prev, src)}
		}
		from[dst] = src
		out[dst] = t
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(in)) {
		t := in[name]
		var err error
		switch {
		case name == "norm_final.weight":
			continue
		case strings.HasSuffix(name, "pad_token") && len(t.Shape) == 1:
			// Some GGUF conversions store the pad tokens as [D]; the model's are [1, D].
			c := *t
			c.Shape = []int{1, t.Shape[0]}
			err = put(name, name, &c)
		case strings.HasPrefix(name, "x_embedder."):
			err = put(name, "all_x_embedder."+key+"."+strings.TrimPrefix(name, "x_embedder."), t)
		case strings.HasPrefix(name, "final_layer."):
			err = put(name, "all_final_layer."+key+"."+strings.TrimPrefix(name, "final_layer."), t)
		case strings.HasSuffix(name, ".attention.qkv.weight"):
			p := strings.TrimSuffix(name, "qkv.weight")
			if len(t.Shape) != 2 || t.Shape[0]%3 != 0 {
				return nil, &SetError{Path: file, Tensor: name, Reason: fmt.Sprintf("fused qkv weight has shape %v, want [3·d, in]", t.Shape)}
			}
			n := t.Shape[0] / 3
			for i, l := range []string{"to_q", "to_k", "to_v"} {
				v, rerr := t.Rows(i*n, (i+1)*n)
				if rerr != nil {
					return nil, rerr
				}
				if err = put(name, p+l+".weight", v); err != nil {
					break
				}
			}
		case strings.HasSuffix(name, ".attention.out.weight"):
			err = put(name, strings.TrimSuffix(name, "out.weight")+"to_out.0.weight", t)
		case strings.HasSuffix(name, ".attention.q_norm.weight"):
			err = put(name, strings.TrimSuffix(name, "q_norm.weight")+"norm_q.weight", t)
		case strings.HasSuffix(name, ".attention.k_norm.weight"):
			err = put(name, strings.TrimSuffix(name, "k_norm.weight")+"norm_k.weight", t)
		default:
			err = put(name, name, t)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// mapVAEOriginal maps FLUX autoencoder names (ae.safetensors) to diffusers
// AutoencoderKL names (spec 4.5): mid.block_{1,2} → mid_block.resnets.{0,1},
// mid.attn_1 → mid_block.attentions.0 with 1×1-conv q/k/v/proj_out squeezed
// to Linear shapes, decoder up.{i} → up_blocks.{n−1−i} (reversed), encoder
// down.{i} → down_blocks.{i}, nin_shortcut → conv_shortcut,
// norm_out → conv_norm_out.
func mapVAEOriginal(file string, in map[string]*Tensor) (map[string]*Tensor, error) {
	nUp := 0
	for name := range in {
		if rest, ok := strings.CutPrefix(name, "decoder.up."); ok {
			i, _, _ := strings.Cut(rest, ".")
			if v, err := strconv.Atoi(i); err == nil {
				nUp = max(nUp, v+1)
			}
		}
	}
	resnet := func(s string) string {
		if r, ok := strings.CutPrefix(s, "nin_shortcut."); ok {
			return "conv_shortcut." + r
		}
		return s
	}
	attn := map[string]string{"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
	out := make(map[string]*Tensor, len(in))
	from := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(in)) {
		t := in[name]
		coder, rest, _ := strings.Cut(name, ".") // "decoder" / "encoder" / other
		dst := name
		f := strings.Split(rest, ".")
		switch {
		case coder != "decoder" && coder != "encoder":
		case len(f) >= 3 && f[0] == "mid" && (f[1] == "block_1" || f[1] == "block_2"):
			dst = fmt.Sprintf("%s.mid_block.resnets.%d.%s", coder, int(f[1][6]-'1'), resnet(strings.Join(f[2:], ".")))
		case len(f) == 4 && f[0] == "mid" && f[1] == "attn_1" && attn[f[2]] != "":
			dst = fmt.Sprintf("%s.mid_block.attentions.0.%s.%s", coder, attn[f[2]], f[3])
			if f[2] != "norm" && f[3] == "weight" && len(t.Shape) == 4 && t.Shape[2] == 1 && t.Shape[3] == 1 {
				c := *t
				c.Shape = t.Shape[:2:2]
				t = &c
			}
		case coder == "decoder" && len(f) >= 5 && f[0] == "up" && f[2] == "block":
			i, err := strconv.Atoi(f[1])
			if err != nil || i >= nUp {
				return nil, &SetError{Path: file, Tensor: name, Reason: "bad up-block index"}
			}
			dst = fmt.Sprintf("decoder.up_blocks.%d.resnets.%s.%s", nUp-1-i, f[3], resnet(strings.Join(f[4:], ".")))
		case coder == "decoder" && len(f) == 5 && f[0] == "up" && f[2] == "upsample" && f[3] == "conv":
			i, err := strconv.Atoi(f[1])
			if err != nil || i >= nUp {
				return nil, &SetError{Path: file, Tensor: name, Reason: "bad up-block index"}
			}
			dst = fmt.Sprintf("decoder.up_blocks.%d.upsamplers.0.conv.%s", nUp-1-i, f[4])
		case coder == "encoder" && len(f) >= 5 && f[0] == "down" && f[2] == "block":
			dst = fmt.Sprintf("encoder.down_blocks.%s.resnets.%s.%s", f[1], f[3], resnet(strings.Join(f[4:], ".")))
		case coder == "encoder" && len(f) == 5 && f[0] == "down" && f[2] == "downsample" && f[3] == "conv":
			dst = fmt.Sprintf("encoder.down_blocks.%s.downsamplers.0.conv.%s", f[1], f[4])
		case len(f) == 2 && f[0] == "norm_out":
			dst = coder + ".conv_norm_out." + f[1]
		}
		if prev, dup := from[dst]; dup {
			return nil, &SetError{Path: file, Tensor: dst, Reason: fmt.Sprintf("both %q and %q map to it", prev, name)}
		}
		from[dst] = name
		out[dst] = t
	}
	return out, nil
}

// Name describes where the model comes from: its directory, or the
// transformer file of a single-file model.
func (m *Model) Name() string {
	if m.Dir != "" {
		return m.Dir
	}
	if src, ok := m.sources[CompTransformer]; ok {
		return src.path
	}
	return "(single-file model)"
}

// Source reports where a component's tensors are read from: the path given
// to Open (the component folder of the model directory unless UseFile or
// ConvertF32 changed it), the part of that file, and whether it is a
// converted copy.
func (m *Model) Source(component string) (path string, part Part, converted bool) {
	if src, ok := m.sources[component]; ok {
		return src.path, src.part, src.converted
	}
	return filepath.Join(m.Dir, component), Part{Component: component, Layout: LayoutDiffusers}, false
}

func checkComponent(c string) error {
	switch c {
	case CompTransformer, CompTextEncoder, CompVAE:
		return nil
	}
	return fmt.Errorf("weights: unknown component %q (want %s, %s or %s)", c, CompTransformer, CompTextEncoder, CompVAE)
}

// UseFile makes m read component (CompTransformer, CompTextEncoder or
// CompVAE) from path: a safetensors file (or shard index, or component
// directory) in any layout DetectParts recognises, e.g. ComfyUI's
// z_image_turbo_bf16.safetensors, qwen_3_4b.safetensors or the FLUX
// ae.safetensors, or an all-in-one checkpoint. Only the header is read now;
// names and shapes are checked against m's config when the component is
// opened.
func (m *Model) UseFile(component, path string) error {
	if err := checkComponent(component); err != nil {
		return err
	}
	s, err := Open(path)
	if err != nil {
		return err
	}
	defer s.Close()
	parts := DetectParts(s)
	var found []string
	for _, p := range parts {
		if p.Component == component {
			if m.sources == nil {
				m.sources = map[string]componentSource{}
			}
			m.sources[component] = componentSource{path: path, part: p}
			return nil
		}
		found = append(found, p.Component)
	}
	what := "no Z-Image component"
	if len(found) > 0 {
		what = "only " + strings.Join(found, ", ")
	}
	return &SetError{Path: path, Reason: fmt.Sprintf("holds no %s tensors (found %s)", component, what)}
}

// OpenSingleFiles opens a model made of separate checkpoint files, as
// ComfyUI users have them (z_image_turbo_bf16.safetensors,
// qwen_3_4b.safetensors, ae.safetensors), or of one all-in-one checkpoint:
// textEncoder and vae may be "" when the transformer file also holds them.
// tokenizer is a tokenizer directory, a model directory with a tokenizer/
// folder, or a tokenizer.json file. The configs are the Z-Image-Turbo
// defaults; to take them from a model directory instead, use OpenModel on
// that directory and UseFile for each component.
//
// The returned Model is used like one from OpenModel: OpenTransformer,
// OpenTextEncoder and OpenVAE return tensor sets under the diffusers names,
// checked against the configs, sharing the files' mappings (a fused qkv
// weight becomes three zero-copy row views).
func OpenSingleFiles(transformer, textEncoder, vae, tokenizer string) (*Model, error) {
	m := &Model{
		DiT: DefaultDiTConfig(), TextEncoder: DefaultQwen3Config(),
		VAE: DefaultVAEConfig(), Scheduler: DefaultSchedulerConfig(),
		Index: ModelIndex{ClassName: "ZImagePipeline", Components: map[string]ModelClass{
			"scheduler":     {"diffusers", "FlowMatchEulerDiscreteScheduler"},
			CompTextEncoder: {"transformers", "Qwen3Model"},
			"tokenizer":     {"transformers", "Qwen2Tokenizer"},
			CompTransformer: {"diffusers", "ZImageTransformer2DModel"},
			CompVAE:         {"diffusers", "AutoencoderKL"},
		}},
	}
	if transformer == "" {
		return nil, errors.New("weights: single-file model: no transformer file given")
	}
	if textEncoder == "" {
		textEncoder = transformer
	}
	if vae == "" {
		vae = transformer
	}
	for _, c := range []struct{ comp, path string }{{CompTransformer, transformer}, {CompTextEncoder, textEncoder}, {CompVAE, vae}} {
		if err := m.UseFile(c.comp, c.path); err != nil {
			return nil, err
		}
	}
	if err := m.UseTokenizer(tokenizer); err != nil {
		return nil, err
	}
	return m, nil
}

// UseTokenizer makes m read its tokenizer from path: a tokenizer directory,
// a model directory with a tokenizer/ folder, or a tokenizer.json file.
func (m *Model) UseTokenizer(path string) error {
	if path == "" {
		return &ConfigError{File: path, Err: errors.New("no tokenizer given (a tokenizer directory or tokenizer.json)")}
	}
	st, err := os.Stat(path)
	if err != nil {
		return &ConfigError{File: path, Err: err}
	}
	if st.IsDir() {
		if checkTokenizerDir(path) != nil {
			if sub := filepath.Join(path, "tokenizer"); checkTokenizerDir(sub) == nil {
				path = sub
			} else {
				return checkTokenizerDir(path)
			}
		}
	}
	m.TokenizerDir = path
	return nil
}

// openComponent opens a component from its source (see UseFile and
// ConvertF32) or from the model directory's folder, maps and renames the
// names, and checks them.
func (m *Model) openComponent(comp string, rename func(string) string, check func(*Set) error) (*Set, error) {
	src, ok := m.sources[comp]
	if !ok {
		return openChecked(filepath.Join(m.Dir, comp), rename, check)
	}
	s, err := Open(src.path)
	if err != nil {
		return nil, err
	}
	out := s
	if !src.converted {
		if out, err = MapPart(s, src.part, m.ditKey()); err != nil {
			s.Close()
			return nil, err
		}
	}
	if rename != nil {
		if out, err = out.Rename(rename); err != nil {
			s.Close()
			return nil, err
		}
	}
	if err := check(out); err != nil {
		s.Close()
		return nil, err
	}
	return out, nil
}

func (m *Model) ditKey() string {
	if len(m.DiT.AllPatchSize) > 0 && len(m.DiT.AllFPatchSize) > 0 {
		return m.DiT.EmbedderKey(0)
	}
	return "2-1"
}

// ConvertShardSize bounds the tensor bytes per file of a converted copy.
const ConvertShardSize = 5 << 30

// convertShardSize is ConvertShardSize, smaller in tests.
var convertShardSize int64 = ConvertShardSize

// ConvertF32 makes m read each listed component from a copy with its F32
// (and F64) tensors converted to dtype to (BF16 or F16), when such tensors
// hold most of the component's bytes — the Hugging Face transformer of
// Z-Image-Turbo is stored in F32 (24.6 GB) while the reference pipeline
// runs it in bf16 (12.3 GB). The copy is written once under cacheDir, in
// diffusers names, tensor by tensor with bounded memory (a few MiB of
// scratch; source pages are dropped as they are consumed), into a temporary
// directory renamed into place when complete; later calls reuse it as long
// as the source files (path, size, modification time) are unchanged.
// Components already stored in a narrower dtype are left alone. It returns
// the components now read from a converted copy. Convert's options apply
// (WithLogger for progress, WithContext to stop).
func (m *Model) ConvertF32(to DType, cacheDir string, components []string, opts ...ConvertOption) ([]string, error) {
	cfg := convertConfig{log: slog.New(slog.DiscardHandler), ctx: context.Background()}
	for _, o := range opts {
		o(&cfg)
	}
	if to != BF16 && to != F16 {
		return nil, &DTypeError{DType: to, Op: "convert F32 weights (want BF16 or F16)"}
	}
	var done []string
	for _, comp := range components {
		if err := checkComponent(comp); err != nil {
			return done, err
		}
		var open func() (*Set, error)
		switch comp {
		case CompTransformer:
			open = m.OpenTransformer
		case CompTextEncoder:
			open = m.OpenTextEncoder
		default:
			open = m.OpenVAE
		}
		s, err := open()
		if err != nil {
			return done, err
		}
		var wide, all int64
		for _, name := range s.Names() {
			t, _ := s.Tensor(name)
			all += int64(len(t.Data))
			if t.DType == F32 || t.DType == F64 {
				wide += int64(len(t.Data))
			}
		}
		if 2*wide <= all {
			s.Close()
			continue
		}
		_, part, _ := m.Source(comp)
		dir := filepath.Join(cacheDir, fmt.Sprintf("%s-%s-%s", comp, strings.ToLower(to.String()), convertKey(s, comp, part, to)))
		if !dirExists(dir) {
			cfg.log.Info("weights: converting to "+to.String()+" (once)", "component", comp, "bytes", all, "to", dir)
			err = writeConverted(s, dir, to, cfg)
		}
		s.Close()
		if err != nil {
			return done, err
		}
		if m.sources == nil {
			m.sources = map[string]componentSource{}
		}
		m.sources[comp] = componentSource{path: dir, part: Part{Component: comp, Layout: LayoutDiffusers}, converted: true}
		done = append(done, comp)
	}
	return done, nil
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// convertKey identifies the source of a conversion: the real files behind
// the set (through symlinks: a hub blob's name is its content hash) with
// their sizes and modification times, and how they were mapped.
func convertKey(s *Set, comp string, part Part, to DType) string {
	h := sha256.New()
	fmt.Fprintf(h, "zimage-convert-v1\x00%s\x00%s\x00%s\x00%s\n", comp, part.Layout, part.Prefix, to)
	for _, f := range s.Files() {
		real, err := filepath.EvalSymlinks(f)
		if err != nil {
			real = f
		}
		if abs, err := filepath.Abs(real); err == nil {
			real = abs
		}
		var size, mtime int64
		if st, err := os.Stat(real); err == nil {
			size, mtime = st.Size(), st.ModTime().UnixNano()
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\n", real, size, mtime)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// writeConverted writes the tensors of s, F32/F64 ones converted to to,
// as model.safetensors (or shards of ConvertShardSize with
// model.safetensors.index.json) in dir, via a temporary directory.
func writeConverted(s *Set, dir string, to DType, cfg convertConfig) (err error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("weights: convert: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("weights: convert: %w", err)
	}
	os.Chmod(tmp, 0o755) // MkdirTemp makes it private; the cache may be shared

	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	f32 := make([]float32, convertChunk)
	buf := make([]byte, convertChunk*4)
	var plan []outTensor
	for _, name := range s.Names() {
		t, _ := s.Tensor(name)
		odt := t.DType
		if odt == F32 || odt == F64 {
			odt = to
		}
		size := int64(t.NumElements()) * int64(odt.Size())
		plan = append(plan, outTensor{name: name, dtype: odt, shape: t.Shape, size: size,
			write: func(w io.Writer) error { return convertTensor(cfg, w, t, odt, f32, buf) }})
	}
	meta := map[string]string{"format": "pt", "zimage_converted_from": strings.Join(s.Files(), ",")}
	groups := shardPlan(plan, convertShardSize)
	if len(groups) == 1 {
		if err := writeSafetensors(filepath.Join(tmp, "model.safetensors"), plan, meta); err != nil {
			return err
		}
	} else {
		index := struct {
			Metadata  map[string]int64  `json:"metadata"`
			WeightMap map[string]string `json:"weight_map"`
		}{Metadata: map[string]int64{"total_size": 0}, WeightMap: map[string]string{}}
		for i, g := range groups {
			name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(groups))
			cfg.log.Info("weights: writing shard", "file", name, "tensors", len(g))
			if err := writeSafetensors(filepath.Join(tmp, name), g, meta); err != nil {
				return err
			}
			for _, t := range g {
				index.WeightMap[t.name] = name
				index.Metadata["total_size"] += t.size
			}
		}
		js, err := json.MarshalIndent(index, "", "  ")
		if err != nil {
			return fmt.Errorf("weights: convert: %w", err)
		}
		if err := os.WriteFile(filepath.Join(tmp, "model.safetensors.index.json"), append(js, '\n'), 0o644); err != nil {
			return fmt.Errorf("weights: convert: %w", err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if dirExists(dir) { // another process finished the same conversion first
			os.RemoveAll(tmp)
			return nil
		}
		return fmt.Errorf("weights: convert: %w", err)
	}
	syncDir(filepath.Dir(dir))
	return nil
}

// SingleFileTensors returns the tensors of a component set in diffusers
// names (as Model.OpenTransformer/OpenTextEncoder/OpenVAE return them) under
// the names of layout, each prefixed with prefix: the inverse of MapPart,
// for writing ComfyUI-style or all-in-one checkpoints with WriteFile. With
// LayoutOriginal the transformer gets fused qkv weights (new buffers: the
// three row blocks concatenated), the VAE FLUX names with 1×1-conv
// attention weights, and the text encoder names lose their "model." prefix.
func SingleFileTensors(s *Set, component string, layout Layout, prefix, ditKey string) ([]*Tensor, error) {
	if err := checkComponent(component); err != nil {
		return nil, err
	}
	nUp := 0
	for _, name := range s.Names() {
		if rest, ok := strings.CutPrefix(name, "decoder.up_blocks."); ok {
			i, _, _ := strings.Cut(rest, ".")
			if v, err := strconv.Atoi(i); err == nil {
				nUp = max(nUp, v+1)
			}
		}
	}
	var out []*Tensor
	add := func(name string, t *Tensor, shape []int) {
		c := *t
		c.Name = prefix + name
		if shape != nil {
			c.Shape = shape
		}
		out = append(out, &c)
	}
	for _, name := range s.Names() {
		t, _ := s.Tensor(name)
		if layout != LayoutOriginal {
			add(name, t, nil)
			continue
		}
		switch component {
		case CompTextEncoder:
			add(strings.TrimPrefix(name, "model."), t, nil)
		case CompTransformer:
			switch {
			case strings.HasPrefix(name, "all_x_embedder."+ditKey+"."):
				add("x_embedder."+strings.TrimPrefix(name, "all_x_embedder."+ditKey+"."), t, nil)
			case strings.HasPrefix(name, "all_final_layer."+ditKey+"."):
				add("final_layer."+strings.TrimPrefix(name, "all_final_layer."+ditKey+"."), t, nil)
			case strings.HasSuffix(name, ".attention.to_q.weight"):
				p := strings.TrimSuffix(name, "to_q.weight")
				k, okk := s.Tensor(p + "to_k.weight")
				v, okv := s.Tensor(p + "to_v.weight")
				if !okk || !okv || k.DType != t.DType || v.DType != t.DType || !slices.Equal(k.Shape, t.Shape) || !slices.Equal(v.Shape, t.Shape) || len(t.Shape) != 2 {
					return nil, &SetError{Path: s.Path(), Tensor: name, Reason: "to_q, to_k and to_v must exist with equal 2-D shapes and dtypes to fuse"}
				}
				data := make([]byte, 0, 3*len(t.Data))
				data = append(append(append(data, t.Data...), k.Data...), v.Data...)
				add(p+"qkv.weight", &Tensor{DType: t.DType, Data: data, File: t.File}, []int{3 * t.Shape[0], t.Shape[1]})
			case strings.HasSuffix(name, ".attention.to_k.weight"), strings.HasSuffix(name, ".attention.to_v.weight"):
			case strings.HasSuffix(name, ".attention.to_out.0.weight"):
				add(strings.TrimSuffix(name, "to_out.0.weight")+"out.weight", t, nil)
			case strings.HasSuffix(name, ".attention.norm_q.weight"):
				add(strings.TrimSuffix(name, "norm_q.weight")+"q_norm.weight", t, nil)
			case strings.HasSuffix(name, ".attention.norm_k.weight"):
				add(strings.TrimSuffix(name, "norm_k.weight")+"k_norm.weight", t, nil)
			default:
				add(name, t, nil)
			}
		case CompVAE:
			n, shape := originalVAEName(name, t, nUp)
			add(n, t, shape)
		}
	}
	return out, nil
}

// originalVAEName is the FLUX name of a diffusers AutoencoderKL tensor (and
// the 1×1-conv shape of attention weights).
func originalVAEName(name string, t *Tensor, nUp int) (string, []int) {
	coder, rest, _ := strings.Cut(name, ".")
	if coder != "decoder" && coder != "encoder" {
		return name, nil
	}
	f := strings.Split(rest, ".")
	resnet := func(s []string) string {
		j := strings.Join(s, ".")
		if r, ok := strings.CutPrefix(j, "conv_shortcut."); ok {
			return "nin_shortcut." + r
		}
		return j
	}
	attn := map[string]string{"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v"}
	switch {
	case len(f) >= 4 && f[0] == "mid_block" && f[1] == "resnets":
		return fmt.Sprintf("%s.mid.block_%c.%s", coder, f[2][0]+1, resnet(f[3:])), nil
	case len(f) >= 5 && f[0] == "mid_block" && f[1] == "attentions":
		l, p := f[3], f[4:]
		if l == "to_out" { // to_out.0.weight
			l, p = "proj_out", f[5:]
		} else {
			l = attn[l]
		}
		n := fmt.Sprintf("%s.mid.attn_1.%s.%s", coder, l, strings.Join(p, "."))
		if l != "norm" && p[0] == "weight" && len(t.Shape) == 2 {
			return n, []int{t.Shape[0], t.Shape[1], 1, 1}
		}
		return n, nil
	case coder == "decoder" && len(f) >= 5 && f[0] == "up_blocks" && f[2] == "resnets":
		i, _ := strconv.Atoi(f[1])
		return fmt.Sprintf("decoder.up.%d.block.%s.%s", nUp-1-i, f[3], resnet(f[4:])), nil
	case coder == "decoder" && len(f) == 6 && f[0] == "up_blocks" && f[2] == "upsamplers":
		i, _ := strconv.Atoi(f[1])
		return fmt.Sprintf("decoder.up.%d.upsample.conv.%s", nUp-1-i, f[5]), nil
	case coder == "encoder" && len(f) >= 5 && f[0] == "down_blocks" && f[2] == "resnets":
		return fmt.Sprintf("encoder.down.%s.block.%s.%s", f[1], f[3], resnet(f[4:])), nil
	case coder == "encoder" && len(f) == 6 && f[0] == "down_blocks" && f[2] == "downsamplers":
		return fmt.Sprintf("encoder.down.%s.downsample.conv.%s", f[1], f[5]), nil
	case len(f) == 2 && f[0] == "conv_norm_out":
		return coder + ".norm_out." + f[1], nil
	}
	return name, nil
}
