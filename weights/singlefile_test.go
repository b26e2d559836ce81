package weights

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// tinySets opens the tiny fixture model's three components (diffusers names).
func tinySets(t *testing.T) (*Model, map[string]*Set) {
	t.Helper()
	m, err := OpenModel(tinyModel(t))
	if err != nil {
		t.Fatal(err)
	}
	sets := map[string]*Set{}
	for comp, open := range map[string]func() (*Set, error){CompTransformer: m.OpenTransformer, CompTextEncoder: m.OpenTextEncoder, CompVAE: m.OpenVAE} {
		s, err := open()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		sets[comp] = s
	}
	return m, sets
}

// writeSingle writes the tensors of comp in layout with prefix into path
// (appending to extra tensors) and returns path.
func writeSingle(t *testing.T, path string, parts ...[]*Tensor) string {
	t.Helper()
	var all []*Tensor
	for _, p := range parts {
		all = append(all, p...)
	}
	if err := WriteFile(path, all, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	return path
}

func single(t *testing.T, s *Set, comp string, layout Layout, prefix string) []*Tensor {
	t.Helper()
	ts, err := SingleFileTensors(s, comp, layout, prefix, "2-1")
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// sameTensors asserts that got holds exactly want's tensors with identical
// names, dtypes, shapes and bytes.
func sameTensors(t *testing.T, what string, want, got *Set) {
	t.Helper()
	if !slices.Equal(want.Names(), got.Names()) {
		t.Errorf("%s: %d names, want %d", what, got.Len(), want.Len())
	}
	for _, name := range want.Names() {
		w, _ := want.Tensor(name)
		g, ok := got.Tensor(name)
		switch {
		case !ok:
			t.Errorf("%s: %s missing", what, name)
		case g.DType != w.DType || !slices.Equal(g.Shape, w.Shape) || !bytes.Equal(g.Data, w.Data):
			t.Errorf("%s: %s differs: %s%v vs %s%v", what, name, g.DType, g.Shape, w.DType, w.Shape)
		}
	}
}

func TestSingleFilesMatchDiffusers(t *testing.T) {
	m, sets := tinySets(t)
	dir := t.TempDir()
	nTensors := func(ts []*Tensor) int { return len(ts) }

	// ComfyUI-style files: fused-qkv DiT with an unused norm_final, Qwen3
	// without the "model." prefix, FLUX-named VAE.
	dit := single(t, sets[CompTransformer], CompTransformer, LayoutOriginal, "")
	if n := nTensors(dit); n != sets[CompTransformer].Len()-2*(2+2+2) { // 6 blocks: q, k, v fused
		t.Errorf("fused DiT has %d tensors", n)
	}
	normFinal := &Tensor{Name: "norm_final.weight", DType: BF16, Shape: []int{288}, Data: make([]byte, 576)}
	ditFile := writeSingle(t, filepath.Join(dir, "z_image_turbo_bf16.safetensors"), dit, []*Tensor{normFinal})
	teFile := writeSingle(t, filepath.Join(dir, "qwen_3_4b.safetensors"), single(t, sets[CompTextEncoder], CompTextEncoder, LayoutOriginal, ""))
	vaeFile := writeSingle(t, filepath.Join(dir, "ae.safetensors"), single(t, sets[CompVAE], CompVAE, LayoutOriginal, ""))
	// All-in-one: every part under its prefix.
	aio := writeSingle(t, filepath.Join(dir, "aio.safetensors"),
		single(t, sets[CompTransformer], CompTransformer, LayoutOriginal, "model.diffusion_model."),
		single(t, sets[CompTextEncoder], CompTextEncoder, LayoutDiffusers, "text_encoders.qwen3_4b.transformer."),
		single(t, sets[CompVAE], CompVAE, LayoutOriginal, "vae."))

	for _, tc := range []struct {
		name           string
		files          [3]string
		wantPrefixes   [3]string
		wantDiT, wantV Layout
	}{
		{"comfyui", [3]string{ditFile, teFile, vaeFile}, [3]string{"", "", ""}, LayoutOriginal, LayoutOriginal},
		{"aio", [3]string{aio, "", ""}, [3]string{"model.diffusion_model.", "text_encoders.qwen3_4b.transformer.", "vae."}, LayoutOriginal, LayoutOriginal},
		{"diffusers files", [3]string{filepath.Join(tinyModel(t), "transformer", "diffusion_pytorch_model.safetensors.index.json"),
			filepath.Join(tinyModel(t), "text_encoder", "model.safetensors"), filepath.Join(tinyModel(t), "vae")},
			[3]string{"", "", ""}, LayoutDiffusers, LayoutDiffusers},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sm, err := OpenSingleFiles(tc.files[0], tc.files[1], tc.files[2], tinyModel(t))
			if err != nil {
				t.Fatal(err)
			}
			// The tiny model is not Z-Image-Turbo sized: take its configs.
			sm.DiT, sm.TextEncoder, sm.VAE = m.DiT, m.TextEncoder, m.VAE
			if sm.TokenizerDir != filepath.Join(tinyModel(t), "tokenizer") {
				t.Errorf("tokenizer dir %s", sm.TokenizerDir)
			}
			for i, c := range []string{CompTransformer, CompTextEncoder, CompVAE} {
				_, part, conv := sm.Source(c)
				if part.Prefix != tc.wantPrefixes[i] || conv {
					t.Errorf("%s: part %+v", c, part)
				}
			}
			if _, p, _ := sm.Source(CompTransformer); p.Layout != tc.wantDiT {
				t.Errorf("transformer layout %s", p.Layout)
			}
			if _, p, _ := sm.Source(CompVAE); p.Layout != tc.wantV {
				t.Errorf("vae layout %s", p.Layout)
			}
			for c, open := range map[string]func() (*Set, error){CompTransformer: sm.OpenTransformer, CompTextEncoder: sm.OpenTextEncoder, CompVAE: sm.OpenVAE} {
				s, err := open()
				if err != nil {
					t.Fatalf("%s: %v", c, err)
				}
				sameTensors(t, c, sets[c], s)
				s.Close()
			}
		})
	}

	// The split qkv weights are views of the fused tensor's bytes.
	sm, err := OpenSingleFiles(ditFile, teFile, vaeFile, tinyModel(t))
	if err != nil {
		t.Fatal(err)
	}
	sm.DiT = m.DiT
	s, err := sm.OpenTransformer()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	raw, _ := OpenFile(ditFile)
	defer raw.Close()
	qkv, _ := raw.Tensor("layers.1.attention.qkv.weight")
	q, _ := s.Tensor("layers.1.attention.to_q.weight")
	k, _ := s.Tensor("layers.1.attention.to_k.weight")
	v, _ := s.Tensor("layers.1.attention.to_v.weight")
	addr := func(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }
	// Different mappings of the same file: compare offsets within the file.
	if q.File != ditFile || len(q.Data)*3 != len(qkv.Data) ||
		addr(k.Data)-addr(q.Data) != uintptr(len(q.Data)) || addr(v.Data)-addr(k.Data) != uintptr(len(q.Data)) {
		t.Error("split qkv tensors are not adjacent views of one fused tensor")
	}
	if cap(q.Data) != len(q.Data) {
		t.Error("a row view can be appended into its neighbour")
	}
}

func TestDetectParts(t *testing.T) {
	_, sets := tinySets(t)
	dir := t.TempDir()
	te := single(t, sets[CompTextEncoder], CompTextEncoder, LayoutDiffusers, "text_encoders.qwen3_4b.transformer.")
	aio := writeSingle(t, filepath.Join(dir, "aio.safetensors"),
		single(t, sets[CompTransformer], CompTransformer, LayoutDiffusers, "model.diffusion_model."), te,
		single(t, sets[CompVAE], CompVAE, LayoutDiffusers, "first_stage_model."))
	s, err := Open(aio)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := DetectParts(s)
	want := []Part{
		{CompTransformer, LayoutDiffusers, "model.diffusion_model.", sets[CompTransformer].Len()},
		{CompTextEncoder, LayoutDiffusers, "text_encoders.qwen3_4b.transformer.", sets[CompTextEncoder].Len()},
		{CompVAE, LayoutDiffusers, "first_stage_model.", sets[CompVAE].Len()},
	}
	if !slices.Equal(got, want) {
		t.Errorf("DetectParts\n got %+v\nwant %+v", got, want)
	}
	for _, c := range []string{CompTransformer, CompTextEncoder, CompVAE} {
		if got := DetectParts(sets[c]); len(got) != 1 || got[0].Component != c || got[0].Prefix != "" || got[0].Tensors != sets[c].Len() {
			t.Errorf("%s: %+v", c, got)
		}
	}
}

func TestSingleFileErrors(t *testing.T) {
	_, sets := tinySets(t)
	dir := t.TempDir()
	ditFile := writeSingle(t, filepath.Join(dir, "dit.safetensors"), single(t, sets[CompTransformer], CompTransformer, LayoutOriginal, ""))
	vaeFile := writeSingle(t, filepath.Join(dir, "ae.safetensors"), single(t, sets[CompVAE], CompVAE, LayoutOriginal, ""))

	// A transformer file passed as the VAE, and no text encoder in it.
	_, err := OpenSingleFiles(ditFile, "", vaeFile, tinyModel(t))
	var se *SetError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "holds no text_encoder tensors (found only transformer)") {
		t.Errorf("missing text encoder: %v", err)
	}
	m, _ := OpenModel(tinyModel(t))
	if err := m.UseFile(CompVAE, ditFile); err == nil || !strings.Contains(err.Error(), "no vae tensors") {
		t.Errorf("DiT as VAE: %v", err)
	}
	if err := m.UseFile("unet", ditFile); err == nil || !strings.Contains(err.Error(), "unknown component") {
		t.Errorf("unknown component: %v", err)
	}
	teFile := writeSingle(t, filepath.Join(dir, "te.safetensors"), single(t, sets[CompTextEncoder], CompTextEncoder, LayoutOriginal, ""))
	if _, err := OpenSingleFiles(ditFile, teFile, vaeFile, ""); err == nil || !strings.Contains(err.Error(), "no tokenizer given") {
		t.Errorf("no tokenizer: %v", err)
	}
	if _, err := OpenSingleFiles(ditFile, teFile, vaeFile, dir); err == nil || !strings.Contains(err.Error(), "tokenizer directory lacks") {
		t.Errorf("bad tokenizer dir: %v", err)
	}

	// Default (Z-Image-Turbo sized) configs against the tiny files: every
	// difference is reported.
	sm, err := OpenSingleFiles(ditFile, teFile, vaeFile, tinyModel(t))
	if err != nil {
		t.Fatal(err)
	}
	var tse *TensorSetError
	if _, err := sm.OpenTransformer(); !errors.As(err, &tse) || len(tse.Mismatched) == 0 {
		t.Errorf("tiny DiT vs default config: %v", err)
	}

	// Scaled fp8 files are refused by name.
	scaled := append(single(t, sets[CompTransformer], CompTransformer, LayoutOriginal, ""),
		&Tensor{Name: "layers.0.attention.qkv.scale_weight", DType: F32, Shape: []int{}, Data: make([]byte, 4)})
	scaledFile := writeSingle(t, filepath.Join(dir, "scaled.safetensors"), scaled)
	m, _ = OpenModel(tinyModel(t))
	if err := m.UseFile(CompTransformer, scaledFile); err != nil {
		t.Fatal(err)
	}
	if _, err := m.OpenTransformer(); err == nil || !strings.Contains(err.Error(), "scaled fp8") {
		t.Errorf("scaled fp8: %v", err)
	}

	// A fused qkv with a row count not divisible by 3.
	bad := single(t, sets[CompTransformer], CompTransformer, LayoutOriginal, "")
	for i, tt := range bad {
		if tt.Name == "layers.0.attention.qkv.weight" {
			c := *tt
			c.Shape = []int{tt.Shape[0] - 1, tt.Shape[1]}
			c.Data = tt.Data[:len(tt.Data)-2*tt.Shape[1]]
			bad[i] = &c
		}
	}
	m.UseFile(CompTransformer, writeSingle(t, filepath.Join(dir, "bad.safetensors"), bad))
	if _, err := m.OpenTransformer(); !errors.As(err, &se) || !strings.Contains(err.Error(), "fused qkv") {
		t.Errorf("bad qkv: %v", err)
	}

	// Rows bounds.
	q, _ := sets[CompTransformer].Tensor("layers.0.attention.to_q.weight")
	if _, err := q.Rows(0, q.Shape[0]+1); err == nil {
		t.Error("Rows past the end")
	}
}

func TestConvertF32(t *testing.T) {
	m, sets := tinySets(t)
	dir := t.TempDir()
	// An F32 single-file transformer (fused qkv) and an F32 diffusers one.
	ditBF16 := filepath.Join(dir, "dit-bf16.safetensors")
	writeSingle(t, ditBF16, single(t, sets[CompTransformer], CompTransformer, LayoutOriginal, ""))
	ditF32 := filepath.Join(dir, "dit-f32.safetensors")
	if err := Convert(ditBF16, ditF32, F32); err != nil {
		t.Fatal(err)
	}
	model := copyTree(t, tinyModel(t))
	os.RemoveAll(filepath.Join(model, "transformer"))
	os.MkdirAll(filepath.Join(model, "transformer"), 0o755)
	if err := Convert(filepath.Join(tinyModel(t), "transformer"), filepath.Join(model, "transformer", "diffusion_pytorch_model.safetensors"), F32, WithShardSize(4<<20)); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(model, "transformer", "config.json"), mustRead(t, filepath.Join(tinyModel(t), "transformer", "config.json")), 0o644)

	saved := convertShardSize
	convertShardSize = 8 << 20 // the F32 tiny DiT is 31 MB: several shards
	defer func() { convertShardSize = saved }()

	for _, tc := range []struct {
		name string
		open func() *Model
	}{
		{"single file", func() *Model {
			sm, err := OpenModel(tinyModel(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := sm.UseFile(CompTransformer, ditF32); err != nil {
				t.Fatal(err)
			}
			return sm
		}},
		{"model dir", func() *Model {
			sm, err := OpenModel(model)
			if err != nil {
				t.Fatal(err)
			}
			return sm
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := t.TempDir()
			sm := tc.open()
			if s, err := sm.OpenTransformer(); err != nil {
				t.Fatal(err)
			} else if tt, _ := s.Tensor("layers.0.attention.to_q.weight"); tt.DType != F32 {
				t.Fatalf("source dtype %s", tt.DType)
			} else {
				s.Close()
			}
			done, err := sm.ConvertF32(BF16, cache, []string{CompTransformer, CompTextEncoder, CompVAE})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(done, []string{CompTransformer}) {
				t.Errorf("converted %v, want only the transformer (the rest is bf16)", done)
			}
			path, part, conv := sm.Source(CompTransformer)
			if !conv || part.Layout != LayoutDiffusers || filepath.Dir(path) != cache {
				t.Errorf("source %s %+v %v", path, part, conv)
			}
			s, err := sm.OpenTransformer()
			if err != nil {
				t.Fatal(err)
			}
			// bf16 → f32 → bf16 is exact: the copy equals the original.
			sameTensors(t, "converted", sets[CompTransformer], s)
			if len(s.Files()) < 2 {
				t.Errorf("converted copy has %d files, want shards", len(s.Files()))
			}
			s.Close()
			ents, _ := os.ReadDir(cache)
			if len(ents) != 1 {
				t.Errorf("cache holds %d entries, want one directory", len(ents))
			}
			// A second model reuses the copy.
			st, _ := os.Stat(path)
			sm2 := tc.open()
			if _, err := sm2.ConvertF32(BF16, cache, []string{CompTransformer}); err != nil {
				t.Fatal(err)
			}
			p2, _, _ := sm2.Source(CompTransformer)
			st2, _ := os.Stat(p2)
			if p2 != path || !st2.ModTime().Equal(st.ModTime()) {
				t.Errorf("second conversion did not reuse %s (got %s)", path, p2)
			}
		})
	}
	if _, err := m.ConvertF32(F32, t.TempDir(), []string{CompTransformer}); err == nil {
		t.Error("conversion to F32 accepted")
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
