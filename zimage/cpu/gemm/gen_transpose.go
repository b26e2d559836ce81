//go:build ignore

package main

import "fmt"

// transpose emits the transpose of Z0..Z15 as a 16×16 matrix of 32-bit
// values, in place (Z16..Z31 scratch): unpack ps (row pairs), unpack pd
// (64-bit pairs), two rounds of 128-bit lane shuffles. Shared by
// gen_kernels.go (tr16*) and gen_quant.go (quantized panels).
func transpose(p func(string, ...any)) {
	z := func(i int) string { return fmt.Sprintf("Z%d", i) }
	for g := 0; g < 4; g++ {
		r := 4 * g
		p("VUNPCKLPS %s, %s, %s", z(r+1), z(r), z(16+r))
		p("VUNPCKHPS %s, %s, %s", z(r+1), z(r), z(16+r+1))
		p("VUNPCKLPS %s, %s, %s", z(r+3), z(r+2), z(16+r+2))
		p("VUNPCKHPS %s, %s, %s", z(r+3), z(r+2), z(16+r+3))
	}
	for g := 0; g < 4; g++ {
		t := 16 + 4*g
		p("VUNPCKLPD %s, %s, %s", z(t+2), z(t), z(4*g))
		p("VUNPCKHPD %s, %s, %s", z(t+2), z(t), z(4*g+1))
		p("VUNPCKLPD %s, %s, %s", z(t+3), z(t+1), z(4*g+2))
		p("VUNPCKHPD %s, %s, %s", z(t+3), z(t+1), z(4*g+3))
	}
	for j := 0; j < 4; j++ {
		p("VSHUFF32X4 $0x44, %s, %s, %s", z(4+j), z(j), z(16+4*j))
		p("VSHUFF32X4 $0x44, %s, %s, %s", z(12+j), z(8+j), z(16+4*j+1))
		p("VSHUFF32X4 $0xEE, %s, %s, %s", z(4+j), z(j), z(16+4*j+2))
		p("VSHUFF32X4 $0xEE, %s, %s, %s", z(12+j), z(8+j), z(16+4*j+3))
	}
	for j := 0; j < 4; j++ {
		v := 16 + 4*j
		p("VSHUFF32X4 $0x88, %s, %s, %s", z(v+1), z(v), z(j))
		p("VSHUFF32X4 $0xDD, %s, %s, %s", z(v+1), z(v), z(4+j))
		p("VSHUFF32X4 $0x88, %s, %s, %s", z(v+3), z(v+2), z(8+j))
		p("VSHUFF32X4 $0xDD, %s, %s, %s", z(v+3), z(v+2), z(12+j))
	}
}
