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

// announceDevice resolves --device of cmd before anything slow and says at
// once when auto falls back to the CPU. When the command must end, ok is
// false and code its exit status: a bad name goes through usage (2), no
// usable GPU for "cuda" is reported (1).
func announceDevice(stderr io.Writer, cmd, device string, usage func(string) int) (code int, ok bool) {
	dev, err := resolveDeviceFlag(device)
	var ue usageError
	switch {
	case errors.As(err, &ue):
		return usage(string(ue)), false
	case err != nil:
		fmt.Fprintf(stderr, "zimage %s: %s\n", cmd, oneLine(err))
		return 1, false
	}
	printFallback(stderr, cmd, dev)
	return 0, true
}

// printFallback tells the user at once, with the probe's reason, that
// --device auto found no usable GPU: the CPU is much slower and the load
// that follows can take minutes.
func printFallback(stderr io.Writer, cmd string, dev zimage.DeviceChoice) {
	if dev.Fallback != nil {
		fmt.Fprintf(stderr, "zimage %s: no usable CUDA GPU (%s); running on the CPU\n", cmd, fallbackReason(dev.Fallback))
	}
}
