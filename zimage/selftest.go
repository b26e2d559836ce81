package zimage

import "fmt"

// SelfTestMode says whether the CUDA backend runs its startup kernel
// self-test (see the cuda package): every custom kernel family checked
// against a reference on small inputs, failing ones replaced by their
// fallbacks, the result cached per device, driver and kernel build.
type SelfTestMode string

const (
	// SelfTestDefault ("") follows the environment variable
	// ZIMAGE_SELFTEST (auto, off or force) and is SelfTestAuto without it.
	SelfTestDefault SelfTestMode = ""
	// SelfTestAuto runs the self-test unless a cached result for this
	// device, driver and kernel build exists.
	SelfTestAuto SelfTestMode = "auto"
	// SelfTestOff skips it: every kernel family is used untested.
	SelfTestOff SelfTestMode = "off"
	// SelfTestForce runs it even with a cached result (and updates it).
	SelfTestForce SelfTestMode = "force"
)

// WithSelfTest sets the CUDA kernel self-test mode (cuda.Options.SelfTest);
// it has no effect on the CPU. An unknown mode makes Load fail with a
// *DeviceError.
func WithSelfTest(mode SelfTestMode) Option { return func(o *options) { o.selfTest = mode } }

// ParseSelfTestMode reads "auto", "off" or "force" ("" is SelfTestDefault).
func ParseSelfTestMode(s string) (SelfTestMode, error) {
	switch m := SelfTestMode(s); m {
	case SelfTestDefault, SelfTestAuto, SelfTestOff, SelfTestForce:
		return m, nil
	}
	return SelfTestDefault, fmt.Errorf("self-test mode %q: want auto, off or force", s)
}
