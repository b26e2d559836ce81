package server

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
)

// fileStore keeps the generated images as PNG files, one directory per
// task: DIR/<task id>/<index>.png. With several processes on PostgreSQL the
// data directory must be shared by them (same host, or a shared file system).
type fileStore struct {
	dir string
}

func (f *fileStore) path(taskID string, index int) string {
	return filepath.Join(f.dir, taskID, strconv.Itoa(index)+".png")
}

// save encodes img as PNG and writes it atomically (temporary file, then
// rename), so a reader never sees half an image and a retried task simply
// replaces the file.
func (f *fileStore) save(taskID string, index int, img image.Image) error {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return fmt.Errorf("server: encode image %d of %s: %w", index, taskID, err)
	}
	dir := filepath.Join(f.dir, taskID)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("server: image directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*.png")
	if err != nil {
		return fmt.Errorf("server: save image: %w", err)
	}
	_, werr := tmp.Write(buf.Bytes())
	serr := tmp.Sync()
	cerr := tmp.Close()
	if werr != nil || serr != nil || cerr != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("server: save image %s: %v", f.path(taskID, index), firstErr(werr, serr, cerr))
	}
	if err := os.Rename(tmp.Name(), f.path(taskID, index)); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("server: save image: %w", err)
	}
	return nil
}

func (f *fileStore) read(taskID string, index int) ([]byte, error) {
	return os.ReadFile(f.path(taskID, index))
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
