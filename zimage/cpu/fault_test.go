//go:build unix

package cpu

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zimage/zimage/weights"
)

// truncatedMapping writes a safetensors file with one large tensor, maps it
// with weights.OpenFile, truncates the file to its header and returns the
// tensor's (now faulting) bytes.
func truncatedMapping(t *testing.T) (data []byte, path string) {
	t.Helper()
	const n = 1 << 20
	hdr, _ := json.Marshal(map[string]any{"w": map[string]any{"dtype": "U8", "shape": []int{n}, "data_offsets": []int{0, n}}})
	for len(hdr)%8 != 0 {
		hdr = append(hdr, ' ')
	}
	buf := make([]byte, 8, 8+len(hdr)+n)
	binary.LittleEndian.PutUint64(buf, uint64(len(hdr)))
	buf = append(append(buf, hdr...), make([]byte, n)...)
	path = filepath.Join(t.TempDir(), "w.safetensors")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := weights.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	w, _ := f.Tensor("w")
	if err := os.Truncate(path, int64(8+len(hdr))); err != nil {
		t.Fatal(err)
	}
	return w.Data, path
}

var faultSink atomic.Int64

// TestPoolFault: a memory fault in a pool worker (reading a mapped file
// that was truncated) does not kill the process: parallelFor raises it in
// the caller's goroutine, where it names the file, and the pool still works.
func TestPoolFault(t *testing.T) {
	data, path := truncatedMapping(t)
	run := func() (fe *weights.FaultError) {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() {
			if v := recover(); v != nil {
				if fe = weights.FaultFrom(v); fe == nil {
					panic(v)
				}
			}
		}()
		parallelFor(4, 64, 1, func(lo, hi int) {
			if lo == 0 {
				time.Sleep(20 * time.Millisecond) // let the workers take the other chunks
				return
			}
			faultSink.Add(int64(data[lo*4096])) // faults: the page is past the end of the file
		})
		return nil
	}
	for range 3 {
		fe := run()
		if fe == nil {
			t.Fatal("no fault raised")
		}
		if fe.File != path {
			t.Errorf("fault names %q, want %q", fe.File, path)
		}
	}
	sum := 0
	out := make([]int, 64)
	parallelFor(4, 64, 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			out[i] = i
		}
	})
	for _, v := range out {
		sum += v
	}
	if sum != 63*64/2 {
		t.Errorf("pool broken after faults: sum %d", sum)
	}
}
