package gemm

import (
	"runtime"
	"testing"
	"unsafe"
)

// TestScratchFreeList checks the scratch free list: a returned buffer is
// reused (also after a GC, which empties a sync.Pool), is 64-byte aligned,
// the cap drops the least recently returned buffers first, and a buffer
// over the cap is not kept.
func TestScratchFreeList(t *testing.T) {
	saved := scratchCap
	defer func() { scratchCap = saved; TrimScratch() }()
	TrimScratch()
	scratchCap = 10 << 10

	same := func(p, q *[]float32) bool { return &(*p)[:1][0] == &(*q)[:1][0] }
	a := getBuf(1000) // bucket 1024
	if len(*a) != 1000 || cap(*a) != 1024 || uintptr(unsafe.Pointer(&(*a)[0]))%64 != 0 {
		t.Fatalf("getBuf(1000): len %d cap %d, %% 64 = %d", len(*a), cap(*a), uintptr(unsafe.Pointer(&(*a)[0]))%64)
	}
	putBuf(a)
	runtime.GC()
	runtime.GC()
	b := getBuf(600) // same bucket
	if !same(a, b) || len(*b) != 600 {
		t.Fatal("a returned buffer was not reused after a GC")
	}
	c := getBuf(1024)
	d := getBuf(2000) // bucket 2048: 8 KiB
	putBuf(b)
	putBuf(c)
	putBuf(d) // 16 KiB > 10 KiB: b and c (the oldest) go
	if scratch.bytes != 4*2048 || len(scratch.free[10]) != 0 {
		t.Fatalf("free list holds %d bytes (%d in bucket 10), want 8192 (0)", scratch.bytes, len(scratch.free[10]))
	}
	if e := getBuf(1500); !same(e, d) {
		t.Fatal("the newest buffer was dropped")
	}
	big := getBuf(4000) // 16 KiB
	putBuf(big)
	if scratch.bytes != 0 {
		t.Fatal("a buffer larger than the cap was kept")
	}
	TrimScratch()
	if scratch.bytes != 0 {
		t.Fatal("TrimScratch left buffers")
	}
}

// TestScratchReserve checks ReserveScratch: misses take 64-byte-aligned,
// disjoint pieces just large enough, which the free list then keeps and
// hands to a later request of the same size (not to a larger one of the
// same class); EndScratchReserve ends it without touching pieces in use.
func TestScratchReserve(t *testing.T) {
	defer TrimScratch()
	TrimScratch()
	ReserveScratch(1 << 20)
	defer EndScratchReserve()
	if len(scratch.reserve) != 1<<18 {
		t.Fatalf("reserve of %d floats, want %d", len(scratch.reserve), 1<<18)
	}
	a, b := getBuf(1000), getBuf(3000)
	if cap(*a) != 1008 || cap(*b) != 3008 || &(*a)[:1008][1007] == &(*b)[0] {
		t.Fatalf("pieces of cap %d and %d", cap(*a), cap(*b))
	}
	for _, p := range []*[]float32{a, b} {
		if uintptr(unsafe.Pointer(&(*p)[0]))%64 != 0 {
			t.Fatal("a piece is not 64-byte aligned")
		}
	}
	if got := uintptr(unsafe.Pointer(&(*b)[0])) - uintptr(unsafe.Pointer(&(*a)[0])); got != 4*1008 {
		t.Fatalf("second piece %d bytes after the first, want %d", got, 4*1008)
	}
	(*a)[999] = 7
	putBuf(a)
	c := getBuf(1020) // same class (1024) but larger than a: another piece
	if &(*c)[0] == &(*a)[0] {
		t.Fatal("a piece smaller than the request was handed out")
	}
	d := getBuf(1000)
	if &(*d)[0] != &(*a)[0] {
		t.Fatal("a returned piece was not reused for its own size")
	}
	EndScratchReserve()
	if scratch.reserve != nil {
		t.Fatal("EndScratchReserve kept the reserve")
	}
	if (*d)[999] != 7 {
		t.Fatal("a piece in use changed when the reserve ended")
	}
	if e := getBuf(1 << 18); cap(*e) != 1<<18 {
		t.Fatalf("a miss after the reserve: cap %d, want a fresh class-size buffer", cap(*e))
	}
}

// TestScratchBig checks that a fresh buffer above 1 MiB is the request
// rounded up to a whole MiB (not a power of two), aligned, and reused for a
// request of the same size.
func TestScratchBig(t *testing.T) {
	defer TrimScratch()
	TrimScratch()
	n := 5<<18 + 3 // 5 MiB + 12 bytes
	p := getBuf(n)
	if len(*p) != n || cap(*p) != 6<<18 || uintptr(unsafe.Pointer(&(*p)[0]))%64 != 0 {
		t.Fatalf("getBuf(%d): len %d cap %d", n, len(*p), cap(*p))
	}
	putBuf(p)
	if q := getBuf(n - 100); &(*q)[0] != &(*p)[0] {
		t.Fatal("a big scratch buffer was not reused")
	}
	if q := getBuf(6<<18 + 1); cap(*q) != 7<<18 {
		t.Fatalf("cap %d, want %d", cap(*q), 7<<18)
	}
}
