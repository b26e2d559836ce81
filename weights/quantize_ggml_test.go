package weights

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
)

// ggmlCase is one row of testdata/gguf/kquant/cases.txt.
type ggmlCase struct {
	name string
	n    int
}

// goldenCTypes are the types testdata/gguf/kquant holds (<name>.bin each).
var goldenCTypes = []DType{Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K}

// readGGMLGolden reads the rows and their inputs of testdata/gguf/kquant
// (made by testdata/generators/kquant_ref with ggml's C code).
func readGGMLGolden(t *testing.T) (dir string, cases []ggmlCase, x []float32) {
	t.Helper()
	dir = fixturefs.Path(t, "gguf/kquant")
	f, err := os.Open(filepath.Join(dir, "cases.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	total := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, n, ok := strings.Cut(sc.Text(), " ")
		v, err := strconv.Atoi(n)
		if !ok || err != nil || v <= 0 || v%256 != 0 {
			t.Fatalf("cases.txt: bad line %q", sc.Text())
		}
		cases = append(cases, ggmlCase{name, v})
		total += v
	}
	raw, err := os.ReadFile(filepath.Join(dir, "x.f32"))
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != 4*total {
		t.Fatalf("x.f32: %d bytes, cases.txt says %d values", len(raw), total)
	}
	x = make([]float32, total)
	for i := range x {
		x[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return dir, cases, x
}

func ggmlName(dt DType) string { return strings.ToLower(dt.String()) }

// TestQuantizeMatchesGGMLC: every quantizer gives, byte for byte, what
// ggml's C reference (quantize_row_<type>_ref, which llama.cpp's quantize
// runs without an importance matrix) writes for the same rows: Gaussian,
// uniform, outliers, zeros, constants, f16-subnormal and f16-overflowing
// scales, sparse rows and rows built to hit rounding ties.
func TestQuantizeMatchesGGMLC(t *testing.T) {
	dir, cases, x := readGGMLGolden(t)
	for _, dt := range goldenCTypes {
		want, err := os.ReadFile(filepath.Join(dir, ggmlName(dt)+".bin"))
		if err != nil {
			t.Fatal(err)
		}
		bs, bb := dt.BlockSize(), dt.BlockBytes()
		if len(want) != len(x)/bs*bb {
			t.Fatalf("%s.bin: %d bytes, want %d", ggmlName(dt), len(want), len(x)/bs*bb)
		}
		off, bad := 0, 0
		for _, c := range cases {
			src := x[off : off+c.n]
			w := want[off/bs*bb : (off+c.n)/bs*bb]
			off += c.n
			got := make([]byte, len(w))
			if err := Quantize(got, src, dt); err != nil {
				t.Fatalf("%s %s: %v", dt, c.name, err)
			}
			if i := firstDiff(got, w); i >= 0 {
				bad++
				t.Errorf("%s %s: byte %d of block %d = %#02x, ggml %#02x", dt, c.name, i%bb, i/bb, got[i], w[i])
			}
		}
		if bad > 0 {
			t.Logf("%s: %d of %d rows differ", dt, bad, len(cases))
		}
	}
}

// TestDequantizeMatchesGGMLC: dequantizing ggml's bytes gives the float32
// bits of ggml's dequantize_row_<type> (an FNV-1a 64 hash of all rows, NaNs
// canonical, in dequant.txt).
func TestDequantizeMatchesGGMLC(t *testing.T) {
	dir, _, x := readGGMLGolden(t)
	raw, err := os.ReadFile(filepath.Join(dir, "dequant.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		name, h, _ := strings.Cut(line, " ")
		want[name] = h
	}
	for _, dt := range goldenCTypes {
		q, err := os.ReadFile(filepath.Join(dir, ggmlName(dt)+".bin"))
		if err != nil {
			t.Fatal(err)
		}
		y := make([]float32, len(x))
		if err := Dequantize(y, q, dt); err != nil {
			t.Fatalf("%s: %v", dt, err)
		}
		h := fnv.New64a()
		var b [4]byte
		for _, v := range y {
			bits := math.Float32bits(v)
			if v != v {
				bits = 0x7fc00000
			}
			binary.LittleEndian.PutUint32(b[:], bits)
			h.Write(b[:])
		}
		if got := fmt.Sprintf("%016x", h.Sum64()); got != want[ggmlName(dt)] {
			t.Errorf("%s: dequantized hash %s, ggml %s", dt, got, want[ggmlName(dt)])
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}
