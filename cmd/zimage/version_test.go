package main

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"
)

// TestVersion: the text and JSON forms name the Go version, the platform,
// the CPU features and, without a driver (ZIMAGE_LIBCUDA points nowhere),
// why CUDA was not found.
func TestVersion(t *testing.T) {
	code, stdout, stderr := runProcess(t, zimageCmd(t, "version"))
	out := string(stdout)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"zimage ", "github.com/zimage/zimage", "commit ", runtime.Version(),
		runtime.GOOS + "/" + runtime.GOARCH, "GEMM kernel", "(bf16 ", ", int8 ", "cuda      driver not found: no CUDA driver: ",
		"libcuda.so.1: cannot open shared object file", "cublasLt  "} {
		if !strings.Contains(out, want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
	if runtime.GOARCH == "amd64" && !strings.Contains(out, "AVX2") {
		t.Errorf("no AVX2 in the feature list (present or missing):\n%s", out)
	}

	code, stdout, stderr = runProcess(t, zimageCmd(t, "version", "--json"))
	if code != 0 {
		t.Fatalf("--json: exit %d: %s", code, stderr)
	}
	var v versionInfo
	if err := json.Unmarshal(stdout, &v); err != nil {
		t.Fatalf("--json: %v\n%s", err, stdout)
	}
	if v.Go != runtime.Version() || v.OS != runtime.GOOS || v.CUDA.DriverError == "" || v.GEMM == "" || v.GEMMBF16 == "" || v.GEMMInt8 == "" {
		t.Errorf("--json: %+v", v)
	}
	if code, _, _ := runProcess(t, zimageCmd(t, "version", "extra")); code != 2 {
		t.Errorf("version extra: exit %d, want 2", code)
	}
}
