package weights

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
)

func tinyModel(t *testing.T) string {
	t.Helper()
	return fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
}

func TestOpenModelTiny(t *testing.T) {
	dir := tinyModel(t)
	m, err := OpenModel(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Index.ClassName != "ZImagePipeline" || m.Index.Components["text_encoder"].Class != "Qwen3Model" {
		t.Errorf("model index: %+v", m.Index)
	}
	if m.DiT.Dim != 288 || m.DiT.NHeads != 6 || m.DiT.HeadDim() != 48 || m.DiT.FFNDim() != 768 || m.DiT.AdaLNDim() != 256 {
		t.Errorf("DiT config: %+v", m.DiT)
	}
	if m.TextEncoder.HiddenSize != 32 || m.TextEncoder.HeadDim != 16 || m.TextEncoder.NumKeyValueHeads != 2 {
		t.Errorf("text encoder config: %+v", m.TextEncoder)
	}
	if m.VAE.NormNumGroups != 8 || len(m.VAE.BlockOutChannels) != 4 || *m.VAE.ShiftFactor != 0.1159 {
		t.Errorf("VAE config: %+v", m.VAE)
	}
	// Keys absent from the 4-key scheduler file keep the class defaults.
	if m.Scheduler.Shift != 3 || m.Scheduler.BaseShift != 0.5 || m.Scheduler.MaxImageSeqLen != 4096 {
		t.Errorf("scheduler config: %+v", m.Scheduler)
	}

	tr, err := m.OpenTransformer()
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.Len() != len(DiTTensors(m.DiT)) || tr.Len() != 521-28*15 {
		t.Errorf("transformer: %d tensors", tr.Len())
	}
	if len(tr.Files()) != 3 {
		t.Errorf("transformer files: %v", tr.Files())
	}
	te, err := m.OpenTextEncoder()
	if err != nil {
		t.Fatal(err)
	}
	defer te.Close()
	if te.Len() != 1+4*11+1 {
		t.Errorf("text encoder: %d tensors", te.Len())
	}
	vae, err := m.OpenVAE()
	if err != nil {
		t.Fatal(err)
	}
	defer vae.Close()
	// The tiny VAE changes channels once in each direction (the real one
	// twice), so it has one conv_shortcut fewer in the decoder and encoder.
	if vae.Len() != 136+104 {
		t.Errorf("vae: %d tensors", vae.Len())
	}
	for _, s := range []*Set{tr, te, vae} {
		for _, n := range s.Names() {
			tt, _ := s.Tensor(n)
			if tt.DType != BF16 {
				t.Errorf("%s: dtype %s", n, tt.DType)
			}
		}
	}
}

// copyTree copies the tiny model's JSON files into a temp dir and symlinks
// the rest, so tests can damage it cheaply. Replace (never write through) the
// linked files: WriteFile renames over the link.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		if !strings.HasSuffix(p, ".json") {
			return os.Symlink(p, out)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestOpenModelConfigErrors(t *testing.T) {
	src := tinyModel(t)
	for _, c := range []struct {
		name, file, content, field string
	}{
		{"no model index", "model_index.json", "", ""},
		{"index not object", "model_index.json", `[1]`, ""},
		{"component missing", "model_index.json", `{"_class_name":"ZImagePipeline","transformer":["diffusers","ZImageTransformer2DModel"]}`, "scheduler"},
		{"bad component", "model_index.json", `{"vae":"AutoencoderKL"}`, "vae"},
		{"dim zero", "transformer/config.json", `{"dim":0}`, "dim"},
		{"heads do not divide", "transformer/config.json", `{"dim":288,"n_heads":7,"n_kv_heads":7}`, "n_heads"},
		{"axes sum", "transformer/config.json", `{"dim":288,"n_heads":6,"n_kv_heads":6,"axes_dims":[16,16,18]}`, "axes_dims"},
		{"dim wrong type", "transformer/config.json", `{"dim":"big"}`, "dim"},
		{"siglip", "transformer/config.json", `{"dim":288,"n_heads":6,"n_kv_heads":6,"axes_dims":[12,18,18],"siglip_feat_dim":1152}`, "siglip_feat_dim"},
		{"config null", "transformer/config.json", `null`, ""},
		{"gqa", "text_encoder/config.json", `{"num_attention_heads":4,"num_key_value_heads":3}`, "num_key_value_heads"},
		{"act", "text_encoder/config.json", `{"hidden_act":"gelu"}`, "hidden_act"},
		{"rope scaling", "text_encoder/config.json", `{"rope_scaling":{"type":"yarn"}}`, "rope_scaling"},
		{"groups", "vae/config.json", `{"block_out_channels":[32,48],"norm_num_groups":32}`, "block_out_channels"},
		{"up block", "vae/config.json", `{"up_block_types":["UpDecoderBlock2D","UpDecoderBlock2D","UpDecoderBlock2D","AttnUpDecoderBlock2D"]}`, "up_block_types"},
		{"shift", "scheduler/scheduler_config.json", `{"shift":0}`, "shift"},
		{"missing config", "vae/config.json", "", ""},
	} {
		dir := copyTree(t, src)
		p := filepath.Join(dir, c.file)
		if c.content == "" {
			os.Remove(p)
		} else {
			os.WriteFile(p, []byte(c.content), 0o644)
		}
		_, err := OpenModel(dir)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.File != p || ce.Field != c.field {
			t.Errorf("%s: got %v, want a ConfigError for %s field %q", c.name, err, c.file, c.field)
		}
	}
	dir := copyTree(t, src)
	for _, n := range []string{"tokenizer.json", "vocab.json", "merges.txt"} {
		os.Remove(filepath.Join(dir, "tokenizer", n))
	}
	var ce *ConfigError
	if _, err := OpenModel(dir); !errors.As(err, &ce) || !strings.Contains(err.Error(), "tokenizer") {
		t.Errorf("missing tokenizer: %v", err)
	}
}

// A text encoder saved without the "model." prefix (Qwen3Model.save_pretrained)
// loads under the checkpoint names.
func TestTextEncoderWithoutPrefix(t *testing.T) {
	dir := copyTree(t, tinyModel(t))
	te := filepath.Join(dir, "text_encoder", "model.safetensors")
	f, err := OpenFile(te)
	if err != nil {
		t.Fatal(err)
	}
	var ts []*Tensor
	for _, n := range f.Names() {
		tt, _ := f.Tensor(n)
		c := *tt
		c.Name = strings.TrimPrefix(n, "model.")
		ts = append(ts, &c)
	}
	if err := WriteFile(te, ts, nil); err != nil {
		t.Fatal(err)
	}
	f.Close()
	m, err := OpenModel(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.OpenTextEncoder()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.Tensor("model.layers.3.mlp.down_proj.weight"); !ok {
		t.Errorf("prefixed name missing; have %v", s.Names()[:3])
	}
	if _, ok := s.Tensor("embed_tokens.weight"); ok {
		t.Error("unprefixed name kept")
	}
}

func TestCheckReportsEverything(t *testing.T) {
	dir := copyTree(t, tinyModel(t))
	vaeFile := filepath.Join(dir, "vae", "diffusion_pytorch_model.safetensors")
	f, err := OpenFile(vaeFile)
	if err != nil {
		t.Fatal(err)
	}
	var ts []*Tensor
	for _, n := range f.Names() {
		tt, _ := f.Tensor(n)
		c := *tt
		switch n {
		case "decoder.conv_out.bias", "decoder.mid_block.attentions.0.to_q.weight":
			continue // missing
		case "decoder.conv_in.bias": // wrong shape, same bytes
			c.Shape = []int{c.Shape[0] / 2, 2}
		case "decoder.conv_norm_out.weight": // integer dtype
			c.DType = I16
		}
		ts = append(ts, &c)
	}
	ts = append(ts, f32Tensor("decoder.extra", 1), f32Tensor("encoder.anything", 1))
	if err := WriteFile(vaeFile, ts, nil); err != nil {
		t.Fatal(err)
	}
	f.Close()
	m, err := OpenModel(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.OpenVAE()
	var se *TensorSetError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want a TensorSetError", err)
	}
	if se.Component != "vae" || len(se.Files) != 1 ||
		strings.Join(se.Missing, ",") != "decoder.conv_out.bias,decoder.mid_block.attentions.0.to_q.weight" ||
		strings.Join(se.Unexpected, ",") != "decoder.extra" || len(se.Mismatched) != 2 {
		t.Errorf("got %+v", se)
	}
	for _, mm := range se.Mismatched {
		switch mm.Name {
		case "decoder.conv_in.bias":
			if mm.DType != Invalid || !equalInts(mm.Want, []int{64}) || !equalInts(mm.Got, []int{32, 2}) {
				t.Errorf("shape mismatch: %+v", mm)
			}
		case "decoder.conv_norm_out.weight":
			if mm.DType != I16 {
				t.Errorf("dtype mismatch: %+v", mm)
			}
		default:
			t.Errorf("unexpected mismatch %+v", mm)
		}
	}
	msg := err.Error()
	for _, want := range []string{"weights: vae (", "2 missing", "1 unexpected (decoder.extra)", "2 mismatched", "want shape [64], got [32 2]"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}
