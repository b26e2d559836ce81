package weights

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func f32Tensor(name string, vals ...float32) *Tensor {
	b := make([]byte, 4*len(vals))
	EncodeF32(b, vals)
	return &Tensor{Name: name, DType: F32, Shape: []int{len(vals)}, Data: b}
}

func mustWrite(t *testing.T, path string, ts ...*Tensor) {
	t.Helper()
	if err := WriteFile(path, ts, nil); err != nil {
		t.Fatal(err)
	}
}

func writeIndex(t *testing.T, path string, wm map[string]string) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": 1}, "weight_map": wm})
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// shardedDir writes two shards holding a,b and c plus their index.
func shardedDir(t *testing.T) string {
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "m-1.safetensors"), f32Tensor("a", 1), f32Tensor("b", 2, 3))
	mustWrite(t, filepath.Join(dir, "m-2.safetensors"), f32Tensor("c", 4))
	writeIndex(t, filepath.Join(dir, "m.safetensors.index.json"), map[string]string{"a": "m-1.safetensors", "b": "m-1.safetensors", "c": "m-2.safetensors"})
	return dir
}

func TestOpenIndex(t *testing.T) {
	dir := shardedDir(t)
	for _, p := range []string{dir, filepath.Join(dir, "m.safetensors.index.json")} {
		s, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(s.Names(), ","); got != "a,b,c" || s.Len() != 3 || len(s.Files()) != 2 {
			t.Errorf("%s: names %s files %v", p, got, s.Files())
		}
		if s.Index() != filepath.Join(dir, "m.safetensors.index.json") || s.IndexTotalSize() != 1 {
			t.Errorf("index %q total %d", s.Index(), s.IndexTotalSize())
		}
		c, _ := s.Tensor("c")
		if v, _ := c.Float32(); v[0] != 4 || c.File != filepath.Join(dir, "m-2.safetensors") {
			t.Errorf("c = %v from %s", v, c.File)
		}
		s.Close()
	}
}

func TestOpenIndexErrors(t *testing.T) {
	for _, c := range []struct {
		name   string
		edit   func(dir string)
		tensor string
		reason string
	}{
		{"missing shard", func(d string) { os.Remove(filepath.Join(d, "m-2.safetensors")) }, "", "no such file"},
		{"tensor not in its shard", func(d string) {
			writeIndex(t, filepath.Join(d, "m.safetensors.index.json"), map[string]string{"a": "m-1.safetensors", "b": "m-1.safetensors", "c": "m-2.safetensors", "d": "m-2.safetensors"})
		}, "d", "not in its shard"},
		{"tensor in shard but not listed", func(d string) {
			writeIndex(t, filepath.Join(d, "m.safetensors.index.json"), map[string]string{"a": "m-1.safetensors", "c": "m-2.safetensors"})
		}, "b", "not in weight_map"},
		{"duplicate across shards", func(d string) {
			mustWrite(t, filepath.Join(d, "m-2.safetensors"), f32Tensor("c", 4), f32Tensor("a", 9))
		}, "a", "weight_map places it in"},
		{"path traversal", func(d string) {
			writeIndex(t, filepath.Join(d, "m.safetensors.index.json"), map[string]string{"a": "../m-1.safetensors"})
		}, "a", "plain relative path"},
		{"absolute path", func(d string) {
			writeIndex(t, filepath.Join(d, "m.safetensors.index.json"), map[string]string{"a": filepath.Join(d, "m-1.safetensors")})
		}, "a", "plain relative path"},
		{"corrupt shard", func(d string) {
			os.WriteFile(filepath.Join(d, "m-2.safetensors"), rawFile(`{"c":{"dtype":"X","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), 0o644)
		}, "", "unknown dtype"},
		{"not an object", func(d string) { os.WriteFile(filepath.Join(d, "m.safetensors.index.json"), []byte(`[]`), 0o644) }, "", "not a JSON object"},
		{"no weight_map", func(d string) {
			os.WriteFile(filepath.Join(d, "m.safetensors.index.json"), []byte(`{"metadata":{}}`), 0o644)
		}, "", `missing "weight_map"`},
		{"duplicate key", func(d string) {
			os.WriteFile(filepath.Join(d, "m.safetensors.index.json"), []byte(`{"weight_map":{"a":"m-1.safetensors","a":"m-2.safetensors"}}`), 0o644)
		}, "a", "listed twice"},
		{"shard not a string", func(d string) {
			os.WriteFile(filepath.Join(d, "m.safetensors.index.json"), []byte(`{"weight_map":{"a":1}}`), 0o644)
		}, "a", "not a string"},
	} {
		dir := shardedDir(t)
		c.edit(dir)
		_, err := Open(dir)
		var ie *IndexError
		if !errors.As(err, &ie) {
			t.Errorf("%s: got %v, want an *IndexError", c.name, err)
			continue
		}
		if ie.Tensor != c.tensor || !strings.Contains(err.Error(), c.reason) || !strings.HasPrefix(err.Error(), "weights: index ") {
			t.Errorf("%s: got %q (tensor %q)", c.name, err, ie.Tensor)
		}
	}
}

func TestOpenDirChoice(t *testing.T) {
	dir := t.TempDir()
	var se *SetError
	if _, err := Open(dir); !errors.As(err, &se) {
		t.Errorf("empty dir: %v", err)
	}
	mustWrite(t, filepath.Join(dir, "x.safetensors"), f32Tensor("x", 1))
	s, err := Open(dir)
	if err != nil || s.Names()[0] != "x" {
		t.Fatalf("lone file: %v", err)
	}
	s.Close()
	mustWrite(t, filepath.Join(dir, "y.safetensors"), f32Tensor("y", 1))
	if _, err := Open(dir); !errors.As(err, &se) || !strings.Contains(err.Error(), "several") {
		t.Errorf("two files: %v", err)
	}
	mustWrite(t, filepath.Join(dir, "model.safetensors"), f32Tensor("m", 1))
	if s, err := Open(dir); err != nil || s.Names()[0] != "m" {
		t.Errorf("standard name not preferred: %v", err)
	} else {
		s.Close()
	}
	writeIndex(t, filepath.Join(dir, "z.safetensors.index.json"), map[string]string{"x": "x.safetensors"})
	if s, err := Open(dir); err != nil || s.Index() == "" {
		t.Errorf("index not preferred: %v", err)
	} else {
		s.Close()
	}
}

func TestRename(t *testing.T) {
	s, err := Open(shardedDir(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := s.Rename(func(n string) string {
		if n == "b" {
			return ""
		}
		return "p." + n
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Names(), ","); got != "p.a,p.c" {
		t.Errorf("renamed: %s", got)
	}
	a, _ := r.Tensor("p.a")
	if a.Name != "p.a" {
		t.Errorf("tensor name %q", a.Name)
	}
	if orig, _ := s.Tensor("a"); orig.Name != "a" {
		t.Error("Rename changed the source set")
	}
	var se *SetError
	if _, err := s.Rename(func(string) string { return "same" }); !errors.As(err, &se) || se.Tensor != "same" {
		t.Errorf("collision: %v", err)
	}
}

func TestShardedEqualsSingle(t *testing.T) {
	dir := filepath.Join(tinyModel(t), "transformer")
	sharded, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer sharded.Close()
	var ts []*Tensor
	for _, n := range sharded.Names() {
		tt, _ := sharded.Tensor(n)
		ts = append(ts, tt)
	}
	single := filepath.Join(t.TempDir(), "diffusion_pytorch_model.safetensors")
	if err := WriteFile(single, ts, sharded.Metadata()); err != nil {
		t.Fatal(err)
	}
	one, err := Open(filepath.Dir(single))
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	if !slices.Equal(one.Names(), sharded.Names()) {
		t.Fatalf("names differ: %d vs %d", one.Len(), sharded.Len())
	}
	for _, n := range one.Names() {
		a, _ := one.Tensor(n)
		b, _ := sharded.Tensor(n)
		if a.DType != b.DType || !slices.Equal(a.Shape, b.Shape) || string(a.Data) != string(b.Data) {
			t.Errorf("%s differs", n)
		}
	}
	cfg := DefaultDiTConfig()
	if err := decodeConfigFile(filepath.Join(dir, "config.json"), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := CheckDiT(cfg, one); err != nil {
		t.Error(err)
	}
}
