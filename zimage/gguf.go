package zimage

import (
	"fmt"

	"github.com/zimage/zimage/tokenizer"
	"github.com/zimage/zimage/weights"
)

// checkGGUFVocab compares the vocabulary a GGUF text encoder carries
// (tokenizer.ggml.tokens, as llama.cpp's converter embeds it) with the
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
	return nil
}
