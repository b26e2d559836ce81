package gemm

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/zimage/zimage/weights"
)

// randQ80 returns n rows of k/32 random Q8_0 blocks (scales in float16, q
// over the whole int8 range, -128 included).
func randQ80(r *rand.Rand, n, k int) []byte {
	nb := k / q8Block
	b := make([]byte, n*nb*Q80BlockBytes)
	for blk := 0; blk < n*nb; blk++ {
		o := blk * Q80BlockBytes
		d := float32(r.Float64()*0.02 + 1e-4)
		binary.LittleEndian.PutUint16(b[o:], f32ToF16(d))
		for t := range q8Block {
			b[o+2+t] = byte(r.IntN(256))
		}
	}
	return b
}

// f32ToF16 rounds to float16 (normal range only; enough for test scales).
func f32ToF16(f float32) uint16 {
	u := math.Float32bits(f)
	exp := int(u>>23&0xff) - 127 + 15
	man := (u & 0x7fffff) + 0x1000 // round half up
	if man&0x800000 != 0 {
		man = 0
		exp++
	}
	return uint16(u>>16&0x8000) | uint16(exp)<<10 | uint16(man>>13)
}

func forEachQ8Kernel(t *testing.T, f func(t *testing.T)) {
	ks, skipped := archQ8Kernels()
	ks = append([]q8Tile{genericQ8}, ks...)
	for _, s := range skipped {
		t.Run(s[0], func(t *testing.T) { t.Skip(s[1]) })
	}
	for _, k := range ks {
		t.Run(k.name, func(t *testing.T) {
			prev := q8Kernel
			q8Kernel = k
			defer func() { q8Kernel = prev }()
			f(t)
		})
	}
}

// TestMatMulBTQ80 requires every Q8_0 kernel to equal q8Reference bit for
// bit on ragged shapes (rows and columns not multiples of the 4×48 tile),
// with and without bias, blocks of zeros included, several threads.
func TestMatMulBTQ80(t *testing.T) {
	defer func(f int) { inlineFlops = f }(inlineFlops)
	inlineFlops = 0
	forEachQ8Kernel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(41, 42))
		for _, sh := range []shape{{1, 1, 32}, {3, 47, 64}, {4, 48, 32}, {5, 49, 96}, {9, 100, 320}, {33, 96, 256}, {70, 145, 512}, {2, 3, 0}} {
			a := randSlice(r, sh.m*sh.k)
			if sh.k >= 64 {
				clear(a[32:64]) // a zero block: d_a = 0
			}
			b := randQ80(r, sh.n, sh.k)
			for _, withBias := range []bool{false, true} {
				var bias []float32
				if withBias {
					bias = randSlice(r, sh.n)
				}
				got := make([]float32, sh.m*sh.n)
				want := make([]float32, sh.m*sh.n)
				if err := MatMulBTQ80(got, a, b, bias, sh.m, sh.n, sh.k); err != nil {
					t.Fatal(err)
				}
				q8Reference(want, a, b, bias, sh.m, sh.n, sh.k)
				pb, err := PackQ80(b, sh.n, sh.k)
				if err != nil {
					t.Fatal(err)
				}
				gotP := make([]float32, sh.m*sh.n)
				if err := MatMulBTQ80PackedCtx(t.Context(), gotP, a, pb, bias, sh.m); err != nil {
					t.Fatal(err)
				}
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) || math.Float32bits(gotP[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%+v bias=%v: C[%d,%d] = %g (packed B: %g), reference %g", sh, withBias, i/sh.n, i%sh.n, got[i], gotP[i], want[i])
					}
				}
			}
		}
	})
}

// TestQ80QuantizeRow checks the assembly row quantizer against the Go loop
// (bit-identical bytes and scales), zero and ragged-magnitude blocks
// included.
func TestQ80QuantizeRow(t *testing.T) {
	r := rand.New(rand.NewPCG(45, 46))
	const nb = 37
	x := randSlice(r, nb*q8Block)
	clear(x[64:96])
	for i := 96; i < 128; i++ {
		x[i] *= 1e-30
	}
	x[200] = 1e30
	want, got := make([]byte, nb*q8Block*q8MR), make([]byte, nb*q8Block*q8MR)
	wd, gd := make([]float32, nb*q8MR), make([]float32, nb*q8MR)
	quantizeRowGo(want, wd, x, nb)
	quantRow(got, gd, x, nb)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("byte %d (block %d) = %d, want %d", i, i/(q8Block*q8MR), got[i], want[i])
		}
	}
	for i := range wd {
		if math.Float32bits(gd[i]) != math.Float32bits(wd[i]) {
			t.Fatalf("scale %d = %g, want %g", i, gd[i], wd[i])
		}
	}
}

// TestQ80Accuracy checks the quantized product against the float64 product
// of A and the dequantized weights: activation rounding to 8 bits keeps it
// within ~1% of Σ|a·b|.
func TestQ80Accuracy(t *testing.T) {
	r := rand.New(rand.NewPCG(43, 44))
	const m, n, k = 7, 20, 256
	a := randSlice(r, m*k)
	b := randQ80(r, n, k)
	deq := make([]float32, n*k)
	for j := range n {
		for blk := range k / q8Block {
			src := b[(j*k/q8Block+blk)*Q80BlockBytes:]
			d := weights.F16ToF32(binary.LittleEndian.Uint16(src))
			for t := range q8Block {
				deq[j*k+blk*q8Block+t] = d * float32(int8(src[2+t]))
			}
		}
	}
	got := make([]float32, m*n)
	if err := MatMulBTQ80(got, a, b, nil, m, n, k); err != nil {
		t.Fatal(err)
	}
	for i := range m {
		for j := range n {
			var s, sa float64
			for p := range k {
				s += float64(a[i*k+p]) * float64(deq[j*k+p])
				sa += math.Abs(float64(a[i*k+p]) * float64(deq[j*k+p]))
			}
			if e := math.Abs(float64(got[i*n+j])-s) / sa; e > 0.01 {
				t.Fatalf("C[%d,%d] = %g, exact %g (error %.3g of Σ|ab|)", i, j, got[i*n+j], s, e)
			}
		}
	}
}

func TestQ80Errors(t *testing.T) {
	c := make([]float32, 4)
	for name, err := range map[string]error{
		"k not a multiple of 32": MatMulBTQ80(c, make([]float32, 40), make([]byte, 100), nil, 2, 2, 20),
		"short B":                MatMulBTQ80(c, make([]float32, 64), make([]byte, 67), nil, 2, 2, 32),
		"short C":                MatMulBTQ80(c[:3], make([]float32, 64), make([]byte, 68), nil, 2, 2, 32),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	t.Logf("Q8_0 kernel: %s", Q8KernelName())
}
