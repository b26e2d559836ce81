package weights

import (
	"bytes"
	"io"
)

// sniffLen is how many leading bytes sniffFormat looks at.
const sniffLen = 64

// sniffFormat names the format of a file that failed as safetensors from its
// leading bytes, so the error says "x.png is a PNG image" rather than
// "header length 727905341920923785 exceeds the limit". It returns "" when
// nothing matches. None of these formats can start with a valid safetensors
// length prefix (their bytes 4–7 are not all zero), so a match never hides
// a real header error.
func sniffFormat(b []byte) (kind, hint string) {
	has := func(p string) bool { return bytes.HasPrefix(b, []byte(p)) }
	text := bytes.TrimLeft(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")), " \t\r\n")
	lower := bytes.ToLower(text)
	switch {
	case has("\x89PNG\r\n\x1a\n"):
		return "a PNG image", ""
	case has("\xff\xd8\xff"):
		return "a JPEG image", ""
	case has("GIF87a"), has("GIF89a"):
		return "a GIF image", ""
	case len(b) >= 12 && has("RIFF") && string(b[8:12]) == "WEBP":
		return "a WebP image", ""
	case has("GGUF"):
		return "a GGUF file", "llama.cpp's format; use the .safetensors checkpoint"
	case has("PK\x03\x04"):
		return "a zip archive", "a PyTorch .pt/.pth/.ckpt checkpoint? convert it to safetensors"
	case len(b) >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5:
		return "a Python pickle", "a legacy PyTorch .bin/.pt checkpoint? convert it to safetensors"
	case has("\x1f\x8b"):
		return "gzip-compressed data", "decompress it first"
	case has("\x28\xb5\x2f\xfd"):
		return "zstd-compressed data", "decompress it first"
	case bytes.HasPrefix(text, []byte("version https://git-lfs")):
		return "a Git LFS pointer", "the weights were not downloaded: run `git lfs pull` in the clone, or `zimage pull`"
	case bytes.HasPrefix(lower, []byte("<!doctype html")), bytes.HasPrefix(lower, []byte("<html")),
		bytes.HasPrefix(lower, []byte("<?xml")), bytes.HasPrefix(lower, []byte("<!doctype")):
		return "an HTML or XML page", "an error or login page saved instead of the file? download it again"
	case len(text) > 0 && (text[0] == '{' || text[0] == '[') && printable(b[:min(len(b), 8)]):
		return "a JSON file", "pass the model directory or a .safetensors file"
	}
	return "", ""
}

// printable reports whether b is ASCII text (no valid safetensors length
// prefix is: its high bytes are zero).
func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c >= 0x7f {
			return false
		}
	}
	return true
}

// sniffError replaces a file-level header error with one that names the
// file's actual format, when it has a recognisable one.
func sniffError(err *HeaderError, r io.ReaderAt, size int64) error {
	if err.Tensor != "" {
		return err
	}
	b := make([]byte, min(size, sniffLen))
	n, _ := r.ReadAt(b, 0)
	kind, hint := sniffFormat(b[:n])
	if kind == "" {
		return err
	}
	reason := "is " + kind + ", not a safetensors file"
	if hint != "" {
		reason += " (" + hint + ")"
	}
	return &HeaderError{File: err.File, Reason: reason}
}
