package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/zimage"
)

// TestGenerateMatchesFixture runs `zimage generate` on the fixture model for
// the CFG e2e case (prompt, negative prompt "", guidance 4, 4 steps, seed 7)
// and compares the PNG with the reference PNG (≥ 99.9% of values within ±1,
// none more than 4 off), then checks the text chunks.
func TestGenerateMatchesFixture(t *testing.T) {
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	out := filepath.Join(t.TempDir(), "img.png")
	prompt := "A red fox sitting in a snowy forest at dawn, photorealistic, 35mm photo, shallow depth of field, soft golden light"
	t.Setenv("ZIMAGE_MODEL", model)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"generate", "--prompt", prompt, "--negative-prompt", "",
		"--guidance", "4", "--steps", "4", "--width", "96", "--height", "64", "--seed", "7",
		"--device", "cpu", "--out", out}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "seed 7") || !strings.Contains(stdout.String(), "denoise") {
		t.Errorf("stdout lacks the seed or the stage times:\n%s", stdout.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr not quiet when not a terminal: %q", stderr.String())
	}

	got := readPNG(t, out)
	want := readPNG(t, fixturefs.Path(t, "fixtures/e2e/en_64x96_seed7_cfg.png"))
	d := fixturefs.ComparePixels(t, got, want)
	t.Logf("%d of %d values more than 1 off, max diff %d", d.Off1, d.Total, d.Max)
	if float64(d.Off1) > 0.001*float64(d.Total) || d.Max > 4 {
		t.Errorf("PNG differs from the reference: %d values > 1 off, max %d", d.Off1, d.Max)
	}

	chunks := textChunks(t, out)
	for k, v := range map[string]string{
		"prompt": prompt, "seed": "7", "steps": "4", "guidance": "4", "size": "96x64",
		"model": "tiny-z-image-turbo", "Software": "zimage",
	} {
		if chunks[k] != v {
			t.Errorf("text chunk %q = %q, want %q", k, chunks[k], v)
		}
	}
	if _, ok := chunks["negative_prompt"]; ok {
		t.Error("empty negative prompt written as a chunk")
	}
}

// TestGenerateUTF8Prompt writes a non-Latin-1 prompt as an iTXt chunk.
func TestGenerateUTF8Prompt(t *testing.T) {
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	out := filepath.Join(t.TempDir(), "zh.png")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"generate", "--model", model, "--prompt", "熊猫", "--negative-prompt", "模糊",
		"--guidance", "2", "--steps", "1", "--width", "32", "--height", "32", "--seed", "1", "--out", out}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	chunks := textChunks(t, out)
	if chunks["prompt"] != "熊猫" || chunks["negative_prompt"] != "模糊" {
		t.Errorf("chunks %q", chunks)
	}
}

func TestGenerateUsageErrors(t *testing.T) {
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	t.Setenv("ZIMAGE_MODEL", "")
	// Without --model the default repository is used: offline, on an
	// empty cache, that fails without touching the network.
	t.Setenv("HF_HUB_OFFLINE", "1")
	t.Setenv("HF_HUB_CACHE", t.TempDir())
	out := filepath.Join(t.TempDir(), "x.png")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--model", model, "--out", out}, 2, "--prompt is required"},
		{[]string{"--model", model, "--prompt", "x"}, 2, "--out is required"},
		{[]string{"--prompt", "x", "--out", out}, 1, "Tongyi-MAI/Z-Image-Turbo is not in the cache"},
		{[]string{"--bogus"}, 2, "flag provided but not defined"},
		{[]string{"--model", model, "--prompt", "x", "--out", out, "extra"}, 2, "unexpected argument"},
		{[]string{"--model", model, "--prompt", "x", "--out", out, "--width", "100"}, 2, "--width 100: want a multiple of 16 from 16 to 4096"},
		{[]string{"--model", model, "--prompt", "x", "--out", out, "--height", "8192"}, 2, "--height 8192"},
		{[]string{"--model", model, "--prompt", "x", "--out", out, "--device", "tpu"}, 2, `--device "tpu": want cpu, cuda, cuda:N or auto`},
		{[]string{"--model", t.TempDir(), "--prompt", "x", "--out", out}, 1, "zimage generate:"},
		{[]string{"--model", model, "--prompt", "x", "--width", "32", "--height", "32", "--steps", "1",
			"--out", filepath.Join(t.TempDir(), "missing", "x.png")}, 2, "missing/x.png: directory"},
		{[]string{"--model", model, "--prompt", "x", "--out", out, "--steps", "0"}, 2, "--steps 0: want 1 to"},
		{[]string{"--model", model, "--prompt", "x", "--out", out, "--seed", "-2"}, 2, "--seed -2"},
		{[]string{"--model", model, "--prompt", "  ", "--out", out}, 2, "--prompt is empty"},
		{[]string{"--model", model, "--prompt", "x", "--out", out, "--guidance", "-1"}, 2, "--guidance -1"},
		{[]string{"--model", model, "--prompt", "x", "--out", out, "--width", "abc"}, 2, "invalid value"},
		{[]string{"--model", model, "--prompt", "x", "--out", out, "--memory-budget", "lots"}, 2, "--memory-budget"},
		{[]string{"--model", model, "--prompt", "x", "--out", out, "--quality", "0"}, 2, "--quality 0"},
		{[]string{"--model", model, "--prompt", "x", "--out", strings.TrimSuffix(out, ".png") + ".webp"}, 2, "unknown image type .webp"},
		{[]string{"--model", model, "--prompt", "x", "--out", strings.TrimSuffix(out, ".png")}, 2, "no file extension"},
		{[]string{"--model", model, "--prompt", "x", "--out", t.TempDir() + "/"}, 2, "no file extension"},
		{[]string{"--model", model, "a fox", "--out", out}, 2, `flags must come before other arguments: --out follows the argument "a fox"`},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append([]string{"generate"}, tc.args...), &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, stderr.String(), tc.code, tc.msg)
		}
		// Each message is one line of its own (notes about the device may
		// precede the failure).
		for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
			if code == 1 && !strings.HasPrefix(line, "zimage generate: ") {
				t.Errorf("%v: a message spans lines: %q", tc.args, stderr.String())
			}
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed run left an output file")
	}
}

// readPNG returns a PNG file's RGB values.
func readPNG(t *testing.T, path string) []byte {
	t.Helper()
	return fixturefs.ReadPNG(t, path)
}

// textChunks returns the tEXt and iTXt entries of a PNG file.
func textChunks(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for p := 8; p+8 <= len(data); {
		n := int(binary.BigEndian.Uint32(data[p:]))
		typ := string(data[p+4 : p+8])
		body := data[p+8 : p+8+n]
		switch typ {
		case "tEXt":
			k, v, _ := bytes.Cut(body, []byte{0})
			r := make([]rune, len(v))
			for i, c := range v {
				r[i] = rune(c) // Latin-1
			}
			out[string(k)] = string(r)
		case "iTXt":
			k, rest, _ := bytes.Cut(body, []byte{0})
			rest = rest[2:]                         // compression flag, method
			_, rest, _ = bytes.Cut(rest, []byte{0}) // language tag
			_, rest, _ = bytes.Cut(rest, []byte{0}) // translated keyword
			out[string(k)] = string(rest)
		}
		p += 12 + n
	}
	return out
}

// TestGenerateWarmupFlag: only --warmup puts WithWarmup in Load's options
// (a one-shot run pays more for it at load than it saves).
func TestGenerateWarmupFlag(t *testing.T) {
	count := func(args ...string) int {
		g := newGenerateArgs(io.Discard)
		if err := g.fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return len(g.loadOptions(zimage.DeviceChoice{Kind: "cpu"}, nil))
	}
	on, off := count("--warmup"), count()
	if on != off+1 {
		t.Fatalf("options with warm-up %d, without %d: want one more with it", on, off)
	}
}
