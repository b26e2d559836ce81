package weights

import (
	"encoding/binary"
	"fmt"
)

// Dequantization of the ggml block types, bit-exact to gguf-py's numpy
// reference (gguf-py/gguf/quants.py), which computes in float32 with one
// rounding per operation: every product below is converted to float32
// before the following add so that no fused multiply-add changes a bit
// (a product kept in a variable too: Go fuses across statements). The same
// bits as ggml's C dequantize_row_* (TestDequantizeMatchesGGMLC).

// Dequantize widens len(dst) elements of quantized dtype dt stored in src (a
// whole number of blocks: len(src) = len(dst)/BlockSize*BlockBytes).
func Dequantize(dst []float32, src []byte, dt DType) error {
	if !dt.IsQuantized() {
		return &DTypeError{DType: dt, Op: "dequantize"}
	}
	bs, bb := dt.BlockSize(), dt.BlockBytes()
	if len(dst)%bs != 0 || len(src) != len(dst)/bs*bb {
		return fmt.Errorf("weights: dequantize %s: %d source bytes for %d elements (want a multiple of %d elements in %d-byte blocks)", dt, len(src), len(dst), bs, bb)
	}
	f := dequantFuncs[dt-Q4_0]
	for i := range len(dst) / bs {
		f(dst[i*bs:(i+1)*bs], src[i*bb:(i+1)*bb])
	}
	return nil
}

// DequantBlockFunc dequantizes one block (BlockBytes bytes) into BlockSize
// floats. Both slices must have exactly those lengths.
type DequantBlockFunc func(dst []float32, blk []byte)

// DequantBlock returns the block dequantizer for a quantized dtype (nil for
// other dtypes). GEMM packing routines use it to expand tiles on the fly.
func DequantBlock(dt DType) DequantBlockFunc {
	if !dt.IsQuantized() {
		return nil
	}
	return dequantFuncs[dt-Q4_0]
}

var dequantFuncs = [quantEnd - Q4_0]DequantBlockFunc{
	Q4_0 - Q4_0: dequantQ4_0,
	Q4_1 - Q4_0: dequantQ4_1,
	Q5_0 - Q4_0: dequantQ5_0,
	Q5_1 - Q4_0: dequantQ5_1,
	Q8_0 - Q4_0: dequantQ8_0,
	Q2_K - Q4_0: dequantQ2_K,
	Q3_K - Q4_0: dequantQ3_K,
	Q4_K - Q4_0: dequantQ4_K,
	Q5_K - Q4_0: dequantQ5_K,
	Q6_K - Q4_0: dequantQ6_K,
}

func f16at(b []byte) float32 { return f16Table()[binary.LittleEndian.Uint16(b)] }

// Q4_0: d f16, 16 bytes of nibbles; element j is the low nibble of byte j,
// element j+16 the high nibble, both offset by -8.
func dequantQ4_0(y []float32, b []byte) {
	d := f16at(b)
	qs, y := b[2:18], y[:32]
	for j := range 16 {
		y[j] = d * float32(int(qs[j]&0xf)-8)
		y[j+16] = d * float32(int(qs[j]>>4)-8)
	}
}

// Q4_1: d and min f16, then nibbles as Q4_0 without offset; y = d·q + m.
func dequantQ4_1(y []float32, b []byte) {
	d, m := f16at(b), f16at(b[2:])
	qs := b[4:20]
	for j := range 16 {
		y[j] = float32(d*float32(qs[j]&0xf)) + m
		y[j+16] = float32(d*float32(qs[j]>>4)) + m
	}
}

// Q5_0: d f16, 32 high bits (bit j for element j), nibbles as Q4_0; offset -16.
func dequantQ5_0(y []float32, b []byte) {
	d := f16at(b)
	qh := binary.LittleEndian.Uint32(b[2:])
	qs := b[6:22]
	for j := range 16 {
		lo := int(qs[j]&0xf) | int(qh>>j&1)<<4
		hi := int(qs[j]>>4) | int(qh>>(j+16)&1)<<4
		y[j] = d * float32(lo-16)
		y[j+16] = d * float32(hi-16)
	}
}

// Q5_1: d, min, 32 high bits, nibbles; y = d·q + m.
func dequantQ5_1(y []float32, b []byte) {
	d, m := f16at(b), f16at(b[2:])
	qh := binary.LittleEndian.Uint32(b[4:])
	qs := b[8:24]
	for j := range 16 {
		lo := uint32(qs[j]&0xf) | (qh>>j&1)<<4
		hi := uint32(qs[j]>>4) | (qh>>(j+16)&1)<<4
		y[j] = float32(d*float32(lo)) + m
		y[j+16] = float32(d*float32(hi)) + m
	}
}

// Q8_0: d f16 and 32 signed bytes.
func dequantQ8_0(y []float32, b []byte) {
	d := f16at(b)
	q, y := b[2:34], y[:32]
	for j := range 32 {
		y[j] = float32(int8(q[j])) * d
	}
}

// Q2_K: 16 scale bytes (low nibble scale, high nibble min), 64 bytes of
// 2-bit values, d and dmin f16. Element i = h·128 + s·32 + l takes bits 2s
// of byte h·32 + l and belongs to group i/16.
func dequantQ2_K(y []float32, b []byte) {
	sc, qs := b[:16], b[16:80]
	d, dmin := f16at(b[80:]), f16at(b[82:])
	for g := range 16 {
		dl := d * float32(sc[g]&0xf)
		ml := float32(dmin * float32(sc[g]>>4))
		for e := range 16 {
			i := g*16 + e
			h, s, l := i/128, i/32%4, i%32
			q := float32(qs[h*32+l] >> (2 * s) & 3)
			y[i] = float32(dl*q) - ml
		}
	}
}

// Q3_K: 32 bytes of high bits, 64 bytes of 2-bit values, 12 bytes of packed
// 6-bit scales (offset -32), d f16. A clear high bit subtracts 4.
func dequantQ3_K(y []float32, b []byte) {
	hmask, qs, scales := b[:32], b[32:96], b[96:108]
	d := f16at(b[108:])
	for g := range 16 {
		lo := scales[g%8] >> (4 * (g / 8)) & 0xf
		hi := scales[8+g%4] >> (2 * (g / 4)) & 3
		dl := d * float32(int8(lo|hi<<4)-32)
		for e := range 16 {
			i := g*16 + e
			h, s, l := i/128, i/32%4, i%32
			q := int8(qs[h*32+l] >> (2 * s) & 3)
			if hmask[i%32]>>(i/32)&1 == 0 {
				q -= 4
			}
			y[i] = dl * float32(q)
		}
	}
}

// kScaleMin unpacks the eight 6-bit scales and mins of a Q4_K/Q5_K block.
func kScaleMin(s []byte) (sc, m [8]uint8) {
	for j := range 4 {
		sc[j] = s[j] & 63
		m[j] = s[j+4] & 63
		sc[j+4] = s[j+8]&0xf | s[j]>>2&0x30
		m[j+4] = s[j+8]>>4 | s[j+4]>>2&0x30
	}
	return sc, m
}

// Q4_K: d, dmin f16, 12 scale bytes, 128 bytes of nibbles. Group g (32
// elements) uses the low (g even) or high (g odd) nibbles of bytes
// (g/2)·32 .. +31.
func dequantQ4_K(y []float32, b []byte) {
	d, dmin := f16at(b), f16at(b[2:])
	sc, m := kScaleMin(b[4:16])
	qs := b[16:144]
	for g := range 8 {
		dg := d * float32(sc[g])
		mg := float32(dmin * float32(m[g]))
		q, yg := qs[g/2*32:g/2*32+32], y[g*32:g*32+32]
		sh := 4 * (g % 2)
		for l := range 32 {
			yg[l] = float32(dg*float32(q[l]>>sh&0xf)) - mg
		}
	}
}

// Q5_K: as Q4_K plus 32 bytes of high bits (bit g of byte l for element l
// of group g).
func dequantQ5_K(y []float32, b []byte) {
	d, dmin := f16at(b), f16at(b[2:])
	sc, m := kScaleMin(b[4:16])
	qh, qs := b[16:48], b[48:176]
	for g := range 8 {
		dg := d * float32(sc[g])
		mg := float32(dmin * float32(m[g]))
		q := qs[g/2*32 : g/2*32+32]
		sh := 4 * (g % 2)
		for l := range 32 {
			v := q[l]>>sh&0xf | (qh[l]>>g&1)<<4
			y[g*32+l] = float32(dg*float32(v)) - mg
		}
	}
}

// Q6_K: 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 signed scales,
// d f16. In each 128-element half h, byte l of the half's 64 low bytes and
// 32 high bytes gives elements l, l+32, l+64, l+96 (low nibbles of bytes l
// and l+32, then their high nibbles; high bits 2s of byte l); offset -32;
// element i uses scale i/16.
func dequantQ6_K(y []float32, b []byte) {
	y = y[:256]
	d := f16at(b[208:])
	for h := range 2 {
		ql, qh, sc := b[h*64:h*64+64], b[128+h*32:128+h*32+32], b[192+h*8:192+h*8+8]
		yh := y[h*128 : h*128+128]
		var dg [8]float32
		for j, s := range sc {
			dg[j] = d * float32(int8(s))
		}
		for l := range 32 {
			is := l / 16
			hi := qh[l]
			yh[l] = dg[is] * float32(int8(ql[l]&0xf|(hi&3)<<4)-32)
			yh[l+32] = dg[is+2] * float32(int8(ql[l+32]&0xf|(hi>>2&3)<<4)-32)
			yh[l+64] = dg[is+4] * float32(int8(ql[l]>>4|(hi>>4&3)<<4)-32)
			yh[l+96] = dg[is+6] * float32(int8(ql[l+32]>>4|(hi>>6&3)<<4)-32)
		}
	}
}

// DequantizeTo returns a copy of a quantized tensor in dtype to (F32, BF16
// or F16), in new host memory. Other tensors are returned as they are.
func DequantizeTo(t *Tensor, to DType) (*Tensor, error) {
	if !t.DType.IsQuantized() {
		return t, nil
	}
	if to != F32 && to != BF16 && to != F16 {
		return nil, &DTypeError{Tensor: t.Name, DType: to, Op: "dequantize to"}
	}
	n := t.NumElements()
	f := make([]float32, n)
	if err := t.DecodeF32(f); err != nil {
		return nil, err
	}
	out := &Tensor{Name: t.Name, DType: to, Shape: t.Shape, File: t.File, Data: make([]byte, n*to.Size())}
	switch to {
	case F32:
		EncodeF32(out.Data, f)
	case BF16:
		EncodeBF16(out.Data, f)
	default:
		EncodeF16(out.Data, f)
	}
	return out, nil
}

// KScaleMin returns the eight 6-bit scales and mins packed in the 12 scale
// bytes of a Q4_K or Q5_K block (for kernels that unpack blocks themselves).
func KScaleMin(s []byte) (sc, m [8]uint8) { return kScaleMin(s) }
