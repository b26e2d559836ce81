package zimage

import "github.com/zimage/zimage/weights"

// DeviceChoice is what a device name (WithDevice) resolves to on this
// machine, found without loading a model.
type DeviceChoice struct {
	Kind    string // "cpu" or "cuda"
	Ordinal int    // CUDA device ordinal
	// Fallback is why "auto" resolved to the CPU (no driver, no device, …);
	// nil otherwise.
	Fallback error
}

// ResolveDevice checks a device name and probes for a CUDA GPU the way Load
// will, so a caller can report the device (and a fallback to the CPU with
// its reason) before a long download or load. An unknown name is a
// *DeviceError; so is "cuda" without a usable GPU (errors.Is(err,
// ErrNoDevice)). The probe is cached per process: Load repeats none of it.
func ResolveDevice(name string) (DeviceChoice, error) {
	kind, ordinal, err := parseDevice(name)
	if err != nil {
		return DeviceChoice{}, &DeviceError{Device: name, Reason: err.Error()}
	}
	switch kind {
	case "cpu":
		return DeviceChoice{Kind: "cpu"}, nil
	case "cuda":
		if err := cudaProbe(); err != nil {
			return DeviceChoice{}, &DeviceError{Device: name, Reason: "no usable CUDA GPU", Err: err}
		}
		return DeviceChoice{Kind: "cuda", Ordinal: ordinal}, nil
	}
	if err := cudaProbe(); err != nil {
		return DeviceChoice{Kind: "cpu", Fallback: err}, nil
	}
	return DeviceChoice{Kind: "cuda"}, nil
}

// SizeMultiple is the multiple that image widths and heights must be for
// model m: the VAE's pixels per latent cell times the DiT's patch size (16
// for Z-Image-Turbo).
func SizeMultiple(m *weights.Model) int {
	return (1 << (len(m.VAE.BlockOutChannels) - 1)) * m.DiT.PatchSize()
}
