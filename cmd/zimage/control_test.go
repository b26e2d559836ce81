package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
)

// TestGenerateControlNet runs `zimage generate --controlnet DIR
// --control-image FILE --control-scale S` for a ControlNet fixture case and
// compares the PNG with diffusers' (≥ 99.9% of values within ±1, none more
// than 4 off); the same for ControlNet inpainting (--image --mask, size
// from the image).
func TestGenerateControlNet(t *testing.T) {
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	dir := fixturefs.Path(t, "fixtures/e2e_controlnet")
	var c fixturefs.ControlCase // the last plain case with a control map of the output size
	for _, k := range fixturefs.ControlCases(t) {
		if !k.Resized && k.InitPNG == "" {
			c = k
		}
	}
	if c.Name == "" {
		t.Fatal("no ControlNet case with an unresized control map")
	}
	scale := strconv.FormatFloat(float64(c.Scale), 'g', -1, 32)
	out := filepath.Join(t.TempDir(), "img.png")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"generate", "--model", model, "--device", "cpu", "--prompt", c.Prompt,
		"--steps", strconv.Itoa(c.Steps), "--seed", strconv.FormatInt(c.Seed, 10), "--controlnet", filepath.Join(dir, "controlnet"),
		"--width", strconv.Itoa(c.Width), "--height", strconv.Itoa(c.Height),
		"--control-image", filepath.Join(dir, c.ControlPNG), "--control-scale", scale, "--out", out}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	d := fixturefs.ComparePixels(t, readPNG(t, out), readPNG(t, filepath.Join(dir, c.Name+".png")))
	t.Logf("%d of %d values more than 1 off, max diff %d", d.Off1, d.Total, d.Max)
	if float64(d.Off1) > 0.001*float64(d.Total) || d.Max > 4 {
		t.Errorf("PNG differs from the reference: %d values > 1 off, max %d", d.Off1, d.Max)
	}
	chunks := textChunks(t, out)
	for k, v := range map[string]string{"controlnet": "controlnet", "control_scale": scale, "size": fmt.Sprintf("%dx%d", c.Width, c.Height),
		"control_image": c.ControlPNG} {
		if chunks[k] != v {
			t.Errorf("text chunk %q = %q, want %q", k, chunks[k], v)
		}
	}

	// ControlNet inpainting: --image and --mask with the control map.
	for _, k := range fixturefs.ControlCases(t) {
		if k.InitPNG == "" {
			continue
		}
		code := run(context.Background(), []string{"generate", "--model", model, "--device", "cpu", "--prompt", k.Prompt,
			"--steps", strconv.Itoa(k.Steps), "--seed", strconv.FormatInt(k.Seed, 10), "--controlnet", filepath.Join(dir, "controlnet"),
			"--control-image", filepath.Join(dir, k.ControlPNG), "--control-scale", strconv.FormatFloat(float64(k.Scale), 'g', -1, 32),
			"--image", filepath.Join(dir, k.InitPNG), "--mask", filepath.Join(dir, k.MaskPNG), "--out", out}, &stdout, &stderr)
		if code != 0 {
			t.Fatalf("inpaint: exit %d: %s", code, stderr.String())
		}
		d := fixturefs.ComparePixels(t, readPNG(t, out), readPNG(t, filepath.Join(dir, k.Name+".png")))
		if float64(d.Off1) > 0.001*float64(d.Total) || d.Max > 4 {
			t.Errorf("%s: PNG differs from the reference: %d values > 1 off, max %d", k.Name, d.Off1, d.Max)
		}
	}

	// Usage errors.
	for _, args := range [][]string{
		{"--control-image", filepath.Join(dir, c.ControlPNG)},
		{"--controlnet", filepath.Join(dir, "controlnet")},
		{"--control-scale", "0.5"},
		{"--controlnet", filepath.Join(dir, "controlnet"), "--control-image", filepath.Join(dir, c.ControlPNG), "--control-scale", "0"},
	} {
		stderr.Reset()
		a := append([]string{"generate", "--model", model, "--prompt", "x", "--out", out}, args...)
		if code := run(context.Background(), a, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--control") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr.String())
		}
	}
}
