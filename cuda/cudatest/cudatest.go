// Package cudatest gives tests outside package cuda a CUDA backend on the
// fake GPU of cuda/internal/fakecuda, its kernels running on the CPU through
// the host shim (the test skips when g++ is missing).
package cudatest

import (
	"errors"
	"testing"

	"github.com/zimage/zimage/cuda"
	"github.com/zimage/zimage/cuda/internal/fakecuda"
	"github.com/zimage/zimage/cuda/internal/hostshim"
)

// New returns a backend on a fake GPU of memBytes bytes (0: 4 GiB) opened
// with o (its Driver and BLAS are replaced). It is closed when the test
// ends, and leaks or driver misuse fail the test.
func New(t testing.TB, o cuda.Options, memBytes uint64) *cuda.Backend {
	t.Helper()
	lib, err := hostshim.Load()
	if errors.Is(err, hostshim.ErrNoCompiler) {
		t.Skip("g++ not installed: host shim unavailable")
	}
	if err != nil {
		t.Fatal(err)
	}
	f := fakecuda.New()
	f.Shim = lib
	f.TotalMem = memBytes
	if memBytes == 0 {
		f.TotalMem = 4 << 30
	}
	o.Driver, o.BLAS = f.API, fakecuda.NewBLAS(f).API
	b, err := cuda.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("cudatest: Close: %v", err)
		}
		if l := f.Leaks(); l != "" {
			t.Errorf("cudatest: leaked after Close: %s", l)
		}
		if err := f.Err(); err != nil {
			t.Errorf("cudatest: fake driver saw misuse: %v", err)
		}
	})
	return b
}
