package tokenizer

import (
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
)

// BenchmarkLoad measures Load of the 11 MB tokenizer.json.
func BenchmarkLoad(b *testing.B) {
	path := fixturefs.Path(b, "tokenizer/qwen3/tokenizer.json")
	for b.Loop() {
		if _, err := Load(path); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadVocabMerges measures Load of vocab.json + merges.txt.
func BenchmarkLoadVocabMerges(b *testing.B) {
	path := fixturefs.Path(b, "tokenizer/qwen3")
	for b.Loop() {
		if _, err := loadVocabMerges(path); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeCorpus encodes every golden text once per iteration, on one
// goroutine. cold starts each iteration with an empty piece cache; warm keeps
// the cache.
func BenchmarkEncodeCorpus(b *testing.B) {
	tok := qwen(b)
	rows := readGolden(b)
	tokens := 0
	for _, r := range rows {
		tokens += len(r.IDs)
	}
	for _, mode := range []string{"cold", "warm"} {
		b.Run(mode, func(b *testing.B) {
			tok.cache.reset()
			b.ReportAllocs()
			for b.Loop() {
				if mode == "cold" {
					tok.cache.reset()
				}
				for _, r := range rows {
					if _, err := tok.Encode(r.Text); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(tokens)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
