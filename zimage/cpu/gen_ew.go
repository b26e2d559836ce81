//go:build ignore

// gen_ew writes ew_amd64.s: the element-wise row kernels of ew.go in
// AVX-512F (16 lanes) and AVX2 (8 lanes). Every kernel does the float32
// operations of its Go reference (ew.go) in the same order, one rounding
// per Go operation: separate VMULPS/VADDPS, never an FMA (Go does not
// contract a*b+c on amd64). Run with `go generate` in this directory.
package main

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
)

type isa struct {
	name  string // function suffix
	reg   string // vector register prefix
	lanes int
	xor   string // bitwise xor for the register width
}

var isas = []isa{
	{"AVX512", "Z", 16, "VPXORD"},
	{"AVX2", "Y", 8, "VXORPS"},
}

// kernel is one routine: args its Go parameters (name, size), body the loop
// body. In the body @N is vector register N (only 0..11: AVX2 has 16), %B
// the vector width in bytes and %H half of it; the loop steps the pointers
// named in step by the given byte counts. n counts float32 elements of the
// first operand and is a positive multiple of the lane count.
type kernel struct {
	name, doc string
	args      []arg
	pre       string // before the loop (broadcasts, constants)
	body      string
	step      map[string]string // register → "%B" or "%H" or "2*%B"
}

type arg struct {
	name string
	size int
	reg  string // general register ("" for float32 scalars, read in pre)
}

var ptrs = func(names ...string) []arg {
	regs := []string{"DI", "SI", "DX", "BX", "R8", "R9", "R10", "R11"}
	var a []arg
	for i, n := range names {
		a = append(a, arg{n, 8, regs[i]})
	}
	return a
}

func kernels() []kernel {
	n := arg{"n", 8, "CX"}
	f := func(name string) arg { return arg{name, 4, ""} }
	return []kernel{
		{name: "add", doc: "dst[i] = a[i] + c[i]",
			args: append(ptrs("dst", "a", "c"), n),
			body: `
	VMOVUPS (SI), @0
	VADDPS (DX), @0, @0
	VMOVUPS @0, (DI)`,
			step: map[string]string{"DI": "%B", "SI": "%B", "DX": "%B"}},
		{name: "mul", doc: "dst[i] = a[i]·c[i]",
			args: append(ptrs("dst", "a", "c"), n),
			body: `
	VMOVUPS (SI), @0
	VMULPS (DX), @0, @0
	VMOVUPS @0, (DI)`,
			step: map[string]string{"DI": "%B", "SI": "%B", "DX": "%B"}},
		{name: "gatedAdd", doc: "dst[i] = a[i] + float32(gate[i]·c[i])",
			args: append(ptrs("dst", "a", "gate", "c"), n),
			body: `
	VMOVUPS (DX), @0
	VMULPS (BX), @0, @0
	VMOVUPS (SI), @1
	VADDPS @0, @1, @1
	VMOVUPS @1, (DI)`,
			step: map[string]string{"DI": "%B", "SI": "%B", "DX": "%B", "BX": "%B"}},
		{name: "scale", doc: "dst[i] = src[i]·s",
			args: append(ptrs("dst", "src"), n, f("s")),
			pre: `
	VBROADCASTSS s+24(FP), @8`,
			body: `
	VMOVUPS (SI), @0
	VMULPS @8, @0, @0
	VMOVUPS @0, (DI)`,
			step: map[string]string{"DI": "%B", "SI": "%B"}},
		{name: "scaleMul", doc: "dst[i] = float32(src[i]·s)·w[i]",
			args: append(ptrs("dst", "src", "w"), n, f("s")),
			pre: `
	VBROADCASTSS s+32(FP), @8`,
			body: `
	VMOVUPS (SI), @0
	VMULPS @8, @0, @0
	VMULPS (DX), @0, @0
	VMOVUPS @0, (DI)`,
			step: map[string]string{"DI": "%B", "SI": "%B", "DX": "%B"}},
		{name: "scaleShift", doc: "dst[i] = float32(src[i]·s) + c",
			args: append(ptrs("dst", "src"), n, f("s"), f("c")),
			pre: `
	VBROADCASTSS s+24(FP), @8
	VBROADCASTSS c+28(FP), @9`,
			body: `
	VMOVUPS (SI), @0
	VMULPS @8, @0, @0
	VADDPS @9, @0, @0
	VMOVUPS @0, (DI)`,
			step: map[string]string{"DI": "%B", "SI": "%B"}},
		// Pairs (a, c) = (src[2j], src[2j+1]) rotate by cos[j], sin[j]:
		// products x·[co co] and swap(x)·[si si], the even lanes of the
		// second negated, then one add: a·co − c·si and c·co + a·si, each
		// product rounded once as in Go.
		{name: "ropePairs", doc: "interleaved RoPE of n/2 pairs (see ropePairsGo)",
			args: append(ptrs("dst", "src", "co", "si"), n),
			pre: `
	VMOVUPS evensign%I<>(SB), @8`,
			body: `
	VMOVUPS (SI), @0
	VPMOVZXDQ (DX), @1
	VMOVSLDUP @1, @1
	VPMOVZXDQ (BX), @2
	VMOVSLDUP @2, @2
	VPERMILPS $0xb1, @0, @3
	VMULPS @1, @0, @0
	VMULPS @2, @3, @3
	%XOR @8, @3, @3
	VADDPS @3, @0, @0
	VMOVUPS @0, (DI)`,
			step: map[string]string{"DI": "%B", "SI": "%B", "DX": "%H", "BX": "%H"}},
		{name: "ropeHalves", doc: "dlo[j] = a·co − c·si, dhi[j] = c·co + a·si (see ropeHalvesGo)",
			args: append(ptrs("dlo", "dhi", "a", "c", "co", "si"), n),
			body: `
	VMOVUPS (DX), @0
	VMOVUPS (BX), @1
	VMOVUPS (R8), @2
	VMOVUPS (R9), @3
	VMULPS @2, @0, @4
	VMULPS @3, @1, @5
	VSUBPS @5, @4, @4
	VMULPS @2, @1, @5
	VMULPS @3, @0, @6
	VADDPS @6, @5, @5
	VMOVUPS @4, (DI)
	VMOVUPS @5, (SI)`,
			step: map[string]string{"DI": "%B", "SI": "%B", "DX": "%B", "BX": "%B", "R8": "%B", "R9": "%B"}},
		{name: "dupPairs", doc: "dst[2i] = dst[2i+1] = src[i]",
			args: append(ptrs("dst", "src"), n),
			pre: `
	VMOVUPS duplo%I<>(SB), @8
	VMOVUPS duphi%I<>(SB), @9`,
			body: `
	VMOVUPS (SI), @0
	VPERMPS @0, @8, @1
	VPERMPS @0, @9, @2
	VMOVUPS @1, (DI)
	VMOVUPS @2, %B(DI)`,
			step: map[string]string{"DI": "2*%B", "SI": "%B"}},
		{name: "dupPairs2", doc: "dst0[2i] = dst0[2i+1] = dst1[2i] = dst1[2i+1] = src[i]",
			args: append(ptrs("dst0", "dst1", "src"), n),
			pre: `
	VMOVUPS duplo%I<>(SB), @8
	VMOVUPS duphi%I<>(SB), @9`,
			body: `
	VMOVUPS (DX), @0
	VPERMPS @0, @8, @1
	VPERMPS @0, @9, @2
	VMOVUPS @1, (DI)
	VMOVUPS @2, %B(DI)
	VMOVUPS @1, (SI)
	VMOVUPS @2, %B(SI)`,
			step: map[string]string{"DI": "2*%B", "SI": "2*%B", "DX": "%B"}},
	}
}

var vreg = regexp.MustCompile(`@(\d+)`)

func main() {
	var b bytes.Buffer
	b.WriteString(`// Code generated by gen_ew.go; DO NOT EDIT.

//go:build amd64 && !purego

#include "textflag.h"

`)
	for _, s := range isas {
		data(&b, "evensign"+s.name, s.lanes, func(i int) uint32 {
			if i%2 == 0 {
				return 0x80000000
			}
			return 0
		})
		data(&b, "duplo"+s.name, s.lanes, func(i int) uint32 { return uint32(i / 2) })
		data(&b, "duphi"+s.name, s.lanes, func(i int) uint32 { return uint32(s.lanes/2 + i/2) })
	}
	for _, s := range isas {
		for _, k := range kernels() {
			emit(&b, s, k)
		}
	}
	if err := os.WriteFile("ew_amd64.s", b.Bytes(), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func data(b *bytes.Buffer, name string, lanes int, v func(int) uint32) {
	for i := range lanes {
		fmt.Fprintf(b, "DATA %s<>+%d(SB)/4, $0x%08x\n", name, 4*i, v(i))
	}
	fmt.Fprintf(b, "GLOBL %s<>(SB), RODATA|NOPTR, $%d\n\n", name, 4*lanes)
}

func emit(b *bytes.Buffer, s isa, k kernel) {
	bytesW := 4 * s.lanes
	sub := func(t string) string {
		t = vreg.ReplaceAllString(t, s.reg+"$1")
		return strings.NewReplacer(
			"2*%B", fmt.Sprint(2*bytesW),
			"%B", fmt.Sprint(bytesW),
			"%H", fmt.Sprint(bytesW/2),
			"%I", s.name,
			"%XOR", s.xor,
		).Replace(t)
	}
	name := k.name + s.name
	var params []string
	off := 0
	for _, a := range k.args {
		off += a.size
		t := "*float32"
		switch {
		case a.name == "n":
			t = "int"
		case a.size == 4:
			t = "float32"
		}
		params = append(params, a.name+" "+t)
	}
	fmt.Fprintf(b, "// func %s(%s)\n// %s; n a multiple of %d.\n", name, strings.Join(params, ", "), k.doc, s.lanes)
	fmt.Fprintf(b, "TEXT ·%s(SB), NOSPLIT, $0-%d\n", name, off)
	off = 0
	for _, a := range k.args {
		if a.reg != "" {
			fmt.Fprintf(b, "\tMOVQ %s+%d(FP), %s\n", a.name, off, a.reg)
		}
		off += a.size
	}
	b.WriteString(sub(k.pre)[min(1, len(k.pre)):])
	if k.pre != "" {
		b.WriteString("\n")
	}
	fmt.Fprintf(b, "\tSHRQ $%d, CX\n\tJZ %s_done\n\n%s_loop:", map[int]int{16: 4, 8: 3}[s.lanes], name, name)
	b.WriteString(sub(k.body))
	b.WriteString("\n")
	for _, r := range []string{"DI", "SI", "DX", "BX", "R8", "R9"} {
		if st, ok := k.step[r]; ok {
			fmt.Fprintf(b, "\tADDQ $%s, %s\n", sub(st), r)
		}
	}
	fmt.Fprintf(b, "\tDECQ CX\n\tJNZ %s_loop\n\n%s_done:\n\tVZEROUPPER\n\tRET\n\n", name, name)
}
