package cpu

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/zimage/zimage/weights"
)

// mappingRSS returns the resident kB of the mapping holding addr
// (/proc/self/smaps).
func mappingRSS(t *testing.T, addr uintptr) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skip("no /proc/self/smaps:", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Text()
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x", &lo, &hi); n == 2 && strings.Contains(line, " ") {
			in = addr >= lo && addr < hi
			continue
		}
		var kb int
		if in && strings.HasPrefix(line, "Rss:") {
			fmt.Sscanf(strings.TrimPrefix(line, "Rss:"), "%d", &kb)
			return kb
		}
	}
	t.Fatalf("no mapping holds %#x", addr)
	return 0
}

// TestPackDropsMappedPages checks that packing a weight read from a mapped
// checkpoint drops its pages from the resident set, and that every reader
// of the bytes still sees them (they fault in again): packed and GEMV
// products equal a backend computing on a heap copy, and the tensor still
// decodes to the same values.
func TestPackDropsMappedPages(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	const m, n, k = 16, 256, 1024 // 512 KiB of bf16
	wt := randWeight(r, "w", n, k)
	path := filepath.Join(t.TempDir(), "w.safetensors")
	if err := weights.WriteFile(path, []*weights.Tensor{wt}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := weights.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mt, ok := f.Tensor("w")
	if !ok {
		t.Fatal("tensor w missing")
	}
	if !slices.Equal(mt.Data, wt.Data) {
		t.Fatal("mapped bytes differ from the written ones")
	}
	addr := uintptr(unsafe.Pointer(&mt.Data[0]))
	before := mappingRSS(t, addr)

	b := New(WithBF16(true))
	x := randInput(b, r, m, k)
	xv := b.ToHost(x)
	want := reference(t, xv, wt, m, k)
	w := b.Weight(mt)
	for range packFirst {
		packBits(t, "product", product(t, b, x, w), want)
	}
	if b.PackedBytes() == 0 {
		t.Fatal("not packed")
	}
	after := mappingRSS(t, addr)
	t.Logf("mapping resident: %d kB before packing, %d kB after", before, after)
	if before < 400 || after > before-400 {
		t.Errorf("mapping resident %d kB before packing, %d kB after: want ≥ 400 kB dropped", before, after)
	}
	packBits(t, "packed product after the drop", product(t, b, x, w), want)
	few := b.FromHost(xv[:2*k], 2, k)
	packBits(t, "GEMV after the drop", product(t, b, few, w), reference(t, xv[:2*k], wt, 2, k))
	if !slices.Equal(mt.Data, wt.Data) {
		t.Error("mapped bytes differ after the drop")
	}
}
