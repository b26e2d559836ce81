//go:build !windows

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/zimage/zimage/cuda"
	"github.com/zimage/zimage/cuda/cudatest"
)

// TestDoctorOnFakeGPU fills the GPU sections from a backend on the fake GPU
// (tiny shapes): the self-test table, plans for its memory, the timed step.
func TestDoctorOnFakeGPU(t *testing.T) {
	b := cudatest.New(t, cuda.Options{SyntheticWeights: true, BlockThreads: 32, SelfTest: cuda.SelfTestForce, SelfTestCache: t.TempDir()}, 2<<30)
	teC, ditC, vaeC := tinyConfigs()
	r := &doctorReport{Problems: []string{}}
	r.CUDA.Devices = []doctorDevice{{Name: "Fake GPU", Supported: true}}
	doctorBackend(context.Background(), r, doctorOptions{run: true, config: "tiny", size: 64}, b, teC, ditC, vaeC)
	if !r.CUDA.Usable || r.SelfTest == nil || !strings.Contains(r.SelfTestTable, "| attention-tc-d128 |") {
		t.Fatalf("self-test section: %+v", r)
	}
	if len(r.Plans) != 2 || r.Plans[0].Plan == "" || r.Plans[0].Peak == 0 || strings.Contains(r.Plans[0].Plan, "host") {
		t.Errorf("plans %+v", r.Plans)
	}
	if r.Timed == nil || r.Timed.Err != "" || r.Timed.Step <= 0 || !strings.HasPrefix(r.Timed.Device, "cuda") {
		t.Errorf("timed %+v", r.Timed)
	}
	if len(r.Problems) != 0 || r.CUDA.Devices[0].Free == 0 {
		t.Errorf("problems %v, free %d", r.Problems, r.CUDA.Devices[0].Free)
	}
	var out bytes.Buffer
	r.print(&out)
	if !strings.Contains(out.String(), "GPU         usable") || !strings.Contains(out.String(), "| convert | pass |") {
		t.Errorf("text report:\n%s", out.String())
	}
}
