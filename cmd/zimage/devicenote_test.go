package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestServeBenchDeviceFallbackFirst: serve and bench with --device auto and
// no CUDA driver say so on stderr, with the driver's reason, before the
// model loads (here the load fails: the model directory does not exist);
// "cuda" without a GPU fails before the load, and a bad --device is a usage
// error.
func TestServeBenchDeviceFallbackFirst(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-model")
	for _, tc := range []struct {
		cmd  string
		args []string
	}{
		{"serve", []string{"serve", "--data", t.TempDir(), "--addr", "127.0.0.1:0", "--model", missing}},
		{"bench", []string{"bench", "--model", missing, "--size", "64x64", "--runs", "1", "--warmup", "0"}},
	} {
		code, _, stderr := runProcess(t, zimageCmd(t, tc.args...))
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != 1 || len(lines) < 2 {
			t.Fatalf("%s: exit %d, stderr %q", tc.cmd, code, stderr)
		}
		if !strings.HasPrefix(lines[0], "zimage "+tc.cmd+": no usable CUDA GPU (no CUDA driver: ") ||
			!strings.Contains(lines[0], "libcuda.so.1: cannot open shared object file") ||
			!strings.HasSuffix(lines[0], "); running on the CPU") {
			t.Errorf("%s: fallback line %q", tc.cmd, lines[0])
		}
		if !strings.Contains(stderr, missing) {
			t.Errorf("%s: the load failure does not follow: %q", tc.cmd, stderr)
		}

		code, _, stderr = runProcess(t, zimageCmd(t, append(tc.args, "--device", "cuda")...))
		if code != 1 || !strings.HasPrefix(stderr, "zimage "+tc.cmd+`: device "cuda": no usable CUDA GPU`) || strings.Contains(stderr, missing) {
			t.Errorf("%s --device cuda: exit %d, stderr %q", tc.cmd, code, stderr)
		}

		code, _, stderr = runProcess(t, zimageCmd(t, append(tc.args, "--device", "tpu")...))
		if code != 2 || !strings.HasPrefix(stderr, "zimage "+tc.cmd+`: --device "tpu": want cpu, cuda, cuda:N or auto`) {
			t.Errorf("%s --device tpu: exit %d, stderr %q", tc.cmd, code, stderr)
		}
	}
}
