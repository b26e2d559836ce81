//go:build !windows

package main

import (
	"fmt"

	"github.com/zimage/zimage/cuda"
	"github.com/zimage/zimage/zimage/compute"
)

// openBenchBackend opens the backend of a --synthetic run: a CUDA GPU that
// fills data-less weights itself (cuda.Options.SyntheticWeights), or the CPU.
func openBenchBackend(device string, threads int, budget uint64) (compute.Backend, error) {
	switch device {
	case "cpu":
		return newCPU(threads), nil
	case "cuda", "auto", "":
	default:
		return nil, fmt.Errorf("device %q: want cpu, cuda or auto", device)
	}
	if err := cuda.Available(); err != nil {
		if device == "cuda" {
			return nil, fmt.Errorf("device cuda: %w", err)
		}
		return newCPU(threads), nil
	}
	b, err := cuda.New(cuda.Options{SyntheticWeights: true, MemoryBudget: budget})
	if err != nil {
		if device == "cuda" {
			return nil, fmt.Errorf("device cuda: %w", err)
		}
		return newCPU(threads), nil
	}
	return b, nil
}

// deviceName is the GPU's name, "" for other backends.
func deviceName(b compute.Backend) string {
	if c, ok := b.(*cuda.Backend); ok {
		return c.Device().Props().Name
	}
	return ""
}
