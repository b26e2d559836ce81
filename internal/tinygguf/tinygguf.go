// Package tinygguf converts the fixture model's transformer and text encoder
// to GGUF files for tests (in its own package because weights' own tests
// import fixturefs, which therefore cannot import weights).
package tinygguf

import (
	"path/filepath"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
)

// Write converts fixtures/tiny-z-image-turbo's transformer (ComfyUI names)
// and text encoder (llama.cpp names) to GGUF files of type dt in dir and
// returns their paths.
func Write(tb testing.TB, dir string, dt weights.DType) (dit, te string) {
	tb.Helper()
	m, err := weights.OpenModel(fixturefs.Path(tb, "fixtures/tiny-z-image-turbo"))
	if err != nil {
		tb.Fatal(err)
	}
	dit = filepath.Join(dir, "dit-"+dt.String()+".gguf")
	te = filepath.Join(dir, "te-"+dt.String()+".gguf")
	s, err := m.OpenTransformer()
	if err != nil {
		tb.Fatal(err)
	}
	err = weights.WriteComponentGGUF(s, weights.CompTransformer, dit, weights.GGUFConvertOptions{Type: dt, DiTKey: m.DiT.EmbedderKey(0)})
	s.Close()
	if err != nil {
		tb.Fatal(err)
	}
	if s, err = m.OpenTextEncoder(); err != nil {
		tb.Fatal(err)
	}
	err = weights.WriteComponentGGUF(s, weights.CompTextEncoder, te, weights.GGUFConvertOptions{Type: dt, TextEncoder: &m.TextEncoder})
	s.Close()
	if err != nil {
		tb.Fatal(err)
	}
	return dit, te
}
