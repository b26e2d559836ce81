package lora

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage/internal/fixture"
)

// tinyDiT opens the tiny model's transformer (diffusers names).
func tinyDiT(t *testing.T) *weights.Set {
	t.Helper()
	s, err := weights.Open(fixturefs.Path(t, "fixtures/tiny-z-image-turbo/transformer"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openFixture(t *testing.T, file string) *File {
	t.Helper()
	f, err := Open(fixturefs.Path(t, "fixtures/e2e_lora/"+file))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFixtureFormats(t *testing.T) {
	dit := tinyDiT(t)
	for _, c := range []struct {
		file    string
		format  Format
		dtype   weights.DType
		modules int
		alpha   bool
	}{
		{"lora_diffusers.safetensors", FormatDiffusers, weights.F32, 42, false},
		{"lora_comfyui.safetensors", FormatComfyUI, weights.BF16, 14, false},
		{"lora_kohya.safetensors", FormatKohya, weights.F32, 42, true},
	} {
		f := openFixture(t, c.file)
		if f.Format != c.format || f.DType != c.dtype || len(f.Modules) != c.modules || !slices.Equal(f.Ranks(), []int{4}) {
			t.Errorf("%s: format %s dtype %s, %d modules, ranks %v", c.file, f.Format, f.DType, len(f.Modules), f.Ranks())
		}
		for _, m := range f.Modules {
			if m.HasAlpha != c.alpha || c.alpha && m.Alpha != 1 {
				t.Errorf("%s: %s alpha %v (%v)", c.file, m.Target, m.Alpha, m.HasAlpha)
			}
		}
		a, err := Bind(f, dit)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if len(a.Deltas) != c.modules {
			t.Errorf("%s: %d deltas", c.file, len(a.Deltas))
		}
	}
}

// TestFixturePEFTAndMerged checks the converted A/B against what PEFT held
// (kohya alpha folded) and the float32 merge against fuse_lora's weight.
func TestFixturePEFTAndMerged(t *testing.T) {
	dit := tinyDiT(t)
	const mod = "layers.0.attention.to_out.0"
	base, _ := dit.Tensor(mod + ".weight")
	w0, err := base.Float32()
	if err != nil {
		t.Fatal(err)
	}
	adapters := map[string]*Adapter{}
	for _, c := range fixturefs.LoRACases(t) {
		fx := fixture.Open(t, "fixtures/e2e_lora/"+c.Name+".safetensors")
		w := slices.Clone(w0)
		scratch := make([]float32, len(w))
		for _, l := range c.LoRAs {
			a := adapters[l.File]
			if a == nil {
				if a, err = Bind(openFixture(t, l.File), dit); err != nil {
					t.Fatal(err)
				}
				adapters[l.File] = a
			}
			i := slices.IndexFunc(a.Deltas, func(d *Delta) bool { return d.Weight == mod+".weight" })
			d := a.Deltas[i]
			for _, ab := range []struct {
				name string
				got  []float32
			}{{"lora_A", d.A}, {"lora_B", d.B}} {
				want := fx.F32(t, "peft."+l.Adapter+"."+mod+"."+ab.name)
				if !slices.Equal(ab.got, want) {
					t.Errorf("%s %s: %s differs from PEFT's", c.Name, l.Adapter, ab.name)
				}
			}
			if err := MergeInto(context.Background(), w, scratch, d, l.Scale, weights.F32); err != nil {
				t.Fatal(err)
			}
		}
		want := fx.F32(t, "merged."+mod+".weight")
		var maxAbs float64
		for i := range w {
			maxAbs = max(maxAbs, math.Abs(float64(w[i]-want[i])))
		}
		if maxAbs > 1e-6 {
			t.Errorf("%s: merged weight max abs error %g > 1e-6", c.Name, maxAbs)
		}
		t.Logf("%s: merged max abs %g", c.Name, maxAbs)
	}
}

// TestMergeStoresWeightDType checks Merge on the bf16 model: only touched
// weights are copied, stored in bf16 with PEFT's two roundings.
func TestMergeStoresWeightDType(t *testing.T) {
	dit := tinyDiT(t)
	a, err := Bind(openFixture(t, "lora_comfyui.safetensors"), dit)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Merge(context.Background(), dit, []*Adapter{a}, []float32{0.75})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Touched()) != 14 || m.Bytes() != MergeBytes(dit, []*Adapter{a}) {
		t.Fatalf("touched %d, %d bytes (want %d)", len(m.Touched()), m.Bytes(), MergeBytes(dit, []*Adapter{a}))
	}
	if got, _ := m.Tensor("layers.0.attention.norm_q.weight"); got == nil {
		t.Fatal("untouched tensor missing")
	} else if b, _ := dit.Tensor("layers.0.attention.norm_q.weight"); got != b {
		t.Error("untouched tensor was copied")
	}
	d := a.Deltas[0]
	got, _ := m.Tensor(d.Weight)
	base, _ := dit.Tensor(d.Weight)
	if got.DType != weights.BF16 || base.DType != weights.BF16 {
		t.Fatalf("dtype %s", got.DType)
	}
	g, _ := got.Float32()
	w, _ := base.Float32()
	for o := 0; o < d.Out; o++ {
		for i := 0; i < d.In; i++ {
			var s float32
			for r := 0; r < d.Rank; r++ {
				s += d.B[o*d.Rank+r] * d.A[r*d.In+i]
			}
			want := Round(w[o*d.In+i]+Round(s*0.75, weights.BF16), weights.BF16)
			if g[o*d.In+i] != want {
				t.Fatalf("%s[%d,%d] = %v, want %v", d.Weight, o, i, g[o*d.In+i], want)
			}
		}
	}
}

func f32Tensor(name string, shape ...int) *weights.Tensor {
	t := &weights.Tensor{Name: name, DType: weights.F32, Shape: shape}
	v := make([]float32, t.NumElements())
	for i := range v {
		v[i] = float32(i%7) - 3
	}
	t.Data = make([]byte, 4*len(v))
	weights.EncodeF32(t.Data, v)
	return t
}

func pair(prefix, a, b string, r, in, out int) []*weights.Tensor {
	return []*weights.Tensor{f32Tensor(prefix+a, r, in), f32Tensor(prefix+b, out, r)}
}

func TestKeySpellings(t *testing.T) {
	for key, want := range map[string]string{
		"transformer.layers.0.attention.to_q.lora_A.weight":                  "layers.0.attention.to_q",
		"diffusion_model.noise_refiner.1.feed_forward.w2.lora_B.weight":      "noise_refiner.1.feed_forward.w2",
		"lora_unet_layers_0_attention_to_out_0.lora_down.weight":             "layers.0.attention.to_out.0",
		"lora_unet_context_refiner_1_attention_to_k.alpha":                   "context_refiner.1.attention.to_k",
		"lora_unet_layers_3_adaLN_modulation_0.lora_up.weight":               "layers.3.adaLN_modulation.0",
		"layers.0.attention.to.q.lora.down.weight":                           "layers.0.attention.to_q",
		"transformer.layers.0.attention.to_v.lora_A.default.weight":          "layers.0.attention.to_v",
		"diffusion_model.layers.2.attention.qkv.lora_A.weight":               "layers.2.attention.qkv",
		"lora_unet_all_final_layer_2-1_adaLN_modulation_1.lora_down.weight":  "all_final_layer.2-1.adaLN_modulation.1",
		"transformer.t_embedder.mlp.0.lora_A.weight":                         "t_embedder.mlp.0",
		"lora_unet_cap_embedder_1.lora_up.weight":                            "cap_embedder.1",
		"base_model.model.layers.1.feed_forward.w1.lora_B.weight":            "layers.1.feed_forward.w1",
		"model.diffusion_model.layers.1.attention.out.lora_down.weight":      "layers.1.attention.out",
		"lora_unet_layers_1_attention_qkv.lora_down.weight":                  "layers.1.attention.qkv",
		"diffusion_model.all_x_embedder.2-1.lora_A.weight":                   "all_x_embedder.2-1",
		"diffusion_model.x_embedder.lora_A.weight":                           "x_embedder",
		"diffusion_model.final_layer.linear.lora_B.weight":                   "final_layer.linear",
		"transformer.layers.0.attention.to_out.0.lora_B.weight":              "layers.0.attention.to_out.0",
		"lora_unet_noise_refiner_0_attention_to_v.lora_up.weight":            "noise_refiner.0.attention.to_v",
		"diffusion_model.context_refiner.0.feed_forward.w3.lora_down.weight": "context_refiner.0.feed_forward.w3",
	} {
		ki, ok := parseKey(key)
		if !ok || ki.module != want {
			t.Errorf("%s → %q (%v), want %q", key, ki.module, ok, want)
		}
	}
}

// fakeModel is a transformer's names and shapes (no data).
type fakeModel map[string]*weights.Tensor

func (m fakeModel) Tensor(n string) (*weights.Tensor, bool) { t, ok := m[n]; return t, ok }
func (m fakeModel) Names() []string {
	var out []string
	for n := range m {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func tinyModel() fakeModel {
	m := fakeModel{}
	for _, n := range []string{"to_q", "to_k", "to_v", "to_out.0"} {
		m["layers.0.attention."+n+".weight"] = f32Tensor("", 6, 6)
	}
	m["layers.0.feed_forward.w1.weight"] = f32Tensor("", 8, 6)
	m["layers.0.attention.norm_q.weight"] = f32Tensor("", 3)
	m["all_x_embedder.2-1.weight"] = f32Tensor("", 6, 4)
	m["all_final_layer.2-1.linear.weight"] = f32Tensor("", 4, 6)
	return m
}

func TestFusedQKVSplits(t *testing.T) {
	ts := pair("diffusion_model.layers.0.attention.qkv.", "lora_A.weight", "lora_B.weight", 2, 6, 18)
	ts = append(ts, pair("diffusion_model.layers.0.attention.out.", "lora_A.weight", "lora_B.weight", 2, 6, 6)...)
	ts = append(ts, pair("diffusion_model.x_embedder.", "lora_A.weight", "lora_B.weight", 2, 4, 6)...)
	ts = append(ts, pair("diffusion_model.final_layer.linear.", "lora_A.weight", "lora_B.weight", 2, 6, 4)...)
	f, err := FromTensors("qkv.safetensors", ts)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Bind(f, tinyModel())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range a.Deltas {
		got = append(got, d.Weight)
	}
	want := []string{"all_final_layer.2-1.linear.weight", "all_x_embedder.2-1.weight", "layers.0.attention.to_k.weight",
		"layers.0.attention.to_out.0.weight", "layers.0.attention.to_q.weight", "layers.0.attention.to_v.weight"}
	if !slices.Equal(got, want) {
		t.Fatalf("bound %v", got)
	}
	fullB := f.Modules[slices.IndexFunc(f.Modules, func(m *Module) bool { return m.Target == "layers.0.attention.qkv" })].B
	k := a.Deltas[2]
	if !slices.Equal(k.B, fullB[12:24]) || k.Out != 6 {
		t.Errorf("to_k B is not rows 6..12 of the fused B")
	}
}

func TestDuplicatesDroppedLikeUpstream(t *testing.T) {
	ts := pair("lora_unet_layers_0_attention_to_out_0.", "lora_down.weight", "lora_up.weight", 2, 6, 6)
	ts = append(ts, pair("lora_unet_layers_0_attention_out.", "lora_down.weight", "lora_up.weight", 2, 6, 6)...)
	ts = append(ts, pair("layers.0.attention.qkv.", "lora.down.weight", "lora.up.weight", 2, 6, 18)...)
	ts = append(ts, pair("layers.0.attention.to.q.", "lora.down.weight", "lora.up.weight", 2, 6, 6)...)
	f, err := FromTensors("dup.safetensors", ts)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Modules) != 2 || len(f.Dropped) != 4 {
		t.Errorf("modules %d, dropped %v", len(f.Modules), f.Dropped)
	}
}

func TestTypedErrors(t *testing.T) {
	ok := pair("transformer.layers.0.attention.to_q.", "lora_A.weight", "lora_B.weight", 2, 6, 6)
	cases := []struct {
		name  string
		ts    []*weights.Tensor
		check func(error) bool
	}{
		{"lokr", append(ok, f32Tensor("lora_unet_layers_0_attention_to_k.lokr_w1", 2, 2)), kind[*UnsupportedError]("LoKr")},
		{"loha", append(ok, f32Tensor("lora_unet_layers_0_attention_to_k.hada_w1_a", 2, 2)), kind[*UnsupportedError]("LoHa")},
		{"dora", append(ok, f32Tensor("transformer.layers.0.attention.to_q.dora_scale", 1, 6)), kind[*UnsupportedError]("DoRA")},
		{"dora-peft", append(ok, f32Tensor("transformer.layers.0.attention.to_q.lora_magnitude_vector", 6)), kind[*UnsupportedError]("DoRA")},
		{"text-encoder", append(ok, f32Tensor("lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", 2, 6)), kind[*UnsupportedError]("text-encoder")},
		{"text-encoder-peft", append(ok, f32Tensor("text_encoder.layers.0.mlp.lora_A.weight", 2, 6)), kind[*UnsupportedError]("text-encoder")},
		{"stray-key", append(ok, f32Tensor("transformer.layers.0.attention.to_q.weight", 6, 6)), kind[*KeyError]("no LoRA weight")},
		{"unpaired", append(ok, f32Tensor("transformer.layers.0.attention.to_k.lora_A.weight", 2, 6)), kind[*KeyError]("partner")},
		{"alpha-alone", append(ok, f32Tensor("transformer.layers.0.attention.to_k.alpha")), kind[*KeyError]("partner")},
		{"twice", append(ok, f32Tensor("layers.0.attention.to_q.lora_A.weight", 2, 6)), kind[*KeyError]("twice")},
		{"rank", pair("transformer.layers.0.attention.to_q.", "lora_A.weight", "lora_B.weight", 2, 6, 6)[:1:1], nil},
		{"empty", nil, kind[*KeyError]("no tensors")},
		{"diff", append(ok, f32Tensor("diffusion_model.layers.0.attention.to_k.diff", 6, 6)), kind[*UnsupportedError]("diff")},
	}
	cases[10].ts = append(cases[10].ts, f32Tensor("transformer.layers.0.attention.to_q.lora_B.weight", 6, 3))
	cases[10].check = kind[*ShapeError]("rank 3")
	for _, c := range cases {
		_, err := FromTensors(c.name+".safetensors", c.ts)
		if err == nil || !c.check(err) || !strings.Contains(err.Error(), c.name+".safetensors") {
			t.Errorf("%s: %v (%T)", c.name, err, err)
		}
	}

	// Bind: a module the model lacks, and one of the wrong size.
	if _, err := FromTensors("aio.safetensors", pair("model.diffusion_model.layers.0.attention.to_q.", "lora_A.weight", "lora_B.weight", 2, 6, 6)); err != nil {
		t.Errorf("model.diffusion_model. prefix: %v", err)
	}
	f, err := FromTensors("miss.safetensors", append(pair("transformer.layers.7.attention.to_q.", "lora_A.weight", "lora_B.weight", 2, 6, 6),
		pair("transformer.layers.0.attention.to_q.", "lora_A.weight", "lora_B.weight", 2, 6, 6)...))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Bind(f, tinyModel())
	var ue *UnmatchedError
	if !errors.As(err, &ue) || len(ue.Keys) != 2 || !strings.Contains(err.Error(), "layers.7.attention.to_q.lora_A.weight") {
		t.Errorf("unmatched: %v", err)
	}
	f, _ = FromTensors("size.safetensors", pair("transformer.layers.0.feed_forward.w1.", "lora_A.weight", "lora_B.weight", 2, 6, 9))
	_, err = Bind(f, tinyModel())
	var me *MismatchError
	if !errors.As(err, &me) || !slices.Equal(me.Weight, []int{8, 6}) || !slices.Equal(me.LoRA, []int{9, 6}) {
		t.Errorf("mismatch: %v", err)
	}
	f, _ = FromTensors("norm.safetensors", pair("transformer.layers.0.attention.norm_q.", "lora_A.weight", "lora_B.weight", 2, 3, 1))
	if _, err = Bind(f, tinyModel()); !errors.As(err, &me) {
		t.Errorf("norm target: %v", err)
	}
}

func kind[E error](frag string) func(error) bool {
	return func(err error) bool {
		var e E
		return errors.As(err, &e) && strings.Contains(err.Error(), frag)
	}
}

// TestAlphaFolding checks upstream's split of alpha/rank between down and up
// (powers of two), rounded in the file's dtype.
func TestAlphaFolding(t *testing.T) {
	ts := pair("lora_unet_layers_0_attention_to_q.", "lora_down.weight", "lora_up.weight", 4, 6, 6)
	alpha := f32Tensor("lora_unet_layers_0_attention_to_q.alpha")
	weights.EncodeF32(alpha.Data, []float32{0.5}) // s = 1/8 → down ·0.25, up ·0.5
	f, err := FromTensors("a.safetensors", append(ts, alpha))
	if err != nil {
		t.Fatal(err)
	}
	a0, _ := ts[0].Float32()
	b0, _ := ts[1].Float32()
	m := f.Modules[0]
	for i := range a0 {
		if m.A[i] != a0[i]*0.25 {
			t.Fatalf("A[%d] = %v, want %v", i, m.A[i], a0[i]*0.25)
		}
	}
	for i := range b0 {
		if m.B[i] != b0[i]*0.5 {
			t.Fatalf("B[%d] = %v, want %v", i, m.B[i], b0[i]*0.5)
		}
	}
}

// FuzzFromTensors feeds arbitrary key sets (one per line, with shapes picked
// from the line) through parsing and binding: errors, never panics.
func FuzzFromTensors(f *testing.F) {
	f.Add("transformer.layers.0.attention.to_q.lora_A.weight\ntransformer.layers.0.attention.to_q.lora_B.weight")
	f.Add("lora_unet_layers_0_attention_to_out_0.lora_down.weight\nlora_unet_layers_0_attention_to_out_0.lora_up.weight\nlora_unet_layers_0_attention_to_out_0.alpha")
	f.Add("diffusion_model.layers.0.attention.qkv.lora_A.weight\ndiffusion_model.layers.0.attention.qkv.lora_B.weight")
	f.Add("layers.0.attention.to.q.lora.down.weight\nlayers.0.attention.to.q.lora.up.weight\nlayers.0.attention.qkv.lora.down.weight")
	f.Add("_.alpha\n..lora_A.weight\nlora_unet_.lora_up.weight\ndefault.default.lora_B.weight")
	model := tinyModel()
	f.Fuzz(func(t *testing.T, keys string) {
		var ts []*weights.Tensor
		for i, k := range strings.Split(keys, "\n") {
			switch {
			case strings.HasSuffix(k, "alpha"):
				ts = append(ts, f32Tensor(k))
			case strings.Contains(k, "A.") || strings.Contains(k, "down"):
				ts = append(ts, f32Tensor(k, 2, 6))
			case i%3 == 0:
				ts = append(ts, f32Tensor(k, 18, 2))
			default:
				ts = append(ts, f32Tensor(k, 6, 2))
			}
		}
		lf, err := FromTensors("fuzz", ts)
		if err != nil {
			return
		}
		if a, err := Bind(lf, model); err == nil {
			if _, err := Merge(context.Background(), model, []*Adapter{a}, []float32{1}); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestAdapterMetadata: a diffusers file's lora_adapter_metadata sets PEFT's
// scaling lora_alpha/r (alpha_pattern per module) on top of the user scale.
func TestAdapterMetadata(t *testing.T) {
	ts := append(pair("transformer.layers.0.attention.to_q.", "lora_A.weight", "lora_B.weight", 2, 6, 6),
		pair("transformer.layers.0.attention.to_k.", "lora_A.weight", "lora_B.weight", 2, 6, 6)...)
	path := t.TempDir() + "/meta.safetensors"
	meta := map[string]string{"lora_adapter_metadata": `{"transformer.r": 2, "transformer.lora_alpha": 4, "transformer.alpha_pattern": {"attention.to_k": 1}}`}
	if err := weights.WriteFile(path, ts, meta); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Bind(f, tinyModel())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range a.Deltas {
		want := map[string]float32{"layers.0.attention.to_q.weight": 1.5, "layers.0.attention.to_k.weight": 0.375}[d.Weight]
		if got := d.Scale(0.75); got != want {
			t.Errorf("%s: scale 0.75 → %v, want %v", d.Weight, got, want)
		}
	}
	if err := weights.WriteFile(path, ts, map[string]string{"lora_adapter_metadata": "{"}); err != nil {
		t.Fatal(err)
	}
	var ke *KeyError
	if _, err := Open(path); !errors.As(err, &ke) {
		t.Errorf("bad metadata: %v", err)
	}
}
