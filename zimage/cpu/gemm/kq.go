package gemm

import (
	"context"
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/zimage/zimage/weights"
)

// K-quant weights (ggml Q2_K–Q6_K: super-blocks of 256 values)
// on the int8 dot product. While a product runs, each task unpacks its
// columns' super-blocks into the Q8_0 kernel's panel layout (q8.go): int8
// values per 32-value block, a float32 scale per 32 values (Q4_K, Q5_K) or
// per 16 (Q2_K, Q3_K, Q6_K), and for Q2_K/Q4_K/Q5_K a float32 min, so that
// weight = scale·q − min, with the very float32 scale and min products the
// dequantizer forms (weights.Dequantize; Q3_K's and Q6_K's values are
// stored with their offset, −4 or −32, applied). The activations are
// quantized per 32 values as for Q8_0. The arithmetic of one output, from
// acc = 0, over the 32-blocks in order and within a block over its scale
// groups (one, or two halves of 16):
//
//	acc = acc + float32(float32(float32(S)·scale)·d_a)   S = Σ q_a·q, exact in int32
//	acc = acc − float32(min·s_a)                          with mins: s_a = float32(float32(Σ q_a)·d_a) over the group
//
// then C = acc (+ bias). kqReference is that arithmetic as a plain loop;
// the AVX512-VNNI kernels kq8m_4x48 (Q4_K, Q5_K), kq8s16_4x48 (Q3_K,
// Q6_K) and kq8sm_4x48 (Q2_K), their AVX-VNNI twins (gen_q8vnni.go) and
// the Go kqGeneric equal it bit for bit. On VPDPBUSD the activations are
// stored +128 and each group's sum starts at −128·Σq, as for Q8_0.

// kqFormat is how one K-quant type maps onto the int8 tile kernels.
type kqFormat struct {
	dt  weights.DType
	sub int  // scale groups per 32-value block: 1, or 2 (a scale per 16)
	min bool // weight = scale·q − min
	// minRows is the fewest rows of A for which the int8 product beats the
	// bf16 path (KQuantDot): below it unpacking the weights per product
	// costs more than the faster kernel saves. 0: never (Q2_K).
	minRows int
	// unpack writes one super-block's 256 values q (as packed words: value
	// t of a block's quad in byte t), its 8·sub scales, the sums of the
	// values of each scale group and, with min, its 8·sub mins.
	unpack func(q []uint32, sc, mn []float32, sums []int32, blk []byte)
}

// kqFormats: the crossovers (minRows) were measured on Zen 4 against
// MatMulBTQuantBF16Ctx (BenchmarkMatMulBTKQuant with GEMM_SHAPE, K = N =
// 2560): Q4_K at 0.88× the bf16 path's rate at 128 rows, 1.19× at 192;
// Q6_K 0.98× at 192, 1.02–1.03× at 256 and 320, where a whole 256²
// generation (320 rows) came out 1.03–1.04× slower, so it waits for 384.
var kqFormats = map[weights.DType]*kqFormat{
	weights.Q4_K: {dt: weights.Q4_K, sub: 1, min: true, unpack: unpackQ4K, minRows: 192},
	weights.Q5_K: {dt: weights.Q5_K, sub: 1, min: true, unpack: unpackQ5K, minRows: 192},
	weights.Q6_K: {dt: weights.Q6_K, sub: 2, unpack: unpackQ6K, minRows: 384},
	weights.Q3_K: {dt: weights.Q3_K, sub: 2, unpack: unpackQ3K, minRows: 384},
	// Q2_K pays a scale and a min product per 16 values: on Zen 4 its int8
	// product ran no faster than the bf16 path even at 1056 rows (204–214
	// against 207–210 GOP/cpu-s), so KQuantDot leaves it to that more
	// precise path.
	weights.Q2_K: {dt: weights.Q2_K, sub: 2, min: true, unpack: unpackQ2K},
}

// KQuantDot reports whether a product of m rows with K-quant weights of
// dtype dt should take the int8 path (MatMulBTKQuantCtx) on this CPU:
// Q3_K–Q6_K where VPDPBUSD runs (AVX512-VNNI, or AVX-VNNI on 256-bit
// registers) and m reaches the type's crossover (192 rows for Q4_K/Q5_K,
// 384 for Q3_K/Q6_K: the weights are unpacked per product). Otherwise,
// and always for Q2_K (which MatMulBTKQuantCtx computes too, but no
// faster), callers keep the dequantizing GEMMs.
func KQuantDot(dt weights.DType, m int) bool {
	f, ok := kqFormats[dt]
	return ok && f.minRows > 0 && m >= f.minRows && kqKernel.asm
}

// unpackQ2K: 16 scale bytes (low nibble scale, high nibble min), 64 bytes
// of 2-bit values, d and dmin f16 (weights.dequantQ2_K); value i of block
// b = i/32 is bits 2(b%4) of byte (b/4)·32 + i%32.
func unpackQ2K(q []uint32, sc, mn []float32, sums []int32, b []byte) {
	scales, qs := b[:16], b[16:80]
	d, dmin := weights.F16ToF32(binary.LittleEndian.Uint16(b[80:])), weights.F16ToF32(binary.LittleEndian.Uint16(b[82:]))
	for g, v := range scales {
		sc[g] = d * float32(v&0xf)
		mn[g] = dmin * float32(v>>4)
	}
	for blk := range 8 {
		h, sh := blk/4, 2*(blk%4)
		var acc [2]uint32 // per 16-value group: 4 values ≤ 3 per byte
		for w := range 8 {
			v := binary.LittleEndian.Uint32(qs[h*32+4*w:]) >> sh & 0x03030303
			q[blk*8+w] = v
			acc[w/4] += v
		}
		sums[2*blk], sums[2*blk+1] = laneSum(acc[0]), laneSum(acc[1])
	}
}

// unpackQ3K: 32 bytes of high bits, 64 bytes of 2-bit values, 12 bytes of
// 6-bit scales (offset −32), d f16 (weights.dequantQ3_K); value i of block
// b = i/32 is bits 2(b%4) of byte (b/4)·32 + i%32, minus 4 when bit b of
// high byte i%32 is clear; stored as int8 like Q6_K's.
func unpackQ3K(q []uint32, sc, _ []float32, sums []int32, b []byte) {
	hmask, qs, scales := b[:32], b[32:96], b[96:108]
	d := weights.F16ToF32(binary.LittleEndian.Uint16(b[108:]))
	for g := range 16 {
		lo := scales[g%8] >> (4 * (g / 8)) & 0xf
		hi := scales[8+g%4] >> (2 * (g / 4)) & 3
		sc[g] = d * float32(int8(lo|hi<<4)-32)
	}
	for blk := range 8 {
		h, sh := blk/4, 2*(blk%4)
		var acc [2]uint32 // per 16-value group: 4 values ≤ 7 per byte
		for w := range 8 {
			lo := binary.LittleEndian.Uint32(qs[h*32+4*w:]) >> sh & 0x03030303
			hb := binary.LittleEndian.Uint32(hmask[4*w:]) >> blk & 0x01010101
			v := lo | hb<<2
			q[blk*8+w] = ((v | 0x80808080) - 0x04040404) ^ 0x80808080
			acc[w/4] += v
		}
		sums[2*blk] = laneSum(acc[0]) - 16*4
		sums[2*blk+1] = laneSum(acc[1]) - 16*4
	}
}

// laneSum returns the sum of the four bytes of w, each a sum of values
// that did not carry out of its byte.
func laneSum(w uint32) int32 {
	x := w&0x00ff00ff + w>>8&0x00ff00ff
	return int32(x&0xffff + x>>16)
}

// unpackQ4K: d, dmin f16, 12 scale bytes, 128 bytes of nibbles; group g
// (32 values) is the low (g even) or high (g odd) nibbles of bytes
// (g/2)·32 .. +31 (weights.dequantQ4_K).
func unpackQ4K(q []uint32, sc, mn []float32, sums []int32, b []byte) {
	unpackQ45K(q, sc, mn, sums, b, nil, b[16:144])
}

// unpackQ5K: as Q4_K plus 32 bytes of high bits before the nibbles (bit g
// of byte l for value l of group g).
func unpackQ5K(q []uint32, sc, mn []float32, sums []int32, b []byte) {
	unpackQ45K(q, sc, mn, sums, b, b[16:48], b[48:176])
}

// unpackQ45K unpacks a Q4_K (qh nil) or Q5_K block with nibbles qs,
// eight values per step.
func unpackQ45K(q []uint32, sc, mn []float32, sums []int32, b, qh, qs []byte) {
	d, dmin := weights.F16ToF32(binary.LittleEndian.Uint16(b)), weights.F16ToF32(binary.LittleEndian.Uint16(b[2:]))
	s, m := weights.KScaleMin(b[4:16])
	q = q[:64]
	for g := range 8 {
		sc[g] = d * float32(s[g])
		mn[g] = dmin * float32(m[g])
		src, sh, out := qs[g/2*32:][:32], 4*(g%2), q[g*8:][:8]
		var acc uint64 // 4 values ≤ 31 per byte
		for w := range 4 {
			v := binary.LittleEndian.Uint64(src[8*w:]) >> sh & 0x0f0f0f0f0f0f0f0f
			if qh != nil {
				v |= (binary.LittleEndian.Uint64(qh[8*w:]) >> g & 0x0101010101010101) << 4
			}
			out[2*w], out[2*w+1] = uint32(v), uint32(v>>32)
			acc += v
		}
		sums[g] = laneSum64(acc)
	}
}

// laneSum64 returns the sum of the eight bytes of w, each a sum of values
// that did not carry out of its byte.
func laneSum64(w uint64) int32 {
	x := w&0x00ff00ff00ff00ff + w>>8&0x00ff00ff00ff00ff
	x = x&0x0000ffff0000ffff + x>>16&0x0000ffff0000ffff
	return int32(x&0xffffffff + x>>32)
}

// unpackQ6K: 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 signed
// scales, d f16 (weights.dequantQ6_K); values are stored as int8 q−32:
// per byte (v|0x80)−0x20 cannot borrow, and flipping bit 7 back gives
// v−32 mod 256.
func unpackQ6K(q []uint32, sc, _ []float32, sums []int32, b []byte) {
	d := weights.F16ToF32(binary.LittleEndian.Uint16(b[208:]))
	const lo4, lo2, hi8, off = 0x0f0f0f0f0f0f0f0f, 0x0303030303030303, 0x8080808080808080, 0x2020202020202020
	for h := range 2 {
		ql, qh, s := b[h*64:h*64+64], b[128+h*32:128+h*32+32], b[192+h*8:192+h*8+8]
		for j, v := range s {
			sc[h*8+j] = d * float32(int8(v))
		}
		out := q[h*32 : h*32+32] // 128 values
		var acc [8]uint64        // per 16-value group: 2 values ≤ 63 per byte
		for w := range 4 {       // eight values of each quarter per step
			l0 := binary.LittleEndian.Uint64(ql[8*w:])
			l1 := binary.LittleEndian.Uint64(ql[32+8*w:])
			hb := binary.LittleEndian.Uint64(qh[8*w:])
			for i, v := range [4]uint64{
				l0&lo4 | (hb&lo2)<<4,
				l1&lo4 | (hb>>2&lo2)<<4,
				l0>>4&lo4 | (hb>>4&lo2)<<4,
				l1>>4&lo4 | (hb>>6&lo2)<<4,
			} {
				x := ((v | hi8) - off) ^ hi8
				out[i*8+2*w], out[i*8+2*w+1] = uint32(x), uint32(x>>32)
				acc[2*i+w/2] += v
			}
		}
		for j, a := range acc {
			sums[h*8+j] = laneSum64(a) - 16*32
		}
	}
}

// packKQB packs columns j0..j0+cols of B (rows of nb/8 super-blocks of f)
// as packQ8B does: values [block][8 quads][48 columns][4 bytes], scales,
// corrections (−128·Σq of the group) and, with f.min, mins
// [block][f.sub][48]; padding columns are zero.
func packKQB(f *kqFormat, bq []int8, db, mb []float32, corr []int32, b []byte, j0, cols, nb int) {
	if cols < q8NR {
		clear(bq)
		clear(db)
		clear(corr)
		clear(mb)
	}
	bpb, nsb := f.dt.BlockBytes(), nb/8
	words := unsafe.Slice((*uint32)(unsafe.Pointer(&bq[0])), len(bq)/4)
	// Sixteen columns at a time: each column's super-block unpacks into a
	// row of tmp (contiguous writes), then one 16×64 transpose puts the
	// super-block's 64 words of the 16 columns into their panel rows.
	var tmp [16][64]uint32
	var sc, mn [16]float32
	var sums [16]int32
	for c0 := 0; c0 < cols; c0 += 16 {
		cn := min(16, cols-c0)
		if cn < 16 {
			tmp = [16][64]uint32{} // padding columns stay zero
		}
		for s := range nsb {
			if canPrefetch && s+2 < nsb {
				// The 16 rows are 16 streams the hardware prefetcher
				// does not keep up with: fetch two super-blocks ahead.
				prefetchRows(unsafe.Pointer(&b[((j0+c0)*nsb+s+2)*bpb]), nsb*bpb, cn, bpb)
			}
			for c := range cn {
				jj := c0 + c
				f.unpack(tmp[c][:], sc[:8*f.sub], mn[:8*f.sub], sums[:8*f.sub], b[((j0+jj)*nsb+s)*bpb:][:bpb])
				for g := range 8 * f.sub { // scale groups of the super-block
					i := (s*8*f.sub+g)*q8NR + jj
					db[i] = sc[g]
					corr[i] = -128 * sums[g]
					if f.min {
						mb[i] = mn[g]
					}
				}
			}
			// Word w of block blk is panel row s·64 + blk·8 + w.
			kqTranspose(words[s*64*q8NR+c0:], q8NR, &tmp)
		}
	}
}

// kqTransposeGo writes src's 16 rows of 64 words as 64 rows of 16 words,
// ld words apart, at dst.
func kqTransposeGo(dst []uint32, ld int, src *[16][64]uint32) {
	for w := range 64 {
		row := dst[w*ld : w*ld+16]
		for c := range row {
			row[c] = src[c][w]
		}
	}
}

// kqTile is a K-quant tile kernel: a 4×48 tile over nblk 32-blocks, the
// panel layouts of packKQB and q8RunFmt (sa: A's scaled sums per scale
// group [block][f.sub][4 rows], read when f.min).
type kqTile struct {
	asm  bool
	name string
	fn   func(f *kqFormat, a []byte, da, sa []float32, b []int8, db, mb []float32, corr []int32, c []float32, ldc, nblk int)
}

var genericKQ = kqTile{name: "generic", fn: kqGeneric}

// kqGeneric is the tile kernel in Go, the same operations as the assembly.
func kqGeneric(f *kqFormat, a []byte, da, sa []float32, b []int8, db, mb []float32, corr []int32, c []float32, ldc, nblk int) {
	var acc [q8MR][q8NR]float32
	per := 8 / f.sub
	for blk := range nblk {
		ab := a[blk*q8Block*q8MR:]
		bb := b[blk*q8Block*q8NR:]
		for h := range f.sub {
			var s [q8MR][q8NR]int32
			g := (blk*f.sub + h) * q8NR
			for i := range q8MR {
				copy(s[i][:], corr[g:g+q8NR])
			}
			for q := h * per; q < (h+1)*per; q++ {
				for i := range q8MR {
					for j := range q8NR {
						for t := range 4 {
							s[i][j] += int32(ab[i*q8Block+q*4+t]) * int32(bb[q*q8NR*4+j*4+t])
						}
					}
				}
			}
			for i := range q8MR {
				for j := range q8NR {
					acc[i][j] += float32(float32(float32(s[i][j])*db[g+j]) * da[blk*q8MR+i])
					if f.min {
						acc[i][j] -= float32(mb[g+j] * sa[(blk*f.sub+h)*q8MR+i])
					}
				}
			}
		}
	}
	for i := range q8MR {
		copy(c[i*ldc:i*ldc+q8NR], acc[i][:])
	}
}

// blockSums sets s[(blk·sub+h)·q8MR] = float32(float32(Σ q_a)·d_a), the sum
// over scale group h of block blk (sub groups per block), for the nb
// blocks of one A row quantized by quantRow (bytes q_a+128, scales d).
func blockSums(s []float32, aq []byte, d []float32, nb, sub int) {
	per := 8 / sub // words per group
	for blk := range nb {
		row := aq[blk*q8Block*q8MR:][:q8Block]
		for h := range sub {
			var sum int32
			for w := h * per; w < (h+1)*per; w++ {
				v := binary.LittleEndian.Uint32(row[4*w:]) ^ 0x80808080 // q_a as signed bytes
				sum += int32(int8(v)) + int32(int8(v>>8)) + int32(int8(v>>16)) + int32(int8(v>>24))
			}
			s[(blk*sub+h)*q8MR] = float32(float32(sum) * d[blk*q8MR])
		}
	}
}

// MatMulBTKQuantCtx computes C[m,n] = A[m,k]·B[n,k]ᵀ (+ bias) for B stored
// as K-quant super-blocks of dtype dt (Q2_K–Q6_K; n rows of k/256
// blocks) with the int8 arithmetic above. k must be a multiple of 256.
// Without VPDPBUSD it runs the Go kernel (exact, slow): callers check
// KQuantDot.
func MatMulBTKQuantCtx(ctx context.Context, c, a []float32, b []byte, dt weights.DType, bias []float32, m, n, k int) error {
	f, ok := kqFormats[dt]
	if !ok {
		return fmt.Errorf("%w: %v has no int8 kernel (Q2_K–Q6_K do)", ErrShape, dt)
	}
	if err := checkDims(m, n, k); err != nil {
		return err
	}
	if k%dt.BlockSize() != 0 {
		return fmt.Errorf("%w: k=%d is not a multiple of the %v block size %d", ErrShape, k, dt, dt.BlockSize())
	}
	if err := checkLens(c, a, bias, m, n, k); err != nil {
		return err
	}
	if need := n * (k / dt.BlockSize()) * dt.BlockBytes(); len(b) < need {
		return fmt.Errorf("%w: B has %d bytes, want %d (%d×%d %v)", ErrShape, len(b), need, n, k, dt)
	}
	stop, release, err := watch(ctx)
	if err != nil {
		return err
	}
	q8RunFmt(stop, []q8Out{{c: c, b: b, bias: bias, n: n}}, a, m, k, f)
	return finish(ctx, stop, release, nil)
}

// MatMulBTKQuantMultiCtx computes Cᵢ [m, nᵢ] = A [m, k]·Bᵢᵀ for several
// K-quant weights of the same dtype dt and k (Bᵢ holds len(Cᵢ)/m rows) in
// one pass: A is quantized once and one parallel region's tasks span every
// output's panels. Each result equals MatMulBTKQuantCtx's bit for bit.
func MatMulBTKQuantMultiCtx(ctx context.Context, cs [][]float32, a []float32, bs [][]byte, dt weights.DType, m, k int) error {
	f, ok := kqFormats[dt]
	switch {
	case !ok:
		return fmt.Errorf("%w: %v has no int8 kernel (Q2_K–Q6_K do)", ErrShape, dt)
	case len(cs) != len(bs) || len(bs) == 0:
		return fmt.Errorf("%w: %d outputs, %d weights", ErrShape, len(cs), len(bs))
	case m <= 0 || k%dt.BlockSize() != 0:
		return fmt.Errorf("%w: m=%d, k=%d (want m > 0 and k a multiple of %d)", ErrShape, m, k, dt.BlockSize())
	}
	outs := make([]q8Out, len(bs))
	for i, b := range bs {
		n := len(cs[i]) / m
		if err := checkDims(m, n, k); err != nil {
			return err
		}
		if err := checkLens(cs[i], a, nil, m, n, k); err != nil {
			return err
		}
		if need := n * (k / dt.BlockSize()) * dt.BlockBytes(); len(b) < need {
			return fmt.Errorf("%w: weight %d has %d bytes, want %d (%d×%d %v)", ErrShape, i, len(b), need, n, k, dt)
		}
		outs[i] = q8Out{c: cs[i], b: b, n: n}
	}
	stop, release, err := watch(ctx)
	if err != nil {
		return err
	}
	q8RunFmt(stop, outs, a, m, k, f)
	return finish(ctx, stop, release, nil)
}

// kqReference is the arithmetic of MatMulBTKQuantCtx as a plain loop, from
// the dequantized scales and mins (kqFormat.unpack).
func kqReference(f *kqFormat, c, a []float32, b []byte, bias []float32, m, n, k int) {
	nb := k / q8Block
	bpb, nsb := f.dt.BlockBytes(), k/256
	qa := make([]int8, k)
	da := make([]float32, nb)
	qw := make([]int8, k)
	sc := make([]float32, nb*f.sub)
	mn := make([]float32, nb*f.sub)
	var words [64]uint32
	var sums [16]int32
	for j := range n {
		for s := range nsb {
			f.unpack(words[:], sc[s*8*f.sub:(s+1)*8*f.sub], mn[s*8*f.sub:(s+1)*8*f.sub], sums[:8*f.sub], b[(j*nsb+s)*bpb:][:bpb])
			for i, w := range words {
				for t := range 4 {
					qw[s*256+4*i+t] = int8(w >> (8 * t))
				}
			}
		}
		for i := range m {
			for blk := range nb {
				da[blk] = quantizeBlock(qa[blk*q8Block:], a[i*k+blk*q8Block:])
			}
			var acc float32
			for blk := range nb {
				for h := range f.sub {
					var s, sa int32
					for t := h * q8Block / f.sub; t < (h+1)*q8Block/f.sub; t++ {
						s += int32(qa[blk*q8Block+t]) * int32(qw[blk*q8Block+t])
						sa += int32(qa[blk*q8Block+t])
					}
					acc += float32(float32(float32(s)*sc[blk*f.sub+h]) * da[blk])
					if f.min {
						acc -= float32(mn[blk*f.sub+h] * float32(float32(sa)*da[blk]))
					}
				}
			}
			if bias != nil {
				acc += bias[j]
			}
			c[i*n+j] = acc
		}
	}
}
