//go:build amd64 && !purego

package gemm

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// archQ8Kernels lists the assembly Q8_0 kernels this CPU can run, and the
// others with the reason they are skipped.
func archQ8Kernels() (ks []q8Tile, skipped [][2]string) {
	return vnniKernels(func(k q8Tile) string { return k.name }, asmQ8, evex256Q8, vexQ8)
}

// vnniKernels lists, of a family of VPDPBUSD kernels (zmm, the EVEX ymm
// twin, the VEX ymm kernel), those this CPU can run, and the others with
// the reason they are skipped.
func vnniKernels[T any](name func(T) string, zmm, evex256, vex T) (ks []T, skipped [][2]string) {
	for _, c := range []struct {
		ok  bool
		k   T
		why string
	}{
		{hasAVX512VNNI, zmm, "CPU lacks AVX512-VNNI (VPDPBUSD on zmm)"},
		{hasEVEX256VNNI, evex256, "CPU lacks AVX512-VNNI+VL (the EVEX twin of the AVX-VNNI kernel)"},
		{hasAVXVNNI, vex, "CPU lacks AVX-VNNI (VEX VPDPBUSD); its EVEX twin avx512vnni-ymm runs the same code where AVX512-VNNI+VL exist"},
	} {
		if c.ok {
			ks = append(ks, c.k)
		} else {
			skipped = append(skipped, [2]string{name(c.k), c.why})
		}
	}
	return ks, skipped
}

// TestQ8VEXEncoding assembles the instructions named in the comments of
// the byte-encoded VEX VPDPBUSD lines with GNU as and compares the bytes
// (skipped without binutils).
func TestQ8VEXEncoding(t *testing.T) {
	as, err := exec.LookPath("as")
	if err != nil {
		t.Skip("GNU as not found")
	}
	objdump, err := exec.LookPath("objdump")
	if err != nil {
		t.Skip("objdump not found")
	}
	src, err := os.ReadFile("q8vnni256_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`BYTE \$0x([0-9a-f]{2}); BYTE \$0x([0-9a-f]{2}); BYTE \$0x([0-9a-f]{2}); BYTE \$0x([0-9a-f]{2}); BYTE \$0x([0-9a-f]{2}) // VPDPBUSD Y(\d+), Y(\d+), Y(\d+) \(VEX\)`)
	seen := map[string]string{} // AT&T instruction → our bytes
	for _, m := range line.FindAllStringSubmatch(string(src), -1) {
		ins := "{vex} vpdpbusd %ymm" + m[6] + ", %ymm" + m[7] + ", %ymm" + m[8]
		seen[ins] = strings.Join(m[1:6], " ")
	}
	if len(seen) == 0 {
		t.Fatal("no VEX VPDPBUSD lines found")
	}
	dir := t.TempDir()
	var asm bytes.Buffer
	var order []string
	for ins := range seen {
		asm.WriteString(ins + "\n")
		order = append(order, ins)
	}
	cmd := exec.Command(as, "--64", "-o", filepath.Join(dir, "v.o"))
	cmd.Stdin = &asm
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("as cannot assemble AVX-VNNI (%v): %s", err, out)
	}
	out, err := exec.Command(objdump, "-d", filepath.Join(dir, "v.o")).Output()
	if err != nil {
		t.Fatal(err)
	}
	dis := regexp.MustCompile(`(?m)^\s+[0-9a-f]+:\s+((?:[0-9a-f]{2} )+)\s*`)
	got := dis.FindAllStringSubmatch(string(out), -1)
	if len(got) != len(order) {
		t.Fatalf("objdump listed %d instructions, want %d:\n%s", len(got), len(order), out)
	}
	for i, ins := range order {
		if g := strings.TrimSpace(got[i][1]); g != seen[ins] {
			t.Errorf("%s: as gives %s, the kernel has %s", ins, g, seen[ins])
		}
	}
}

// archKQKernels lists the assembly K-quant kernels this CPU can run, and
// the others with the reason they are skipped.
func archKQKernels() (ks []kqTile, skipped [][2]string) {
	return vnniKernels(func(k kqTile) string { return k.name }, asmKQ, evex256KQ, vexKQ)
}
