//go:build unix

package gemm

import (
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var faultSink atomic.Int64

// TestParallelForFault: a memory fault in a pool worker (a mapped file
// truncated under it) is raised again in the caller's goroutine instead of
// killing the process, and the pool keeps working.
func TestParallelForFault(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, 1<<20, syscall.PROT_READ, syscall.MAP_SHARED)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(data)
	if err := os.Truncate(path, 4096); err != nil {
		t.Fatal(err)
	}
	ensureWorkers(3)
	time.Sleep(20 * time.Millisecond) // the workers wait for jobs
	for range 3 {
		got := func() (v any) {
			defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
			defer func() { v = recover() }()
			parallelFor(4, 64, nil, func(w, task int) {
				if w == 0 {
					time.Sleep(20 * time.Millisecond) // let the workers fault
					return
				}
				faultSink.Add(int64(data[(task+1)*8192]))
			})
			return nil
		}()
		re, ok := got.(runtime.Error)
		if !ok {
			t.Fatalf("recovered %v (%T), want the fault's runtime.Error", got, got)
		}
		if _, ok := re.(interface{ Addr() uintptr }); !ok {
			t.Fatalf("%v: no fault address", re)
		}
	}
	var n atomic.Int64
	parallelFor(4, 100, nil, func(w, task int) { n.Add(1) })
	if n.Load() != 100 {
		t.Errorf("pool broken after faults: %d of 100 tasks ran", n.Load())
	}
}
