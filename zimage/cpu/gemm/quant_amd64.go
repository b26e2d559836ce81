//go:build amd64 && !purego

package gemm

import (
	"encoding/binary"

	"golang.org/x/sys/cpu"

	"github.com/zimage/zimage/weights"
)

//go:noescape
func deqQ8_0(dst *float32, src *byte, d *float32, nblk int)

//go:noescape
func deqQ4_0(dst *float32, src *byte, d *float32, nblk int)

//go:noescape
func deqQ4_K(dst *float32, src *byte, d *float32, m *float32, nblk int)

//go:noescape
func deqQ6_K(dst *float32, src *byte, d *float32, nblk int)

// useDequantAsm enables the AVX-512 block dequantizers (tests turn it off
// to cover the portable path).
var useDequantAsm = cpu.X86.HasAVX512F

// dequantBlocksAsm dequantizes the whole blocks blk of one row into dst
// (len(blk)/BlockBytes·BlockSize values) with AVX-512 where the dtype has
// an assembly dequantizer, and reports whether it did. sc is scratch for
// the scales (16 floats per block). The scales are computed here exactly
// as weights' dequantizers compute them (float32, one rounding each).
func dequantBlocksAsm(dst []float32, blk []byte, dt weights.DType, sc []float32) bool {
	if !useDequantAsm {
		return false
	}
	bb := dt.BlockBytes()
	nb := len(blk) / bb
	if nb == 0 {
		return true
	}
	f16 := func(o int) float32 { return f16ToF32(binary.LittleEndian.Uint16(blk[o:])) }
	switch dt {
	case weights.Q8_0, weights.Q4_0:
		sc = sc[:nb]
		for i := range sc {
			sc[i] = f16(i * bb)
		}
		_ = dst[nb*32-1]
		if dt == weights.Q8_0 {
			deqQ8_0(&dst[0], &blk[0], &sc[0], nb)
		} else {
			deqQ4_0(&dst[0], &blk[0], &sc[0], nb)
		}
	case weights.Q4_K:
		dg, mg := sc[:8*nb], sc[8*nb:16*nb]
		for i := range nb {
			b := blk[i*bb : (i+1)*bb]
			d, dmin := f16(i*bb), f16(i*bb+2)
			s := b[4:16]
			for j := range 4 {
				dg[8*i+j] = d * float32(s[j]&63)
				mg[8*i+j] = dmin * float32(s[j+4]&63)
				dg[8*i+j+4] = d * float32(s[j+8]&0xf|s[j]>>2&0x30)
				mg[8*i+j+4] = dmin * float32(s[j+8]>>4|s[j+4]>>2&0x30)
			}
		}
		_ = dst[nb*256-1]
		deqQ4_K(&dst[0], &blk[0], &dg[0], &mg[0], nb)
	case weights.Q6_K:
		dg := sc[:16*nb]
		for i := range nb {
			d := f16(i*bb + 208)
			for j, s := range blk[i*bb+192 : i*bb+208] {
				dg[16*i+j] = d * float32(int8(s))
			}
		}
		_ = dst[nb*256-1]
		deqQ6_K(&dst[0], &blk[0], &dg[0], nb)
	default:
		return false
	}
	return true
}
