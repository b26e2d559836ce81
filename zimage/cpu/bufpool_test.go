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
