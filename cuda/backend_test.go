package cuda

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/zimage/zimage/cuda/driver"
	"github.com/zimage/zimage/cuda/internal/fakecuda"
	"github.com/zimage/zimage/weights"
)

func TestInitLadder(t *testing.T) {
	cases := []struct {
		name string
		set  func(f *fakecuda.Fake)
		want error
	}{
		{"no device from cuInit", func(f *fakecuda.Fake) { f.InitResult = driver.ErrNoDeviceCode }, ErrNoDevice},
		{"zero devices", func(f *fakecuda.Fake) { f.Devices = 0 }, ErrNoDevice},
		{"old driver", func(f *fakecuda.Fake) { f.Version = 11070 }, ErrDriverTooOld},
		{"old GPU", func(f *fakecuda.Fake) { f.CCMajor, f.CCMinor = 7, 5 }, ErrUnsupportedDevice},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := fakecuda.New()
			c.set(f)
			_, err := New(Options{Driver: f.API, BLAS: fakecuda.NewBLAS(f).API})
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if l := f.Leaks(); l != "" {
				t.Errorf("failed New leaked: %s", l)
			}
		})
	}
	t.Run("cuBLASLt without GPU", func(t *testing.T) {
		f := fakecuda.New()
		bl := fakecuda.NewBLAS(f)
		bl.CreateResult = 1 // NOT_INITIALIZED, what Debian's library returns without a GPU
		_, err := New(Options{Driver: f.API, BLAS: bl.API})
		if err == nil || !strings.Contains(err.Error(), "CUBLAS_STATUS_NOT_INITIALIZED") {
			t.Fatalf("got %v", err)
		}
		if l := f.Leaks(); l != "" {
			t.Errorf("failed New leaked: %s", l)
		}
	})
}

func TestErrorMapping(t *testing.T) {
	api := &driver.API{}
	err := api.Check("cuMemAlloc_v2", driver.ErrOutOfMemoryCode)
	if !errors.Is(err, ErrOutOfMemory) || !strings.Contains(err.Error(), "CUDA_ERROR_OUT_OF_MEMORY") {
		t.Errorf("OOM: %v", err)
	}
	for _, code := range []driver.Result{209, 218, 222} {
		err := api.Check("cuModuleLoadDataEx", code)
		var e *driver.Error
		if !errors.As(err, &e) || e.Code != code || !strings.Contains(err.Error(), "cuModuleLoadDataEx") {
			t.Errorf("code %d: %v", code, err)
		}
		t.Logf("%d: %v", code, err)
	}
	if err := api.Check("cuInit", 100); !errors.Is(err, ErrNoDevice) {
		t.Errorf("100: %v", err)
	}
	if err := api.Check("x", 0); err != nil {
		t.Errorf("success mapped to %v", err)
	}
}

func TestModuleLoadJITLog(t *testing.T) {
	f := fakecuda.New()
	f.API.ModuleLoadDataEx = func(m *driver.Module, _ unsafe.Pointer, n uint32, opts *driver.JITOption, vals *uintptr) driver.Result {
		o := unsafe.Slice(opts, n)
		v := unsafe.Slice(vals, n)
		for i := range o {
			if o[i] == driver.JITErrorLogBuffer {
				// v[i] is the address of the backend's pinned log buffer.
				msg := "ptxas fatal: bad PTX\x00"
				for j := range len(msg) {
					*(*byte)(unsafe.Add(unsafe.Pointer(nil), v[i]+uintptr(j))) = msg[j]
				}
			}
		}
		return driver.ErrInvalidPTX
	}
	_, err := New(Options{Driver: f.API, BLAS: fakecuda.NewBLAS(f).API})
	if err == nil || !strings.Contains(err.Error(), "ptxas fatal: bad PTX") || !strings.Contains(err.Error(), "CUDA_ERROR_INVALID_PTX") {
		t.Fatalf("got %v", err)
	}
	if l := f.Leaks(); l != "" {
		t.Errorf("leaked: %s", l)
	}
}

func TestLaunchPacking(t *testing.T) {
	b, f, _ := newFake(t, BF16, false)
	f.Record = true
	x := b.FromHost(make([]float32, 6*40), 6, 40)
	f.Launches = nil
	y := b.RMSNorm(x, nil, 1e-6)
	z := b.Scale(y, 2.5, -1)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	if len(f.Launches) != 2 {
		t.Fatalf("%d launches", len(f.Launches))
	}
	rms, sc := f.Launches[0], f.Launches[1]
	if rms.Kernel != "zk_rmsnorm_bf16" || sc.Kernel != "zk_scale_bf16" {
		t.Fatalf("kernels %s, %s", rms.Kernel, sc.Kernel)
	}
	xp, yp, zp := uint64(x.(*Tensor).ptr), uint64(y.(*Tensor).ptr), uint64(z.(*Tensor).ptr)
	// zk_rmsnorm_bf16(x, w, y, rows, d, eps)
	want := []uint64{xp, 0, yp, 6, 40, uint64(f32bits(1e-6))}
	for i, v := range want {
		if rms.Args[i] != v {
			t.Errorf("rmsnorm arg %d = %#x, want %#x", i, rms.Args[i], v)
		}
	}
	if rms.Block != [3]uint32{256, 1, 1} || rms.Grid != [3]uint32{1, 1, 1} {
		t.Errorf("rmsnorm grid %v block %v", rms.Grid, rms.Block)
	}
	// zk_scale_bf16(x, y, n, s, c)
	want = []uint64{yp, zp, 240, uint64(f32bits(2.5)), uint64(f32bits(-1))}
	for i, v := range want {
		if sc.Args[i] != v {
			t.Errorf("scale arg %d = %#x, want %#x", i, sc.Args[i], v)
		}
	}
}

func f32bits(v float32) uint32 { return *(*uint32)(unsafe.Pointer(&v)) }

func TestSignatureMismatchIsAnError(t *testing.T) {
	b, f, _ := newFake(t, F32, false)
	f.Record = true
	k := b.d.kernel("zk_scale_f32")
	err := b.d.Do(func() error {
		b.d.args.reset().p(0).p(0).i(1).f(1) // one float short
		return b.d.launch(k, dim3{1, 1, 1}, dim3{32, 1, 1}, 0)
	})
	if err == nil || !strings.Contains(err.Error(), `"ppif" do not match the kernel's parameters "ppiff"`) {
		t.Fatalf("got %v", err)
	}
	if len(f.Launches) != 0 {
		t.Error("a mismatched launch reached the driver")
	}
}

func TestLaunchDoesNotAllocate(t *testing.T) {
	b, _, _ := newFake(t, F32, false)
	x := b.FromHost(make([]float32, 1024), 1024).(*Tensor)
	k := b.d.kernel("zk_scale_f32")
	var err error
	allocs := 0.0
	b.d.Do(func() error {
		allocs = testing.AllocsPerRun(100, func() {
			g, bl := b.d.gridFor(1024)
			b.d.args.reset().p(x.ptr).p(x.ptr).i(1024).f(2).f(0)
			if e := b.d.launch(k, g, bl, 0); e != nil {
				err = e
			}
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if allocs != 0 {
		t.Errorf("%v allocations per launch", allocs)
	}
}

func TestMemoryBookkeeping(t *testing.T) {
	b, f, _ := newFake(t, F32, false, func(o *Options, _ *fakecuda.Fake) { o.MemoryBudget = 300 << 20 })
	base := b.CurrentBytes()
	if base < gemmWorkspace+2*stagingBytes {
		t.Fatalf("baseline %d B does not include workspace and staging", base)
	}
	b.ResetPeak()
	x := b.FromHost(make([]float32, 1<<20), 1<<20) // 4 MiB
	y := b.Scale(x, 2, 0)
	if got := b.CurrentBytes() - base; got != 8<<20 {
		t.Errorf("in use %d, want 8 MiB", got)
	}
	b.Free(x, y, b.Reshape(y, 1024, 1024)) // the view is skipped
	b.Free(x)                              // double free is a no-op
	if got := b.CurrentBytes(); got != base {
		t.Errorf("after Free: %d, want %d", got, base)
	}
	if got := b.PeakBytes() - base; got != 8<<20 {
		t.Errorf("peak %d above baseline, want 8 MiB", got)
	}
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}

	// Over budget: typed error, nothing allocated, backend usable after ResetErr.
	big := b.FromHost(make([]float32, 64<<20), 64<<20) // 256 MiB > what is left
	err := b.Err()
	var be *BudgetError
	if !errors.As(err, &be) || !errors.Is(err, ErrOutOfMemory) {
		t.Fatalf("got %v, want *BudgetError", err)
	}
	if !big.(*Tensor).placeholder {
		t.Error("over-budget result is not a placeholder")
	}
	if s := b.Scale(x, 1, 1); !s.(*Tensor).placeholder {
		t.Error("op after error did not return a placeholder")
	}
	b.ResetErr()
	z := b.FromHost([]float32{1, 2, 3}, 3)
	if got := b.ToHost(z); b.Err() != nil || got[2] != 3 {
		t.Fatalf("backend unusable after budget error: %v %v", got, b.Err())
	}
	b.Free(z)

	// Driver out of memory: typed error, backend usable.
	n, _ := f.Live()
	f.TotalMem = 0
	b.FromHost(make([]float32, 16), 16)
	if err := b.Err(); !errors.Is(err, ErrOutOfMemory) || !strings.Contains(err.Error(), "CUDA_ERROR_OUT_OF_MEMORY") {
		t.Fatalf("got %v, want a driver OOM", err)
	}
	if m, _ := f.Live(); m != n {
		t.Errorf("failed allocation left %d allocations, had %d", m, n)
	}
	f.TotalMem = 1 << 30
	b.ResetErr()
	if got := b.ToHost(b.FromHost([]float32{5}, 1)); b.Err() != nil || got[0] != 5 {
		t.Fatalf("backend unusable after OOM: %v", b.Err())
	}
}

func TestCloseFreesEverything(t *testing.T) {
	f := fakecuda.New()
	bl := fakecuda.NewBLAS(f)
	b, err := New(Options{Driver: f.API, BLAS: bl.API})
	if err != nil {
		t.Fatal(err)
	}
	w := &weights.Tensor{Name: "w", DType: weights.F32, Shape: []int{8, 4}, Data: make([]byte, 128)}
	x := b.FromHost(make([]float32, 12), 3, 4)
	b.MatMul(x, b.Weight(w), nil) // a cached GEMM plan
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if l := f.Leaks(); l != "" {
		t.Errorf("leaked: %s", l)
	}
	if n := bl.Leaks(); n != 0 {
		t.Errorf("%d cuBLASLt objects leaked", n)
	}
	if b.FromHost([]float32{1}, 1); b.Err() == nil {
		t.Error("op after Close succeeded")
	}
}

func TestCancellationBetweenLaunches(t *testing.T) {
	b, f, _ := newFake(t, F32, false)
	ctx, cancel := context.WithCancel(context.Background())
	b.SetContext(ctx)
	x := b.FromHost(make([]float32, 64), 8, 8)
	f.Record = true
	y := b.SiLU(x)
	cancel()
	z := b.SiLU(y)
	if !errors.Is(b.Err(), context.Canceled) {
		t.Fatalf("Err = %v, want context.Canceled", b.Err())
	}
	if !z.(*Tensor).placeholder || len(f.Launches) != 1 {
		t.Errorf("%d launches; the one after cancel must not run", len(f.Launches))
	}
	b.SetContext(nil)
	b.ResetErr()
	if b.SiLU(y); b.Err() != nil {
		t.Fatal(b.Err())
	}
}

func TestUploadConversions(t *testing.T) {
	for _, prec := range []Precision{F32, BF16} {
		t.Run(prec.String(), func(t *testing.T) { testUploadConversions(t, prec) })
	}
}

func testUploadConversions(t *testing.T, prec Precision) {
	b, _, _ := newFake(t, prec, true)
	// F16 1.5, -2; F8E4M3 0x38 = 1.0, 0xC0 = -2; BF16 0x3FC0 = 1.5
	cases := []struct {
		dt   weights.DType
		data []byte
		want []float32
	}{
		{weights.F16, []byte{0x00, 0x3e, 0x00, 0xc0}, []float32{1.5, -2}},
		{weights.F8E4M3, []byte{0x38, 0xc0}, []float32{1, -2}},
		{weights.F8E5M2, []byte{0x3c, 0xc0}, []float32{1, -2}},
		{weights.BF16, []byte{0xc0, 0x3f, 0x00, 0x00}, []float32{1.5, 0}},
	}
	for _, c := range cases {
		got := b.ToHost(b.Weight(&weights.Tensor{Name: c.dt.String(), DType: c.dt, Shape: []int{2}, Data: c.data}))
		if err := b.Err(); err != nil {
			t.Fatal(err)
		}
		if got[0] != c.want[0] || got[1] != c.want[1] {
			t.Errorf("%v: got %v, want %v", c.dt, got, c.want)
		}
	}
	b.Weight(&weights.Tensor{Name: "ids", DType: weights.I32, Shape: []int{1}, Data: make([]byte, 4)})
	if err := b.Err(); err == nil || !strings.Contains(err.Error(), `"ids"`) {
		t.Errorf("I32 weight: %v", err)
	}
}

// TestLargeUploadChunks uploads more than one staging buffer's worth with a
// conversion, so the double-buffered path runs.
func TestLargeUploadChunks(t *testing.T) {
	b, _, _ := newFake(t, BF16, true, func(_ *Options, f *fakecuda.Fake) { f.TotalMem = 2 << 30 })
	n := stagingBytes/4 + 1000 // f32 source: two chunks
	data := make([]float32, n)
	for i := range data {
		data[i] = float32(i % 251)
	}
	got := b.ToHost(b.FromHost(data, n))
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 250, n/2 + 3, n - 1} {
		if got[i] != data[i] {
			t.Fatalf("element %d: %v, want %v", i, got[i], data[i])
		}
	}
}

func TestSyntheticWeights(t *testing.T) {
	b, _, _ := newFake(t, BF16, true, func(o *Options, _ *fakecuda.Fake) { o.SyntheticWeights = true })
	mat := b.ToHost(b.Weight(&weights.Tensor{Name: "a.weight", DType: weights.BF16, Shape: []int{64, 300}}))
	gain := b.ToHost(b.Weight(&weights.Tensor{Name: "norm.weight", DType: weights.BF16, Shape: []int{64}}))
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	lim := math.Sqrt(3.0/300) * 1.01
	var sum, sq float64
	for _, v := range mat {
		if math.Abs(float64(v)) > lim {
			t.Fatalf("matrix value %v outside ±%v", v, lim)
		}
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	if vr := sq / float64(len(mat)); math.Abs(vr*300-1) > 0.1 || math.Abs(sum/float64(len(mat))) > 0.01 {
		t.Errorf("matrix mean %.3g, variance·fan-in %.3g", sum/float64(len(mat)), vr*300)
	}
	for _, v := range gain {
		if v < 0.94 || v > 1.06 {
			t.Fatalf("gain %v", v)
		}
	}
	again := b.ToHost(b.Weight(&weights.Tensor{Name: "a.weight", DType: weights.BF16, Shape: []int{64, 300}}))
	if again[123] != mat[123] {
		t.Error("synthetic weights are not deterministic")
	}

	// The float32 fill: same distribution and seed, not rounded to bf16.
	f32, _, _ := newFake(t, F32, true, func(o *Options, _ *fakecuda.Fake) { o.SyntheticWeights = true })
	wide := f32.ToHost(f32.Weight(&weights.Tensor{Name: "a.weight", DType: weights.BF16, Shape: []int{64, 300}}))
	if err := f32.Err(); err != nil {
		t.Fatal(err)
	}
	if d := math.Abs(float64(wide[123] - mat[123])); d > 1e-2*lim || wide[123] == 0 {
		t.Errorf("f32 synthetic value %v, bf16 %v", wide[123], mat[123])
	}

	plain, _, _ := newFake(t, BF16, false)
	plain.Weight(&weights.Tensor{Name: "a.weight", DType: weights.BF16, Shape: []int{4}})
	if plain.Err() == nil {
		t.Error("a data-less weight was accepted without SyntheticWeights")
	}
}

func TestTimer(t *testing.T) {
	b, _, _ := newFake(t, F32, false)
	tm, err := b.StartTimer()
	if err != nil {
		t.Fatal(err)
	}
	b.SiLU(b.FromHost([]float32{1}, 1))
	d, err := tm.Stop()
	if err != nil || d != 500*time.Microsecond { // the fake reports 0.5 ms
		t.Fatalf("%v %v", d, err)
	}
}
