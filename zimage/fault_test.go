package zimage

import (
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
)

// copyTree copies the regular files of src into dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestTruncatedWeightsFault truncates the mapped weight files of a loaded
// pipeline (a temp copy of the tiny model): the next Run must fail with a
// *weights.FaultError naming a file, not kill the process with SIGBUS; and
// once the files are restored in place, the same pipeline generates again.
func TestTruncatedWeightsFault(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "model")
	copyTree(t, fixturefs.Path(t, "fixtures/tiny-z-image-turbo"), dir)
	p, err := Load(context.Background(), dir, WithDevice("cpu"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// A first request binds the DiT: its shards stay mapped.
	if _, err := p.Generate(context.Background(), "a fox", 32, 32, 1); err != nil {
		t.Fatal(err)
	}

	var files []string
	saved := map[string][]byte{}
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		// The transformer's shards stay mapped once bound (a file opened
		// afresh, like the text encoder's at each Run, is checked at open:
		// truncation is then a header error).
		if err == nil && strings.HasSuffix(path, ".safetensors") && strings.Contains(path, "transformer") {
			files = append(files, path)
			saved[path], _ = os.ReadFile(path)
		}
		return nil
	})
	if len(files) == 0 {
		t.Fatal("no safetensors files in the copy")
	}
	// Truncated to the header: every tensor byte is past the end of file.
	for _, f := range files {
		b := saved[f]
		dataOff := 8 + int64(binary.LittleEndian.Uint64(b[:8]))
		if err := os.Truncate(f, dataOff); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		_, err = p.Generate(context.Background(), "a fox", 32, 32, 1)
		var fe *weights.FaultError
		if !errors.As(err, &fe) {
			t.Fatalf("run %d on truncated weights: %v (%T), want a *weights.FaultError", i, err, err)
		}
		if _, ok := saved[fe.File]; !ok {
			t.Errorf("fault names %q, not one of the model's files", fe.File)
		}
		t.Logf("run %d: %v", i, err)
	}
	// Restored in place (same inodes, so the same mappings): it works again.
	for _, f := range files {
		if err := os.WriteFile(f, saved[f], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Generate(context.Background(), "a fox", 32, 32, 1); err != nil {
		t.Fatalf("after restoring the files: %v", err)
	}
}
