//go:build !windows

package main

import (
	"fmt"

	"github.com/zimage/zimage/cuda"
	"github.com/zimage/zimage/zimage"
	"github.com/zimage/zimage/zimage/compute"
)

// openBenchBackend opens the backend of a --synthetic run: a CUDA GPU that
// fills data-less weights itself (cuda.Options.SyntheticWeights), or the CPU.
func openBenchBackend(device string, threads int, budget uint64, selfTest zimage.SelfTestMode) (compute.Backend, error) {
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
	mode, err := cuda.ParseSelfTestMode(string(selfTest))
	if err != nil {
		return nil, err
	}
	b, err := cuda.New(cuda.Options{SyntheticWeights: true, MemoryBudget: budget, SelfTest: mode})
	if err != nil {
		if device == "cuda" {
			return nil, fmt.Errorf("device cuda: %w", err)
		}
		return newCPU(threads), nil
	}
	return b, nil
}

// deviceName is the GPU's name, "" for other backends. Kernel families the
// self-test disabled are named too: their fallbacks are slower.
func deviceName(b compute.Backend) string {
	if c, ok := b.(*cuda.Backend); ok {
		name := c.Device().Props().Name
		if d := c.Disabled(); len(d) > 0 {
			name += fmt.Sprintf("; kernel families disabled: %v", d)
		}
		return name
	}
	return ""
}
