//go:build amd64 && !purego

package gemm

//go:generate go run gen_winograd.go

// winoInAsm is winoInGo on 16 tiles per step (AVX-512); rows p0..p3 of
// 32·nblk+2 floats, ds in uint16 values.
//
//go:noescape
func winoInAsm(dst *uint16, ds, hi int, p0, p1, p2, p3 *float32, nblk int)

// winoOutAsm is winoOutGo on 16 tiles per step (AVX-512).
//
//go:noescape
func winoOutAsm(r0, r1, m *float32, ms int, bias float32, nblk int)

// useWinoAsm enables the AVX-512 Winograd transforms (tests turn it off
// to compare with the Go loops).
var useWinoAsm = hasPackAsm

// winoIn writes V_ξ = Bᵀ·d·B of 16·nblk tiles rounded to bf16: tile j
// reads columns 2j..2j+3 of the rows p0..p3 and gets dst[ξ·ds+2j+hi]
// (hi 0 or 1: the low or high half of a pair word; the other half is
// left as it is).
func winoIn(dst []uint16, ds, hi int, p0, p1, p2, p3 []float32, nblk int) {
	if !useWinoAsm || nblk == 0 {
		winoInGo(dst, ds, hi, p0, p1, p2, p3, nblk)
		return
	}
	l := 32*nblk + 2
	_, _, _, _ = p0[l-1], p1[l-1], p2[l-1], p3[l-1]
	_ = dst[15*ds+32*nblk-1]
	winoInAsm(&dst[0], ds, hi&1, &p0[0], &p1[0], &p2[0], &p3[0], nblk)
}

// winoOut writes Y = Aᵀ·M·A + bias of 16·nblk tiles: tile j reads
// m[ξ·ms+j] and writes r0[2j], r0[2j+1], r1[2j], r1[2j+1].
func winoOut(r0, r1, m []float32, ms int, bias float32, nblk int) {
	if !useWinoAsm || nblk == 0 {
		winoOutGo(r0, r1, m, ms, bias, nblk)
		return
	}
	_, _ = r0[32*nblk-1], r1[32*nblk-1]
	_ = m[15*ms+16*nblk-1]
	winoOutAsm(&r0[0], &r1[0], &m[0], ms, bias, nblk)
}
