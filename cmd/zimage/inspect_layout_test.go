package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
)

// TestInspectLayouts: inspect names the layout of single files, all-in-one
// checkpoints, hub cache folders and repository ids, and what is missing.
func TestInspectLayouts(t *testing.T) {
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	m, err := weights.OpenModel(model)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var aio []*weights.Tensor
	single := map[string]string{}
	for _, c := range []struct {
		comp, prefix string
		open         func() (*weights.Set, error)
	}{
		{weights.CompTransformer, "model.diffusion_model.", m.OpenTransformer},
		{weights.CompTextEncoder, "text_encoders.qwen3_4b.transformer.", m.OpenTextEncoder},
		{weights.CompVAE, "vae.", m.OpenVAE},
	} {
		s, err := c.open()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ts, _ := weights.SingleFileTensors(s, c.comp, weights.LayoutOriginal, "", "2-1")
		single[c.comp] = filepath.Join(dir, c.comp+".safetensors")
		if err := weights.WriteFile(single[c.comp], ts, nil); err != nil {
			t.Fatal(err)
		}
		ts, _ = weights.SingleFileTensors(s, c.comp, weights.LayoutOriginal, c.prefix, "2-1")
		aio = append(aio, ts...)
	}
	if err := weights.WriteFile(filepath.Join(dir, "aio.safetensors"), aio, nil); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		path string
		want []string
	}{
		{single[weights.CompTransformer], []string{"layout      single file: transformer (ComfyUI/original names, fused qkv)",
			"(vs the Z-Image-Turbo config)", "mismatched", "missing     for generate also pass --text-encoder, --vae, --tokenizer"}},
		{single[weights.CompVAE], []string{"single file: vae (FLUX ae names)", "--transformer, --text-encoder, --tokenizer"}},
		{single[weights.CompTextEncoder], []string{"single file: text_encoder (diffusers names)"}},
		{filepath.Join(dir, "aio.safetensors"), []string{"all-in-one checkpoint: transformer (ComfyUI/original names, fused qkv) under model.diffusion_model, " +
			"text_encoder (diffusers names) under text_encoders.qwen3_4b.transformer, vae (FLUX ae names) under vae",
			"transformer 89 tensors stored, BF16", "also pass --tokenizer"}},
		{filepath.Join(model, "transformer", "diffusion_pytorch_model-00001-of-00003.safetensors"), []string{"one shard of a sharded checkpoint"}},
	} {
		code, out, errOut := runCmd(t, "inspect", tc.path)
		if code != 0 {
			t.Errorf("%s: exit %d %s", tc.path, code, errOut)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: output lacks %q:\n%s", filepath.Base(tc.path), w, out)
			}
		}
	}

	// The hub cache: a repository id, its cache folder and its snapshot.
	fake, cache := fakeHubEnv(t)
	if code, _, errOut := runCmd(t, "inspect", "Tongyi-MAI/Z-Image-Turbo"); code != 1 || !strings.Contains(errOut, "zimage pull") {
		t.Errorf("uncached repo id: exit %d %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, "pull", "--configs-only"); code != 0 {
		t.Fatal(errOut)
	}
	repoDir := filepath.Join(cache, "models--Tongyi-MAI--Z-Image-Turbo")
	for _, p := range []string{"Tongyi-MAI/Z-Image-Turbo", repoDir, filepath.Join(repoDir, "snapshots", fake.Commit)} {
		code, out, _ := runCmd(t, "inspect", p)
		// Configs only: every component's weights are reported missing.
		if code != 1 || !strings.Contains(out, "hub cache   Tongyi-MAI/Z-Image-Turbo, commit "+fake.Commit) ||
			strings.Count(out, "weights     MISSING") != 3 || !strings.Contains(out, "layout: diffusers") {
			t.Errorf("%s: exit %d\n%s", p, code, out)
		}
	}
	if code, _, _ := runCmd(t, "pull", "--check=false"); code != 0 {
		t.Fatal("pull failed")
	}
	if code, out, errOut := runCmd(t, "inspect", "Tongyi-MAI/Z-Image-Turbo"); code != 0 || strings.Count(out, "check       ok") != 3 {
		t.Errorf("pulled repo: exit %d\n%s%s", code, out, errOut)
	}
}
