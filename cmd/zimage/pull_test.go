package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/weights/hub"
	"github.com/zimage/zimage/weights/hub/hubtest"
)

// fakeHubEnv serves the fixture model as the default repository and points
// the HF_* environment at it, with an empty cache and a token.
func fakeHubEnv(t *testing.T) (*hubtest.Server, string) {
	fake := hubtest.New(t, hub.DefaultRepo, fixturefs.Path(t, "fixtures/tiny-z-image-turbo"), nil)
	fake.RequireToken("hf_test")
	cache := t.TempDir()
	t.Setenv("HF_ENDPOINT", fake.Endpoint())
	t.Setenv("HF_HUB_CACHE", cache)
	t.Setenv("HF_HOME", t.TempDir())
	t.Setenv("HF_TOKEN", "hf_test")
	t.Setenv("HF_HUB_OFFLINE", "")
	t.Setenv("ZIMAGE_MODEL", "")
	return fake, cache
}

func TestPull(t *testing.T) {
	fake, cache := fakeHubEnv(t)
	code, out, errOut := runCmd(t, "pull", "--parallel", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	snap := filepath.Join(cache, "models--Tongyi-MAI--Z-Image-Turbo", "snapshots", fake.Commit)
	for _, want := range []string{"Tongyi-MAI/Z-Image-Turbo: commit " + fake.Commit, "downloaded ", "snapshot " + snap, "check ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if errOut != "" {
		t.Errorf("stderr not quiet off a terminal: %q", errOut)
	}
	if _, err := weights.OpenModel(snap); err != nil {
		t.Error(err)
	}
	fake.ResetRequests()
	if code, out, _ := runCmd(t, "pull", hub.DefaultRepo+"@main"); code != 0 || !strings.Contains(out, "already up to date") {
		t.Errorf("second pull: exit %d\n%s", code, out)
	}
	if n := len(fake.Requests()); n != 1 {
		t.Errorf("second pull made %d requests, want 1 (the revision)", n)
	}
	t.Setenv("HF_HUB_OFFLINE", "1")
	if code, out, _ := runCmd(t, "pull", "--check=false"); code != 0 || !strings.Contains(out, "found complete in the cache") {
		t.Errorf("offline pull: exit %d\n%s", code, out)
	}
	t.Setenv("HF_HUB_CACHE", t.TempDir())
	if code, _, errOut := runCmd(t, "pull"); code != 1 || !strings.Contains(errOut, "offline mode") {
		t.Errorf("offline, empty cache: exit %d %q", code, errOut)
	}
	t.Setenv("HF_HUB_OFFLINE", "")
	if code, _, errOut := runCmd(t, "pull", "--configs-only", "Other/Repo"); code != 1 || !strings.Contains(errOut, "HTTP 404") {
		t.Errorf("unknown repo: exit %d %q", code, errOut)
	}
	t.Setenv("HF_TOKEN", "wrong")
	if code, _, errOut := runCmd(t, "pull"); code != 1 || !strings.Contains(errOut, "HTTP 401") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("bad token: exit %d %q", code, errOut)
	}
	for _, args := range [][]string{{"pull", "not-a-repo"}, {"pull", "a/b", "c/d"}, {"pull", "--parallel", "0"}, {"pull", "--bogus"}} {
		if code, _, _ := runCmd(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// TestGenerateFromHub: with no --model, generate pulls the default
// repository from the (fake) hub and draws the same image as the local
// directory gives.
func TestGenerateFromHub(t *testing.T) {
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	fakeHubEnv(t)
	dir := t.TempDir()
	args := []string{"generate", "--prompt", "a lighthouse", "--width", "64", "--height", "64", "--steps", "2", "--seed", "3", "--device", "cpu"}
	code, _, errOut := runCmd(t, append(args, "--out", filepath.Join(dir, "hub.png"))...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if code, _, errOut := runCmd(t, append(args, "--model", model, "--out", filepath.Join(dir, "local.png"))...); code != 0 {
		t.Fatalf("local: exit %d: %s", code, errOut)
	}
	if !bytes.Equal(readPNG(t, filepath.Join(dir, "hub.png")), readPNG(t, filepath.Join(dir, "local.png"))) {
		t.Error("image from the hub differs from the local one")
	}
	if c := textChunks(t, filepath.Join(dir, "hub.png")); c["model"] != hub.DefaultRepo {
		t.Errorf("model chunk %q", c["model"])
	}
}

// TestGenerateSingleFiles: ComfyUI-style files with the fixture's configs
// give the same image as the diffusers directory.
func TestGenerateSingleFiles(t *testing.T) {
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	t.Setenv("ZIMAGE_MODEL", "")
	m, err := weights.OpenModel(model)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string]string{}
	for _, c := range []struct {
		comp string
		open func() (*weights.Set, error)
	}{{weights.CompTransformer, m.OpenTransformer}, {weights.CompTextEncoder, m.OpenTextEncoder}, {weights.CompVAE, m.OpenVAE}} {
		s, err := c.open()
		if err != nil {
			t.Fatal(err)
		}
		ts, err := weights.SingleFileTensors(s, c.comp, weights.LayoutOriginal, "", "2-1")
		if err != nil {
			t.Fatal(err)
		}
		files[c.comp] = filepath.Join(dir, c.comp+".safetensors")
		if err := weights.WriteFile(files[c.comp], ts, nil); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	args := []string{"generate", "--model", model, "--prompt", "a lighthouse", "--width", "64", "--height", "64", "--steps", "2", "--seed", "3"}
	if code, _, errOut := runCmd(t, append(args, "--out", filepath.Join(dir, "dir.png"))...); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	code, _, errOut := runCmd(t, append(args, "--transformer", files["transformer"], "--text-encoder", files["text_encoder"],
		"--vae", files["vae"], "--tokenizer", filepath.Join(model, "tokenizer"), "--out", filepath.Join(dir, "single.png"))...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !bytes.Equal(readPNG(t, filepath.Join(dir, "dir.png")), readPNG(t, filepath.Join(dir, "single.png"))) {
		t.Error("single-file image differs from the diffusers-directory one")
	}
	// The VAE file passed as the transformer: a clear one-line error.
	code, _, errOut = runCmd(t, append(args, "--transformer", files["vae"], "--out", filepath.Join(dir, "bad.png"))...)
	if code != 1 || !strings.Contains(errOut, "holds no transformer tensors (found only vae)") {
		t.Errorf("vae as transformer: exit %d %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.png")); err == nil {
		t.Error("failed run wrote an image")
	}
}

func TestProgressLine(t *testing.T) {
	p := hub.Progress{File: "transformer/a.safetensors", Done: 3 << 30, Total: 12 << 30, Files: 5, FilesDone: 1,
		Rate: 100 << 20, ETA: 92 * time.Second}
	got := progressLine(p, 8)
	want := "[##......] 3.0 GiB / 12.0 GiB  100.0 MiB/s  ETA 1m32s  1/5 files  transformer/a.safetensors"
	if got != want {
		t.Errorf("progressLine\n got %q\nwant %q", got, want)
	}
	p.Finished, p.Done, p.ETA, p.FilesDone = true, p.Total, 0, 5
	if got := progressLine(p, 8); got != "[########] 12.0 GiB / 12.0 GiB  100.0 MiB/s  5/5 files" {
		t.Errorf("finished: %q", got)
	}
}
