package lora

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/zimage/zimage/weights"
)

// Open reads and normalizes the LoRA file at path (safetensors). The file
// is closed before Open returns; the result holds float32 copies.
func Open(path string) (*File, error) {
	f, err := weights.OpenFile(path)
	if err != nil {
		return nil, fmt.Errorf("lora: %w", err)
	}
	defer f.Close()
	ts := make([]*weights.Tensor, 0, f.Len())
	for _, n := range f.Names() {
		t, _ := f.Tensor(n)
		ts = append(ts, t)
	}
	lf, err := FromTensors(path, ts)
	if err != nil {
		return nil, err
	}
	lf.Metadata = f.Metadata()
	if err := applyAdapterMetadata(lf); err != nil {
		return nil, err
	}
	return lf, nil
}

// applyAdapterMetadata reads the PEFT LoraConfig diffusers stores in a
// file's "lora_adapter_metadata" (keys "transformer.lora_alpha", …): PEFT
// then scales each module by lora_alpha/r (alpha_pattern overriding
// lora_alpha per module) instead of 1.
func applyAdapterMetadata(f *File) error {
	raw, ok := f.Metadata["lora_adapter_metadata"]
	if !ok || raw == "" {
		return nil
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &all); err != nil {
		return &KeyError{Path: f.Path, Keys: []string{"__metadata__.lora_adapter_metadata"}, Reason: "adapter metadata is not a JSON object: " + err.Error()}
	}
	cfg := map[string]json.RawMessage{}
	for k, v := range all {
		if rest, ok := strings.CutPrefix(k, "transformer."); ok {
			cfg[rest] = v
		}
	}
	if len(cfg) == 0 {
		cfg = all
	}
	var alpha *float64
	var pattern map[string]float64
	if v, ok := cfg["lora_alpha"]; ok && json.Unmarshal(v, &alpha) != nil {
		return &KeyError{Path: f.Path, Keys: []string{"lora_alpha"}, Reason: "adapter metadata lora_alpha is not a number"}
	}
	if v, ok := cfg["alpha_pattern"]; ok && string(v) != "null" && json.Unmarshal(v, &pattern) != nil {
		return &KeyError{Path: f.Path, Keys: []string{"alpha_pattern"}, Reason: "adapter metadata alpha_pattern is not an object of numbers"}
	}
	for _, m := range f.Modules {
		a := alpha
		for pat, v := range pattern {
			if m.Target == pat || strings.HasSuffix(m.Target, "."+pat) {
				v := v
				a = &v
			}
		}
		if a == nil || m.HasAlpha {
			continue
		}
		if math.IsNaN(*a) || math.IsInf(*a, 0) {
			return &KeyError{Path: f.Path, Keys: []string{"lora_alpha"}, Reason: "adapter metadata alpha is not finite"}
		}
		m.Alpha, m.Factor = *a, *a/float64(m.Rank)
	}
	return nil
}

// role is what a key holds for its module.
type role int

const (
	roleA role = iota
	roleB
	roleAlpha
)

// Key suffixes, longest spellings first where one ends another.
var suffixes = []struct {
	s string
	r role
}{
	{".lora_A.weight", roleA}, {".lora_down.weight", roleA}, {".lora.down.weight", roleA},
	{".lora_B.weight", roleB}, {".lora_up.weight", roleB}, {".lora.up.weight", roleB},
	{".alpha", roleAlpha},
}

// unsupported maps key fragments to the variant they reveal.
var unsupported = []struct{ frag, kind string }{
	{"lokr_", "LoKr"}, {"hada_", "LoHa"}, {"dora_scale", "DoRA"}, {"lora_magnitude_vector", "DoRA"},
	{"lora_mid", "LoCon/Tucker (lora_mid)"}, {".lora_A.bias", "LoRA bias"}, {".lora_B.bias", "LoRA bias"},
	{".lora_up.bias", "LoRA bias"}, {"oft_", "OFT"}, {".glora_", "GLoRA"}, {"ia3_", "IA3"},
}

// unsupportedSuffixes are variants recognised by how a key ends.
var unsupportedSuffixes = []struct{ suffix, kind string }{
	{".diff", "full weight difference (diff)"}, {".diff_b", "full weight difference (diff)"},
}

// textEncoderPrefixes mark text-encoder LoRAs, which upstream Z-Image does
// not apply (only the transformer is LoRA-loadable there).
var textEncoderPrefixes = []string{"lora_te", "text_encoder.", "text_encoders.", "te.", "te1.", "te2.", "conditioner."}

// prefixes stripped from keys before normalization.
var stripPrefixes = []string{"model.diffusion_model.", "diffusion_model.", "base_model.model.", "transformer."}

// Module-name words that contain an underscore; kohya names and the dotted
// spelling split them, normalization re-joins them. Longest first.
var joined = [][]string{
	{"all", "final", "layer"}, {"all", "x", "embedder"},
	{"noise", "refiner"}, {"context", "refiner"}, {"adaLN", "modulation"},
	{"cap", "embedder"}, {"t", "embedder"}, {"x", "embedder"}, {"final", "layer"},
	{"to", "q"}, {"to", "k"}, {"to", "v"}, {"to", "out"}, {"feed", "forward"}, {"norm", "q"}, {"norm", "k"},
}

// normalizeModule turns a module path in any supported spelling
// ("layers_0_attention_to_out_0", "layers.0.attention.to.q",
// "layers.0.attention.to_out.0") into dotted diffusers form.
func normalizeModule(base string) string {
	toks := strings.FieldsFunc(base, func(r rune) bool { return r == '.' || r == '_' })
	out := make([]string, 0, len(toks))
	for i := 0; i < len(toks); {
		n := 1
		for _, j := range joined {
			if i+len(j) <= len(toks) && slices.Equal(toks[i:i+len(j)], j) {
				n = len(j)
				break
			}
		}
		out = append(out, strings.Join(toks[i:i+n], "_"))
		i += n
	}
	return strings.Join(out, ".")
}

// keyInfo is one parsed key.
type keyInfo struct {
	key    string
	module string
	role   role
	kohya  bool
	t      *weights.Tensor
}

// parseKey splits a key into module and role; ok is false for keys that are
// no LoRA weight.
func parseKey(key string) (ki keyInfo, ok bool) {
	k := key
	for _, p := range stripPrefixes {
		if rest, cut := strings.CutPrefix(k, p); cut {
			k = rest
			break
		}
	}
	if rest, cut := strings.CutPrefix(k, "lora_unet_"); cut {
		k, ki.kohya = rest, true
	}
	// PEFT adapter names: upstream removes every "default." (lora_A.default.weight).
	k = strings.ReplaceAll(k, "default.", "")
	for _, s := range suffixes {
		if base, cut := strings.CutSuffix(k, s.s); cut && base != "" {
			ki.key, ki.role = key, s.r
			ki.module = normalizeModule(base)
			return ki, ki.module != ""
		}
	}
	return ki, false
}

// refuse reports the first key of an unsupported kind.
func refuse(path string, ts []*weights.Tensor) error {
	for _, t := range ts {
		for _, p := range textEncoderPrefixes {
			if strings.HasPrefix(t.Name, p) {
				return &UnsupportedError{Path: path, Kind: "text-encoder LoRA (upstream Z-Image applies LoRAs to the transformer only)", Key: t.Name}
			}
		}
		for _, u := range unsupported {
			if strings.Contains(t.Name, u.frag) {
				return &UnsupportedError{Path: path, Kind: u.kind, Key: t.Name}
			}
		}
		for _, u := range unsupportedSuffixes {
			if strings.HasSuffix(t.Name, u.suffix) {
				return &UnsupportedError{Path: path, Kind: u.kind, Key: t.Name}
			}
		}
	}
	return nil
}

// detectFormat names the spelling the keys mostly use.
func detectFormat(ts []*weights.Tensor) Format {
	f := FormatDiffusers
	for _, t := range ts {
		switch {
		case strings.HasPrefix(t.Name, "lora_unet_"):
			return FormatKohya
		case strings.Contains(t.Name, ".lora.down.") || strings.Contains(t.Name, ".lora.up."):
			f = FormatDot
		case f == FormatDiffusers && (strings.HasPrefix(t.Name, "diffusion_model.") || strings.HasPrefix(t.Name, "model.diffusion_model.")):
			f = FormatComfyUI
		}
	}
	return f
}

// FromTensors normalizes LoRA tensors (any supported spelling) read from
// path: keys grouped by module, A/B paired and shape-checked, alpha folded
// into A and B in the file's dtype exactly as upstream's converter does,
// and the duplicate spellings upstream drops (a fused qkv next to separate
// to_q/k/v, an original-layout "out" next to to_out.0) dropped.
func FromTensors(path string, ts []*weights.Tensor) (*File, error) {
	if err := refuse(path, ts); err != nil {
		return nil, err
	}
	if len(ts) == 0 {
		return nil, &KeyError{Path: path, Reason: "no tensors"}
	}
	groups := map[string]*group{}
	var bad, dup []string
	for _, t := range ts {
		ki, ok := parseKey(t.Name)
		if !ok {
			bad = append(bad, t.Name)
			continue
		}
		ki.t = t
		g := groups[ki.module]
		if g == nil {
			g = &group{}
			groups[ki.module] = g
		}
		slot := [...]**keyInfo{&g.a, &g.b, &g.alpha}[ki.role]
		if *slot != nil {
			dup = append(dup, (*slot).key+" / "+t.Name)
			continue
		}
		kc := ki
		*slot = &kc
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return nil, &KeyError{Path: path, Keys: bad, Reason: "keys that are no LoRA weight (want <module>.lora_A/lora_B/lora_down/lora_up.weight or .alpha)"}
	}
	if len(dup) > 0 {
		slices.Sort(dup)
		return nil, &KeyError{Path: path, Keys: dup, Reason: "keys naming the same LoRA weight twice"}
	}

	out := &File{Path: path, Format: detectFormat(ts)}
	// Upstream drops a fused qkv when the separate projections are present,
	// and an original-layout "out" next to to_out.0.
	for mod, g := range groups {
		p, isQKV := strings.CutSuffix(mod, ".attention.qkv")
		if isQKV && (groups[p+".attention.to_q"] != nil || groups[p+".attention.to_k"] != nil || groups[p+".attention.to_v"] != nil) {
			out.Dropped = append(out.Dropped, g.keys()...)
			delete(groups, mod)
		}
		if p, isOut := strings.CutSuffix(mod, ".attention.out"); isOut && groups[p+".attention.to_out.0"] != nil {
			out.Dropped = append(out.Dropped, g.keys()...)
			delete(groups, mod)
		}
	}
	slices.Sort(out.Dropped)

	var unpaired []string
	for _, mod := range sortedKeys(groups) {
		g := groups[mod]
		if g.a == nil || g.b == nil {
			unpaired = append(unpaired, g.keys()...)
			continue
		}
		m, err := buildModule(path, mod, g.a, g.b, g.alpha, &out.DType)
		if err != nil {
			return nil, err
		}
		out.Modules = append(out.Modules, m)
	}
	if len(unpaired) > 0 {
		return nil, &KeyError{Path: path, Keys: unpaired, Reason: "LoRA weights without their partner (need both down/A and up/B)"}
	}
	return out, nil
}

// group is the keys of one module.
type group struct {
	a, b, alpha *keyInfo
}

func (g *group) keys() []string {
	var ks []string
	for _, k := range []*keyInfo{g.a, g.b, g.alpha} {
		if k != nil {
			ks = append(ks, k.key)
		}
	}
	return ks
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// buildModule decodes one A/B pair (and alpha) and folds alpha in.
func buildModule(path, mod string, a, b, alpha *keyInfo, dt *weights.DType) (*Module, error) {
	for _, k := range []*keyInfo{a, b} {
		switch k.t.DType {
		case weights.F32, weights.BF16, weights.F16:
		default:
			return nil, &ShapeError{Path: path, Key: k.key, Shape: k.t.Shape, Reason: fmt.Sprintf("dtype %s (want F32, BF16 or F16)", k.t.DType)}
		}
		if len(k.t.Shape) != 2 && !(len(k.t.Shape) == 4 && k.t.Shape[2] == 1 && k.t.Shape[3] == 1) {
			return nil, &ShapeError{Path: path, Key: k.key, Shape: k.t.Shape, Reason: "want a 2-D matrix"}
		}
		if k.t.Shape[0] <= 0 || k.t.Shape[1] <= 0 {
			return nil, &ShapeError{Path: path, Key: k.key, Shape: k.t.Shape, Reason: "empty"}
		}
		if *dt == weights.Invalid {
			*dt = k.t.DType
		}
	}
	r, in, out := a.t.Shape[0], a.t.Shape[1], b.t.Shape[0]
	if b.t.Shape[1] != r {
		return nil, &ShapeError{Path: path, Key: b.key, Shape: b.t.Shape, Reason: fmt.Sprintf("rank %d, but %s has rank %d (shape %v)", b.t.Shape[1], a.key, r, a.t.Shape)}
	}
	m := &Module{Target: mod, Rank: r, In: in, Out: out, Alpha: float64(r), Factor: 1, Keys: []string{a.key, b.key}}
	var err error
	if m.A, err = decode(path, a); err != nil {
		return nil, err
	}
	if m.B, err = decode(path, b); err != nil {
		return nil, err
	}
	if alpha != nil {
		m.Keys = append(m.Keys, alpha.key)
		if alpha.t.NumElements() != 1 || !alpha.t.DType.IsFloat() {
			return nil, &ShapeError{Path: path, Key: alpha.key, Shape: alpha.t.Shape, Reason: "alpha must be one float value"}
		}
		v, err := decode(path, alpha)
		if err != nil {
			return nil, err
		}
		// Upstream's folding loop never ends for alpha ≤ 0.
		if f := float64(v[0]); math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
			return nil, &ShapeError{Path: path, Key: alpha.key, Shape: alpha.t.Shape, Reason: fmt.Sprintf("alpha %v is not a finite positive value", v[0])}
		}
		m.Alpha, m.HasAlpha = float64(v[0]), true
		// Upstream folds alpha/rank into the weights, giving the down
		// matrix the smaller share by powers of two, each product rounded
		// to the file's dtype; PEFT then uses alpha = rank.
		sDown, sUp := m.Alpha/float64(r), 1.0
		for sDown*2 < sUp {
			sDown *= 2
			sUp /= 2
		}
		scaleIn(m.A, float32(sDown), a.t.DType)
		scaleIn(m.B, float32(sUp), b.t.DType)
	}
	return m, nil
}

func decode(path string, k *keyInfo) ([]float32, error) {
	v := make([]float32, k.t.NumElements())
	if err := k.t.DecodeF32(v); err != nil {
		return nil, &ShapeError{Path: path, Key: k.key, Shape: k.t.Shape, Reason: err.Error()}
	}
	return v, nil
}

// scaleIn multiplies v by s in float32 and rounds each product to dt, as a
// torch tensor of dtype dt times a Python float does.
func scaleIn(v []float32, s float32, dt weights.DType) {
	if s == 1 {
		return
	}
	for i, x := range v {
		v[i] = Round(x*s, dt)
	}
}

// Round rounds a float32 to the nearest value of dt (F32 is unchanged; BF16
// and F16 round to nearest even, like torch's .to()).
func Round(x float32, dt weights.DType) float32 {
	switch dt {
	case weights.BF16:
		return weights.BF16ToF32(weights.F32ToBF16(x))
	case weights.F16:
		return weights.F16ToF32(weights.F32ToF16(x))
	}
	return x
}
