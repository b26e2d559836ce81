package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
)

// TestGenerateInpaint runs `zimage generate --image --mask --strength` on the
// fixture model for an inpaint case (the size comes from the image) and
// compares the PNG with diffusers' (≥ 99.9% of values within ±1, none more
// than 4 off).
func TestGenerateInpaint(t *testing.T) {
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	var c fixturefs.EditCase
	for _, ec := range fixturefs.EditCases(t) {
		if ec.Name == "en_64x96_seed42_strength0.7" {
			c = ec
		}
	}
	dir := fixturefs.Path(t, "fixtures/"+c.Dir)
	out := filepath.Join(t.TempDir(), "img.png")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"generate", "--model", model, "--prompt", c.Prompt, "--seed", "42",
		"--image", filepath.Join(dir, c.InitPNG), "--mask", filepath.Join(dir, c.MaskPNG), "--strength", "0.7",
		"--device", "cpu", "--out", out}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "image encoder") || !strings.Contains(stdout.String(), "(96x64 ") {
		t.Errorf("stdout:\n%s", stdout.String())
	}
	chunks := textChunks(t, out)
	for k, v := range map[string]string{"image": c.InitPNG, "mask": c.MaskPNG, "strength": "0.7", "size": "96x64"} {
		if chunks[k] != v {
			t.Errorf("text chunk %q = %q, want %q", k, chunks[k], v)
		}
	}
	d := fixturefs.ComparePixels(t, readPNG(t, out), readPNG(t, filepath.Join(dir, c.Name+".png")))
	if float64(d.Off1) > 0.001*float64(d.Total) || d.Max > 4 {
		t.Errorf("PNG differs from the reference: %d values > 1 off, max %d", d.Off1, d.Max)
	}
}

// TestGenerateEditErrors: bad image flags and files fail before the model
// loads, naming the problem, and write nothing.
func TestGenerateEditErrors(t *testing.T) {
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	dir := t.TempDir()
	out := filepath.Join(dir, "x.png")
	bad := filepath.Join(dir, "bad.png")
	if err := os.WriteFile(bad, []byte("not an image"), 0o644); err != nil {
		t.Fatal(err)
	}
	init := filepath.Join(fixturefs.Path(t, "fixtures/e2e_img2img"), "init_64x96.png")
	for _, tc := range []struct {
		args []string
		code int // 2: usage (flags, or a request the library refuses), 1: a file that cannot be used
		msg  string
	}{
		{[]string{"--mask", init}, 2, "--mask needs --image"},
		{[]string{"--strength", "0.5"}, 2, "--strength needs --image"},
		{[]string{"--image", init, "--strength", "0"}, 2, "want a value in (0, 1]"},
		{[]string{"--image", init, "--strength", "1.5"}, 2, "want a value in (0, 1]"},
		{[]string{"--image", bad}, 1, "not a PNG or JPEG"},
		{[]string{"--image", filepath.Join(dir, "missing.png")}, 1, "missing.png"},
		{[]string{"--image", init, "--mask", filepath.Join(fixturefs.Path(t, "fixtures"), "vae_small.png")}, 2, "must be the same size"},
	} {
		var stdout, stderr bytes.Buffer
		args := append([]string{"generate", "--model", model, "--device", "cpu", "--prompt", "x", "--steps", "1", "--out", out}, tc.args...)
		code := run(context.Background(), args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, stderr.String(), tc.code, tc.msg)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed run left an output file")
	}
}
