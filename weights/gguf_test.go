package weights

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
)

// ggufTypeFixtures lists the per-type fixtures of testdata/gguf/types.
var ggufTypeFixtures = []struct {
	file string
	dt   DType
}{
	{"f32", F32}, {"f16", F16}, {"bf16", BF16}, {"q4_0", Q4_0}, {"q4_1", Q4_1}, {"q5_0", Q5_0},
	{"q5_1", Q5_1}, {"q8_0", Q8_0}, {"q2_k", Q2_K}, {"q3_k", Q3_K}, {"q4_k", Q4_K}, {"q5_k", Q5_K}, {"q6_k", Q6_K},
}

// TestGGUFDequantMatchesGGUFPy: every supported type dequantizes bit-exactly
// to gguf-py's numpy reference (testdata/generators/gguf_fixtures.py).
func TestGGUFDequantMatchesGGUFPy(t *testing.T) {
	dir := fixturefs.Path(t, "gguf/types")
	for _, c := range ggufTypeFixtures {
		t.Run(c.file, func(t *testing.T) {
			g, err := OpenGGUF(filepath.Join(dir, c.file+".gguf"))
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			q, _ := g.Tensor("q")
			ref, _ := g.Tensor("ref")
			if q == nil || ref == nil {
				t.Fatal("fixture lacks q or ref")
			}
			if q.DType != c.dt || !reflect.DeepEqual(q.Shape, ref.Shape) {
				t.Fatalf("q is %s %v, ref %v", q.DType, q.Shape, ref.Shape)
			}
			if got := g.MetaString("zimage.type"); !strings.EqualFold(got, c.file) {
				t.Fatalf("zimage.type = %q", got)
			}
			want, err := ref.Float32()
			if err != nil {
				t.Fatal(err)
			}
			got, err := q.Float32()
			if err != nil {
				t.Fatal(err)
			}
			bad := 0
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					if bad < 5 {
						t.Errorf("element %d: got %g (%#08x), gguf-py %g (%#08x)", i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
					}
					bad++
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d elements differ", bad, len(want))
			}
			// Row views: one row decodes alone to the same values.
			cols := q.Shape[len(q.Shape)-1]
			rb, ok := q.DType.RowBytes(cols)
			if !ok || len(q.Data) != rb*q.Shape[0] {
				t.Fatalf("RowBytes(%d) = %d, %v for %d bytes", cols, rb, ok, len(q.Data))
			}
			row := make([]float32, cols)
			if err := DecodeF32(row, q.Data[rb:2*rb], q.DType); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(row, got[cols:2*cols]) {
				t.Error("row 1 decoded alone differs")
			}
		})
	}
}

func TestGGUFMetadata(t *testing.T) {
	for _, name := range []string{"meta_v3.gguf", "meta_v2.gguf"} {
		t.Run(name, func(t *testing.T) {
			g, err := OpenGGUF(fixturefs.Path(t, "gguf/"+name))
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			wantVer, wantAlign := 3, 64
			if name == "meta_v2.gguf" {
				wantVer, wantAlign = 2, 32
			}
			if g.Version() != wantVer || g.Alignment() != wantAlign || g.DataOffset()%int64(wantAlign) != 0 {
				t.Fatalf("version %d alignment %d data offset %d", g.Version(), g.Alignment(), g.DataOffset())
			}
			want := map[string]any{
				"general.architecture": "zimage-test",
				"t.u8":                 uint8(200), "t.i8": int8(-100), "t.u16": uint16(60000), "t.i16": int16(-30000),
				"t.u32": uint32(4000000000), "t.i32": int32(-2000000000), "t.f32": float32(1.5), "t.bool": true,
				"t.str": "héllo", "t.u64": uint64(1 << 60), "t.i64": int64(-(1 << 60)), "t.f64": -2.25,
				"t.arr_str": []string{"a", "", "ĠHello"}, "t.arr_i32": []int64{1, -2, 3}, "t.arr_f32": []float64{0.5, -1},
				"t.arr_u8": []uint64{},
			}
			for k, w := range want {
				v, ok := g.Meta(k)
				if !ok {
					t.Errorf("%s missing", k)
					continue
				}
				if !reflect.DeepEqual(v.V, w) {
					t.Errorf("%s = %#v (%s), want %#v", k, v.V, v.Type, w)
				}
			}
			if v, _ := g.Meta("t.arr_i32"); v.Type != GGUFArray || v.Elem != GGUFInt32 {
				t.Errorf("t.arr_i32 types %s/%s", v.Type, v.Elem)
			}
			if v, _ := g.Meta("t.arr_bool"); !reflect.DeepEqual(v.V, []GGUFValue{{Type: GGUFBool, V: true}, {Type: GGUFBool, V: false}}) {
				t.Errorf("t.arr_bool = %#v", v.V)
			}
			nested, _ := g.Meta("t.arr_arr")
			inner, ok := nested.V.([]GGUFValue)
			if !ok || len(inner) != 2 || !reflect.DeepEqual(inner[0].V, []int64{1, 2}) || !reflect.DeepEqual(inner[1].V, []int64{3}) {
				t.Errorf("t.arr_arr = %#v", nested.V)
			}
			if got := g.Names(); !reflect.DeepEqual(got, []string{"a.weight", "b.bias", "c.weight"}) {
				t.Errorf("names %v", got)
			}
			a, _ := g.Tensor("a.weight")
			b, _ := g.Tensor("b.bias")
			c, _ := g.Tensor("c.weight")
			if a.DType != Q8_0 || !reflect.DeepEqual(a.Shape, []int{2, 64}) || len(a.Data) != 4*34 {
				t.Errorf("a.weight %s %v %d bytes", a.DType, a.Shape, len(a.Data))
			}
			if bv, _ := b.Float32(); !reflect.DeepEqual(bv, []float32{0, 1, 2, 3, 4}) {
				t.Errorf("b.bias = %v", bv)
			}
			if c.DType != F16 || !reflect.DeepEqual(c.Shape, []int{2, 3, 4}) {
				t.Errorf("c.weight %s %v", c.DType, c.Shape)
			}
			if cv, _ := c.Float32(); cv[23] != 23 {
				t.Errorf("c.weight[23] = %v", cv[23])
			}
		})
	}
}

// ggufBuilder assembles GGUF bytes for the error tests and the fuzz corpus.
type ggufBuilder struct {
	b []byte
}

func (w *ggufBuilder) u32(v uint32) *ggufBuilder {
	w.b = binary.LittleEndian.AppendUint32(w.b, v)
	return w
}
func (w *ggufBuilder) u64(v uint64) *ggufBuilder {
	w.b = binary.LittleEndian.AppendUint64(w.b, v)
	return w
}
func (w *ggufBuilder) str(s string) *ggufBuilder {
	w.u64(uint64(len(s)))
	w.b = append(w.b, s...)
	return w
}

// tinyGGUF returns a valid file: version, one u32 KV, the given tensors
// (name, ggml type, ne[0], offset) of one row each, then data of dataLen.
func tinyGGUF(version uint32, tensors []ggufTestTensor, dataLen int) []byte {
	w := &ggufBuilder{}
	w.b = append(w.b, "GGUF"...)
	w.u32(version).u64(uint64(len(tensors))).u64(1)
	w.str("general.architecture").u32(uint32(GGUFString)).str("test")
	for _, t := range tensors {
		w.str(t.name).u32(1).u64(t.ne0).u32(t.typ).u64(t.off)
	}
	for len(w.b)%32 != 0 {
		w.b = append(w.b, 0)
	}
	return append(w.b, make([]byte, dataLen)...)
}

type ggufTestTensor struct {
	name string
	typ  uint32
	ne0  uint64
	off  uint64
}

func TestGGUFErrors(t *testing.T) {
	ok := []ggufTestTensor{{"a", 0, 4, 0}, {"b", 8, 32, 32}}
	good := tinyGGUF(3, ok, 32+34)
	if _, err := parseGGUF("good.gguf", good); err != nil {
		t.Fatalf("valid file: %v", err)
	}
	cases := []struct {
		name   string
		b      []byte
		tensor string
		want   string
	}{
		{"empty", nil, "", "too short"},
		{"truncated header", good[:30], "", "tensor count 2 cannot fit"},
		{"truncated data", good[:len(good)-1], "b", "past the end"},
		{"magic", append([]byte("GGUX"), good[4:]...), "", "not a GGUF file"},
		{"big endian", append([]byte("FUGG"), good[4:]...), "", "big-endian"},
		{"version 1", tinyGGUF(1, ok, 66), "", "version 1"},
		{"version 4", tinyGGUF(4, ok, 66), "", "unsupported GGUF version 4"},
		{"unknown type", tinyGGUF(3, []ggufTestTensor{{"w", 77, 4, 0}}, 16), "w", "unknown tensor type 77"},
		{"iq type", tinyGGUF(3, []ggufTestTensor{{"w", 16, 256, 0}}, 66), "w", "unsupported tensor type IQ2_XXS"},
		{"tq type", tinyGGUF(3, []ggufTestTensor{{"w", 35, 256, 0}}, 66), "w", "TQ2_0"},
		{"misaligned", tinyGGUF(3, []ggufTestTensor{{"w", 0, 4, 4}}, 64), "w", "not a multiple of the alignment"},
		{"past eof", tinyGGUF(3, []ggufTestTensor{{"w", 0, 1000, 0}}, 64), "w", "past the end"},
		{"duplicate", tinyGGUF(3, []ggufTestTensor{{"w", 0, 4, 0}, {"w", 0, 4, 32}}, 64), "w", "duplicate tensor"},
		{"overlap", tinyGGUF(3, []ggufTestTensor{{"w", 0, 8, 0}, {"v", 0, 4, 32}, {"u", 0, 4, 32}}, 128), "u", "overlaps"},
		{"partial block", tinyGGUF(3, []ggufTestTensor{{"w", 8, 33, 0}}, 64), "w", "not a multiple of the Q8_0 block size"},
		{"absurd dim", tinyGGUF(3, []ggufTestTensor{{"w", 0, 1 << 62, 0}}, 64), "w", "absurd dimension"},
	}
	// Absurd counts.
	hugeT := append([]byte(nil), good...)
	binary.LittleEndian.PutUint64(hugeT[8:], 1<<60)
	cases = append(cases, struct {
		name   string
		b      []byte
		tensor string
		want   string
	}{"tensor count", hugeT, "", "tensor count"})
	hugeKV := append([]byte(nil), good...)
	binary.LittleEndian.PutUint64(hugeKV[16:], 1<<60)
	cases = append(cases, struct {
		name   string
		b      []byte
		tensor string
		want   string
	}{"kv count", hugeKV, "", "metadata count"})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseGGUF("bad.gguf", c.b)
			var ge *GGUFError
			if !errors.As(err, &ge) {
				t.Fatalf("error %T %v, want *GGUFError", err, err)
			}
			if ge.File != "bad.gguf" || ge.Tensor != c.tensor || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v (tensor %q), want tensor %q and %q", err, ge.Tensor, c.tensor, c.want)
			}
		})
	}
	// Metadata errors name the key.
	w := &ggufBuilder{}
	w.b = append(w.b, "GGUF"...)
	w.u32(3).u64(0).u64(2)
	w.str("general.alignment").u32(uint32(GGUFUint32)).u32(48)
	w.str("x").u32(uint32(GGUFUint32)).u32(0)
	_, err := parseGGUF("bad.gguf", w.b)
	var ge *GGUFError
	if !errors.As(err, &ge) || ge.Key != "general.alignment" || !strings.Contains(err.Error(), "power of two") {
		t.Fatalf("alignment 48: %v", err)
	}
	w = &ggufBuilder{}
	w.b = append(w.b, "GGUF"...)
	w.u32(3).u64(0).u64(2)
	w.str("k").u32(uint32(GGUFUint32)).u32(0)
	w.str("k").u32(uint32(GGUFUint32)).u32(0)
	if _, err := parseGGUF("bad.gguf", w.b); !errors.As(err, &ge) || ge.Key != "k" || !strings.Contains(err.Error(), "duplicate") {
		t.Fatalf("duplicate key: %v", err)
	}
	w = &ggufBuilder{}
	w.b = append(w.b, "GGUF"...)
	w.u32(3).u64(0).u64(1)
	w.str("big").u32(uint32(GGUFArray)).u32(uint32(GGUFUint64)).u64(1 << 61)
	w.u64(0)
	if _, err := parseGGUF("bad.gguf", w.b); !errors.As(err, &ge) || ge.Key != "big" || !strings.Contains(err.Error(), "does not fit") {
		t.Fatalf("huge array: %v", err)
	}
}

func TestOpenGGUFFileErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenGGUF(dir); err == nil {
		t.Fatal("directory accepted")
	}
	p := filepath.Join(dir, "short.gguf")
	if err := os.WriteFile(p, []byte("GGUF"), 0o644); err != nil {
		t.Fatal(err)
	}
	var ge *GGUFError
	if _, err := OpenGGUF(p); !errors.As(err, &ge) || ge.File != p {
		t.Fatalf("short file: %v", err)
	}
	if IsGGUF(filepath.Join(dir, "missing")) || !IsGGUF(p) {
		t.Fatal("IsGGUF")
	}
}

func FuzzParseGGUF(f *testing.F) {
	for _, name := range []string{"meta_v3.gguf", "meta_v2.gguf", "types/q4_k.gguf", "types/q5_0.gguf"} {
		b, err := os.ReadFile(fixturefs.Path(f, "gguf/"+name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(tinyGGUF(3, []ggufTestTensor{{"a", 0, 4, 0}, {"b", 8, 32, 32}}, 66))
	f.Add(tinyGGUF(2, []ggufTestTensor{{"a", 12, 256, 0}}, 144))
	f.Add([]byte("GGUF\x03\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseGGUF("fuzz", b)
		if err != nil {
			if _, ok := err.(*GGUFError); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		for _, ti := range h.infos {
			lo := h.dataOff + ti.off
			if lo < 0 || lo+ti.size > int64(len(b)) {
				t.Fatalf("tensor %q [%d,%d) outside %d bytes", ti.name, lo, lo+ti.size, len(b))
			}
			if ti.dtype.IsQuantized() && ti.size < 1<<16 {
				n := 1
				for _, s := range ti.shape {
					n *= s
				}
				if err := DecodeF32(make([]float32, n), b[lo:lo+ti.size], ti.dtype); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}

// TestQuantizeMatchesGGUFPy: zimage's quantizers give gguf-py's bytes for
// the fixture sources (types gguf-py can quantize).
func TestQuantizeMatchesGGUFPy(t *testing.T) {
	dir := fixturefs.Path(t, "gguf/types")
	checked := 0
	defer func() {
		if checked != 7 { // F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
			t.Errorf("checked %d types, want 7", checked)
		}
	}()
	for _, c := range ggufTypeFixtures {
		if !c.dt.IsQuantized() && c.dt != BF16 && c.dt != F16 {
			continue
		}
		g, err := OpenGGUF(filepath.Join(dir, c.file+".gguf"))
		if err != nil {
			t.Fatal(err)
		}
		x, ok := g.Tensor("x")
		q, _ := g.Tensor("q")
		if !ok {
			g.Close()
			continue
		}
		checked++
		src, _ := x.Float32()
		got := make([]byte, len(q.Data))
		switch c.dt {
		case BF16:
			EncodeBF16(got, src)
		case F16:
			EncodeF16(got, src)
		default:
			if err := Quantize(got, src, c.dt); err != nil {
				t.Fatalf("%s: %v", c.dt, err)
			}
		}
		if !reflect.DeepEqual(got, q.Data) {
			bb := c.dt.BlockBytes()
			for i := range got {
				if got[i] != q.Data[i] {
					t.Errorf("%s: byte %d (block %d) = %#02x, gguf-py %#02x", c.dt, i, i/bb, got[i], q.Data[i])
					break
				}
			}
		}
		g.Close()
	}
}

// TestWriteGGUFRoundTrip: a file written by WriteGGUF reads back with every
// metadata value and tensor (the metadata fixture's content re-written).
func TestWriteGGUFRoundTrip(t *testing.T) {
	src, err := OpenGGUF(fixturefs.Path(t, "gguf/meta_v3.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	kvs := src.Metadata()
	var outs []GGUFTensorOut
	for _, n := range src.Names() {
		tt, _ := src.Tensor(n)
		outs = append(outs, GGUFTensorOut{Name: n, DType: tt.DType, Shape: tt.Shape, Write: func(w io.Writer) error {
			_, err := w.Write(tt.Data)
			return err
		}})
	}
	p := filepath.Join(t.TempDir(), "rt.gguf")
	if err := WriteGGUF(p, kvs, outs, 64); err != nil {
		t.Fatal(err)
	}
	got, err := OpenGGUF(p)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if !reflect.DeepEqual(got.Metadata(), src.Metadata()) {
		t.Errorf("metadata differs:\n%v\n%v", got.Metadata(), src.Metadata())
	}
	for _, n := range src.Names() {
		a, _ := src.Tensor(n)
		b, _ := got.Tensor(n)
		if b == nil || a.DType != b.DType || !reflect.DeepEqual(a.Shape, b.Shape) || !reflect.DeepEqual(a.Data, b.Data) {
			t.Errorf("tensor %s differs", n)
		}
	}
}

// TestQuantizeRoundTrip: every quantizer's blocks dequantize close to the
// source (relative RMS error per type, for N(0,1) data with outliers), and
// all-zero input gives zeros.
func TestQuantizeRoundTrip(t *testing.T) {
	limits := map[DType]float64{Q8_0: 0.007, Q6_K: 0.023, Q5_1: 0.048, Q5_0: 0.056, Q5_K: 0.046, Q4_1: 0.1, Q4_0: 0.11, Q4_K: 0.09, Q3_K: 0.19, Q2_K: 0.36}
	rng := rand.New(rand.NewPCG(3, 4))
	x := make([]float32, 64*256)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
		if i%997 == 0 {
			x[i] *= 8
		}
	}
	for dt, lim := range limits {
		q := make([]byte, len(x)/dt.BlockSize()*dt.BlockBytes())
		if err := Quantize(q, x, dt); err != nil {
			t.Fatal(err)
		}
		y := make([]float32, len(x))
		if err := Dequantize(y, q, dt); err != nil {
			t.Fatal(err)
		}
		var se, ss float64
		for i := range x {
			d := float64(y[i] - x[i])
			se += d * d
			ss += float64(x[i]) * float64(x[i])
		}
		rel := math.Sqrt(se / ss)
		t.Logf("%s: relative RMS error %.4f", dt, rel)
		if rel > lim || math.IsNaN(rel) {
			t.Errorf("%s: relative RMS error %.4f > %.4f", dt, rel, lim)
		}
		z := make([]float32, dt.BlockSize())
		zq := make([]byte, dt.BlockBytes())
		if err := Quantize(zq, z, dt); err != nil {
			t.Fatal(err)
		}
		if err := Dequantize(z, zq, dt); err != nil {
			t.Fatal(err)
		}
		for _, v := range z {
			if v != 0 {
				t.Errorf("%s: zeros come back as %v", dt, v)
				break
			}
		}
	}
}

// TestGGUFWrongComponent: a GGUF of another model, or of the other
// component, is refused with an error naming the file.
func TestGGUFWrongComponent(t *testing.T) {
	dir := t.TempDir()
	llama := filepath.Join(dir, "llama.gguf")
	x := make([]float32, 64)
	outs := []GGUFTensorOut{
		{Name: "blk.0.attn_q.weight", DType: F32, Shape: []int{2, 32}, Write: func(w io.Writer) error {
			b := make([]byte, 4*len(x))
			EncodeF32(b, x)
			_, err := w.Write(b)
			return err
		}},
	}
	if err := WriteGGUF(llama, []GGUFKV{{"general.architecture", GGUFStr("llama")}}, outs, 0); err != nil {
		t.Fatal(err)
	}
	m := &Model{DiT: DefaultDiTConfig(), TextEncoder: DefaultQwen3Config()}
	for _, comp := range []string{CompTransformer, CompTextEncoder} {
		err := m.UseFile(comp, llama)
		var se *SetError
		if !errors.As(err, &se) || se.Path != llama || !strings.Contains(err.Error(), "holds no "+comp) {
			t.Errorf("%s: %v", comp, err)
		}
	}
}

// TestWriteComponentGGUFMemory: converting allocates a bounded amount,
// not the model's size (fused qkv weights are streamed from their parts).
func TestWriteComponentGGUFMemory(t *testing.T) {
	const layers, d = 16, 1024
	s := &Set{path: "mem", tensors: map[string]*Tensor{}, total: -1}
	data := make([]byte, 2*d*d) // shared by every tensor: the input costs nothing
	for i := range layers {
		for _, n := range []string{"to_q", "to_k", "to_v", "to_out.0"} {
			name := fmt.Sprintf("layers.%d.attention.%s.weight", i, n)
			s.tensors[name] = &Tensor{Name: name, DType: BF16, Shape: []int{d, d}, Data: data}
		}
	}
	s.names = slices.Sorted(maps.Keys(s.tensors))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := WriteComponentGGUF(s, CompTransformer, filepath.Join(t.TempDir(), "m.gguf"), GGUFConvertOptions{Type: Q8_0}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	model := int64(layers * 4 * len(data))
	got := int64(after.TotalAlloc - before.TotalAlloc)
	t.Logf("allocated %.1f MiB converting a %d MiB model", float64(got)/(1<<20), model>>20)
	if got > 24<<20 {
		t.Errorf("allocated %d MiB converting a %d MiB model", got>>20, model>>20)
	}
}
