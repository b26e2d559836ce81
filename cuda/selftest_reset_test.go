package cuda

import (
	"slices"
	"strings"
	"testing"

	"github.com/zimage/zimage/cuda/driver"
	"github.com/zimage/zimage/cuda/internal/fakecuda"
)

// TestSelfTestFaultWithRetainedContext: an illegal-address fault in the
// self-test while something else in the process also retains the primary
// context. Releasing the backend's reference alone would leave the faulted
// context alive (and every later call failing); the self-test resets it
// (cuDevicePrimaryCtxReset_v2), gets a fresh context, disables the family
// and the backend computes right on the fallback.
func TestSelfTestFaultWithRetainedContext(t *testing.T) {
	var api *driver.API
	b, f, log := selfTested(t, F32, SelfTestForce, t.TempDir(), func(f *fakecuda.Fake) {
		api = f.API
		var c driver.Context
		if r := api.DevicePrimaryCtxRetain(&c, 0); r != driver.Success {
			t.Fatalf("retain: %d", r)
		}
		f.Inject("zk_im2col_f32", fakecuda.FaultIllegalAddress)
	})
	// Runs before the backend's own cleanup (Close, then the leak check).
	t.Cleanup(func() { api.DevicePrimaryCtxRelease(0) })

	if d := b.Disabled(); !slices.Equal(d, []Family{FamConv}) {
		t.Fatalf("disabled %v, want [%s]\n%s", d, FamConv, b.SelfTest().Table())
	}
	if n := f.Calls["cuDevicePrimaryCtxReset_v2"]; n != 1 {
		t.Errorf("primary context reset %d times, want 1", n)
	}
	if f.Contexts() < 2 || !strings.Contains(log.String(), "reopening the device") {
		t.Errorf("context not recreated after the fault (%d contexts):\n%s", f.Contexts(), log)
	}
	if err := b.Err(); err != nil {
		t.Fatalf("backend unusable after the reset: %v", err)
	}
	before := f.Launched("zk_im2col_f32")
	runParityCase(t, b, F32, "Conv3x3")
	if f.Launched("zk_im2col_f32") != before {
		t.Error("zk_im2col_f32 launched after its family was disabled")
	}
}
