package cpu

import "testing"

// TestBufPool checks the activation pool's reuse rules: exact sizes first,
// else the smallest buffer up to n/16 larger; the oldest buffers are dropped
// when the cap is reached; a buffer over the cap is not kept.
func TestBufPool(t *testing.T) {
	b := New(WithPoolBytes(4 * 3000))
	same := func(x, y []float32) bool { return &x[:1][0] == &y[:1][0] }

	a := b.alloc(1000)
	b.release(a)
	if got := b.alloc(1000); !same(got, a) || len(got) != 1000 {
		t.Fatalf("exact size: not reused (len %d)", len(got))
	}
	b.release(a)
	// 970 fits in 1000 (≤ 970/16 = 60 more); 900 does not.
	if got := b.alloc(970); !same(got, a) || len(got) != 970 || cap(got) != 1000 {
		t.Fatalf("larger buffer within n/16: not reused (len %d cap %d)", len(got), cap(got))
	}
	b.release(a[:970]) // a shorter slice of it returns the whole capacity
	if got := b.alloc(900); same(got, a) {
		t.Fatal("a buffer more than n/16 larger was reused")
	}
	// Prefer the exact size, then the smallest larger one.
	b1, b2 := b.alloc(1010), b.alloc(1030)
	b.release(b2)
	b.release(b1) // pool: a (1000), b2 (1030), b1 (1010) = 3040 floats > cap: a dropped
	if b.poolBytes != 4*(1030+1010) {
		t.Fatalf("pool holds %d bytes, want %d (oldest dropped)", b.poolBytes, 4*(1030+1010))
	}
	if got := b.alloc(1000); !same(got, b1) {
		t.Fatal("1000 should take the 1010 buffer, the smallest that fits")
	}
	if got := b.alloc(1030); !same(got, b2) {
		t.Fatal("exact size not reused")
	}
	if b.poolBytes != 0 || len(b.bufs) != 0 {
		t.Fatalf("pool not empty: %d bytes, %d sizes", b.poolBytes, len(b.bufs))
	}
	big := b.alloc(4000)
	b.TrimToCap() // big now belongs to an earlier request
	b.release(big)
	if b.poolBytes != 0 {
		t.Fatal("a buffer larger than the cap was kept")
	}
	b.release(b.alloc(10))
	b.Trim()
	if b.poolBytes != 0 || len(b.bufs) != 0 {
		t.Fatal("Trim left buffers")
	}
	if got := b.alloc(0); len(got) != 0 {
		t.Fatal("alloc(0) not empty")
	}
	b.release(nil)
}

// TestBufPoolWorkingSet checks that within a request the cap grows to the
// most bytes live at once (no stage drops the buffers of the one before),
// that TrimToCap cuts the pool back to the configured cap oldest first and
// restarts the measure, and that WithPoolBytes(0) still disables reuse.
func TestBufPoolWorkingSet(t *testing.T) {
	b := New(WithPoolBytes(4 * 1000))
	// A "stage" with 3000 floats live at once, then one of other sizes.
	x, y, z := b.alloc(1000), b.alloc(1000), b.alloc(1000)
	b.release(x)
	b.release(y)
	b.release(z)
	if b.poolBytes != 4*3000 {
		t.Fatalf("pool holds %d bytes, want %d: the working set was dropped", b.poolBytes, 4*3000)
	}
	u := b.alloc(2500) // fresh: live 2500 < 3000, pool + u > 3000 on release
	b.release(u)
	if b.poolBytes != 4*(2500) {
		t.Fatalf("pool holds %d bytes, want %d (oldest dropped at the working set)", b.poolBytes, 4*2500)
	}
	b.TrimToCap()
	if b.poolBytes != 0 {
		t.Fatalf("TrimToCap left %d bytes over a cap of %d", b.poolBytes, 4*1000)
	}
	b.release(b.alloc(1000))
	b.release(b.alloc(800))
	b.TrimToCap() // 1800 floats > cap: the 1000 (older) goes
	if b.poolBytes != 4*800 {
		t.Fatalf("TrimToCap kept %d bytes, want %d (the newest)", b.poolBytes, 4*800)
	}
	if b.peakLive != 0 || b.live != 0 {
		t.Fatalf("after TrimToCap: peak %d live %d, want 0", b.peakLive, b.live)
	}

	off := New(WithPoolBytes(0))
	off.release(off.alloc(100))
	if off.poolBytes != 0 {
		t.Fatal("WithPoolBytes(0) kept a buffer")
	}
}
