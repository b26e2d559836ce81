package pages

import "testing"

// TestPopulate maps in fresh and unaligned slices without changing a zero
// value, and writes nothing outside the slice.
func TestPopulate(t *testing.T) {
	for _, n := range []int{1, 1023, 1024, 5000, 1 << 20} {
		for _, off := range []int{0, 1, 17} {
			buf := make([]float32, n+off+1)
			buf[n+off] = 7
			if off > 0 {
				buf[off-1] = 5
			}
			r := buf[off : off+n]
			Populate(r)
			for i, v := range r {
				if v != 0 {
					t.Fatalf("n=%d off=%d: r[%d] = %v after Populate", n, off, i, v)
				}
			}
			if buf[n+off] != 7 || (off > 0 && buf[off-1] != 5) {
				t.Fatalf("n=%d off=%d: wrote outside the slice", n, off)
			}
		}
	}
	Populate(nil)
}
