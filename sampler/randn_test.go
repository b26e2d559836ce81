package sampler

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
)

func TestMT19937FirstOutputs(t *testing.T) {
	// Spec §5.1: the same stream as C++ std::mt19937(42).
	var m mt19937
	m.seed(42)
	want := []uint32{1608637542, 3421126067, 4083286876, 787846414, 3143890026}
	for i, w := range want {
		if got := m.u32(); got != w {
			t.Fatalf("output %d = %d, want %d", i, got, w)
		}
	}
	// std::mt19937 default seed: the 10000th output is 4123659995 (C++11 §26.5.5).
	m.seed(5489)
	var v uint32
	for i := 0; i < 10000; i++ {
		v = m.u32()
	}
	if v != 4123659995 {
		t.Fatalf("10000th output for seed 5489 = %d, want 4123659995", v)
	}
}

func TestSeedLow32Bits(t *testing.T) {
	a := NewGenerator(5).Randn(40, KernelAVX2)
	b := NewGenerator(1<<32+5).Randn(40, KernelAVX2)
	bitsEqual(t, "seed 2^32+5 vs 5", b, a)
}

// f32s parses shortest-round-trip decimals into exact float32 bit patterns.
func f32s(t *testing.T, s string) []float32 {
	t.Helper()
	var out []float32
	for _, f := range strings.Fields(strings.ReplaceAll(s, ",", " ")) {
		v, err := strconv.ParseFloat(strings.ReplaceAll(f, "−", "-"), 32)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, float32(v))
	}
	return out
}

func TestRandnSpecGolden(t *testing.T) {
	// Spec §5.5 (torch CPU generator, AVX2 kernel).
	x := Randn(42, 16*128*128)
	bitsEqual(t, "seed42 first8", x[:8], f32s(t, "1.9269153, 1.4872841, 0.9007172, −2.1055210, 0.67841846, −1.2345449, −0.043067478, −1.6046669"))
	bitsEqual(t, "seed42 16..19", x[16:20], f32s(t, "1.6423169, −0.15959747, −0.49739754, 0.43958926"))
	bitsEqual(t, "seed42 last4", x[len(x)-4:], f32s(t, "−1.3010583, 0.60810214, −1.7622458, −2.3294172"))
	if got := fnv1a(x); got != 0xb2f5a60dde6ecb89 {
		t.Errorf("seed42 FNV-1a = %#x, want 0xb2f5a60dde6ecb89", got)
	}
	if s := sum64(x); math.Abs(s-(-62.913282)) > 5e-7 {
		t.Errorf("seed42 sum = %.7f, want -62.913282", s)
	}

	x = Randn(0, 16*128*128)
	bitsEqual(t, "seed0 first8", x[:8], f32s(t, "−1.1258398, −1.1523602, −0.25057858, −0.4338788, 0.84871036, 0.69200915, −0.31601277, −2.1152194"))
	if got := fnv1a(x); got != 0x1ef27ec0ae2db069 {
		t.Errorf("seed0 FNV-1a = %#x, want 0x1ef27ec0ae2db069", got)
	}

	// Small path (n < 16): per-element double Box-Muller.
	bitsEqual(t, "seed42 [10]", Randn(42, 10), f32s(t, "0.33669037, 0.1288094, 0.23446237, 0.23033303, −1.1228564, −0.18632829, 2.2082014, −0.63799703, 0.46165723, 0.26735088"))
}

func fnv1a(x []float32) uint64 {
	h := fnv.New64a()
	h.Write(f32le(x))
	return h.Sum64()
}

func f32le(x []float32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func sum64(x []float32) float64 {
	var s float64
	for _, v := range x {
		s += float64(v)
	}
	return s
}

type rngJSON struct {
	Draws []struct {
		Seed    uint64 `json:"seed"`
		Shape   []int  `json:"shape"`
		Numel   int    `json:"numel"`
		Native  rngRef `json:"native"`
		Default rngRef `json:"default"`
	} `json:"draws"`
	PipelineLatents struct {
		Cases map[string]struct {
			Shape []int   `json:"shape"`
			Sum   float64 `json:"sum"`
		} `json:"cases"`
	} `json:"pipeline_latents"`
}

type rngRef struct {
	Sum    float64 `json:"sum"`
	SHA256 string  `json:"sha256_f32le"`
}

func loadRNGJSON(t *testing.T) rngJSON {
	t.Helper()
	raw, err := os.ReadFile(fixturefs.Path(t, "fixtures/rng.json"))
	if err != nil {
		t.Fatal(err)
	}
	var j rngJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		t.Fatal(err)
	}
	if len(j.Draws) == 0 {
		t.Fatal("rng.json: no draws")
	}
	return j
}

func shapeName(shape []int) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = strconv.Itoa(d)
	}
	return strings.Join(parts, "x")
}

func TestRandnFixtures(t *testing.T) {
	j := loadRNGJSON(t)
	st := openFixture(t, "fixtures/rng.safetensors")
	checked := 0
	for _, d := range j.Draws {
		for _, kc := range []struct {
			dir string
			k   Kernel
			ref rngRef
		}{{"native", KernelAVX2, d.Native}, {"default", KernelScalar, d.Default}} {
			name := fmt.Sprintf("%s/seed%d/%s", kc.dir, d.Seed, shapeName(d.Shape))
			t.Run(name, func(t *testing.T) {
				got := NewGenerator(d.Seed).Randn(d.Numel, kc.k)
				if st.has(name) {
					bitsEqual(t, name, got, st.f32(t, name))
				} else {
					first := st.f32(t, name+"/first4096")
					last := st.f32(t, name+"/last64")
					bitsEqual(t, name+"/first4096", got[:len(first)], first)
					bitsEqual(t, name+"/last64", got[len(got)-len(last):], last)
				}
				sum := sha256.Sum256(f32le(got))
				if h := hex.EncodeToString(sum[:]); h != kc.ref.SHA256 {
					t.Errorf("sha256 = %s, want %s", h, kc.ref.SHA256)
				}
			})
			checked++
		}
	}
	t.Logf("%d draws checked", checked)
}

func TestRandnPipelineLatents(t *testing.T) {
	j := loadRNGJSON(t)
	st := openFixture(t, "fixtures/rng.safetensors")
	for key, c := range j.PipelineLatents.Cases {
		seed, err := strconv.ParseUint(key[strings.Index(key, "/seed")+5:], 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		n := 1
		for _, d := range c.Shape {
			n *= d
		}
		got := Randn(seed, n)
		name := "pipeline_latents/" + key
		if st.has(name) {
			bitsEqual(t, name, got, st.f32(t, name))
		} else {
			first := st.f32(t, name+"/first4096")
			bitsEqual(t, name+"/first4096", got[:len(first)], first)
		}
		// The JSON sum is float64 accumulation in memory order, like sum64.
		if s := sum64(got); s != c.Sum {
			t.Errorf("%s: sum %v, want %v", name, s, c.Sum)
		}
	}
}

func TestGeneratorContinues(t *testing.T) {
	// Consecutive calls on one generator continue the stream, as in torch.
	// Small path: the cached sine half of a pair carries over to the next call.
	g := NewGenerator(42)
	got := append(g.Randn(3, KernelAVX2), g.Randn(3, KernelAVX2)...)
	bitsEqual(t, "3+3 vs 6 (small path)", got, NewGenerator(42).Randn(6, KernelAVX2))

	// Vector path: block boundaries line up when each call is a multiple of 16.
	for _, k := range []Kernel{KernelAVX2, KernelScalar} {
		g = NewGenerator(7)
		got = append(g.Randn(32, k), g.Randn(48, k)...)
		bitsEqual(t, "32+48 vs 80 "+k.String(), got, NewGenerator(7).Randn(80, k))
	}

	// The ≥16 path neither uses nor clears the small-path cache.
	g = NewGenerator(3)
	a := g.Randn(1, KernelAVX2)
	_ = g.Randn(16, KernelAVX2)
	b := g.Randn(1, KernelAVX2)
	ref := NewGenerator(3).Randn(2, KernelAVX2)
	bitsEqual(t, "cached sine survives a vector draw", []float32{a[0], b[0]}, ref)

	if n := len(NewGenerator(1).Randn(0, KernelAVX2)); n != 0 {
		t.Errorf("Randn(0) has %d values", n)
	}
}

func TestRandnTailRule(t *testing.T) {
	// n % 16 != 0: the last 16 values come from 16 fresh uniforms, so the
	// first n-16 values equal those of the plain block transform.
	for _, k := range []Kernel{KernelAVX2, KernelScalar} {
		full := NewGenerator(9).Randn(32, k)
		odd := NewGenerator(9).Randn(40, k)
		bitsEqual(t, "prefix "+k.String(), odd[:16], full[:16])
		g := NewGenerator(9)
		for i := 0; i < 40; i++ {
			g.mt.u32()
		}
		fresh := make([]float32, 16)
		g.fillUniform32(fresh)
		if k == KernelAVX2 {
			fill16AVX2(fresh)
		} else {
			fill16Scalar(fresh)
		}
		bitsEqual(t, "tail "+k.String(), odd[24:], fresh)
	}
}

func TestResolveSeed(t *testing.T) {
	for _, s := range []int64{0, 42, 1<<32 + 5, math.MaxInt64} {
		got, err := ResolveSeed(s)
		if err != nil || got != uint64(s) {
			t.Errorf("ResolveSeed(%d) = %d, %v", s, got, err)
		}
	}
	seen := map[uint64]bool{}
	for i := 0; i < 8; i++ {
		s, err := ResolveSeed(-1)
		if err != nil {
			t.Fatal(err)
		}
		if s >= 1<<32 {
			t.Errorf("random seed %d not below 2^32", s)
		}
		seen[s] = true
	}
	if len(seen) < 2 {
		t.Errorf("ResolveSeed(-1) gave the same seed 8 times")
	}
	if _, err := ResolveSeed(-2); err == nil || !strings.Contains(err.Error(), "sampler: seed") {
		t.Errorf("ResolveSeed(-2) error = %v", err)
	}
}

// BenchmarkRandn1024 draws the latent noise of a 1024×1024 image
// (16×128×128 values) with the default AVX2 kernel.
func BenchmarkRandn1024(b *testing.B) {
	b.SetBytes(16 * 128 * 128 * 4)
	for b.Loop() {
		Randn(42, 16*128*128)
	}
}

func BenchmarkRandn1024Scalar(b *testing.B) {
	b.SetBytes(16 * 128 * 128 * 4)
	for b.Loop() {
		NewGenerator(42).Randn(16*128*128, KernelScalar)
	}
}
