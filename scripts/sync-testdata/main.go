// Command sync-testdata copies the reference fixtures from ../shared into the
// project's testdata/ directory, compressing large files with zstd, so that the
// tests run on a clean clone without ../shared.
//
//	go run ./scripts/sync-testdata -shared ../shared
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// minCompress is the size above which a file is stored zstd-compressed.
const minCompress = 64 << 10

// copied lists the shared paths the tests need (files or whole directories).
var copied = []string{
	"fixtures",
	"tokenizer",
}

// skipped lists files that no test reads.
var skipped = map[string]bool{
	"fixtures/tiny-z-image-turbo/tokenizer/vocab.json": false,
}

func main() {
	shared := flag.String("shared", "../shared", "path of the shared reference directory")
	out := flag.String("out", "testdata", "destination directory")
	flag.Parse()
	for _, rel := range copied {
		root := filepath.Join(*shared, rel)
		err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return err
			}
			r, _ := filepath.Rel(*shared, p)
			if skipped[filepath.ToSlash(r)] {
				return nil
			}
			return copyFile(p, filepath.Join(*out, r), info.Size() >= minCompress)
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "sync-testdata:", err)
			os.Exit(1)
		}
	}
}

func copyFile(src, dst string, compress bool) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if compress && !strings.HasSuffix(dst, ".zst") {
		dst += ".zst"
	}
	tmp := dst + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	var w io.Writer = f
	var enc *zstd.Encoder
	if compress {
		enc, err = zstd.NewWriter(f, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
		if err != nil {
			return err
		}
		w = enc
	}
	if _, err := io.Copy(w, in); err != nil {
		f.Close()
		return err
	}
	if enc != nil {
		if err := enc.Close(); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
