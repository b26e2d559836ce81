//go:build !amd64 || purego

package gemm

func winoIn(dst []uint16, ds, hi int, p0, p1, p2, p3 []float32, nblk int) {
	winoInGo(dst, ds, hi, p0, p1, p2, p3, nblk)
}

func winoOut(r0, r1, m []float32, ms int, bias float32, nblk int) {
	winoOutGo(r0, r1, m, ms, bias, nblk)
}

var useWinoAsm = false
