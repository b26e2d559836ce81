package weights

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rawFile assembles a safetensors file from a header string and a data area,
// without any validation, so tests can forge broken files.
func rawFile(hdr string, data []byte) []byte {
	b := make([]byte, 8, 8+len(hdr)+len(data))
	binary.LittleEndian.PutUint64(b, uint64(len(hdr)))
	b = append(b, hdr...)
	return append(b, data...)
}

func TestParseHeaderValid(t *testing.T) {
	for _, c := range []struct {
		name, hdr string
		data      int
		names     []string
	}{
		{"basic", `{"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},"a":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]}}`, 16, []string{"a", "b"}},
		{"metadata and padding", `{"__metadata__":{"format":"pt"},"x":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}    `, 8, []string{"x"}},
		{"scalar and empty", `{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"e":{"dtype":"F16","shape":[0,3],"data_offsets":[4,4]},"z":{"dtype":"U8","shape":[3],"data_offsets":[4,7]}}`, 7, []string{"s", "e", "z"}},
		{"gaps and trailing bytes", `{"a":{"dtype":"U8","shape":[1],"data_offsets":[3,4]},"b":{"dtype":"U8","shape":[1],"data_offsets":[6,7]}}`, 10, []string{"a", "b"}},
		{"empty", `{}`, 0, nil},
		{"whitespace", " {\n \"a\" : {\"dtype\" : \"F16\", \"shape\": [ 1 ], \"data_offsets\": [0, 2]} } \n", 2, []string{"a"}},
		{"unknown keys ignored", `{"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2],"extra":1}}`, 2, []string{"a"}},
	} {
		h, err := parseFileBytes(c.name, rawFile(c.hdr, make([]byte, c.data)))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		var got []string
		for _, e := range h.entries {
			got = append(got, e.name)
		}
		if strings.Join(got, ",") != strings.Join(c.names, ",") {
			t.Errorf("%s: names %v, want %v (offset order)", c.name, got, c.names)
		}
	}
}

func TestParseHeaderInvalid(t *testing.T) {
	ok := `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	cases := []struct {
		name   string
		file   []byte
		tensor string
		reason string
	}{
		{"empty file", nil, "", "too short"},
		{"short prefix", []byte{1, 2, 3}, "", "too short"},
		{"absurd length", func() []byte { b := make([]byte, 16); binary.LittleEndian.PutUint64(b, 1<<62); return b }(), "", "exceeds the"},
		{"length past EOF", func() []byte { b := rawFile(ok, make([]byte, 8)); return b[:20] }(), "", "exceeds the file size"},
		{"length just past EOF", func() []byte { b := make([]byte, 12); binary.LittleEndian.PutUint64(b, 5); return b }(), "", "exceeds the file size"},
		{"not JSON", rawFile(`{"a":`, nil), "a", "not valid JSON: unexpected end"},
		{"not JSON 2", rawFile(`{"a" 1}`, nil), "a", "not valid JSON"},
		{"unclosed", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}`, make([]byte, 4)), "", "not valid JSON: unexpected end"},
		{"JSON array", rawFile(`[1,2]`, nil), "", "not a JSON object"},
		{"JSON null", rawFile(`null`, nil), "", "not a JSON object"},
		{"trailing garbage", rawFile(ok+`xx`, make([]byte, 8)), "", "trailing data"},
		{"two objects", rawFile(ok+`{}`, make([]byte, 8)), "", "trailing data"},
		{"entry not object", rawFile(`{"a":[1]}`, nil), "a", "not a JSON object"},
		{"entry string", rawFile(`{"a":"F32"}`, nil), "a", "not a JSON object"},
		{"missing dtype", rawFile(`{"a":{"shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), "a", `missing "dtype"`},
		{"missing shape", rawFile(`{"a":{"dtype":"F32","data_offsets":[0,4]}}`, make([]byte, 4)), "a", `missing "shape"`},
		{"missing offsets", rawFile(`{"a":{"dtype":"F32","shape":[1]}}`, make([]byte, 4)), "a", `missing "data_offsets"`},
		{"unknown dtype", rawFile(`{"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), "a", `unknown dtype "F33"`},
		{"invalid dtype name", rawFile(`{"a":{"dtype":"INVALID","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), "a", "unknown dtype"},
		{"dtype not string", rawFile(`{"a":{"dtype":7,"shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), "a", "bad entry"},
		{"negative dim", rawFile(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, make([]byte, 4)), "a", "negative dimension"},
		{"fractional dim", rawFile(`{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, make([]byte, 4)), "a", "bad entry"},
		{"shape/span mismatch", rawFile(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, make([]byte, 8)), "a", "needs 12 bytes"},
		{"overflowing shape", rawFile(`{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}}`, nil), "a", "more than 2^64"},
		{"wrapping shape", rawFile(`{"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`, nil), "a", "more than 2^64"},
		{"one offset", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}`, make([]byte, 4)), "a", "data_offsets has 1 values"},
		{"negative offset", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}`, make([]byte, 4)), "a", "negative data offset"},
		{"begin after end", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}`, make([]byte, 8)), "a", "begin 8 > end 4"},
		{"past data area", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 4)), "a", "extends past the data area"},
		{"huge offset", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[99999999999999999999,0]}}`, nil), "a", "bad entry"},
		{"overlap", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)), "b", `overlaps tensor "a"`},
		{"same range", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), "b", "overlaps"},
		{"duplicate name", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)), "a", "duplicate entry"},
		{"empty name", rawFile(`{"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), "", "empty tensor name"},
		{"metadata not strings", rawFile(`{"__metadata__":{"n":1}}`, nil), "", "__metadata__ is not an object of strings"},
		{"metadata array", rawFile(`{"__metadata__":[]}`, nil), "", "__metadata__"},
	}
	for _, c := range cases {
		_, err := parseFileBytes("f.safetensors", c.file)
		var he *HeaderError
		if !errors.As(err, &he) {
			t.Errorf("%s: got %v, want a *HeaderError", c.name, err)
			continue
		}
		if he.File != "f.safetensors" || he.Tensor != c.tensor || !strings.Contains(he.Reason, c.reason) {
			t.Errorf("%s: got %q (tensor %q), want tensor %q and reason containing %q", c.name, err, he.Tensor, c.tensor, c.reason)
		}
		if !strings.HasPrefix(err.Error(), "weights: f.safetensors: ") {
			t.Errorf("%s: message %q lacks the package and file prefix", c.name, err)
		}
	}
}

func TestOpenFileAndWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.safetensors")
	tensors := []*Tensor{
		{Name: "w", DType: BF16, Shape: []int{2, 3}, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
		{Name: "ids", DType: I64, Shape: []int{1}, Data: []byte{7, 0, 0, 0, 0, 0, 0, 0}},
		{Name: "s", DType: F32, Shape: nil, Data: []byte{0, 0, 128, 63}},
		{Name: "empty", DType: F16, Shape: []int{0}, Data: nil},
	}
	if err := WriteFile(path, tensors, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
	raw, _ := os.ReadFile(path)
	if n := binary.LittleEndian.Uint64(raw); n%8 != 0 {
		t.Errorf("header length %d is not padded to 8", n)
	}
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := strings.Join(f.Names(), ","); got != "w,ids,s,empty" {
		t.Errorf("Names = %s", got)
	}
	if f.Metadata()["format"] != "pt" || f.Path() != path || f.Len() != 4 {
		t.Errorf("metadata %v path %s len %d", f.Metadata(), f.Path(), f.Len())
	}
	for _, want := range tensors {
		got, ok := f.Tensor(want.Name)
		if !ok || got.DType != want.DType || len(got.Shape) != len(want.Shape) || string(got.Data) != string(want.Data) || got.File != path {
			t.Errorf("%s: got %+v", want.Name, got)
		}
	}
	s, _ := f.Tensor("s")
	if v, err := s.Float32(); err != nil || v[0] != 1 {
		t.Errorf("scalar: %v %v", v, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	// Invalid inputs to WriteFile.
	bad := [][]*Tensor{
		{{Name: "a", DType: F32, Shape: []int{2}, Data: make([]byte, 4)}},
		{{Name: "a", DType: F32, Shape: []int{1}, Data: make([]byte, 4)}, {Name: "a", DType: F32, Shape: []int{1}, Data: make([]byte, 4)}},
		{{Name: "", DType: F32, Shape: []int{1}, Data: make([]byte, 4)}},
		{{Name: "__metadata__", DType: F32, Shape: []int{1}, Data: make([]byte, 4)}},
		{{Name: "a", DType: Invalid, Shape: []int{1}, Data: make([]byte, 4)}},
		{{Name: "a", DType: F32, Shape: []int{-1}, Data: nil}},
		{nil},
	}
	for i, ts := range bad {
		if err := WriteFile(filepath.Join(dir, "bad.safetensors"), ts, nil); err == nil {
			t.Errorf("bad case %d accepted", i)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.safetensors.tmp")); !os.IsNotExist(err) {
		t.Error("failed write left a temporary file")
	}
}

func TestOpenFileErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenFile(filepath.Join(dir, "missing.safetensors")); err == nil || !strings.HasPrefix(err.Error(), "weights: ") {
		t.Errorf("missing file: %v", err)
	}
	var he *HeaderError
	if _, err := OpenFile(dir); !errors.As(err, &he) {
		t.Errorf("directory: %v", err)
	}
	p := filepath.Join(dir, "trunc.safetensors")
	os.WriteFile(p, rawFile(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, make([]byte, 10)), 0o644)
	if _, err := OpenFile(p); !errors.As(err, &he) || he.Tensor != "a" || he.File != p {
		t.Errorf("truncated: %v", err)
	}
}
