package weights

import "fmt"

// The ggml block-quantized dtypes a GGUF file may hold. A tensor of one of
// these types stores its rows (the last dimension) as consecutive blocks of
// BlockSize elements in BlockBytes bytes; Size returns 0 for them because an
// element has no whole-byte size. They never appear in safetensors headers.
const (
	Q4_0 DType = 32 + iota
	Q4_1
	Q5_0
	Q5_1
	Q8_0
	Q2_K
	Q3_K
	Q4_K
	Q5_K
	Q6_K
	quantEnd
)

// qk is the super-block size of the k-quants (ggml's QK_K).
const qk = 256

type quantInfo struct {
	name   string
	block  int // elements per block
	bytes  int // bytes per block
	ggmlID uint32
}

var quantInfos = [quantEnd - Q4_0]quantInfo{
	Q4_0 - Q4_0: {"Q4_0", 32, 2 + 16, 2},
	Q4_1 - Q4_0: {"Q4_1", 32, 2 + 2 + 16, 3},
	Q5_0 - Q4_0: {"Q5_0", 32, 2 + 4 + 16, 6},
	Q5_1 - Q4_0: {"Q5_1", 32, 2 + 2 + 4 + 16, 7},
	Q8_0 - Q4_0: {"Q8_0", 32, 2 + 32, 8},
	Q2_K - Q4_0: {"Q2_K", qk, 2 + 2 + qk/16 + qk/4, 10},
	Q3_K - Q4_0: {"Q3_K", qk, 2 + qk/4 + qk/8 + 12, 11},
	Q4_K - Q4_0: {"Q4_K", qk, 2 + 2 + qk/2 + 12, 12},
	Q5_K - Q4_0: {"Q5_K", qk, 2 + 2 + qk/2 + qk/8 + 12, 13},
	Q6_K - Q4_0: {"Q6_K", qk, 2 + qk/2 + qk/4 + qk/16, 14},
}

// IsQuantized reports whether d is one of the ggml block-quantized types.
func (d DType) IsQuantized() bool { return d >= Q4_0 && d < quantEnd }

// BlockSize returns the number of elements per storage block: the block
// length of a quantized type, 1 for the plain types, 0 for Invalid.
func (d DType) BlockSize() int {
	if d.IsQuantized() {
		return quantInfos[d-Q4_0].block
	}
	if d.Size() > 0 {
		return 1
	}
	return 0
}

// BlockBytes returns the bytes per storage block (the element size for the
// plain types).
func (d DType) BlockBytes() int {
	if d.IsQuantized() {
		return quantInfos[d-Q4_0].bytes
	}
	return d.Size()
}

// RowBytes returns the storage size of n consecutive elements along a row,
// and false when n is not a whole number of blocks or d has no size.
func (d DType) RowBytes(n int) (int, bool) {
	bs := d.BlockSize()
	if bs == 0 || n < 0 || n%bs != 0 {
		return 0, false
	}
	return n / bs * d.BlockBytes(), true
}

// TensorBytes returns the storage size of a tensor of the given shape; the
// last dimension must be a whole number of blocks. Overflow reports false.
func (d DType) TensorBytes(shape []int) (int64, bool) {
	row := 1
	if len(shape) > 0 {
		row = shape[len(shape)-1]
	}
	rb, ok := d.RowBytes(row)
	if !ok {
		return 0, false
	}
	total := int64(rb)
	for _, s := range shape[:max(len(shape)-1, 0)] {
		if s < 0 || s != 0 && total > (1<<62)/int64(s) {
			return 0, false
		}
		total *= int64(s)
	}
	return total, true
}

func quantName(d DType) (string, bool) {
	if d.IsQuantized() {
		return quantInfos[d-Q4_0].name, true
	}
	return "", false
}

// ParseQuantType maps a lower- or upper-case quantized type name ("q8_0",
// "Q4_K") to its DType.
func ParseQuantType(s string) (DType, error) {
	for i, q := range quantInfos {
		if equalFoldASCII(q.name, s) {
			return Q4_0 + DType(i), nil
		}
	}
	return Invalid, fmt.Errorf("weights: unknown quantized type %q", s)
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
