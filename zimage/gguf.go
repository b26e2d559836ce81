package zimage

import (
	"fmt"

	"github.com/zimage/zimage/tokenizer"
	"github.com/zimage/zimage/weights"
)

// checkGGUFVocab compares the vocabulary and merges a GGUF text encoder
// carries (tokenizer.ggml.*, as llama.cpp's converter embeds them) with the
// tokenizer zimage uses: a text encoder quantized from another model must
// not silently get the wrong token ids. Safetensors sources and GGUF files
// without a vocabulary pass.
func checkGGUFVocab(m *weights.Model, tok *tokenizer.Tokenizer) error {
	path, _, _ := m.Source(weights.CompTextEncoder)
	if !weights.IsGGUF(path) {
		return nil
	}
	g, err := weights.OpenGGUF(path)
	if err != nil {
		return err
	}
	defer g.Close()
	v, ok := g.Meta("tokenizer.ggml.tokens")
	if !ok {
		return nil
	}
	vocab, ok := v.Strings()
	if !ok {
		return &weights.GGUFError{File: path, Key: "tokenizer.ggml.tokens", Reason: fmt.Sprintf("want an array of strings, have %s", v.Type)}
	}
	if err := tok.CompareVocab(vocab); err != nil {
		return fmt.Errorf("text encoder %s: its embedded vocabulary does not match the tokenizer %s: %w", path, m.TokenizerDir, err)
	}
	if _, ok := g.Meta("tokenizer.ggml.merges"); !ok || path == m.TokenizerDir {
		return nil
	}
	tokens, types, merges, err := ggufVocab(g)
	if err != nil {
		return err
	}
	other, err := tokenizer.FromVocab(path, tokens, types, merges)
	if err != nil {
		return err
	}
	if err := tok.CompareMerges(other); err != nil {
		return fmt.Errorf("text encoder %s: its embedded merges do not match the tokenizer %s: %w", path, m.TokenizerDir, err)
	}
	return nil
}

// loadTokenizer loads the tokenizer at path: a tokenizer directory or file
// (tokenizer.Load), or a GGUF file whose embedded vocabulary
// (tokenizer.ggml.tokens/token_type/merges) is turned into the same Qwen3
// tokenizer.
func loadTokenizer(path string) (*tokenizer.Tokenizer, error) {
	if !weights.IsGGUF(path) {
		return tokenizer.Load(path)
	}
	g, err := weights.OpenGGUF(path)
	if err != nil {
		return nil, err
	}
	defer g.Close()
	tokens, types, merges, err := ggufVocab(g)
	if err != nil {
		return nil, err
	}
	if tokens == nil {
		return nil, &weights.GGUFError{File: path, Key: "tokenizer.ggml.tokens", Reason: "no embedded vocabulary to build the tokenizer from (pass --tokenizer)"}
	}
	return tokenizer.FromVocab(path, tokens, types, merges)
}

// ggufVocab returns a GGUF file's embedded vocabulary (nil if it has none).
func ggufVocab(g *weights.GGUFFile) (tokens []string, types []int64, merges []string, err error) {
	bad := func(key, want string) error {
		return &weights.GGUFError{File: g.Path(), Key: key, Reason: "want " + want}
	}
	v, ok := g.Meta("tokenizer.ggml.tokens")
	if !ok {
		return nil, nil, nil, nil
	}
	if tokens, ok = v.Strings(); !ok {
		return nil, nil, nil, bad("tokenizer.ggml.tokens", "an array of strings")
	}
	if m := g.MetaString("tokenizer.ggml.model"); m != "gpt2" {
		return nil, nil, nil, bad("tokenizer.ggml.model", fmt.Sprintf("\"gpt2\" (byte-level BPE), have %q", m))
	}
	tv, _ := g.Meta("tokenizer.ggml.token_type")
	if types, ok = tv.V.([]int64); !ok {
		return nil, nil, nil, bad("tokenizer.ggml.token_type", "an array of integers")
	}
	mv, _ := g.Meta("tokenizer.ggml.merges")
	if merges, ok = mv.Strings(); !ok {
		return nil, nil, nil, bad("tokenizer.ggml.merges", "an array of strings")
	}
	return tokens, types, merges, nil
}

// ggufTokenizer returns path when it is a GGUF file with an embedded
// vocabulary (to use as the tokenizer of a single-file set-up), else "".
func ggufTokenizer(path string) string {
	if path == "" || !weights.IsGGUF(path) {
		return ""
	}
	g, err := weights.OpenGGUF(path)
	if err != nil {
		return ""
	}
	defer g.Close()
	if _, ok := g.Meta("tokenizer.ggml.tokens"); !ok {
		return ""
	}
	return path
}
