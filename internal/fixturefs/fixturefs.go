// Package fixturefs gives tests the project's reference fixtures as plain files.
// Large fixtures are committed zstd-compressed under testdata/ at the module
// root; Path decompresses them once per machine into a cache directory.
package fixturefs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Root returns the module's testdata directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata")
}

// Path returns the materialized (decompressed) path of rel, a file or directory
// relative to the module's testdata directory, e.g.
// "fixtures/tiny-z-image-turbo". The test fails if it does not exist.
func Path(tb testing.TB, rel string) string {
	tb.Helper()
	p, err := Materialize(rel)
	if err != nil {
		tb.Fatalf("testdata: %v", err)
	}
	return p
}

// Materialize is Path without a testing.TB (for benchmarks and tools).
func Materialize(rel string) (string, error) {
	src := filepath.Join(Root(), filepath.FromSlash(rel))
	files, err := listing(src, rel)
	if err != nil {
		return "", err
	}
	// The cache key covers the names and contents of the committed files, so
	// every clone at the same fixtures shares one copy and an updated fixture
	// never reuses a stale one.
	key, err := cacheKey(files)
	if err != nil {
		return "", err
	}
	prefix := strings.NewReplacer("/", "_", "\\", "_", ".", "_").Replace(filepath.ToSlash(rel)) + "-"
	cache := filepath.Join(os.TempDir(), "zimage-testdata")
	base := filepath.Join(cache, prefix+key)
	dst := filepath.Join(base, filepath.FromSlash(rel))
	if _, err := os.Stat(filepath.Join(base, ".complete")); err == nil {
		return dst, nil
	}
	// Build in a private directory and rename it into place, so concurrent test
	// binaries never see a half-written tree.
	if err := os.MkdirAll(filepath.Dir(base), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(base), key+".tmp-")
	if err != nil {
		return "", err
	}
	for _, f := range files {
		if err := materializeFile(f.abs, filepath.Join(tmp, filepath.FromSlash(f.out))); err != nil {
			os.RemoveAll(tmp)
			return "", err
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	if err := os.Rename(tmp, base); err != nil {
		os.RemoveAll(tmp)
		if _, serr := os.Stat(filepath.Join(base, ".complete")); serr != nil {
			return "", err
		}
	}
	pruneStale(cache, prefix, base)
	return dst, nil
}

func cacheKey(files []entry) (string, error) {
	h := sha256.New()
	for _, f := range files {
		sum, err := contentHash(f.abs)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%s\n", f.rel, sum)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// pruneStale removes older copies of the same fixture path (other contents)
// that no test has created in the last hour, so the cache keeps one copy per
// path instead of growing with every fixture update.
func pruneStale(cache, prefix, keep string) {
	entries, err := os.ReadDir(cache)
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(cache, e.Name())
		if !e.IsDir() || p == keep || !strings.HasPrefix(e.Name(), prefix) || strings.Contains(e.Name()[len(prefix):], "-") {
			continue
		}
		if info, err := os.Stat(filepath.Join(p, ".complete")); err == nil && time.Since(info.ModTime()) > time.Hour {
			os.RemoveAll(p)
		}
	}
}

var hashes sync.Map // absolute path → hex sha256 of its bytes (per process)

func contentHash(path string) (string, error) {
	if v, ok := hashes.Load(path); ok {
		return v.(string), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	hashes.Store(path, sum)
	return sum, nil
}

type entry struct {
	abs, rel, out string
	size          int64
}

func listing(src, rel string) ([]entry, error) {
	var files []entry
	add := func(abs string, info os.FileInfo) {
		r, _ := filepath.Rel(Root(), abs)
		r = filepath.ToSlash(r)
		files = append(files, entry{abs: abs, rel: r, out: strings.TrimSuffix(r, ".zst"), size: info.Size()})
	}
	info, err := os.Stat(src)
	if err != nil {
		// A single compressed file is addressed by its plain name.
		if zinfo, zerr := os.Stat(src + ".zst"); zerr == nil && !zinfo.IsDir() {
			add(src+".zst", zinfo)
			return files, nil
		}
		return nil, fmt.Errorf("%s not found under %s", rel, Root())
	}
	if !info.IsDir() {
		add(src, info)
		return files, nil
	}
	err = filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		add(p, info)
		return nil
	})
	sort.Slice(files, func(i, j int) bool { return files[i].rel < files[j].rel })
	return files, err
}

func materializeFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	var r io.Reader = in
	if strings.HasSuffix(src, ".zst") {
		dec, err := zstd.NewReader(in)
		if err != nil {
			out.Close()
			return err
		}
		defer dec.Close()
		r = dec
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return fmt.Errorf("decompress %s: %w", src, err)
	}
	return out.Close()
}
