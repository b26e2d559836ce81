package driver

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRealLoaderNoGPU runs the real ladder against whatever libcuda.so.1 the
// machine has: with no driver it must be ErrNoDriver; with a driver but no
// GPU (Debian's libcuda1 on a CPU box) it must reach cuInit and return
// ErrNoDevice; on a GPU machine it must succeed.
func TestRealLoaderNoGPU(t *testing.T) {
	api, err := Load()
	if err != nil {
		if errors.Is(err, ErrNoDriver) {
			t.Skipf("no driver library: %v", err)
		}
		t.Fatalf("Load: %v", err)
	}
	v, n, err := Initialize(api)
	t.Logf("driver version %d, devices %d, err %v", v, n, err)
	if v < MinDriverVersion {
		t.Fatalf("version %d", v)
	}
	if err != nil {
		if !errors.Is(err, ErrNoDevice) {
			t.Fatalf("Initialize on a GPU-less machine: got %v, want ErrNoDevice", err)
		}
		if !strings.Contains(err.Error(), "CUDA_ERROR_NO_DEVICE") {
			t.Errorf("error lacks the driver's name for the code: %v", err)
		}
		return
	}
	if n < 1 {
		t.Fatalf("no devices but no error")
	}
	_, p, err := DeviceProps(api, 0)
	t.Logf("device 0: %+v err %v", p, err)
}

func TestLoadMissingLibrary(t *testing.T) {
	_, err := LoadFrom(filepath.Join(t.TempDir(), "libcuda.so.1"))
	if !errors.Is(err, ErrNoDriver) {
		t.Fatalf("got %v, want ErrNoDriver", err)
	}
	t.Setenv(EnvLibrary, "/nonexistent/libcuda.so")
	if LibraryPath() != "/nonexistent/libcuda.so" {
		t.Fatal("env override ignored")
	}
	if _, err := Load(); !errors.Is(err, ErrNoDriver) {
		t.Fatalf("got %v, want ErrNoDriver", err)
	}
}

func TestBindReportsAllMissing(t *testing.T) {
	missing := map[string]bool{"cuMemAllocAsync": true, "cuLaunchKernel": true, "cuDevicePrimaryCtxRelease_v2": true}
	_, err := BindAPI("fake.so", func(name string) (uintptr, error) {
		if missing[name] {
			return 0, errors.New("undefined symbol")
		}
		return 0x1000, nil // never called
	})
	if !errors.Is(err, ErrDriverTooOld) {
		t.Fatalf("got %v, want ErrDriverTooOld", err)
	}
	for name := range missing {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

// TestSymbolsExist checks every bound name against the real library when
// present (all must resolve in the 535 driver Debian ships).
func TestSymbolsExist(t *testing.T) {
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/libcuda.so.1"); err != nil {
		t.Skip("no libcuda.so.1")
	}
	if _, err := LoadFrom("/usr/lib/x86_64-linux-gnu/libcuda.so.1"); err != nil {
		t.Fatal(err)
	}
	if got := len(Symbols()); got < 50 {
		t.Errorf("only %d symbols", got)
	}
}
