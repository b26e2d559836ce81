package weights

import (
	"bytes"
	"errors"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenFileNamesOtherFormats: a file in another well-known format passed
// where a safetensors file belongs is named as what it is.
func TestOpenFileNamesOtherFormats(t *testing.T) {
	var pngData bytes.Buffer
	if err := png.Encode(&pngData, image.NewGray(image.Rect(0, 0, 4, 4))); err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("\x00", 100)
	for _, tc := range []struct {
		name, data, want string
	}{
		{"x.png", pngData.String(), "is a PNG image, not a safetensors file"},
		{"x.jpg", "\xff\xd8\xff\xe0\x00\x10JFIF\x00" + pad, "is a JPEG image, not a safetensors file"},
		{"model.gguf", "GGUF\x03\x00\x00\x00" + pad, "is a GGUF file"},
		{"model.pt", "PK\x03\x04\x14\x00\x08\x08" + pad, "is a zip archive"},
		{"model.bin", "\x80\x02\x8a\x0al\xfc\x9cF\xf9 j" + pad, "is a Python pickle"},
		{"lfs.safetensors", "version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 12\n", "is a Git LFS pointer"},
		{"err.safetensors", "<!DOCTYPE html>\n<html><body>Not Found</body></html>" + pad, "is an HTML or XML page"},
		{"config.json", "{\n  \"_class_name\": \"ZImageTransformer2DModel\"\n}\n", "is a JSON file"},
		{"x.zst", "\x28\xb5\x2f\xfd\x04\x00\x00\x00" + pad, "is zstd-compressed data"},
	} {
		p := filepath.Join(t.TempDir(), tc.name)
		if err := os.WriteFile(p, []byte(tc.data), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := OpenFile(p)
		var he *HeaderError
		if !errors.As(err, &he) || he.File != p || !strings.Contains(err.Error(), p+": "+tc.want) {
			t.Errorf("%s: got %v, want a *HeaderError saying %q", tc.name, err, tc.want)
		}
	}
}

// TestSniffLeavesHeaderErrorsAlone: real safetensors problems keep their
// own message, including a header that is JSON but not valid.
func TestSniffLeavesHeaderErrorsAlone(t *testing.T) {
	for _, b := range [][]byte{
		rawFile(`{"a":`, make([]byte, 8)),
		rawFile(`[]`, nil),
		{1, 2, 3},
		append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, '{', '}'),
	} {
		_, err := parseFileBytes("f", b)
		if err == nil || strings.Contains(err.Error(), "not a safetensors file") {
			t.Errorf("%q: %v", b, err)
		}
	}
}
