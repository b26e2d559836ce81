package main

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// output is where generate writes its image: a file (PNG or JPEG by its
// extension, written atomically) or standard output (PNG).
type output struct {
	path    string // as the user gave it
	format  string // "png" or "jpeg"
	quality int    // JPEG quality
	stdout  bool
	w       io.Writer // standard output
}

// parseOutput checks --out's form: "-" or a name ending in .png, .jpg or
// .jpeg. Standard output must not be a terminal.
func parseOutput(path string, quality int, stdout io.Writer) (*output, error) {
	o := &output{path: path, quality: quality, w: stdout}
	if path == "-" {
		if isTerminal(stdout) {
			return nil, usageError("--out -: standard output is a terminal; redirect it to a file or a pipe")
		}
		o.stdout, o.format = true, "png"
		return o, nil
	}
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".png":
		o.format = "png"
	case ".jpg", ".jpeg":
		o.format = "jpeg"
	case "":
		return nil, usageError(fmt.Sprintf("--out %s: no file extension; want .png, .jpg or .jpeg (or - for standard output)", path))
	default:
		return nil, usageError(fmt.Sprintf("--out %s: unknown image type %s; want .png, .jpg or .jpeg (or - for standard output)", path, ext))
	}
	return o, nil
}

// check makes sure the file can be created before any slow work: its
// directory exists and is writable (a probe file is created and removed),
// and the path is not a directory.
func (o *output) check() error {
	if o.stdout {
		return nil
	}
	bad := func(format string, args ...any) error {
		return usageError(fmt.Sprintf("--out %s: ", o.path) + fmt.Sprintf(format, args...))
	}
	if st, err := os.Stat(o.path); err == nil && st.IsDir() {
		return bad("is a directory")
	}
	dir := filepath.Dir(o.path)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return bad("directory %s does not exist", dir)
	case err != nil:
		return bad("%v", bareError(err))
	case !st.IsDir():
		return bad("%s is not a directory", dir)
	}
	f, err := os.CreateTemp(dir, ".zimage-write-check-*")
	if err != nil {
		return bad("cannot create files in %s: %v", dir, bareError(err))
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// name is the output as the report names it.
func (o *output) name() string {
	if o.stdout {
		return "standard output"
	}
	return o.path
}

// write encodes img (PNG with meta as text chunks, or JPEG) and writes it.
func (o *output) write(img image.Image, meta []textChunk) error {
	var buf bytes.Buffer
	var data []byte
	switch o.format {
	case "jpeg":
		if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: o.quality}); err != nil {
			return err
		}
		data = insertJPEGComment(buf.Bytes(), meta)
	default:
		if err := png.Encode(&buf, img); err != nil {
			return err
		}
		var err error
		if data, err = insertTextChunks(buf.Bytes(), meta); err != nil {
			return err
		}
	}
	if o.stdout {
		if _, err := o.w.Write(data); err != nil {
			return fmt.Errorf("write to standard output: %w", bareError(err))
		}
		return nil
	}
	return writeFileAtomic(o.path, data)
}

// insertJPEGComment records the parameters in a COM segment right after the
// SOI marker, one "key: value" line each (UTF-8), cut to the segment's
// 65533-byte limit.
func insertJPEGComment(jpg []byte, meta []textChunk) []byte {
	if len(jpg) < 2 || jpg[0] != 0xff || jpg[1] != 0xd8 {
		return jpg
	}
	var text strings.Builder
	for _, c := range meta {
		text.WriteString(c.key + ": " + strings.ReplaceAll(c.value, "\n", " ") + "\n")
	}
	body := []byte(text.String())
	if len(body) > 65533 {
		body = body[:65533]
	}
	n := len(body) + 2
	out := make([]byte, 0, len(jpg)+4+len(body))
	out = append(out, jpg[:2]...)
	out = append(out, 0xff, 0xfe, byte(n>>8), byte(n))
	out = append(out, body...)
	return append(out, jpg[2:]...)
}
