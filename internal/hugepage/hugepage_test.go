package hugepage

import "testing"

func TestInterior(t *testing.T) {
	for _, c := range []struct {
		addr      uintptr
		n         int
		off, size int
	}{
		{0, 3 * Size, 0, 3 * Size},
		{1, 3 * Size, Size - 1, 2 * Size},
		{Size - 4096, Size + 4096, 4096, Size},
		{Size + 8, Size, 0, 0},
		{5 * Size, Size - 1, 0, 0},
	} {
		off, size := interior(c.addr, c.n)
		if off != c.off || size != c.size {
			t.Errorf("interior(%#x, %#x) = %#x, %#x; want %#x, %#x", c.addr, c.n, off, size, c.off, c.size)
		}
	}
}

// TestAdvise only checks that advising real buffers of every size (tiny,
// unaligned, large) is harmless: the memory stays readable and writable.
func TestAdvise(t *testing.T) {
	for _, n := range []int{0, 1, 1000, MinBytes/4 - 1, MinBytes / 4, 3*Size/4 + 17} {
		b := make([]float32, n)
		Float32s(b)
		for i := range b {
			b[i] = float32(i)
		}
		for i := range b {
			if b[i] != float32(i) {
				t.Fatalf("n=%d: b[%d] = %v", n, i, b[i])
			}
		}
	}
	Advise(nil)
}
