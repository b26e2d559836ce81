package weights

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
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

// TestQuantizeMatchesGGMLCBinary: with ZIMAGE_KQUANT_REF set to a built
// kquant_ref (testdata/generators/kquant_ref/generate.sh with
// KQUANT_REF_BIN), every quantizer gives ggml's bytes for 2^22 values of
// varied random blocks (ZIMAGE_KQUANT_N to change the count). Finds rare
// differences the golden rows cannot hold; takes a few seconds.
func TestQuantizeMatchesGGMLCBinary(t *testing.T) {
	bin := os.Getenv("ZIMAGE_KQUANT_REF")
	if bin == "" {
		t.Skip("set ZIMAGE_KQUANT_REF to a kquant_ref program (testdata/generators/kquant_ref)")
	}
	n := 1 << 22
	if s := os.Getenv("ZIMAGE_KQUANT_N"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			t.Fatalf("ZIMAGE_KQUANT_N=%q", s)
		}
		n = (v + 255) / 256 * 256
	}
	x := randomQuantRows(n, 20261207)
	dir := t.TempDir()
	in := filepath.Join(dir, "x.f32")
	raw := make([]byte, 4*n)
	for i, v := range x {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	if err := os.WriteFile(in, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-quantize", in, dir).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", bin, err, out)
	}
	for _, dt := range goldenCTypes {
		want, err := os.ReadFile(filepath.Join(dir, ggmlName(dt)+".bin"))
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, n/dt.BlockSize()*dt.BlockBytes())
		if err := Quantize(got, x, dt); err != nil {
			t.Fatal(err)
		}
		bb, bad := dt.BlockBytes(), 0
		for b := 0; b < len(got); b += bb {
			if i := firstDiff(got[b:b+bb], want[b:b+bb]); i >= 0 {
				if bad < 3 {
					t.Errorf("%s: block %d (values from %d) byte %d = %#02x, ggml %#02x", dt, b/bb, b/bb*dt.BlockSize(), i, got[b+i], want[b+i])
				}
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d blocks differ", dt, bad, len(got)/bb)
		}
	}
}

// randomQuantRows makes n values (a multiple of 256) in 256-value blocks of
// random kinds: Gaussian over 10 decades, bf16-valued, per-16 magnitudes,
// uniform, offset, sparse, with outliers, and small integer or half-integer
// lattices.
func randomQuantRows(n int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	x := make([]float32, n)
	for b := 0; b < n; b += 256 {
		xs := x[b : b+256]
		s := math.Pow(10, -7+10*rng.Float64())
		switch rng.IntN(8) {
		case 0:
			for i := range xs {
				xs[i] = float32(s * rng.NormFloat64())
			}
		case 1:
			for i := range xs {
				xs[i] = math.Float32frombits(math.Float32bits(float32(s*rng.NormFloat64())) &^ 0xffff)
			}
		case 2:
			for i := range xs {
				if i%16 == 0 {
					s = math.Pow(10, -4+6*rng.Float64())
				}
				xs[i] = float32(s * rng.NormFloat64())
			}
		case 3:
			for i := range xs {
				xs[i] = float32(s * (2*rng.Float64() - 1))
			}
		case 4:
			off := 4 * rng.NormFloat64()
			for i := range xs {
				xs[i] = float32(s * (off + rng.NormFloat64()))
			}
		case 5:
			for i := range xs {
				if rng.IntN(8) == 0 {
					xs[i] = float32(s * rng.NormFloat64())
				}
			}
		case 6:
			for i := range xs {
				xs[i] = float32(s * rng.NormFloat64())
				if rng.IntN(50) == 0 {
					xs[i] *= 100
				}
			}
		case 7:
			step := float32(0.5 * float64(1+rng.IntN(2)))
			k := 1 + rng.IntN(64)
			for i := range xs {
				xs[i] = step * float32(rng.IntN(2*k+1)-k)
			}
		}
	}
	return x
}
