package zimage

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/internal/tinygguf"
	"github.com/zimage/zimage/tokenizer"
	"github.com/zimage/zimage/weights"
)

// writeTinyGGUF converts the fixture model's transformer and text encoder
// to GGUF files of type dt in dir and returns their paths.
func writeTinyGGUF(t testing.TB, dir string, dt weights.DType) (dit, te string) {
	return tinygguf.Write(t, dir, dt)
}

// psnr is the peak signal-to-noise ratio of two 8-bit images in dB (+Inf
// when equal).
func psnr(a, b []byte) float64 {
	var se float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		se += d * d
	}
	if se == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(255*255/(se/float64(len(a))))
}

// TestGGUFRunPSNR generates the fixture case through Run with the tiny
// model converted to each GGUF type (DiT and text encoder; the VAE and
// tokenizer from the model directory) and reports the PSNR against the
// bf16 image of the same request. ZIMAGE_GGUF_ALL=1 runs every type.
func TestGGUFRunPSNR(t *testing.T) {
	base := tinyPipeline(t)
	c := e2eCases(t)[0]
	ref, err := base.Run(context.Background(), c.request())
	if err != nil {
		t.Fatal(err)
	}
	want := rgbBytes(ref)
	types := []weights.DType{weights.Q8_0, weights.Q4_0, weights.BF16}
	if os.Getenv("ZIMAGE_GGUF_ALL") != "" {
		types = []weights.DType{weights.F16, weights.BF16, weights.Q8_0, weights.Q5_1, weights.Q5_0, weights.Q4_1, weights.Q4_0, weights.Q6_K, weights.Q5_K, weights.Q4_K, weights.Q3_K, weights.Q2_K}
	}
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	tmp := t.TempDir()
	for _, dt := range types {
		t.Run(dt.String(), func(t *testing.T) {
			if dt.IsQuantized() && weights.QuantizeBlock(dt) == nil {
				t.Skipf("no %s quantizer", dt)
			}
			dit, te := writeTinyGGUF(t, tmp, dt)
			for _, set := range []struct {
				name    string
				dit, te string
			}{{"dit+te", dit, te}, {"dit", dit, ""}, {"te", "", te}} {
				p, err := Load(context.Background(), dir, WithDevice("cpu"), WithSingleFiles(set.dit, set.te, "", ""))
				if err != nil {
					t.Fatal(err)
				}
				res, err := p.Run(context.Background(), c.request())
				p.Close()
				if err != nil {
					t.Fatal(err)
				}
				db := psnr(rgbBytes(res), want)
				t.Logf("%s %s: PSNR %.2f dB vs bf16 (%s, %dx%d)", dt, set.name, db, c.Name, c.Width, c.Height)
				switch {
				case dt == weights.BF16 && !math.IsInf(db, 1):
					t.Errorf("BF16 GGUF differs from the bf16 model: %.2f dB", db)
				case dt == weights.Q8_0 && db < 40:
					t.Errorf("Q8_0 PSNR %.2f dB < 40", db)
				case db < 15:
					t.Errorf("PSNR %.2f dB: the quantized model is broken", db)
				}
			}
		})
	}
}

// TestGGUFVocabCheck: a GGUF text encoder whose embedded vocabulary and
// merges agree with the tokenizer loads; one with a changed token or a
// missing merge is refused at Load.
func TestGGUFVocabCheck(t *testing.T) {
	dir, m, meta := tinyTokenizerMeta(t)
	tmp := t.TempDir()
	write := func(name string, meta []weights.GGUFKV) string {
		p := filepath.Join(tmp, name)
		writeTextEncoderGGUF(t, m, p, meta)
		return p
	}
	good := write("good.gguf", meta)
	p, err := Load(context.Background(), dir, WithDevice("cpu"), WithSingleFiles("", good, "", ""))
	if err != nil {
		t.Fatalf("matching vocabulary: %v", err)
	}
	p.Close()
	bad := make([]weights.GGUFKV, len(meta))
	copy(bad, meta)
	for i, kv := range bad {
		if kv.Key == "tokenizer.ggml.tokens" {
			toks := append([]string(nil), kv.Value.V.([]string)...)
			toks[1000] = "zimage-not-a-token"
			bad[i].Value.V = toks
		}
	}
	badPath := write("bad.gguf", bad)
	var ve *tokenizer.VocabMismatchError
	if _, err := Load(context.Background(), dir, WithDevice("cpu"), WithSingleFiles("", badPath, "", "")); !errors.As(err, &ve) || ve.ID != 1000 {
		t.Fatalf("changed vocabulary: %v", err)
	}
	// Merges: drop one.
	bad = make([]weights.GGUFKV, len(meta))
	copy(bad, meta)
	for i, kv := range bad {
		if kv.Key == "tokenizer.ggml.merges" {
			bad[i].Value.V = append([]string(nil), kv.Value.V.([]string)[1:]...)
		}
	}
	badPath = write("bad-merges.gguf", bad)
	var me *tokenizer.MergesMismatchError
	if _, err := Load(context.Background(), dir, WithDevice("cpu"), WithSingleFiles("", badPath, "", "")); !errors.As(err, &me) {
		t.Fatalf("changed merges: %v", err)
	}
}

// TestGGUFTokenizer: the tokenizer built from a GGUF's embedded vocabulary
// encodes like the model directory's, and a single-file set-up with a GGUF
// text encoder needs no --tokenizer.
func TestGGUFTokenizer(t *testing.T) {
	dir, m, meta := tinyTokenizerMeta(t)
	tmp := t.TempDir()
	te := filepath.Join(tmp, "te.gguf")
	writeTextEncoderGGUF(t, m, te, meta)
	want, err := tokenizer.Load(m.TokenizerDir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := loadTokenizer(te)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range e2eCases(t) {
		for _, text := range []string{c.Prompt, tokenizer.ChatTemplate(c.Prompt), "<think>\n\n</think> ÿ\u00a0 日本語テキスト 🙂 don't  x\r\n"} {
			a, errA := want.Encode(text)
			b, errB := got.Encode(text)
			if errA != nil || errB != nil || !slices.Equal(a, b) {
				t.Fatalf("%q: directory tokenizer %v (%v), GGUF tokenizer %v (%v)", text, a, errA, b, errB)
			}
		}
	}
	if got.VocabSize() != want.VocabSize() {
		t.Errorf("vocab size %d, want %d", got.VocabSize(), want.VocabSize())
	}
	// A single-file set-up: GGUF DiT and text encoder, the VAE folder, no tokenizer.
	dit := filepath.Join(tmp, "dit.gguf")
	s, err := m.OpenTransformer()
	if err != nil {
		t.Fatal(err)
	}
	err = weights.WriteComponentGGUF(s, weights.CompTransformer, dit, weights.GGUFConvertOptions{Type: weights.Q8_0, DiTKey: m.DiT.EmbedderKey(0)})
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	p, err := Load(context.Background(), "", WithDevice("cpu"), WithSingleFiles(dit, te, filepath.Join(dir, "vae"), ""))
	if err != nil {
		// The single-file configs are Z-Image-Turbo's; the tiny model needs its own.
		var se *weights.TensorSetError
		if !errors.As(err, &se) {
			t.Fatal(err)
		}
		t.Logf("single-file load checks the Turbo config, as expected for the tiny model: %v", err)
	} else {
		p.Close()
	}
}

// tinyTokenizerMeta opens the tiny model and returns its directory, the
// model and its tokenizer as GGUF metadata.
func tinyTokenizerMeta(t *testing.T) (string, *weights.Model, []weights.GGUFKV) {
	t.Helper()
	dir := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	m, err := weights.OpenModel(dir)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := weights.TokenizerGGUFMeta(m.TokenizerDir, m.TextEncoder.VocabSize)
	if err != nil {
		t.Fatal(err)
	}
	return dir, m, meta
}

// writeTextEncoderGGUF writes m's text encoder as a Q8_0 GGUF with meta
// (the embedded tokenizer) at path.
func writeTextEncoderGGUF(t *testing.T, m *weights.Model, path string, meta []weights.GGUFKV) {
	t.Helper()
	s, err := m.OpenTextEncoder()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := weights.WriteComponentGGUF(s, weights.CompTextEncoder, path, weights.GGUFConvertOptions{Type: weights.Q8_0, TextEncoder: &m.TextEncoder, Meta: meta}); err != nil {
		t.Fatal(err)
	}
}
