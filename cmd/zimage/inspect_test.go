package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
)

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestInspectModel(t *testing.T) {
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	code, out, errOut := runCmd(t, "inspect", model)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"pipeline: ZImagePipeline",
		"transformer: ZImageTransformer2DModel (diffusers)",
		"dim 288, 6 heads (head_dim 48)",
		"3 shards (index diffusion_pytorch_model.safetensors.index.json)",
		"tensors     101, 7,810,624 parameters",
		"BF16: 101 tensors, 15,621,248 bytes",
		"text_encoder: Qwen3Model (transformers)",
		"tensors     46,",
		"vae: AutoencoderKL (diffusers)",
		"tensors     240,",
		"scheduler: FlowMatchEulerDiscreteScheduler",
		"shift 3,",
		"tokenizer: Qwen2Tokenizer",
		"total: 14,154,979 parameters, 28,309,958 bytes",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "check       ok"); n != 3 {
		t.Errorf("%d components checked ok, want 3:\n%s", n, out)
	}
}

func TestInspectFileIndexComponent(t *testing.T) {
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	shard := filepath.Join(model, "transformer", "diffusion_pytorch_model-00002-of-00003.safetensors")
	code, out, errOut := runCmd(t, "inspect", "-tensors", shard)
	if code != 0 || !strings.Contains(out, "safetensors file") || !strings.Contains(out, "tensors     35,") ||
		!strings.Contains(out, "cap_embedder.1.weight") {
		t.Errorf("shard: exit %d\n%s%s", code, out, errOut)
	}
	index := filepath.Join(model, "transformer", "diffusion_pytorch_model.safetensors.index.json")
	if code, out, _ := runCmd(t, "inspect", index); code != 0 || !strings.Contains(out, "shard index") || !strings.Contains(out, "tensors     101,") {
		t.Errorf("index: exit %d\n%s", code, out)
	}
	for _, c := range []string{"transformer", "text_encoder", "vae"} {
		if code, out, errOut := runCmd(t, "inspect", filepath.Join(model, c)); code != 0 || !strings.Contains(out, "check       ok") {
			t.Errorf("%s: exit %d\n%s%s", c, code, out, errOut)
		}
	}
	if code, _, errOut := runCmd(t, "inspect"); code != 2 || !strings.Contains(errOut, "usage") {
		t.Errorf("no args: exit %d %q", code, errOut)
	}
}

// forged builds a safetensors file from a raw header and data size.
func forged(hdr string, data int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	b = append(b, hdr...)
	return append(b, make([]byte, data)...)
}

func TestInspectCorrupt(t *testing.T) {
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	shard, err := os.ReadFile(filepath.Join(model, "transformer", "diffusion_pytorch_model-00003-of-00003.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A copy of the transformer with its last shard missing.
	tr := filepath.Join(dir, "transformer")
	os.Mkdir(tr, 0o755)
	for _, n := range []string{"diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model-00001-of-00003.safetensors", "diffusion_pytorch_model-00002-of-00003.safetensors"} {
		b, _ := os.ReadFile(filepath.Join(model, "transformer", n))
		os.WriteFile(filepath.Join(tr, n), b, 0o644)
	}
	for _, c := range []struct {
		name, path, reason string
	}{
		{"truncated", write("trunc.safetensors", shard[:len(shard)-100]), "extends past the data area"},
		{"truncated header", write("trunc2.safetensors", shard[:50]), "exceeds the file size"},
		{"bad header JSON", write("json.safetensors", forged(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]`, 4)), "not valid JSON"},
		{"overlapping offsets", write("overlap.safetensors", forged(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8)), "overlaps"},
		{"unknown dtype", write("dtype.safetensors", forged(`{"a":{"dtype":"F12","shape":[1],"data_offsets":[0,4]}}`, 4)), `unknown dtype "F12"`},
		{"missing shard", tr, "no such file"},
		{"missing path", filepath.Join(dir, "nope"), "no such file"},
	} {
		code, out, errOut := runCmd(t, "inspect", c.path)
		if code != 1 || !strings.HasPrefix(errOut, "zimage inspect: ") || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, c.reason) {
			t.Errorf("%s: exit %d, stderr %q (stdout %q)", c.name, code, errOut, out)
		}
	}
}

// A model directory whose VAE lacks a tensor: the report names it, exit 1.
func TestInspectModelCheckFailure(t *testing.T) {
	src := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	dir := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dir, rel), 0o755)
		}
		return os.Symlink(p, filepath.Join(dir, rel))
	})
	if err != nil {
		t.Fatal(err)
	}
	vae := filepath.Join(dir, "vae", "diffusion_pytorch_model.safetensors")
	f, err := weights.OpenFile(vae)
	if err != nil {
		t.Fatal(err)
	}
	var ts []*weights.Tensor
	for _, n := range f.Names() {
		if n != "decoder.conv_out.weight" {
			tt, _ := f.Tensor(n)
			ts = append(ts, tt)
		}
	}
	if err := weights.WriteFile(vae, ts, nil); err != nil { // replaces the symlink
		t.Fatal(err)
	}
	f.Close()
	code, out, errOut := runCmd(t, "inspect", dir)
	if code != 1 || !strings.Contains(out, "check       FAILED: 1 missing") || !strings.Contains(out, "missing decoder.conv_out.weight") ||
		!strings.HasPrefix(errOut, "zimage inspect: weights: vae") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("exit %d\nstdout:\n%s\nstderr: %q", code, out, errOut)
	}
	if strings.Count(out, "check       ok") != 2 {
		t.Errorf("other components not reported ok:\n%s", out)
	}
}
