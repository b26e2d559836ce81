package zimage

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
)

// Option configures Load.
type Option func(*options)

type options struct {
	device  string
	backend compute.Backend
	logger  *slog.Logger
	threads int
}

// WithDevice selects the compute device: "cpu", "cuda" or "auto" (the best
// available; today that is the CPU). The default is "auto". An unknown name,
// or a device this build or machine cannot use, makes Load fail with a
// *DeviceError.
func WithDevice(name string) Option { return func(o *options) { o.device = name } }

// WithBackend runs the pipeline on b instead of a device chosen by name. The
// caller keeps ownership of b (Close does not close it).
func WithBackend(b compute.Backend) Option { return func(o *options) { o.backend = b } }

// WithLogger sends stage timings and residency decisions to l (debug and
// info levels). The default discards them.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithThreads bounds the CPU threads the CPU backend uses (0 = all cores).
func WithThreads(n int) Option { return func(o *options) { o.threads = n } }

// DeviceError reports a device that cannot be used.
type DeviceError struct {
	Device string
	Reason string
}

func (e *DeviceError) Error() string {
	return fmt.Sprintf("zimage: device %q: %s", e.Device, e.Reason)
}

// newBackend builds the backend for o.device.
func newBackend(o *options) (compute.Backend, error) {
	name := strings.ToLower(strings.TrimSpace(o.device))
	if o.threads < 0 {
		return nil, &DeviceError{Device: name, Reason: fmt.Sprintf("negative thread count %d", o.threads)}
	}
	switch name {
	case "", "auto", "cpu":
		return cpu.New(cpu.WithThreads(o.threads)), nil
	case "cuda", "gpu":
		return nil, &DeviceError{Device: name, Reason: "no CUDA backend in this build yet (use cpu)"}
	}
	return nil, &DeviceError{Device: o.device, Reason: "unknown device (want cpu, cuda or auto)"}
}
