package main

import (
	"strings"

	"github.com/zimage/zimage/weights"
)

// ggufHeader reports the GGUF container of s (nothing for safetensors):
// version, alignment, the general.* metadata and how many other keys.
func (in *inspector) ggufHeader(s *weights.Set) {
	g := s.GGUF()
	if g == nil {
		return
	}
	in.printf("  gguf        version %d, alignment %d, data at byte %s\n", g.Version(), g.Alignment(), groupDigits(g.DataOffset()))
	other := 0
	for _, kv := range g.Metadata() {
		if !strings.HasPrefix(kv.Key, "general.") {
			other++
			continue
		}
		in.printf("  %-11s %s = %s\n", "", kv.Key, kv.Value)
	}
	arch := g.MetaString("general.architecture")
	if arch == "qwen3" {
		// The hyper-parameters llama.cpp records: which Qwen3 this is.
		var parts []string
		for _, k := range []string{"block_count", "embedding_length", "feed_forward_length", "attention.head_count", "attention.head_count_kv", "attention.key_length"} {
			if v, ok := g.Meta("qwen3." + k); ok {
				parts = append(parts, k+" "+v.String())
				other--
			}
		}
		if len(parts) > 0 {
			in.printf("  %-11s qwen3: %s\n", "", strings.Join(parts, ", "))
		}
	}
	if other > 0 {
		in.printf("  %-11s %d more metadata keys (%s.*, tokenizer.*, ...)\n", "", other, arch)
	}
	if _, ok := g.Meta("tokenizer.ggml.tokens"); ok {
		in.printf("  tokenizer   embedded vocabulary present (zimage uses its own Qwen3 tokenizer; --tokenizer or the model directory)\n")
	}
}
