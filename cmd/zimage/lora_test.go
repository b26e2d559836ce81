package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/zimage"
	"github.com/zimage/zimage/zimage/server"
)

func TestParseLoRAArg(t *testing.T) {
	for _, c := range []struct {
		in    string
		named bool
		want  loraArg
		bad   bool
	}{
		{in: "a.safetensors", want: loraArg{path: "a.safetensors", scale: 1}},
		{in: "a.safetensors:0.6", want: loraArg{path: "a.safetensors", scale: 0.6}},
		{in: `C:\loras\a.safetensors`, want: loraArg{path: `C:\loras\a.safetensors`, scale: 1}},
		{in: "x=/l/a.safetensors:-0.5", named: true, want: loraArg{name: "x", path: "/l/a.safetensors", scale: -0.5}},
		{in: "/l/a.safetensors", named: true, bad: true},
		{in: ":0.5", bad: true},
		{in: "a:NaN", bad: true},
	} {
		got, err := parseLoRAArg(c.in, c.named)
		if (err != nil) != c.bad || !c.bad && got != c.want {
			t.Errorf("%q: %+v, %v", c.in, got, err)
		}
	}
}

// TestGenerateWithLoRA generates the stacked e2e_lora case with two --lora
// flags (merged at load) and compares with the reference PNG.
func TestGenerateWithLoRA(t *testing.T) {
	if testing.Short() {
		t.Skip("a tiny-model run")
	}
	var c fixturefs.LoRACase
	for _, x := range fixturefs.LoRACases(t) {
		if len(x.LoRAs) == 2 {
			c = x
		}
	}
	out := filepath.Join(t.TempDir(), "img.png")
	args := []string{"generate", "--model", fixturefs.Path(t, "fixtures/tiny-z-image-turbo"), "--prompt", c.Prompt,
		"--width", "64", "--height", "64", "--seed", "42", "--device", "cpu", "--out", out}
	for _, l := range c.LoRAs {
		args = append(args, "--lora", fixturefs.Path(t, "fixtures/e2e_lora/"+l.File)+":"+strconv.FormatFloat(float64(l.Scale), 'g', -1, 32))
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	d := fixturefs.ComparePixels(t, readPNG(t, out), readPNG(t, fixturefs.Path(t, "fixtures/e2e_lora/"+c.Name+".png")))
	if float64(d.Off1) > 0.001*float64(d.Total) || d.Max > 4 {
		t.Errorf("PNG differs from the reference: %+v", d)
	}
	if ch := textChunks(t, out); !strings.Contains(ch["lora"], "lora_kohya.safetensors:0.5") {
		t.Errorf("lora text chunk %q", ch["lora"])
	}

	// A LoRA that does not fit fails before generating, naming the problem.
	stderr.Reset()
	bad := append(args[:len(args):len(args)], "--lora", fixturefs.Path(t, "fixtures/e2e_lora/en_64x64_seed42_kohya_s1.0.safetensors"))
	if code := run(context.Background(), bad, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "lora") {
		t.Errorf("bad LoRA: exit %d: %s", code, stderr.String())
	}
}

func TestInspectLoRA(t *testing.T) {
	for file, want := range map[string][]string{
		"lora_kohya.safetensors":     {"kohya format, F32, 42 modules, rank 4", "alpha       1 on 42 modules", "noise_refiner 0-1, context_refiner 0-1, layers 0-1", "model dim   288", "fits        not Z-Image-Turbo"},
		"lora_comfyui.safetensors":   {"comfyui format, BF16, 14 modules, rank 4", "alpha       none", "in layers 0-1"},
		"lora_diffusers.safetensors": {"diffusers format, F32, 42 modules"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{"inspect", fixturefs.Path(t, "fixtures/e2e_lora/"+file)}, &stdout, &stderr); code != 0 {
			t.Fatalf("%s: exit %d: %s", file, code, stderr.String())
		}
		for _, w := range want {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("%s: output lacks %q:\n%s", file, w, stdout.String())
			}
		}
	}
}

func TestServeLoRAs(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"b.safetensors", "a.safetensors", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fl := loraFlags{named: true}
	if err := fl.Set("x=/l/x.safetensors:0.7"); err != nil {
		t.Fatal(err)
	}
	args, err := serveLoRAs(&fl, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := loraScales(args); len(got) != 3 || got["x"] != 0.7 || got["a"] != 1 || got["b"] != 1 {
		t.Errorf("scales %v", got)
	}
	if err := fl.Set("a=/l/other.safetensors"); err != nil {
		t.Fatal(err)
	}
	if _, err := serveLoRAs(&fl, dir); err == nil || !strings.Contains(err.Error(), `"a" is registered twice`) {
		t.Errorf("duplicate name: %v", err)
	}
	got := jobLoRAs(server.Job{LoRAs: []server.LoRA{{Name: "a", Scale: 0}, {Name: "b", Scale: 0.5}}})
	if len(got) != 1 || got[0] != (zimage.LoRA{Name: "b", Scale: 0.5}) {
		t.Errorf("job LoRAs %+v", got)
	}
}
