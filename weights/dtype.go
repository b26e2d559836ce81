package weights

import (
	"fmt"
	"math"
)

// DType is the element type of a stored tensor, named as in safetensors headers.
type DType uint8

// The safetensors dtypes. F8E4M3 is the "fn" variant (no infinities, one NaN
// pattern per sign), which is what safetensors calls F8_E4M3.
const (
	Invalid DType = iota
	BOOL
	U8
	I8
	U16
	I16
	F16
	BF16
	U32
	I32
	F32
	U64
	I64
	F64
	F8E4M3
	F8E5M2
)

var dtypeNames = [...]string{
	Invalid: "INVALID",
	BOOL:    "BOOL",
	U8:      "U8",
	I8:      "I8",
	U16:     "U16",
	I16:     "I16",
	F16:     "F16",
	BF16:    "BF16",
	U32:     "U32",
	I32:     "I32",
	F32:     "F32",
	U64:     "U64",
	I64:     "I64",
	F64:     "F64",
	F8E4M3:  "F8_E4M3",
	F8E5M2:  "F8_E5M2",
}

var dtypeSizes = [...]int{
	BOOL: 1, U8: 1, I8: 1, U16: 2, I16: 2, F16: 2, BF16: 2, U32: 4, I32: 4, F32: 4,
	U64: 8, I64: 8, F64: 8, F8E4M3: 1, F8E5M2: 1,
}

// String returns the safetensors name of the dtype.
func (d DType) String() string {
	if n, ok := quantName(d); ok {
		return n
	}
	if int(d) < len(dtypeNames) {
		return dtypeNames[d]
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// Size returns the size of one element in bytes (0 for Invalid).
func (d DType) Size() int {
	if int(d) < len(dtypeSizes) {
		return dtypeSizes[d]
	}
	return 0
}

// IsFloat reports whether d is a floating-point type.
func (d DType) IsFloat() bool {
	switch d {
	case F16, BF16, F32, F64, F8E4M3, F8E5M2:
		return true
	}
	return false
}

// ParseDType maps a safetensors dtype name to a DType.
func ParseDType(s string) (DType, bool) {
	for i, n := range dtypeNames {
		if i != int(Invalid) && n == s {
			return DType(i), true
		}
	}
	return Invalid, false
}

// BF16ToF32 widens a bfloat16 bit pattern exactly.
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 rounds to the nearest bfloat16, ties to even, as torch's
// .to(torch.bfloat16) does. NaNs stay NaN (quiet, sign kept).
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN: keep the payload's top bits, force quiet
		return uint16(b>>16) | 0x0040
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// F16ToF32 widens an IEEE half-precision bit pattern exactly (subnormals,
// infinities and NaN payloads included).
func F16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp != 0:
		return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
	case man == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal: normalise the mantissa.
	e := uint32(113)
	for man&0x400 == 0 {
		man <<= 1
		e--
	}
	return math.Float32frombits(sign | e<<23 | (man&0x3ff)<<13)
}

// F8E4M3ToF32 widens a float8 e4m3fn value (bias 7, no infinities, S.1111.111
// is NaN) exactly.
func F8E4M3ToF32(v uint8) float32 {
	sign := uint32(v>>7) << 31
	exp := uint32(v>>3) & 0xf
	man := uint32(v) & 0x7
	switch {
	case exp == 0xf && man == 0x7:
		return math.Float32frombits(sign | 0x7fc00000)
	case exp != 0:
		return math.Float32frombits(sign | (exp+120)<<23 | man<<20)
	case man == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal: man · 2^-9.
	f := float32(man) * (1.0 / 512)
	if sign != 0 {
		f = -f
	}
	return f
}

// F8E5M2ToF32 widens a float8 e5m2 value (IEEE-like: bias 15, infinities and
// NaNs) exactly.
func F8E5M2ToF32(v uint8) float32 { return F16ToF32(uint16(v) << 8) }

// f16Table and f8 tables make bulk conversion a lookup.
var (
	f8e4m3Table [256]float32
	f8e5m2Table [256]float32
)

func init() {
	for i := range 256 {
		f8e4m3Table[i] = F8E4M3ToF32(uint8(i))
		f8e5m2Table[i] = F8E5M2ToF32(uint8(i))
	}
}

// F8E4M3Table returns the 256-entry e4m3fn → float32 lookup table.
func F8E4M3Table() *[256]float32 { return &f8e4m3Table }

// F8E5M2Table returns the 256-entry e5m2 → float32 lookup table.
func F8E5M2Table() *[256]float32 { return &f8e5m2Table }

// F32ToF16 rounds to the nearest IEEE half (ties to even), like torch's
// .to(torch.float16): values beyond the largest half round to ±Inf, small ones
// to subnormals or ±0. NaNs stay NaN (quiet, sign and top payload bits kept).
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	man := b & 0x7fffff
	switch {
	case exp == 0xff:
		if man != 0 {
			return sign | 0x7e00 | uint16(man>>13)
		}
		return sign | 0x7c00
	case exp > 142: // ≥ 2^16: beyond half's range even before rounding
		return sign | 0x7c00
	case exp >= 113: // normal half: rebias 127→15, round 13 mantissa bits
		h := uint32(exp-112)<<10 | man>>13
		rest := man & 0x1fff
		if rest > 0x1000 || rest == 0x1000 && h&1 == 1 {
			h++ // may carry into the exponent, up to 0x7c00 = Inf: correct
		}
		return sign | uint16(h)
	case exp < 102: // below half the smallest subnormal (2^-25): rounds to ±0
		return sign
	}
	// Subnormal half: value = m·2^-24 with m = full mantissa >> shift.
	full := man | 0x800000
	shift := uint32(126 - exp) // exp 112 → 14 … exp 102 → 24
	h := full >> shift
	rest := full & (1<<shift - 1)
	half := uint32(1) << (shift - 1)
	if rest > half || rest == half && h&1 == 1 {
		h++ // may become the smallest normal: correct
	}
	return sign | uint16(h)
}
