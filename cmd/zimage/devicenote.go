package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/zimage/zimage/zimage"
)

// resolveDeviceFlag resolves a --device value with zimage.ResolveDevice
// before anything slow: an unknown name is a usageError, "cuda" without a
// usable GPU the *DeviceError itself.
func resolveDeviceFlag(device string) (zimage.DeviceChoice, error) {
	dev, err := zimage.ResolveDevice(device)
	if err != nil && !errors.Is(err, zimage.ErrNoDevice) {
		return dev, usageError(fmt.Sprintf("--device %q: want cpu, cuda, cuda:N or auto", device))
	}
	return dev, err
}

// printFallback tells the user at once, with the probe's reason, that
// --device auto found no usable GPU: the CPU is much slower and the load
// that follows can take minutes.
func printFallback(stderr io.Writer, cmd string, dev zimage.DeviceChoice) {
	if dev.Fallback != nil {
		fmt.Fprintf(stderr, "zimage %s: no usable CUDA GPU (%s); running on the CPU\n", cmd, fallbackReason(dev.Fallback))
	}
}
