package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/weights"
)

func TestConvertCommand(t *testing.T) {
	src := filepath.Join(fixturefs.Path(t, "fixtures/tiny-z-image-turbo"), "transformer")
	dir := t.TempDir()
	f32 := filepath.Join(dir, "f32.safetensors")
	code, out, errOut := runCmd(t, "convert", "--to", "f32", src, f32)
	if code != 0 || !strings.Contains(out, "101 tensors in 1 file(s), 31,242,496 bytes of F32 data") {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	shards := filepath.Join(dir, "sharded", "diffusion_pytorch_model.safetensors")
	os.Mkdir(filepath.Dir(shards), 0o755)
	code, out, errOut = runCmd(t, "convert", "--to", "bf16", "--shard-size", "6MB", f32, shards)
	if code != 0 || !strings.Contains(out, "index.json: 101 tensors in 3 file(s), 15,621,248 bytes of BF16 data") {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	// bf16 → f32 → bf16 reproduces the original tensors bit for bit.
	a, err := weights.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := weights.Open(filepath.Dir(shards))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, n := range a.Names() {
		x, _ := a.Tensor(n)
		y, ok := b.Tensor(n)
		if !ok || string(x.Data) != string(y.Data) {
			t.Fatalf("%s differs after the round trip", n)
		}
	}
	if code, _, errOut := runCmd(t, "inspect", filepath.Dir(shards)); code != 0 {
		t.Errorf("inspect of converted shards: %s", errOut)
	}

	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"convert", src}, 2, "usage"},
		{[]string{"convert", "--to", "int8", src, f32}, 2, `--to "int8"`},
		{[]string{"convert", "--shard-size", "lots", src, f32}, 2, "--shard-size"},
		{[]string{"convert", filepath.Join(dir, "missing"), f32}, 1, "zimage convert: "},
	} {
		code, _, errOut := runCmd(t, c.args...)
		if code != c.code || !strings.Contains(errOut, c.msg) {
			t.Errorf("%v: exit %d, stderr %q", c.args, code, errOut)
		}
	}
}

func TestParseByteSize(t *testing.T) {
	for s, want := range map[string]int64{"5GB": 5e9, "5GiB": 5 << 30, "500mb": 500e6, "123": 123, "1.5KiB": 1536, "2 MB": 2e6} {
		if got, err := parseByteSize(s); err != nil || got != want {
			t.Errorf("%q: %d %v, want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "-1GB", "0", "GB", "1e30TB", "x"} {
		if _, err := parseByteSize(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}
