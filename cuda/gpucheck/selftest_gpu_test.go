//go:build gpu

package gpucheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zimage/zimage/cuda"
)

// TestGPUSelfTest runs the startup kernel self-test (forced, cache in a
// temporary directory) in bf16 and f32, logs its table and writes both to
// $GPU_CHECK_OUT/gpu-check-selftest.md. A disabled family is a failure here:
// on our own check the kernel must be fixed, not the fallback kept. The
// budget is 2 s per precision on an H100.
func TestGPUSelfTest(t *testing.T) {
	var tables []string
	for _, prec := range []cuda.Precision{cuda.BF16, cuda.F32} {
		t.Run(prec.String(), func(t *testing.T) {
			start := time.Now()
			b := gpuBackend(t, cuda.Options{Precision: prec, SelfTest: cuda.SelfTestForce, SelfTestCache: t.TempDir()})
			took := time.Since(start)
			r := b.SelfTest()
			if r == nil {
				t.Fatal("no self-test report")
			}
			tab := r.Table()
			tables = append(tables, tab)
			t.Logf("self-test %s: %v (New %v)\n%s", prec, r.Duration, took, tab)
			if d := r.Disabled(); len(d) > 0 {
				t.Errorf("kernel families disabled: %v", d)
			}
			if r.Duration > 2*time.Second {
				t.Errorf("self-test took %v, budget 2s", r.Duration)
			}
		})
	}
	if dir := os.Getenv("GPU_CHECK_OUT"); dir != "" && len(tables) > 0 {
		if err := os.WriteFile(filepath.Join(dir, "gpu-check-selftest.md"), []byte(strings.Join(tables, "\n")), 0o644); err != nil {
			t.Error(err)
		}
	}
}
