package sampler

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"sort"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
)

// stFile is a minimal test-only safetensors reader (header JSON + offsets),
// kept here so these tests do not depend on the weights package.
type stFile struct {
	path    string
	data    []byte
	tensors map[string]stTensor
}

type stTensor struct {
	DType   string `json:"dtype"`
	Shape   []int  `json:"shape"`
	Offsets [2]int `json:"data_offsets"`
}

// openFixture reads a fixture by its testdata-relative name, e.g.
// "fixtures/rng.safetensors".
func openFixture(t testing.TB, rel string) *stFile {
	t.Helper()
	path := fixturefs.Path(t, rel)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) < 8 {
		t.Fatalf("%s: too short", path)
	}
	n := binary.LittleEndian.Uint64(raw)
	if n > uint64(len(raw)-8) {
		t.Fatalf("%s: header length %d out of range", path, n)
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(raw[8:8+n], &hdr); err != nil {
		t.Fatalf("%s: header: %v", path, err)
	}
	f := &stFile{path: path, data: raw[8+n:], tensors: map[string]stTensor{}}
	for name, msg := range hdr {
		if name == "__metadata__" {
			continue
		}
		var ti stTensor
		if err := json.Unmarshal(msg, &ti); err != nil {
			t.Fatalf("%s: tensor %s: %v", path, name, err)
		}
		if ti.Offsets[0] < 0 || ti.Offsets[1] < ti.Offsets[0] || ti.Offsets[1] > len(f.data) {
			t.Fatalf("%s: tensor %s: offsets %v out of range", path, name, ti.Offsets)
		}
		f.tensors[name] = ti
	}
	return f
}

func (f *stFile) has(name string) bool { _, ok := f.tensors[name]; return ok }

func (f *stFile) names() []string {
	var out []string
	for n := range f.tensors {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (f *stFile) raw(t testing.TB, name, dtype string) ([]byte, stTensor) {
	t.Helper()
	ti, ok := f.tensors[name]
	if !ok {
		t.Fatalf("%s: no tensor %q", f.path, name)
	}
	if ti.DType != dtype {
		t.Fatalf("%s: tensor %s is %s, want %s", f.path, name, ti.DType, dtype)
	}
	return f.data[ti.Offsets[0]:ti.Offsets[1]], ti
}

func (f *stFile) f32(t testing.TB, name string) []float32 {
	t.Helper()
	b, _ := f.raw(t, name, "F32")
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func (f *stFile) i64(t testing.TB, name string) []int64 {
	t.Helper()
	b, _ := f.raw(t, name, "I64")
	out := make([]int64, len(b)/8)
	for i := range out {
		out[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out
}

func (f *stFile) u8(t testing.TB, name string) []byte {
	t.Helper()
	b, _ := f.raw(t, name, "U8")
	return b
}

// bitsEqual reports every element whose float32 bit pattern differs, up to a
// few, and fails the test if any does.
func bitsEqual(t testing.TB, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	bad := 0
	var maxAbs float64
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			if bad < 5 {
				t.Errorf("%s[%d] = %v (%#08x), want %v (%#08x)", what, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
			}
			bad++
			maxAbs = math.Max(maxAbs, math.Abs(float64(got[i])-float64(want[i])))
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d values differ (max |Δ| %.3g)", what, bad, len(got), maxAbs)
	}
}
