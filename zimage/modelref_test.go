package zimage

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/weights/hub"
	"github.com/zimage/zimage/weights/hub/hubtest"
)

// refRequest is the 64×64 e2e case the model-reference tests generate.
var refRequest = Request{Prompt: "a red fox in the snow", Width: 64, Height: 64, Seed: 42, Steps: 2}

var (
	refImageOnce sync.Once
	refImage     []byte
)

// referenceImage is refRequest generated from the diffusers directory.
func referenceImage(t *testing.T) []byte {
	t.Helper()
	refImageOnce.Do(func() {
		res, err := tinyPipeline(t).Run(context.Background(), refRequest)
		if err != nil {
			t.Fatal(err)
		}
		refImage = res.Image.Pix
	})
	if refImage == nil {
		t.Fatal("no reference image")
	}
	return refImage
}

// sameImage loads a pipeline, generates refRequest and compares the pixels
// with the diffusers-directory image: they must be identical.
func sameImage(t *testing.T, ref string, opts ...Option) *Pipeline {
	t.Helper()
	p, err := Load(context.Background(), ref, append([]Option{WithDevice("cpu")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	res, err := p.Run(context.Background(), refRequest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.Image.Pix, referenceImage(t)) {
		t.Error("image differs from the one generated from the diffusers directory")
	}
	return p
}

// comfyFiles writes single-file versions of the tiny model: a ComfyUI-style
// transformer (fused qkv), text encoder (no "model." prefix) and FLUX VAE,
// and an all-in-one checkpoint holding all three under their prefixes.
func comfyFiles(t *testing.T) (dit, te, vae, aio string) {
	t.Helper()
	m, err := weights.OpenModel(fixturefs.Path(t, "fixtures/tiny-z-image-turbo"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var all []*weights.Tensor
	write := func(name, comp, prefix string, layout weights.Layout, open func() (*weights.Set, error)) string {
		s, err := open()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ts, err := weights.SingleFileTensors(s, comp, layout, "", "2-1")
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := weights.WriteFile(path, ts, nil); err != nil {
			t.Fatal(err)
		}
		aioTs, _ := weights.SingleFileTensors(s, comp, layout, prefix, "2-1")
		for _, x := range aioTs { // copy the bytes: s is closed on return
			c := *x
			c.Data = append([]byte(nil), x.Data...)
			all = append(all, &c)
		}
		return path
	}
	dit = write("z_image_turbo_bf16.safetensors", weights.CompTransformer, "model.diffusion_model.", weights.LayoutOriginal, m.OpenTransformer)
	te = write("qwen_3_4b.safetensors", weights.CompTextEncoder, "text_encoders.qwen3_4b.transformer.", weights.LayoutOriginal, m.OpenTextEncoder)
	vae = write("ae.safetensors", weights.CompVAE, "vae.", weights.LayoutOriginal, m.OpenVAE)
	aio = filepath.Join(dir, "aio.safetensors")
	if err := weights.WriteFile(aio, all, nil); err != nil {
		t.Fatal(err)
	}
	return dit, te, vae, aio
}

// TestSingleFilesSameImage: the ComfyUI-style files and an all-in-one
// checkpoint of the fixture model generate the same image as its diffusers
// directory (configs and tokenizer from that directory).
func TestSingleFilesSameImage(t *testing.T) {
	dit, te, vae, aio := comfyFiles(t)
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	p := sameImage(t, model, WithSingleFiles(dit, te, vae, ""))
	for c, want := range map[string]string{weights.CompTransformer: dit, weights.CompTextEncoder: te, weights.CompVAE: vae} {
		if path, part, _ := p.Model().Source(c); path != want || c != weights.CompTextEncoder && part.Layout != weights.LayoutOriginal {
			t.Errorf("%s from %s (%s)", c, path, part.Layout)
		}
	}
	sameImage(t, model, WithSingleFiles(aio, "", "", filepath.Join(model, "tokenizer", "tokenizer.json")))

	// Every part as a file but Z-Image-Turbo configs: the tiny shapes do not fit.
	_, err := Load(context.Background(), "", WithSingleFiles(dit, te, vae, model))
	var tse *weights.TensorSetError
	if !errors.As(err, &tse) || !strings.Contains(err.Error(), "zimage: load "+dit) {
		t.Errorf("tiny files with default configs: %v", err)
	}
	if _, err := Load(context.Background(), "./no/such/dir"); err == nil || !strings.Contains(err.Error(), "not a Hugging Face repository id") {
		t.Errorf("missing dir: %v", err)
	}
}

// fakeHubClient serves the fixture model as DefaultModel.
func fakeHubClient(t *testing.T) (*hubtest.Server, *hub.Client) {
	fake := hubtest.New(t, DefaultModel, fixturefs.Path(t, "fixtures/tiny-z-image-turbo"),
		map[string][]byte{"transformer/diffusion_pytorch_model.fp16.safetensors": []byte("unused")})
	return fake, &hub.Client{Endpoint: fake.Endpoint(), CacheDir: t.TempDir(), Backoff: time.Millisecond}
}

// TestLoadFromHub generates from a repository id served by a fake hub: the
// first Load downloads (with progress), later ones use the cache without a
// request; a hub cache folder and snapshot work as paths.
func TestLoadFromHub(t *testing.T) {
	fake, c := fakeHubClient(t)
	var mu sync.Mutex
	var last hub.Progress
	progress := func(p hub.Progress) { mu.Lock(); last = p; mu.Unlock() }

	if _, err := Load(context.Background(), DefaultModel, WithHub(c), WithPull(false)); err == nil || !strings.Contains(err.Error(), "zimage pull") {
		t.Errorf("WithPull(false) on an empty cache: %v", err)
	}
	if len(fake.Requests()) != 0 {
		t.Error("WithPull(false) made requests")
	}

	p := sameImage(t, DefaultModel+"@main", WithHub(c), WithDownloadProgress(progress))
	if !last.Finished || last.Done != last.Total || last.Total == 0 {
		t.Errorf("last progress %+v", last)
	}
	snap := p.Model().Dir
	if filepath.Base(filepath.Dir(snap)) != "snapshots" {
		t.Errorf("model dir %s is not a snapshot", snap)
	}
	for _, r := range fake.Requests() {
		if strings.Contains(r.Path, ".fp16.") {
			t.Errorf("fetched %s", r.Path)
		}
	}

	fake.ResetRequests()
	sameImage(t, DefaultModel, WithHub(c), WithPull(false))
	// The environment configures the default client.
	t.Setenv("HF_HUB_CACHE", c.CacheDir)
	t.Setenv("HF_ENDPOINT", fake.Endpoint())
	t.Setenv("HF_HUB_OFFLINE", "1")
	sameImage(t, "")
	sameImage(t, c.RepoDir(DefaultModel))
	sameImage(t, snap)
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("loads from a complete cache made %d requests", n)
	}
	t.Setenv("HF_HUB_CACHE", t.TempDir())
	if _, err := Load(context.Background(), DefaultModel); !errors.Is(err, hub.ErrOffline) {
		t.Errorf("offline, empty cache: %v", err)
	}
}

// TestLoadConfigsFromHub: single files without a tokenizer take configs and
// tokenizer from the default repository, which downloads no weights.
func TestLoadConfigsFromHub(t *testing.T) {
	fake, c := fakeHubClient(t)
	dit, te, vae, _ := comfyFiles(t)
	sameImage(t, "", WithHub(c), WithSingleFiles(dit, te, vae, ""))
	for _, r := range fake.Requests() {
		if strings.Contains(r.Path, ".safetensors") {
			t.Errorf("configs-only pull fetched %s %s", r.Method, r.Path)
		}
	}
}

// TestLoadConvertsF32: a float32 transformer is converted to bf16 once (an
// exact round trip for the bf16 fixture, so the image is identical) and the
// copy reused; WithF32Conversion(false) keeps float32.
func TestLoadConvertsF32(t *testing.T) {
	src := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	model := t.TempDir()
	for _, d := range []string{"scheduler", "text_encoder", "tokenizer", "vae", "model_index.json"} {
		if err := os.Symlink(filepath.Join(src, d), filepath.Join(model, d)); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(model, "transformer"), 0o755)
	cfg, _ := os.ReadFile(filepath.Join(src, "transformer", "config.json"))
	os.WriteFile(filepath.Join(model, "transformer", "config.json"), cfg, 0o644)
	if err := weights.Convert(filepath.Join(src, "transformer"), filepath.Join(model, "transformer", "diffusion_pytorch_model.safetensors"), weights.F32); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	for range 2 {
		p := sameImage(t, model, WithConvertCache(cache))
		path, _, converted := p.Model().Source(weights.CompTransformer)
		if !converted || filepath.Dir(path) != cache {
			t.Errorf("transformer from %s (converted %v)", path, converted)
		}
		if _, _, c := p.Model().Source(weights.CompTextEncoder); c {
			t.Error("bf16 text encoder converted")
		}
	}
	if ents, _ := os.ReadDir(cache); len(ents) != 1 {
		t.Errorf("%d entries in the conversion cache, want 1", len(ents))
	}
	p := sameImage(t, model, WithF32Conversion(false))
	if _, _, converted := p.Model().Source(weights.CompTransformer); converted {
		t.Error("converted despite WithF32Conversion(false)")
	}
}

// toF8E4M3 rounds v to the nearest float8 e4m3fn value (ties to the even
// code), saturating at ±448.
func toF8E4M3(v float32) byte {
	tab := weights.F8E4M3Table()
	sign := byte(0)
	if v < 0 {
		sign, v = 0x80, -v
	}
	lo, hi := 0, 0x7e // codes 0..0x7e are the non-negative finite values, ascending
	if v >= tab[hi] {
		return sign | byte(hi)
	}
	for hi-lo > 1 {
		if mid := (lo + hi) / 2; tab[mid] <= v {
			lo = mid
		} else {
			hi = mid
		}
	}
	c := lo
	if d0, d1 := v-tab[lo], tab[hi]-v; d1 < d0 || d1 == d0 && hi%2 == 0 {
		c = hi
	}
	return sign | byte(c)
}

// TestLoadFP8: a single-file transformer whose matrices are float8 e4m3fn
// (norms and biases kept in bf16, as such files do) loads as is — the CPU
// backend dequantises while packing — and generates an image close to the
// bf16 one.
func TestLoadFP8(t *testing.T) {
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	m, err := weights.OpenModel(model)
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.OpenTransformer()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ts, err := weights.SingleFileTensors(s, weights.CompTransformer, weights.LayoutOriginal, "", "2-1")
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range ts {
		if len(x.Shape) != 2 || x.Shape[0] == 1 { // matrices only (not the pad tokens)
			continue
		}
		v, err := x.Float32()
		if err != nil {
			t.Fatal(err)
		}
		q := make([]byte, len(v))
		for j, f := range v {
			q[j] = toF8E4M3(f)
		}
		ts[i] = &weights.Tensor{Name: x.Name, DType: weights.F8E4M3, Shape: x.Shape, Data: q}
	}
	file := filepath.Join(t.TempDir(), "z_image_turbo_fp8_e4m3fn.safetensors")
	if err := weights.WriteFile(file, ts, nil); err != nil {
		t.Fatal(err)
	}
	p, err := Load(context.Background(), model, WithDevice("cpu"), WithSingleFiles(file, "", "", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	set, err := p.Model().OpenTransformer()
	if err != nil {
		t.Fatal(err)
	}
	if q, _ := set.Tensor("layers.0.attention.to_k.weight"); q.DType != weights.F8E4M3 {
		t.Errorf("to_k is %s, want F8_E4M3 views", q.DType)
	}
	set.Close()
	res, err := p.Run(context.Background(), refRequest)
	if err != nil {
		t.Fatal(err)
	}
	ref := referenceImage(t)
	var sum float64
	for i := range ref {
		d := float64(res.Image.Pix[i]) - float64(ref[i])
		sum += max(d, -d)
	}
	mean := sum / float64(len(ref))
	t.Logf("fp8 vs bf16 image: mean |Δ| %.2f levels", mean)
	if mean > 20 {
		t.Errorf("fp8 image too far from the bf16 one: mean |Δ| %.2f", mean)
	}
}
