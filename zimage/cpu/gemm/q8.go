package gemm

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"sync/atomic"
	"unsafe"

	"github.com/zimage/zimage/weights"
)

// Q8_0 weights (ggml block_q8_0: a little-endian float16 scale d and 32
// int8 values q; value = d·q) times float32 activations, computed the way
// llama.cpp computes q8_0 × q8_0:
//
//  1. Each row of A is quantized per block of 32 values: d_a = max|x|/127,
//     q_a = x·(1/d_a) rounded to nearest even (llama.cpp rounds half away
//     from zero; ties are rare and this is what VCVTPS2DQ does), d_a = 0
//     gives zeros, d_a kept as float32.
//  2. Per block, the integer dot product Σ q_a·q_b is exact in int32.
//  3. acc = acc + float32(float32(float32(Σ)·d_b)·d_a) over the blocks in
//     order (each product and sum rounded to float32; no FMA), from
//     acc = 0; then C = acc (+ bias).
//
// q8Reference is that arithmetic as a plain loop; every kernel equals it
// bit for bit. On AVX512-VNNI the block sums are VPDPBUSD, which
// multiplies unsigned by signed bytes: A is stored as q_a+128 and each
// block's sum starts at -128·Σq_b (precomputed while packing B), which
// cancels the offset exactly.

// Q80BlockBytes is the size of one Q8_0 block (32 values).
const Q80BlockBytes = 34

const (
	q8Block = 32
	q8MR    = 4  // rows per tile
	q8NR    = 48 // columns per tile
)

// q8Kernel is the tile kernel in use: kq8_4x48 (AVX512-VNNI) or the Go
// loop; tests switch it.
var q8Kernel = pickQ8Kernel()

// Q8KernelName reports the Q8_0 kernel: "avx512vnni", "avxvnni" or
// "generic".
func Q8KernelName() string {
	if q8Kernel.asm {
		return q8Kernel.name
	}
	return "generic"
}

// HasQ8Dot reports whether the Q8_0 GEMM runs on VPDPBUSD. Without it the
// kernel is a plain Go loop (exact but slow): callers with a float32 path
// (dequantize, then the float32 GEMM) should prefer that one.
func HasQ8Dot() bool { return q8Kernel.asm }

// Q80UnpackedMinRows is the fewest rows of A for which MatMulBTQ80 (Q8_0
// weights repacked per product) beats dequantizing them for the bf16
// kernel (MatMulBTQuantBF16Ctx): repacking costs the same whatever the
// rows. Measured on Zen 4 at K = N = 2560: 0.99–1.06× the bf16 path's rate
// at 64 rows, 1.16–1.19× at 128. (Pre-packed weights, PackQ80, win from 9
// rows on; the CPU backend still keeps products with fewer rows off the
// int8 path, packed or not, so that their bits never depend on packing.)
const Q80UnpackedMinRows = 64

type q8Tile struct {
	asm  bool
	name string
	fn   func(a []byte, da []float32, b []int8, db []float32, corr []int32, c []float32, ldc, nblk int)
}

// MatMulBTQ80 computes C[m,n] = A[m,k]·B[n,k]ᵀ (+ bias) for B stored as
// Q8_0 blocks, row by row (n rows of k/32 blocks), with the arithmetic
// above. k must be a multiple of 32.
func MatMulBTQ80(c, a []float32, b []byte, bias []float32, m, n, k int) error {
	return MatMulBTQ80Ctx(context.Background(), c, a, b, bias, m, n, k)
}

// MatMulBTQ80Ctx is MatMulBTQ80 that gives up when ctx is done.
func MatMulBTQ80Ctx(ctx context.Context, c, a []float32, b []byte, bias []float32, m, n, k int) error {
	if err := checkDims(m, n, k); err != nil {
		return err
	}
	if k%q8Block != 0 {
		return fmt.Errorf("%w: k=%d is not a multiple of the Q8_0 block size 32", ErrShape, k)
	}
	if err := checkLens(c, a, bias, m, n, k); err != nil {
		return err
	}
	if need := n * (k / q8Block) * Q80BlockBytes; len(b) < need {
		return fmt.Errorf("%w: B has %d bytes, want %d (%d×%d Q8_0)", ErrShape, len(b), need, n, k)
	}
	stop, release, err := watch(ctx)
	if err != nil {
		return err
	}
	q8Run(stop, c, a, b, nil, bias, m, n, k)
	return finish(ctx, stop, release, nil)
}

// Q80Packed is a Q8_0 matrix [n, k] repacked once into the kernel's
// panel layout (see packQ8B): 40 bytes per block instead of 34, and no
// packing per product. Weights used many times (every DiT step) should be
// packed at load time and the original bytes dropped.
type Q80Packed struct {
	n, k int
	bq   []int8    // [panel][block][8 quads][48 columns][4]
	db   []float32 // [panel][block][48]
	corr []int32   // [panel][block][48]
}

// N and K report the matrix size.
func (p *Q80Packed) N() int { return p.n }
func (p *Q80Packed) K() int { return p.k }

// PackQ80 repacks n rows of k/32 Q8_0 blocks for MatMulBTQ80Packed.
func PackQ80(b []byte, n, k int) (*Q80Packed, error) {
	if n < 0 || k < 0 || k%q8Block != 0 {
		return nil, fmt.Errorf("%w: Q8_0 matrix %d×%d (k must be a multiple of 32)", ErrShape, n, k)
	}
	nb := k / q8Block
	if need := n * nb * Q80BlockBytes; len(b) < need {
		return nil, fmt.Errorf("%w: B has %d bytes, want %d (%d×%d Q8_0)", ErrShape, len(b), need, n, k)
	}
	npan := ceilDiv(n, q8NR)
	p := &Q80Packed{n: n, k: k,
		bq: make([]int8, npan*nb*q8Block*q8NR), db: make([]float32, npan*nb*q8NR), corr: make([]int32, npan*nb*q8NR)}
	if nb == 0 {
		return p, nil
	}
	parallelFor(numThreads(), npan, nil, func(_, t int) {
		j0 := t * q8NR
		packQ8B(p.bq[t*nb*q8Block*q8NR:(t+1)*nb*q8Block*q8NR], p.db[t*nb*q8NR:(t+1)*nb*q8NR],
			p.corr[t*nb*q8NR:(t+1)*nb*q8NR], b, j0, min(q8NR, n-j0), nb)
	})
	return p, nil
}

// MatMulBTQ80PackedCtx is MatMulBTQ80Ctx with B packed by PackQ80.
func MatMulBTQ80PackedCtx(ctx context.Context, c, a []float32, b *Q80Packed, bias []float32, m int) error {
	n, k := b.n, b.k
	if err := checkDims(m, n, k); err != nil {
		return err
	}
	if err := checkLens(c, a, bias, m, n, k); err != nil {
		return err
	}
	stop, release, err := watch(ctx)
	if err != nil {
		return err
	}
	q8Run(stop, c, a, nil, b, bias, m, n, k)
	return finish(ctx, stop, release, nil)
}

// quantizeRowGo quantizes the nb blocks of one row of A into the panel
// layout: 32 bytes q+128 per block every 128 bytes, scales every 4 values.
func quantizeRowGo(dst []byte, d []float32, x []float32, nb int) {
	var q [q8Block]int8
	for blk := range nb {
		d[blk*q8MR] = quantizeBlock(q[:], x[blk*q8Block:])
		row := dst[blk*q8Block*q8MR:][:q8Block]
		for t, v := range q {
			row[t] = byte(int(v) + 128)
		}
	}
}

// quantizeBlock quantizes 32 values: q = round(x/d), d = max|x|/127.
func quantizeBlock(q []int8, x []float32) float32 {
	var amax uint32 // |x| compared as bits: same order for finite values
	for _, v := range x[:q8Block] {
		amax = max(amax, math.Float32bits(v)&0x7fffffff)
	}
	d := math.Float32frombits(amax) / 127
	var id float32
	if d != 0 {
		id = 1 / d
	}
	for i, v := range x[:q8Block] {
		r := math.RoundToEven(float64(v * id))
		q[i] = int8(max(-127, min(127, r)))
	}
	return d
}

// q8Reference is the arithmetic of MatMulBTQ80 as a plain loop.
func q8Reference(c, a []float32, b []byte, bias []float32, m, n, k int) {
	nb := k / q8Block
	qa := make([]int8, k)
	da := make([]float32, nb)
	for i := range m {
		for blk := range nb {
			da[blk] = quantizeBlock(qa[blk*q8Block:], a[i*k+blk*q8Block:])
		}
		for j := range n {
			row := b[j*nb*Q80BlockBytes:]
			var acc float32
			for blk := range nb {
				blkB := row[blk*Q80BlockBytes : (blk+1)*Q80BlockBytes]
				db := weights.F16ToF32(binary.LittleEndian.Uint16(blkB))
				var s int32
				for t := range q8Block {
					s += int32(qa[blk*q8Block+t]) * int32(int8(blkB[2+t]))
				}
				acc += float32(float32(float32(s)*db) * da[blk])
			}
			if bias != nil {
				acc += bias[j]
			}
			c[i*n+j] = acc
		}
	}
}

// q8Run is q8RunMulti for one output.
func q8Run(stop *atomic.Bool, c, a []float32, b []byte, pb *Q80Packed, bias []float32, m, n, k int) {
	q8RunMulti(stop, []q8Out{{c: c, b: b, pb: pb, bias: bias, n: n}}, a, m, k)
}

// packQ8B packs columns j0..j0+cols of B (Q8_0 rows) as [block][8 quads]
// [48 columns][4 bytes] int8, scales [block][48] and corrections
// [block][48] = -128·Σq; padding columns are zero. Sixteen columns and
// eight blocks at a time, the values are gathered row by row and put in
// place by one 16×64 word transpose (kqTranspose); a last partial group
// of blocks is written word by word.
func packQ8B(bq []int8, db []float32, corr []int32, b []byte, j0, cols, nb int) {
	if cols < q8NR {
		clear(bq)
		clear(db)
		clear(corr)
	}
	words := unsafe.Slice((*uint32)(unsafe.Pointer(&bq[0])), len(bq)/4)
	var tmp [16][64]uint32
	nb8 := nb / 8 * 8
	for c0 := 0; c0 < cols; c0 += 16 {
		cn := min(16, cols-c0)
		if cn < 16 {
			tmp = [16][64]uint32{} // padding columns stay zero
		}
		for g0 := 0; g0 < nb8; g0 += 8 {
			for c := range cn {
				jj := c0 + c
				row := b[((j0+jj)*nb+g0)*Q80BlockBytes:][:8*Q80BlockBytes]
				for blk := range 8 {
					src := row[blk*Q80BlockBytes : (blk+1)*Q80BlockBytes]
					db[(g0+blk)*q8NR+jj] = weights.F16ToF32(binary.LittleEndian.Uint16(src))
					var lanes uint64 // (q+128) summed in four 16-bit lanes
					for w := range 4 {
						x := binary.LittleEndian.Uint64(src[2+8*w:])
						tmp[c][blk*8+2*w], tmp[c][blk*8+2*w+1] = uint32(x), uint32(x>>32)
						u := x ^ 0x8080808080808080
						lanes += u&0x00ff00ff00ff00ff + u>>8&0x00ff00ff00ff00ff
					}
					lanes = lanes&0x0000ffff0000ffff + lanes>>16&0x0000ffff0000ffff
					corr[(g0+blk)*q8NR+jj] = -128 * (int32(lanes&0xffffffff+lanes>>32) - 128*q8Block)
				}
			}
			kqTranspose(words[g0*8*q8NR+c0:], q8NR, &tmp)
		}
	}
	for jj := range cols {
		row := b[(j0+jj)*nb*Q80BlockBytes:][:nb*Q80BlockBytes]
		for blk := nb8; blk < nb; blk++ {
			src := row[blk*Q80BlockBytes : (blk+1)*Q80BlockBytes]
			db[blk*q8NR+jj] = weights.F16ToF32(binary.LittleEndian.Uint16(src))
			var s int32
			for _, v := range src[2:] {
				s += int32(int8(v))
			}
			corr[blk*q8NR+jj] = -128 * s
			w := words[blk*8*q8NR+jj:]
			for q := range 8 {
				w[q*q8NR] = binary.LittleEndian.Uint32(src[2+4*q:])
			}
		}
	}
}

// kq8Generic is the tile kernel in Go, the same operations as kq8_4x48:
// the K-quant tile's (kqGeneric) with one scale per block and no min.
func kq8Generic(a []byte, da []float32, b []int8, db []float32, corr []int32, c []float32, ldc, nblk int) {
	kqGeneric(&q8Plain, a, da, nil, b, db, nil, corr, c, ldc, nblk)
}

// q8Plain is Q8_0's layout as a kqFormat: a scale per 32-value block.
var q8Plain = kqFormat{dt: weights.Q8_0, sub: 1}

var genericQ8 = q8Tile{name: "generic", fn: kq8Generic}
