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
	if other > 0 {
		arch := g.MetaString("general.architecture")
		in.printf("  %-11s %d more metadata keys (%s.*, tokenizer.*, ...)\n", "", other, arch)
	}
	if _, ok := g.Meta("tokenizer.ggml.tokens"); ok {
		in.printf("  tokenizer   embedded vocabulary present (zimage uses its own Qwen3 tokenizer; --tokenizer or the model directory)\n")
	}
}
