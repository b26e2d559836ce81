package zimage

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights/hub"
	"github.com/zimage/zimage/weights/hub/hubtest"
)

// TestControlNetFromHub resolves ControlNet repository ids through a fake
// hub: a repository with two released single files needs the file named
// (only that one is downloaded), a diffusers-layout repository resolves to
// its directory; the pipeline then generates the fixture image, also from
// the cache with pulling disabled.
func TestControlNetFromHub(t *testing.T) {
	w, err := os.ReadFile(filepath.Join(fixturefs.Path(t, controlDir), "controlnet", "diffusion_pytorch_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(fixturefs.Path(t, controlDir), "controlnet", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	const repo = "alibaba-pai/Z-Image-Turbo-Fun-Controlnet-Union-2.0"
	fake := hubtest.New(t, repo, "", map[string][]byte{
		"Z-Image-Turbo-Fun-Controlnet-Union-2.0.safetensors": []byte("not this one"),
		"Z-Image-Turbo-Fun-Controlnet-Union-2.1.safetensors": w,
		"asset/pose.jpg": []byte("jpeg"),
		"README.md":      []byte("readme"),
	})
	c := &hub.Client{Endpoint: fake.Endpoint(), CacheDir: t.TempDir(), Backoff: time.Millisecond}
	o := &options{hub: c}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	_, err = resolveControlNet(context.Background(), repo, o, log)
	if err == nil || !strings.Contains(err.Error(), "name one") {
		t.Errorf("two files, none named: %v", err)
	}
	ref := repo + "/Z-Image-Turbo-Fun-Controlnet-Union-2.1.safetensors"
	fake.ResetRequests()
	path, err := resolveControlNet(context.Background(), ref, o, log)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "Z-Image-Turbo-Fun-Controlnet-Union-2.1.safetensors" {
		t.Errorf("resolved to %s", path)
	}
	for _, r := range fake.Requests() {
		if strings.Contains(r.Path, "2.0.safetensors") || strings.Contains(r.Path, "pose") || strings.Contains(r.Path, "README") {
			t.Errorf("fetched %s", r.Path)
		}
	}

	// The pipeline with it (config inferred from the single file), then
	// again from the cache only.
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	cc := controlCases(t)[0]
	for _, opts := range [][]Option{{WithHub(c)}, {WithHub(c), WithPull(false)}} {
		fake.ResetRequests()
		p, err := Load(context.Background(), model, append(opts, WithDevice("cpu"), WithControlNet(ref))...)
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.Run(context.Background(), cc.request(t))
		p.Close()
		if err != nil {
			t.Fatal(err)
		}
		checkReferencePNG(t, "image vs reference PNG", res, controlDir+"/"+cc.Name+".png")
	}
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("%d requests with pulling disabled", n)
	}

	// A diffusers-layout repository resolves to its snapshot directory.
	fake2 := hubtest.New(t, "hlky/tiny-controlnet", "", map[string][]byte{
		"config.json": cfg, "diffusion_pytorch_model.safetensors": w, "README.md": []byte("x"),
	})
	c2 := &hub.Client{Endpoint: fake2.Endpoint(), CacheDir: t.TempDir(), Backoff: time.Millisecond}
	path, err = resolveControlNet(context.Background(), "hlky/tiny-controlnet", &options{hub: c2}, log)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(path, "config.json")); err != nil || st.IsDir() {
		t.Errorf("resolved to %s: %v", path, err)
	}

	// Not a path nor a repository id; a repository the hub lacks.
	var me *ModelError
	if _, err := resolveControlNet(context.Background(), "./no/such/controlnet", o, log); !errors.As(err, &me) {
		t.Errorf("bad reference: %v", err)
	}
	if _, err := resolveControlNet(context.Background(), "Org/Missing", o, log); !errors.As(err, &me) {
		t.Errorf("missing repository: %v", err)
	}
}
