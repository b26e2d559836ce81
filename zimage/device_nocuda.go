//go:build windows

package zimage

import (
	"errors"
	"log/slog"

	"github.com/zimage/zimage/zimage/compute"
)

// ErrNoDevice matches (errors.Is) a Load error for a machine without a usable
// CUDA GPU. This build has no CUDA support.
var ErrNoDevice = errors.New("cuda: no CUDA device")

// ErrOutOfMemory matches a device allocation that failed or would have
// exceeded WithMemoryBudget.
var ErrOutOfMemory = errors.New("cuda: out of device memory")

var errNoCUDABuild = errors.New("CUDA is not supported on this platform")

func probeCUDA() error { return errors.Join(ErrNoDevice, errNoCUDABuild) }

func openCUDA(int, uint64, *slog.Logger, SelfTestMode) (compute.Backend, error) {
	return nil, errors.Join(ErrNoDevice, errNoCUDABuild)
}
