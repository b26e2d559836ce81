package weights

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Quantization to the ggml block types, bit-exact to ggml's
// quantize_row_*_ref in plain float32 arithmetic (ggml-quants.c built
// without FMA contraction, as llama.cpp's ggml-base is on x86-64; checked
// by TestQuantizeMatchesGGMLC): the same operation order, the same
// rounding (half away from zero for Q8_0, truncation after +0.5 for the
// others) and the scale stored as the nearest f16. gguf-py's numpy
// (gguf-py/gguf/quants.py) gives the same bytes (TestQuantizeMatchesGGUFPy)
// except for Q4_0/Q5_0 values whose x·id + 8.5 (16.5) rounds differently in
// its float64 (about one in 10^7). Products are rounded explicitly
// (float32(a*b)) so that the compiler cannot fuse them into FMAs.

// QuantizeFunc quantizes one block of BlockSize floats into BlockBytes bytes.
type QuantizeFunc func(dst []byte, x []float32)

// QuantizeBlock returns the block quantizer of dt, or nil when zimage cannot
// quantize to dt.
func QuantizeBlock(dt DType) QuantizeFunc {
	switch dt {
	case Q8_0:
		return quantQ8_0
	case Q4_0:
		return quantQ4_0
	case Q4_1:
		return quantQ4_1
	case Q5_0:
		return quantQ5_0
	case Q5_1:
		return quantQ5_1
	}
	return quantizeK(dt)
}

// Quantize quantizes src (a whole number of blocks) into dst.
func Quantize(dst []byte, src []float32, dt DType) error {
	f := QuantizeBlock(dt)
	if f == nil {
		return &DTypeError{DType: dt, Op: "quantize"}
	}
	bs, bb := dt.BlockSize(), dt.BlockBytes()
	if len(src)%bs != 0 || len(dst) != len(src)/bs*bb {
		return fmt.Errorf("weights: quantize %s: %d values into %d bytes (want a multiple of %d values, %d bytes per block)", dt, len(src), len(dst), bs, bb)
	}
	for i := range len(src) / bs {
		f(dst[i*bb:(i+1)*bb], src[i*bs:(i+1)*bs])
	}
	return nil
}

func putF16(b []byte, f float32) { binary.LittleEndian.PutUint16(b, F32ToF16(f)) }

// roundAway rounds half away from zero (C's roundf, gguf-py's np_roundf).
func roundAway(v float32) float32 {
	a := float32(math.Abs(float64(v)))
	fl := float32(math.Floor(float64(a)))
	r := fl + float32(math.Floor(float64(2*(a-fl))))
	if v < 0 {
		return -r
	}
	return r
}

func inv(d float32) float32 {
	if d == 0 {
		return 0
	}
	return 1 / d
}

func quantQ8_0(b []byte, x []float32) {
	var amax float32
	for _, v := range x {
		amax = max(amax, float32(math.Abs(float64(v))))
	}
	d := amax / 127
	id := inv(d)
	putF16(b, d)
	for j, v := range x {
		b[2+j] = byte(int8(roundAway(v * id)))
	}
}

// absMax returns the element of largest magnitude (the first on ties).
func absMax(x []float32) float32 {
	var m, am float32
	for _, v := range x {
		if a := float32(math.Abs(float64(v))); a > am {
			m, am = v, a
		}
	}
	return m
}

// truncQ is ggml's (int)(x·id + off) in float32 (the product rounded
// before the add), clipped to [0, hi]. gguf-py computes x·id + off in
// float64, as an FMA would, and differs for about one value in 10^7.
func truncQ(v, id, off float32, hi int) uint8 {
	f := float32(v*id) + off
	q := int(float32(math.Trunc(float64(f))))
	return uint8(min(max(q, 0), hi))
}

func quantQ4_0(b []byte, x []float32) {
	d := absMax(x) / -8
	id := inv(d)
	putF16(b, d)
	for j := range 16 {
		b[2+j] = truncQ(x[j], id, 8.5, 15) | truncQ(x[j+16], id, 8.5, 15)<<4
	}
}

func quantQ5_0(b []byte, x []float32) {
	d := absMax(x) / -16
	id := inv(d)
	putF16(b, d)
	var qh uint32
	for j := range 16 {
		lo, hi := truncQ(x[j], id, 16.5, 31), truncQ(x[j+16], id, 16.5, 31)
		b[6+j] = lo&0xf | hi<<4
		qh |= uint32(lo>>4)<<j | uint32(hi>>4)<<(j+16)
	}
	binary.LittleEndian.PutUint32(b[2:], qh)
}

// minMax returns the smallest and largest of x with ggml's strict
// comparisons (not Go's min and max, which order -0 before +0: ggml keeps
// the first of equal values, so a block of ±0 starting with +0 has min +0).
func minMax(x []float32) (lo, hi float32) {
	lo, hi = x[0], x[0]
	for _, v := range x[1:] {
		if v < lo {
			lo = v
		}
		if v > hi {
			hi = v
		}
	}
	return lo, hi
}

// truncQ1 is trunc((x − min)·id + 0.5) in float32, clipped to [0, hi].
func truncQ1(v, lo, id float32, hi int) uint8 {
	f := float32(float32(v-lo)*id) + 0.5
	q := int(float32(math.Trunc(float64(f))))
	return uint8(min(max(q, 0), hi))
}

func quantQ4_1(b []byte, x []float32) {
	lo, hi := minMax(x)
	d := (hi - lo) / 15
	id := inv(d)
	putF16(b, d)
	putF16(b[2:], lo)
	for j := range 16 {
		b[4+j] = truncQ1(x[j], lo, id, 15) | truncQ1(x[j+16], lo, id, 15)<<4
	}
}

func quantQ5_1(b []byte, x []float32) {
	lo, hi := minMax(x)
	d := (hi - lo) / 31
	id := inv(d)
	putF16(b, d)
	putF16(b[2:], lo)
	var qh uint32
	for j := range 16 {
		l, h := truncQ1(x[j], lo, id, 31), truncQ1(x[j+16], lo, id, 31)
		b[8+j] = l&0xf | h<<4
		qh |= uint32(l>>4)<<j | uint32(h>>4)<<(j+16)
	}
	binary.LittleEndian.PutUint32(b[4:], qh)
}
