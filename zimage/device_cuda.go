//go:build !windows

package zimage

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/zimage/zimage/cuda"
	"github.com/zimage/zimage/zimage/compute"
)

// ErrNoDevice matches (errors.Is) a Load error for a machine without a usable
// CUDA GPU or driver; it is cuda.ErrNoDevice.
var ErrNoDevice = cuda.ErrNoDevice

// ErrOutOfMemory matches a device allocation that failed, or that would have
// exceeded WithMemoryBudget; it is cuda.ErrOutOfMemory.
var ErrOutOfMemory = cuda.ErrOutOfMemory

// noDevice makes a missing driver match ErrNoDevice too (no driver means no
// usable device), keeping the original error in the chain.
func noDevice(err error) error {
	if err != nil && errors.Is(err, cuda.ErrNoDriver) && !errors.Is(err, cuda.ErrNoDevice) {
		return fmt.Errorf("%w: %w", cuda.ErrNoDevice, err)
	}
	return err
}

func probeCUDA() error { return noDevice(cuda.Available()) }

func openCUDA(ordinal int, budget uint64, log *slog.Logger, selfTest SelfTestMode) (compute.Backend, error) {
	mode, err := cudaSelfTestMode(selfTest)
	if err != nil {
		return nil, err
	}
	b, err := cuda.New(cuda.Options{Device: ordinal, MemoryBudget: budget, Logger: log, SelfTest: mode})
	if err != nil {
		return nil, noDevice(err)
	}
	return b, nil
}

// cudaSelfTestMode maps a SelfTestMode to cuda.Options.SelfTest
// (SelfTestDefault stays the cuda default: ZIMAGE_SELFTEST, else auto).
func cudaSelfTestMode(m SelfTestMode) (cuda.SelfTestMode, error) {
	return cuda.ParseSelfTestMode(string(m))
}
