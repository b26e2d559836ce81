package zimage

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
)

func TestParseDevice(t *testing.T) {
	for _, c := range []struct {
		in   string
		kind string
		ord  int
		bad  bool
	}{
		{"", "auto", 0, false}, {"auto", "auto", 0, false}, {" CPU ", "cpu", 0, false},
		{"cuda", "cuda", 0, false}, {"gpu", "cuda", 0, false}, {"cuda:2", "cuda", 2, false},
		{"cuda:-1", "", 0, true}, {"cuda:x", "", 0, true}, {"cpu:1", "", 0, true}, {"tpu", "", 0, true},
	} {
		kind, ord, err := parseDevice(c.in)
		if (err != nil) != c.bad || kind != c.kind || ord != c.ord {
			t.Errorf("parseDevice(%q) = %q, %d, %v", c.in, kind, ord, err)
		}
	}
}

// fakeCUDA replaces the CUDA probe and constructor for one test.
func fakeCUDA(t *testing.T, probe error, open func(int, uint64) (compute.Backend, error)) {
	t.Helper()
	p, o := cudaProbe, cudaOpen
	t.Cleanup(func() { cudaProbe, cudaOpen = p, o })
	cudaProbe = func() error { return probe }
	cudaOpen = func(ord int, budget uint64, _ *slog.Logger, _ SelfTestMode) (compute.Backend, error) {
		return open(ord, budget)
	}
}

// namedBackend is a CPU backend that calls itself something else.
type namedBackend struct {
	*cpu.Backend
	name string
}

func (b namedBackend) Name() string { return b.name }

func TestNewBackendSelection(t *testing.T) {
	noGPU := errors.Join(ErrNoDevice, errors.New("no driver"))
	var opened []int
	var budgets []uint64
	gpu := func(ord int, budget uint64) (compute.Backend, error) {
		opened, budgets = append(opened, ord), append(budgets, budget)
		return namedBackend{cpu.New(), "cuda"}, nil
	}
	broken := func(int, uint64) (compute.Backend, error) { return nil, errors.New("context creation failed") }

	t.Run("auto without GPU", func(t *testing.T) {
		fakeCUDA(t, noGPU, gpu)
		var logs bytes.Buffer
		b, err := newBackend(&options{device: "auto", logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil || b.Name() != "cpu" {
			t.Fatalf("got %v, %v", b, err)
		}
		if !strings.Contains(logs.String(), "running on the CPU") || !strings.Contains(logs.String(), "no driver") {
			t.Errorf("log does not explain the fallback: %q", logs.String())
		}
	})
	t.Run("auto with GPU", func(t *testing.T) {
		fakeCUDA(t, nil, gpu)
		opened, budgets = nil, nil
		b, err := newBackend(&options{budget: 123})
		if err != nil || b.Name() != "cuda" || len(opened) != 1 || opened[0] != 0 || budgets[0] != 123 {
			t.Fatalf("got %v, %v (opened %v, budgets %v)", b, err, opened, budgets)
		}
	})
	t.Run("auto with unusable GPU", func(t *testing.T) {
		fakeCUDA(t, nil, broken)
		var logs bytes.Buffer
		b, err := newBackend(&options{device: "auto", logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil || b.Name() != "cpu" || !strings.Contains(logs.String(), "context creation failed") {
			t.Fatalf("got %v, %v; log %q", b, err, logs.String())
		}
	})
	t.Run("cuda ordinal", func(t *testing.T) {
		fakeCUDA(t, nil, gpu)
		opened = nil
		if _, err := newBackend(&options{device: "cuda:3"}); err != nil || len(opened) != 1 || opened[0] != 3 {
			t.Fatalf("err %v, opened %v", err, opened)
		}
	})
	t.Run("cuda without GPU", func(t *testing.T) {
		fakeCUDA(t, noGPU, func(int, uint64) (compute.Backend, error) { return nil, noGPU })
		_, err := newBackend(&options{device: "cuda"})
		var de *DeviceError
		if !errors.As(err, &de) || !errors.Is(err, ErrNoDevice) {
			t.Fatalf("want a *DeviceError matching ErrNoDevice, got %v", err)
		}
	})
	t.Run("cpu never probes", func(t *testing.T) {
		fakeCUDA(t, nil, func(int, uint64) (compute.Backend, error) { t.Fatal("opened CUDA"); return nil, nil })
		if b, err := newBackend(&options{device: "cpu"}); err != nil || b.Name() != "cpu" {
			t.Fatalf("got %v, %v", b, err)
		}
	})
	t.Run("bad threads", func(t *testing.T) {
		if _, err := newBackend(&options{device: "cpu", threads: -1}); err == nil {
			t.Fatal("negative threads: want an error")
		}
	})
}

// TestCUDAOnThisMachine exercises the real probe: on a machine without a
// GPU (or driver), "cuda" is a typed error and "auto" falls back, no panic.
func TestCUDAOnThisMachine(t *testing.T) {
	if cudaProbe() == nil {
		t.Skip("a usable CUDA GPU is present")
	}
	_, err := newBackend(&options{device: "cuda"})
	t.Log(err)
	var de *DeviceError
	if !errors.As(err, &de) || !errors.Is(err, ErrNoDevice) {
		t.Fatalf("cuda: want a *DeviceError matching ErrNoDevice, got %v", err)
	}
	b, err := newBackend(&options{device: "auto"})
	if err != nil || b.Name() != "cpu" {
		t.Fatalf("auto: got %v, %v", b, err)
	}
}
