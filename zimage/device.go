package zimage

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
)

// Device selection (WithDevice). The CUDA side lives in device_cuda.go; on
// platforms the CUDA bindings do not support, device_nocuda.go stands in and
// every CUDA request fails with ErrNoDevice.

// Test seams: the CUDA probe and constructor, replaced by tests that have no GPU.
var (
	// cudaProbe reports whether a usable CUDA GPU is present (nil: yes).
	cudaProbe = probeCUDA
	// cudaOpen opens CUDA device ordinal with a memory budget (0: none)
	// and a self-test mode.
	cudaOpen = openCUDA
)

// DeviceError reports a device that cannot be used. Err is the cause when
// there is one: errors.Is(err, ErrNoDevice) (which is cuda.ErrNoDevice) is
// true when no usable GPU or no driver is present.
type DeviceError struct {
	Device string
	Reason string
	Err    error
}

func (e *DeviceError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("zimage: device %q: %s: %v", e.Device, e.Reason, e.Err)
	}
	return fmt.Sprintf("zimage: device %q: %s", e.Device, e.Reason)
}

func (e *DeviceError) Unwrap() error { return e.Err }

// parseDevice splits a device name: "cpu", "auto", "" (auto), "cuda", "gpu"
// (cuda), "cuda:N" (ordinal N).
func parseDevice(name string) (kind string, ordinal int, err error) {
	name = strings.ToLower(strings.TrimSpace(name))
	kind, idx, hasIdx := strings.Cut(name, ":")
	switch kind {
	case "":
		kind = "auto"
	case "gpu":
		kind = "cuda"
	}
	if hasIdx {
		n, perr := strconv.Atoi(idx)
		if kind != "cuda" || perr != nil || n < 0 {
			return "", 0, errors.New("unknown device (want cpu, cuda, cuda:N or auto)")
		}
		ordinal = n
	}
	switch kind {
	case "cpu", "cuda", "auto":
		return kind, ordinal, nil
	}
	return "", 0, errors.New("unknown device (want cpu, cuda, cuda:N or auto)")
}

// newBackend builds the backend o.device names. "auto" takes the first CUDA
// GPU when one is usable and the CPU otherwise, saying which and why at Info
// level; "cuda" without a usable GPU is a *DeviceError.
func newBackend(o *options) (compute.Backend, error) {
	log := o.logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	kind, ordinal, err := parseDevice(o.device)
	if err != nil {
		return nil, &DeviceError{Device: o.device, Reason: err.Error()}
	}
	if o.threads < 0 {
		return nil, &DeviceError{Device: o.device, Reason: fmt.Sprintf("negative thread count %d", o.threads)}
	}
	if o.prec != Float32 && o.prec != BFloat16 {
		return nil, &DeviceError{Device: o.device, Reason: fmt.Sprintf("unknown precision %v", o.prec)}
	}
	if _, err := ParseSelfTestMode(string(o.selfTest)); err != nil {
		return nil, &DeviceError{Device: o.device, Reason: err.Error()}
	}
	newCPU := func() compute.Backend {
		return cpu.New(cpu.WithThreads(o.threads), cpu.WithBF16(o.prec == BFloat16), o.packOption())
	}
	switch kind {
	case "cpu":
		return newCPU(), nil
	case "cuda":
		b, err := cudaOpen(ordinal, o.budget, o.logger, o.selfTest)
		if err != nil {
			return nil, &DeviceError{Device: o.device, Reason: "cannot open the CUDA GPU", Err: err}
		}
		return b, nil
	}
	// auto
	if err := cudaProbe(); err != nil {
		log.Info("zimage: no usable CUDA GPU; running on the CPU", "reason", err.Error())
		return newCPU(), nil
	}
	b, err := cudaOpen(0, o.budget, o.logger, o.selfTest)
	if err != nil {
		log.Warn("zimage: the CUDA GPU could not be opened; running on the CPU", "err", err.Error())
		return newCPU(), nil
	}
	log.Info("zimage: running on the CUDA GPU", "backend", b.Name())
	return b, nil
}
