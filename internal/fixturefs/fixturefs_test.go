package fixturefs

import (
	"os"
	"path/filepath"
	"testing"
	"time"
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

// The cache key depends on content only: a fresh clone (new mtimes) reuses
// the copy another clone made, and changed bytes get a new copy.
func TestCacheKeyIsContent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.bin")
	if err := os.WriteFile(p, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	files := []entry{{abs: p, rel: "x/a.bin"}}
	k1, err := cacheKey(files)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, time.Unix(1, 0), time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	hashes.Delete(p)
	k2, _ := cacheKey(files)
	if k1 != k2 {
		t.Fatalf("key changed with the mtime: %s vs %s", k1, k2)
	}
	if err := os.WriteFile(p, []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	hashes.Delete(p)
	k3, _ := cacheKey(files)
	if k3 == k1 {
		t.Fatal("key did not change with the content")
	}
}
