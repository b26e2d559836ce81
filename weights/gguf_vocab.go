package weights

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// TokenizerGGUFMeta reads a Hugging Face tokenizer.json (a file, or a
// directory holding one) and returns the tokenizer metadata llama.cpp's
// converter embeds for a Qwen2/Qwen3 model: tokenizer.ggml.model "gpt2",
// pre "qwen2", tokens (id order, padded to vocabSize with "[PAD<id>]"),
// token_type (1 normal, 3 control for special added tokens, 4
// user-defined, 5 unused padding) and merges ("a b").
func TokenizerGGUFMeta(path string, vocabSize int) ([]GGUFKV, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, "tokenizer.json")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	var doc struct {
		Model struct {
			Type   string            `json:"type"`
			Vocab  map[string]int    `json:"vocab"`
			Merges []json.RawMessage `json:"merges"`
		} `json:"model"`
		Added []struct {
			ID      int    `json:"id"`
			Content string `json:"content"`
			Special bool   `json:"special"`
		} `json:"added_tokens"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, &ConfigError{File: path, Err: err}
	}
	if doc.Model.Type != "BPE" {
		return nil, &ConfigError{File: path, Err: fmt.Errorf("model type %q, want BPE", doc.Model.Type)}
	}
	n := vocabSize
	for _, id := range doc.Model.Vocab {
		n = max(n, id+1)
	}
	for _, a := range doc.Added {
		n = max(n, a.ID+1)
	}
	if n > 1<<24 {
		return nil, &ConfigError{File: path, Err: fmt.Errorf("token id %d out of range", n-1)}
	}
	tokens := make([]string, n)
	types := make([]int64, n)
	for tok, id := range doc.Model.Vocab {
		if id < 0 {
			return nil, &ConfigError{File: path, Err: fmt.Errorf("token %q has id %d", tok, id)}
		}
		tokens[id], types[id] = tok, 1
	}
	for _, a := range doc.Added {
		if a.ID < 0 {
			return nil, &ConfigError{File: path, Err: fmt.Errorf("added token %q has id %d", a.Content, a.ID)}
		}
		tokens[a.ID], types[a.ID] = a.Content, 4
		if a.Special {
			types[a.ID] = 3
		}
	}
	for id := range tokens {
		if types[id] == 0 {
			tokens[id], types[id] = fmt.Sprintf("[PAD%d]", id), 5 // UNUSED, as llama.cpp pads
		}
	}
	merges := make([]string, 0, len(doc.Model.Merges))
	for _, m := range doc.Model.Merges {
		var s string
		var pair []string
		switch {
		case json.Unmarshal(m, &s) == nil:
		case json.Unmarshal(m, &pair) == nil && len(pair) == 2:
			s = pair[0] + " " + pair[1]
		default:
			return nil, &ConfigError{File: path, Err: fmt.Errorf("merge %s is neither \"a b\" nor [a, b]", m)}
		}
		if strings.Count(s, " ") != 1 {
			return nil, &ConfigError{File: path, Err: fmt.Errorf("merge %q", s)}
		}
		merges = append(merges, s)
	}
	return []GGUFKV{
		{"tokenizer.ggml.model", GGUFStr("gpt2")},
		{"tokenizer.ggml.pre", GGUFStr("qwen2")},
		{"tokenizer.ggml.tokens", GGUFValue{Type: GGUFArray, Elem: GGUFString, V: tokens}},
		{"tokenizer.ggml.token_type", GGUFValue{Type: GGUFArray, Elem: GGUFInt32, V: types}},
		{"tokenizer.ggml.merges", GGUFValue{Type: GGUFArray, Elem: GGUFString, V: merges}},
	}, nil
}
