package testdata

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMaterializeDirectory(t *testing.T) {
	dir := Path(t, "fixtures/tiny-z-image-turbo")
	for _, f := range []string{"model_index.json", "tokenizer/tokenizer.json", "text_encoder/model.safetensors"} {
		info, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if info.Size() == 0 {
			t.Fatalf("%s is empty", f)
		}
	}
}

func TestMaterializeSingleCompressedFile(t *testing.T) {
	p := Path(t, "tokenizer/golden_public.jsonl")
	if filepath.Base(p) != "golden_public.jsonl" {
		t.Fatalf("unexpected path %s", p)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
}
