package zimage

import (
	"errors"
	"log/slog"
	"testing"

	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
)

// TestWithSelfTest: the mode reaches the CUDA constructor (cuda.Options.
// SelfTest, see device_cuda.go), for "cuda" and "auto"; an unknown mode is
// a *DeviceError before any device is opened, on the CPU too.
func TestWithSelfTest(t *testing.T) {
	p, o := cudaProbe, cudaOpen
	t.Cleanup(func() { cudaProbe, cudaOpen = p, o })
	var got []SelfTestMode
	cudaProbe = func() error { return nil }
	cudaOpen = func(_ int, _ uint64, _ *slog.Logger, m SelfTestMode) (compute.Backend, error) {
		got = append(got, m)
		return namedBackend{cpu.New(), "cuda"}, nil
	}
	for _, tc := range []struct {
		device string
		opt    Option
		want   SelfTestMode
	}{
		{"cuda", WithSelfTest(SelfTestForce), SelfTestForce},
		{"auto", WithSelfTest(SelfTestOff), SelfTestOff},
		{"cuda:0", nil, SelfTestDefault},
	} {
		got = nil
		var opts options
		WithDevice(tc.device)(&opts)
		if tc.opt != nil {
			tc.opt(&opts)
		}
		if _, err := newBackend(&opts); err != nil {
			t.Fatalf("%s: %v", tc.device, err)
		}
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s: modes passed %q, want [%q]", tc.device, got, tc.want)
		}
	}

	got = nil
	for _, dev := range []string{"cuda", "cpu"} {
		var opts options
		WithDevice(dev)(&opts)
		WithSelfTest("sometimes")(&opts)
		_, err := newBackend(&opts)
		var de *DeviceError
		if !errors.As(err, &de) || de.Reason != `self-test mode "sometimes": want auto, off or force` {
			t.Errorf("%s, bad mode: %v, want a *DeviceError", dev, err)
		}
	}
	if len(got) != 0 {
		t.Errorf("a device was opened with a bad mode: %q", got)
	}
	for _, s := range []string{"", "auto", "off", "force"} {
		if m, err := ParseSelfTestMode(s); err != nil || string(m) != s {
			t.Errorf("ParseSelfTestMode(%q) = %q, %v", s, m, err)
		}
	}
}
