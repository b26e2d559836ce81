//go:build windows

package main

import (
	"fmt"

	"github.com/zimage/zimage/zimage"
	"github.com/zimage/zimage/zimage/compute"
)

// openBenchBackend opens the backend of a --synthetic run: the CPU (this
// build has no CUDA support).
func openBenchBackend(device string, threads int, _ uint64, _ zimage.SelfTestMode) (compute.Backend, error) {
	switch device {
	case "cpu", "auto", "":
		return newCPU(threads), nil
	}
	return nil, fmt.Errorf("device %q: this build supports only the CPU", device)
}

func deviceName(compute.Backend) string { return "" }
