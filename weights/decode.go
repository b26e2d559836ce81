package weights

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"
)

// f16Table maps every IEEE half bit pattern to float32; built on first use
// (256 KiB) because bulk F16 decoding is then a single load per element.
var f16Table = sync.OnceValue(func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for i := range t {
		t[i] = F16ToF32(uint16(i))
	}
	return &t
})

// DecodeF32 widens little-endian elements of dtype dt in src into dst. F32,
// F16, BF16 and both F8 types convert exactly; F64 rounds to nearest even;
// the ggml quantized types are dequantized (see Dequantize).
// len(src) must be len(dst)*dt.Size(). Integer and bool dtypes are rejected.
func DecodeF32(dst []float32, src []byte, dt DType) error {
	if dt.IsQuantized() {
		return Dequantize(dst, src, dt)
	}
	if !dt.IsFloat() {
		return &DTypeError{DType: dt, Op: "decode to F32"}
	}
	if len(src) != len(dst)*dt.Size() {
		return fmt.Errorf("weights: decode %s to F32: %d source bytes for %d elements (want %d)", dt, len(src), len(dst), len(dst)*dt.Size())
	}
	switch dt {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
		}
	case F16:
		t := f16Table()
		for i := range dst {
			dst[i] = t[binary.LittleEndian.Uint16(src[2*i:])]
		}
	case F8E4M3:
		for i, b := range src {
			dst[i] = f8e4m3Table[b]
		}
	case F8E5M2:
		for i, b := range src {
			dst[i] = f8e5m2Table[b]
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))
		}
	}
	return nil
}

// DecodeF32 widens the tensor into dst, which must hold NumElements values.
func (t *Tensor) DecodeF32(dst []float32) error {
	if !t.DType.IsFloat() && !t.DType.IsQuantized() {
		return &DTypeError{Tensor: t.Name, DType: t.DType, Op: "decode to F32"}
	}
	if n := t.NumElements(); len(dst) != n {
		return fmt.Errorf("weights: tensor %q: decode to F32: destination holds %d values, tensor has %d", t.Name, len(dst), n)
	}
	if err := DecodeF32(dst, t.Data, t.DType); err != nil {
		return fmt.Errorf("weights: tensor %q: %w", t.Name, err)
	}
	return nil
}

// Float32 returns the tensor's values widened to float32 in a new slice.
func (t *Tensor) Float32() ([]float32, error) {
	if !t.DType.IsFloat() && !t.DType.IsQuantized() {
		return nil, &DTypeError{Tensor: t.Name, DType: t.DType, Op: "decode to F32"}
	}
	dst := make([]float32, t.NumElements())
	if err := t.DecodeF32(dst); err != nil {
		return nil, err
	}
	return dst, nil
}

// EncodeBF16 rounds src to bfloat16 (nearest, ties to even; NaN stays NaN)
// and stores the little-endian results in dst, which must be 2*len(src)
// bytes long; a wrong length is a programming error and panics.
func EncodeBF16(dst []byte, src []float32) {
	if len(dst) != 2*len(src) {
		panic(fmt.Sprintf("weights: EncodeBF16: dst has %d bytes for %d values", len(dst), len(src)))
	}
	for i, f := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], F32ToBF16(f))
	}
}

// EncodeF16 rounds src to IEEE half precision (nearest, ties to even;
// overflow to ±Inf; NaN stays NaN) into dst, which must be 2*len(src) bytes.
func EncodeF16(dst []byte, src []float32) {
	if len(dst) != 2*len(src) {
		panic(fmt.Sprintf("weights: EncodeF16: dst has %d bytes for %d values", len(dst), len(src)))
	}
	for i, f := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], F32ToF16(f))
	}
}

// EncodeF32 stores src as little-endian float32 in dst (4*len(src) bytes).
func EncodeF32(dst []byte, src []float32) {
	if len(dst) != 4*len(src) {
		panic(fmt.Sprintf("weights: EncodeF32: dst has %d bytes for %d values", len(dst), len(src)))
	}
	for i, f := range src {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(f))
	}
}
