package weights

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
)

// fixtureTensors is the "tensors" listing of a fixture JSON file.
type fixtureTensors map[string]struct {
	DType string `json:"dtype"`
	Shape []int  `json:"shape"`
}

var torchDTypes = map[string]DType{"float32": F32, "int64": I64, "uint8": U8, "bfloat16": BF16}

// checkAgainstListing opens a golden safetensors file and compares every
// tensor with the dtype and shape its JSON lists.
func checkAgainstListing(t *testing.T, file string, want fixtureTensors) {
	t.Helper()
	f, err := OpenFile(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Len() != len(want) {
		t.Errorf("%s: %d tensors, listing has %d", file, f.Len(), len(want))
	}
	seen := map[DType]int{}
	for name, w := range want {
		got, ok := f.Tensor(name)
		if !ok {
			t.Errorf("%s: %s missing", file, name)
			continue
		}
		if got.DType != torchDTypes[w.DType] || !slices.Equal(got.Shape, w.Shape) {
			t.Errorf("%s: %s is %s%v, listing says %s%v", file, name, got.DType, got.Shape, w.DType, w.Shape)
		}
		seen[got.DType]++
		if got.DType.IsFloat() {
			if _, err := got.Float32(); err != nil {
				t.Error(err)
			}
		} else if _, err := got.Float32(); err == nil {
			t.Errorf("%s: %s (%s) decoded to float32", file, name, got.DType)
		}
	}
	t.Logf("%s: %d tensors %v", filepath.Base(file), f.Len(), seen)
}

func TestGoldenFixtures(t *testing.T) {
	dir := fixturefs.Path(t, "fixtures")
	for _, name := range []string{"text_encoder", "dit", "scheduler", "vae", "rng"} {
		var listing struct{ Tensors fixtureTensors }
		b, err := os.ReadFile(filepath.Join(dir, name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &listing); err != nil {
			t.Fatal(err)
		}
		checkAgainstListing(t, filepath.Join(dir, name+".safetensors"), listing.Tensors)
	}
	var e2e struct {
		Cases []struct {
			Name    string
			Tensors fixtureTensors
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "e2e", "e2e.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &e2e); err != nil {
		t.Fatal(err)
	}
	if len(e2e.Cases) == 0 {
		t.Fatal("no e2e cases")
	}
	for _, c := range e2e.Cases {
		checkAgainstListing(t, filepath.Join(dir, "e2e", c.Name+".safetensors"), c.Tensors)
	}
}
