//go:build !windows

package zimage

import (
	"testing"

	"github.com/zimage/zimage/cuda"
)

// TestCUDASelfTestMode: every SelfTestMode maps to its cuda.SelfTestMode.
func TestCUDASelfTestMode(t *testing.T) {
	for m, want := range map[SelfTestMode]cuda.SelfTestMode{
		SelfTestDefault: cuda.SelfTestDefault, SelfTestAuto: cuda.SelfTestAuto,
		SelfTestOff: cuda.SelfTestOff, SelfTestForce: cuda.SelfTestForce,
	} {
		if got, err := cudaSelfTestMode(m); err != nil || got != want {
			t.Errorf("%q → %v, %v; want %v", m, got, err, want)
		}
	}
}
