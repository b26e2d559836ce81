package weights

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// refFloat decodes a sign/exponent/mantissa bit pattern with math.Ldexp,
// independently of the bit-shuffling conversions under test. ieeeSpecial says
// whether the all-ones exponent means Inf/NaN (IEEE, E5M2) or is an ordinary
// binade (E4M3FN, whose only NaN is S.1111.111).
func refFloat(bits uint32, expBits, manBits uint, bias int, ieeeSpecial bool) float64 {
	sign := 1.0
	if bits>>(expBits+manBits)&1 == 1 {
		sign = -1
	}
	exp := int(bits>>manBits) & (1<<expBits - 1)
	man := float64(bits & (1<<manBits - 1))
	maxExp := 1<<expBits - 1
	switch {
	case ieeeSpecial && exp == maxExp && man == 0:
		return math.Copysign(math.Inf(1), sign)
	case ieeeSpecial && exp == maxExp:
		return math.NaN()
	case !ieeeSpecial && exp == maxExp && int(man) == 1<<manBits-1:
		return math.NaN()
	case exp == 0: // subnormal: man · 2^(1-bias-manBits)
		return sign * math.Ldexp(man, 1-bias-int(manBits))
	}
	return sign * math.Ldexp(1+man/float64(uint(1)<<manBits), exp-bias)
}

// sameFloat compares a float32 result with the reference: equal values with
// equal sign (so ±0 are told apart), or both NaN with the same sign bit.
func sameFloat(t *testing.T, what string, pattern uint32, got float32, want float64, signBit bool) {
	t.Helper()
	if math.IsNaN(want) {
		if !math.IsNaN(float64(got)) || math.Signbit(float64(got)) != signBit {
			t.Fatalf("%s %#x: got %v (%#08x), want NaN with sign %v", what, pattern, got, math.Float32bits(got), signBit)
		}
		return
	}
	if float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want) {
		t.Fatalf("%s %#x: got %v, want %v", what, pattern, got, want)
	}
}

func TestWidenExhaustive(t *testing.T) {
	for h := range uint32(1 << 16) {
		sameFloat(t, "BF16", h, BF16ToF32(uint16(h)), refFloat(h, 8, 7, 127, true), h&0x8000 != 0)
		sameFloat(t, "F16", h, F16ToF32(uint16(h)), refFloat(h, 5, 10, 15, true), h&0x8000 != 0)
	}
	for b := range uint32(256) {
		sameFloat(t, "F8_E4M3", b, F8E4M3ToF32(uint8(b)), refFloat(b, 4, 3, 7, false), b&0x80 != 0)
		sameFloat(t, "F8_E5M2", b, F8E5M2ToF32(uint8(b)), refFloat(b, 5, 2, 15, true), b&0x80 != 0)
	}
	// Landmarks, stated explicitly.
	for _, c := range []struct {
		what string
		got  float32
		want float64
	}{
		{"F16 max", F16ToF32(0x7bff), 65504},
		{"F16 min subnormal", F16ToF32(0x0001), math.Ldexp(1, -24)},
		{"F16 -0", F16ToF32(0x8000), math.Copysign(0, -1)},
		{"BF16 max", BF16ToF32(0x7f7f), 3.3895313892515355e38},
		{"BF16 min subnormal", BF16ToF32(0x0001), math.Ldexp(1, -133)},
		{"E4M3 max", F8E4M3ToF32(0x7e), 448},
		{"E4M3 min subnormal", F8E4M3ToF32(0x01), math.Ldexp(1, -9)},
		{"E5M2 max", F8E5M2ToF32(0x7b), 57344},
		{"E5M2 inf", F8E5M2ToF32(0x7c), math.Inf(1)},
		{"E5M2 min subnormal", F8E5M2ToF32(0x01), math.Ldexp(1, -16)},
	} {
		if float64(c.got) != c.want || math.Signbit(float64(c.got)) != math.Signbit(c.want) {
			t.Errorf("%s: got %v, want %v", c.what, c.got, c.want)
		}
	}
	if !math.IsNaN(float64(F8E4M3ToF32(0x7f))) || !math.IsNaN(float64(F8E4M3ToF32(0xff))) {
		t.Error("E4M3FN S.1111.111 must be NaN")
	}
}

// refRound rounds x to the nearest value in the sorted non-negative grid
// (indexed by bit pattern), ties to the even pattern, by comparing float64
// distances. overflow is the value the pattern after the largest finite one
// stands for in rounding (2^128 for bf16, 65536 for f16): values at or past
// the midpoint to it round to Inf.
func refRound(x float32, grid []float64, overflow float64, signShift uint, inf uint32) uint32 {
	ax := math.Abs(float64(x))
	sign := uint32(0)
	if math.Signbit(float64(x)) {
		sign = 1 << signShift
	}
	if math.IsInf(ax, 1) {
		return sign | inf
	}
	i := sort.SearchFloat64s(grid, ax) // first grid value ≥ ax
	if i == len(grid) {
		lo := grid[len(grid)-1]
		if ax-lo < overflow-ax || ax-lo == overflow-ax && (len(grid)-1)%2 == 0 {
			return sign | uint32(len(grid)-1)
		}
		return sign | inf
	}
	if grid[i] == ax || i == 0 {
		return sign | uint32(i)
	}
	dlo, dhi := ax-grid[i-1], grid[i]-ax
	if dlo < dhi || dlo == dhi && (i-1)%2 == 0 {
		return sign | uint32(i-1)
	}
	return sign | uint32(i)
}

func grid(n int, dec func(uint16) float32) []float64 {
	g := make([]float64, n)
	for i := range g {
		g[i] = float64(dec(uint16(i)))
	}
	return g
}

// narrowCases returns float32 inputs that stress rounding: every value of the
// narrow grid, the exact midpoints between neighbours and one float32 ulp
// either side of them, plus random bit patterns.
func narrowCases(g []float64, overflow float64) []float32 {
	var xs []float32
	push := func(v float64) {
		f := float32(v)
		xs = append(xs, f, -f, math.Nextafter32(f, 0), math.Nextafter32(f, float32(math.Inf(1))))
	}
	for i := range g {
		push(g[i])
		next := overflow
		if i+1 < len(g) {
			next = g[i+1]
		}
		push((g[i] + next) / 2) // exact in float64; float32 may round it, hence the neighbours
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 1 << 20 {
		xs = append(xs, math.Float32frombits(r.Uint32()))
	}
	return xs
}

func TestF32ToBF16(t *testing.T) {
	g := grid(0x7f80, BF16ToF32) // 0 … max finite
	for _, x := range narrowCases(g, math.Ldexp(1, 128)) {
		got := F32ToBF16(x)
		if math.IsNaN(float64(x)) {
			if !math.IsNaN(float64(BF16ToF32(got))) || got>>15 != uint16(math.Float32bits(x)>>31) {
				t.Fatalf("NaN %#08x → %#04x", math.Float32bits(x), got)
			}
			continue
		}
		if want := refRound(x, g, math.Ldexp(1, 128), 15, 0x7f80); uint32(got) != want {
			t.Fatalf("F32ToBF16(%v = %#08x) = %#04x, want %#04x", x, math.Float32bits(x), got, want)
		}
	}
	// Named cases: ties to even, overflow, NaN payloads that would round to Inf.
	for _, c := range []struct {
		in   uint32
		want uint16
	}{
		{0x3f808000, 0x3f80}, // 1 + 2^-8: tie, even stays
		{0x3f818000, 0x3f82}, // tie, odd rounds up
		{0x3f808001, 0x3f81}, // just above the tie
		{0x7f7fffff, 0x7f80}, // max float32 → Inf
		{0x7f7f7fff, 0x7f7f}, // below the overflow midpoint
		{0x7f7f8000, 0x7f80}, // the midpoint to 2^128: tie with odd max → Inf
		{0xff800000, 0xff80}, // -Inf
		{0x00000001, 0x0000}, // float32 subnormal → 0
		{0x80008000, 0x8000}, // -tie at zero stays -0
		{0x00018000, 0x0002}, // subnormal tie, odd rounds up
		{0x7f800001, 0x7fc0}, // signalling NaN with a low payload stays NaN
		{0xffffffff, 0xffff}, // NaN, all ones
	} {
		if got := F32ToBF16(math.Float32frombits(c.in)); got != c.want {
			t.Errorf("F32ToBF16(%#08x) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
}

func TestF32ToF16(t *testing.T) {
	g := grid(0x7c00, F16ToF32)
	for _, x := range narrowCases(g, 65536) {
		got := F32ToF16(x)
		if math.IsNaN(float64(x)) {
			if !math.IsNaN(float64(F16ToF32(got))) || got>>15 != uint16(math.Float32bits(x)>>31) {
				t.Fatalf("NaN %#08x → %#04x", math.Float32bits(x), got)
			}
			continue
		}
		if want := refRound(x, g, 65536, 15, 0x7c00); uint32(got) != want {
			t.Fatalf("F32ToF16(%v = %#08x) = %#04x, want %#04x", x, math.Float32bits(x), got, want)
		}
	}
	for _, c := range []struct {
		in   float32
		want uint16
	}{
		{65504, 0x7bff}, {65519.99, 0x7bff}, {65520, 0x7c00}, {1e10, 0x7c00},
		{float32(math.Ldexp(1, -24)), 0x0001}, {float32(math.Ldexp(1, -25)), 0x0000}, // tie to even 0
		{float32(math.Ldexp(3, -26)), 0x0001}, {float32(math.Ldexp(3, -25)), 0x0002}, // 1.5 ulp: tie up to even
	} {
		if got := F32ToF16(c.in); got != c.want {
			t.Errorf("F32ToF16(%v) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
}

func TestDecodeF32Bulk(t *testing.T) {
	// Every 16-bit pattern through the bulk path equals the scalar path.
	src := make([]byte, 2<<16)
	for i := range 1 << 16 {
		binary.LittleEndian.PutUint16(src[2*i:], uint16(i))
	}
	dst := make([]float32, 1<<16)
	for _, c := range []struct {
		dt  DType
		one func(uint16) float32
	}{{BF16, BF16ToF32}, {F16, F16ToF32}} {
		if err := DecodeF32(dst, src, c.dt); err != nil {
			t.Fatal(err)
		}
		for i, v := range dst {
			if math.Float32bits(v) != math.Float32bits(c.one(uint16(i))) {
				t.Fatalf("%s %#x: bulk %v, scalar %v", c.dt, i, v, c.one(uint16(i)))
			}
		}
	}
	b8 := make([]byte, 256)
	for i := range b8 {
		b8[i] = byte(i)
	}
	d8 := make([]float32, 256)
	for _, c := range []struct {
		dt  DType
		one func(uint8) float32
	}{{F8E4M3, F8E4M3ToF32}, {F8E5M2, F8E5M2ToF32}} {
		if err := DecodeF32(d8, b8, c.dt); err != nil {
			t.Fatal(err)
		}
		for i, v := range d8 {
			if math.Float32bits(v) != math.Float32bits(c.one(uint8(i))) {
				t.Fatalf("%s %#x: bulk %v, scalar %v", c.dt, i, v, c.one(uint8(i)))
			}
		}
	}
	// F32 is exact; F64 rounds to nearest even.
	f64 := []float64{1, math.Copysign(0, -1), math.Inf(-1), 1 + math.Ldexp(1, -24), 1 + math.Ldexp(3, -24), 1e300, math.Ldexp(1, -160)}
	want := []float32{1, float32(math.Copysign(0, -1)), float32(math.Inf(-1)), 1, 1 + float32(math.Ldexp(1, -22)), float32(math.Inf(1)), 0}
	raw := make([]byte, 8*len(f64))
	for i, v := range f64 {
		binary.LittleEndian.PutUint64(raw[8*i:], math.Float64bits(v))
	}
	got := make([]float32, len(f64))
	if err := DecodeF32(got, raw, F64); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Errorf("F64 %v → %v, want %v", f64[i], got[i], want[i])
		}
	}
	raw32 := make([]byte, 4*len(want))
	EncodeF32(raw32, want)
	back := make([]float32, len(want))
	if err := DecodeF32(back, raw32, F32); err != nil {
		t.Fatal(err)
	}
	for i := range back {
		if math.Float32bits(back[i]) != math.Float32bits(want[i]) {
			t.Errorf("F32 round trip %v → %v", want[i], back[i])
		}
	}
}

func TestDecodeF32Errors(t *testing.T) {
	for _, dt := range []DType{I64, I32, U8, BOOL, I8, U16, I16, U32, U64} {
		err := DecodeF32(make([]float32, 1), make([]byte, dt.Size()), dt)
		var de *DTypeError
		if !errors.As(err, &de) || de.DType != dt {
			t.Errorf("%s: got %v, want a DTypeError", dt, err)
		}
		tt := &Tensor{Name: "ids", DType: dt, Shape: []int{1}, Data: make([]byte, dt.Size())}
		if _, err := tt.Float32(); !errors.As(err, &de) || de.Tensor != "ids" {
			t.Errorf("%s: Float32 got %v", dt, err)
		}
	}
	if err := DecodeF32(make([]float32, 2), make([]byte, 6), BF16); err == nil {
		t.Error("length mismatch accepted")
	}
	tt := &Tensor{Name: "w", DType: BF16, Shape: []int{2, 2}, Data: make([]byte, 8)}
	if err := tt.DecodeF32(make([]float32, 3)); err == nil {
		t.Error("dst length mismatch accepted")
	}
	if v, err := tt.Float32(); err != nil || len(v) != 4 {
		t.Errorf("Float32: %v %v", v, err)
	}
}

func TestEncodeBF16(t *testing.T) {
	src := []float32{1, -2.5, float32(math.Inf(1)), float32(math.NaN()), 3.3895314e38, 1.00390625}
	dst := make([]byte, 2*len(src))
	EncodeBF16(dst, src)
	for i, f := range src {
		if got := binary.LittleEndian.Uint16(dst[2*i:]); got != F32ToBF16(f) {
			t.Errorf("%v: %#04x want %#04x", f, got, F32ToBF16(f))
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("EncodeBF16 with a short dst did not panic")
		}
	}()
	EncodeBF16(dst[:3], src)
}
