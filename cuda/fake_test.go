package cuda

import (
	"errors"
	"testing"

	"github.com/zimage/zimage/cuda/internal/fakecuda"
	"github.com/zimage/zimage/cuda/internal/hostshim"
)

// newFake returns a backend on a fake GPU. With shim set, kernels run on the
// CPU through the host shim (the test skips when g++ is missing).
func newFake(t testing.TB, prec Precision, shim bool, opts ...func(*Options, *fakecuda.Fake)) (*Backend, *fakecuda.Fake, *fakecuda.BLAS) {
	t.Helper()
	f := fakecuda.New()
	if shim {
		lib, err := hostshim.Load()
		if errors.Is(err, hostshim.ErrNoCompiler) {
			t.Skip("g++ not installed: host shim unavailable")
		}
		if err != nil {
			t.Fatal(err)
		}
		f.Shim = lib
	}
	bl := fakecuda.NewBLAS(f)
	o := Options{Precision: prec, Driver: f.API, BLAS: bl.API}
	for _, fn := range opts {
		fn(&o, f)
	}
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if l := f.Leaks(); l != "" {
			t.Errorf("leaked after Close: %s", l)
		}
		if n := bl.Leaks(); n != 0 {
			t.Errorf("%d cuBLASLt objects leaked after Close", n)
		}
		if err := f.Err(); err != nil {
			t.Errorf("fake driver saw misuse: %v", err)
		}
	})
	return b, f, bl
}

func TestSmoke(t *testing.T) {
	b, _, _ := newFake(t, F32, true)
	x := b.FromHost([]float32{1, -2, 3, 4}, 2, 2)
	y := b.SiLU(x)
	got := b.ToHost(y)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	t.Log(got)
}
