package zimage

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"

	"github.com/zimage/zimage/weights"
)

// TestGGUFReadBackByGGUFPy: GGUF files written by the converter (the tiny
// model, every quantized type) read back with llama.cpp's gguf-py give the
// same tensor names, types, shapes and dequantized values as zimage's
// reader. Needs ZIMAGE_GGUF_PY (a directory holding gguf-py's gguf
// package, see testdata/README.md) and python3 with numpy; skipped otherwise.
func TestGGUFReadBackByGGUFPy(t *testing.T) {
	py := os.Getenv("ZIMAGE_GGUF_PY")
	if py == "" {
		t.Skip("ZIMAGE_GGUF_PY not set")
	}
	_, here, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(here), "..", "testdata", "generators", "gguf_fixtures.py")
	tmp := t.TempDir()
	for _, dt := range []weights.DType{weights.F16, weights.BF16, weights.Q8_0, weights.Q5_1, weights.Q5_0, weights.Q4_1, weights.Q4_0, weights.Q6_K, weights.Q5_K, weights.Q4_K, weights.Q3_K, weights.Q2_K} {
		dit, te := writeTinyGGUF(t, tmp, dt)
		for _, f := range []string{dit, te} {
			cmd := exec.Command("/usr/bin/python3", script, "--readback", f)
			cmd.Env = append(os.Environ(), "GGUF_PY="+py)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s: gguf-py: %v\n%s", f, err, out)
			}
			var got map[string][]any
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			g, err := weights.OpenGGUF(f)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string][]any{}
			for _, n := range g.Names() {
				tt, _ := g.Tensor(n)
				v, err := tt.Float32()
				if err != nil {
					t.Fatal(err)
				}
				b := make([]byte, 4*len(v))
				weights.EncodeF32(b, v)
				h := sha256.Sum256(b)
				shape := make([]any, len(tt.Shape))
				for i, d := range tt.Shape {
					shape[i] = float64(d)
				}
				want[n] = []any{tt.DType.String(), shape, hex.EncodeToString(h[:])}
			}
			g.Close()
			if !reflect.DeepEqual(got, want) {
				for n, w := range want {
					if !reflect.DeepEqual(got[n], w) {
						t.Errorf("%s: tensor %s: gguf-py %v, zimage %v", filepath.Base(f), n, got[n], w)
					}
				}
				if len(got) != len(want) {
					t.Errorf("%s: gguf-py sees %d tensors, zimage %d", filepath.Base(f), len(got), len(want))
				}
			}
		}
	}
}
