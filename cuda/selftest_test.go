package cuda

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zimage/zimage/cuda/internal/fakecuda"
	"github.com/zimage/zimage/cuda/internal/hostshim"
	"github.com/zimage/zimage/cuda/internal/parity"
)

// selfTested returns a backend on a fake GPU (kernels on the host shim)
// whose New ran the self-test in mode, with its cache in dir, its log and
// the fake. inject runs before New.
func selfTested(t *testing.T, prec Precision, mode SelfTestMode, dir string, inject func(f *fakecuda.Fake)) (*Backend, *fakecuda.Fake, *bytes.Buffer) {
	t.Helper()
	var log bytes.Buffer
	b, f, _ := newFake(t, prec, true, func(o *Options, f *fakecuda.Fake) {
		o.SelfTest, o.SelfTestCache = mode, dir
		o.Logger = slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
		if inject != nil {
			inject(f)
		}
	})
	return b, f, &log
}

func TestSelfTestPassesAndCaches(t *testing.T) {
	for _, prec := range []Precision{F32, BF16} {
		t.Run(prec.String(), func(t *testing.T) {
			dir := t.TempDir()
			start := time.Now()
			b, f, log := selfTested(t, prec, SelfTestAuto, dir, nil)
			took := time.Since(start)
			r := b.SelfTest()
			if r == nil || r.Cached {
				t.Fatalf("report %+v", r)
			}
			t.Logf("self-test on the host shim: %v (report says %v), %d launches\n%s", took, r.Duration, f.TotalLaunches(), r.Table())
			if d := b.Disabled(); len(d) != 0 {
				t.Fatalf("families disabled on a correct fake GPU: %v\n%s", d, r.Table())
			}
			for _, fr := range r.Families {
				tc := tcHead(fr.Family) != 0
				want := "pass"
				if tc && prec == F32 {
					want = "n/a"
				}
				if fr.Status != want || (want == "pass" && fr.Cases == 0) {
					t.Errorf("%s: %s after %d cases, want %s", fr.Family, fr.Status, fr.Cases, want)
				}
			}
			files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
			if len(files) != 1 || r.Path != files[0] {
				t.Fatalf("cache files %v, report path %q", files, r.Path)
			}
			if !strings.Contains(log.String(), "cuda: self-test") {
				t.Errorf("no self-test log line:\n%s", log)
			}

			// A second start on the same device takes the cached result and
			// launches nothing.
			b2, f2, log2 := selfTested(t, prec, SelfTestAuto, dir, nil)
			if r2 := b2.SelfTest(); r2 == nil || !r2.Cached || len(r2.Families) != len(r.Families) {
				t.Fatalf("second start: %+v", r2)
			}
			if n := f2.TotalLaunches(); n != 0 {
				t.Errorf("second start launched %d kernels", n)
			}
			if !strings.Contains(log2.String(), "cached=true") {
				t.Errorf("log does not say the result was cached:\n%s", log2)
			}
			// Force runs it again (f32 only: it is the same code).
			if prec == F32 {
				_, f3, _ := selfTested(t, prec, SelfTestForce, dir, nil)
				if f3.TotalLaunches() == 0 {
					t.Error("force did not run the self-test")
				}
			}
		})
	}
}

func TestSelfTestCorruptCacheReruns(t *testing.T) {
	dir := t.TempDir()
	b, _, _ := selfTested(t, F32, SelfTestAuto, dir, nil)
	path := b.SelfTest().Path
	for _, junk := range []string{"{not json", `{"version":1,"key":"other","families":[{"family":"gemm","status":"pass"}]}`, ""} {
		if err := os.WriteFile(path, []byte(junk), 0o644); err != nil {
			t.Fatal(err)
		}
		b2, f2, _ := selfTested(t, F32, SelfTestAuto, dir, nil)
		if b2.SelfTest().Cached || f2.TotalLaunches() == 0 {
			t.Errorf("cache %q was used", junk)
		}
	}
	// The rerun rewrote a good cache.
	if r := loadSelfTest(path, b.SelfTest().Key); r == nil {
		t.Error("cache not rewritten")
	}
}

func TestSelfTestOffByDefaultWithInjectedDriver(t *testing.T) {
	b, f, _ := newFake(t, F32, true)
	if b.SelfTest() != nil || f.TotalLaunches() != 0 {
		t.Errorf("self-test ran with an injected driver and no SelfTest option")
	}
	for s, want := range map[string]SelfTestMode{"": SelfTestDefault, "off": SelfTestOff, "FORCE": SelfTestForce, "auto": SelfTestAuto} {
		if m, err := ParseSelfTestMode(s); err != nil || m != want {
			t.Errorf("ParseSelfTestMode(%q) = %v, %v", s, m, err)
		}
	}
	if _, err := ParseSelfTestMode("sometimes"); err == nil {
		t.Error("bad mode accepted")
	}
}

// TestSelfTestFaults injects each kind of fault into one kernel and checks
// that exactly that kernel's family is disabled (the log says which, and
// why), that the backend still computes the op right through the fallback,
// and that the cached result disables it again without a launch.
func TestSelfTestFaults(t *testing.T) {
	// Mostly f32: its self-test is a third of bf16's on the host shim; the
	// tensor-core kernels exist only in bf16.
	cases := []struct {
		prec   Precision
		kernel string
		fault  fakecuda.Fault
		family Family
		op     string // a parity case that goes through the family
		logs   string
	}{
		{BF16, "zk_tc_flash_attn_bf16_d128", fakecuda.FaultWrong, FamAttnTC128, "AttentionD128CausalGQA", "max_err="},
		{BF16, "zk_tc_flash_attn_bf16_d512", fakecuda.FaultNaN, FamAttnTC512, "AttentionD512", "non-finite"},
		{F32, "zk_rmsnorm_ex_f32", fakecuda.FaultIllegalAddress, FamFusedNorm, "FusedRMSNormModulate", "CUDA_ERROR_ILLEGAL_ADDRESS"},
		{F32, "zk_head_norm_rope_f32", fakecuda.FaultLaunch, FamFusedHeadRoPE, "FusedHeadRMSNormRoPEHalf", "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES"},
		{F32, "zk_flash_attn_f32", fakecuda.FaultWrong, FamAttnGeneric, "AttentionMHA", "max_err="},
		{F32, "zk_rope_f32", fakecuda.FaultNaN, FamRoPE, "RoPEInterleaved", "non-finite"},
		{F32, "zk_gn_stats_f32", fakecuda.FaultWrong, FamGroupNorm, "GroupNorm", "max_err="},
		{F32, "zk_im2col_f32", fakecuda.FaultIllegalAddress, FamConv, "Conv3x3", "CUDA_ERROR_ILLEGAL_ADDRESS"},
		{BF16, "zk_im2col_s2_bf16", fakecuda.FaultWrong, FamConvStrided, "Downsample", "max_err="},
		{F32, "zk_silu_f32", fakecuda.FaultWrong, FamElementwise, "SiLU", "max_err="},
		{F32, "zk_softmax_warp_f32", fakecuda.FaultNaN, FamAttnGemm, "AttentionCausalGQA", "non-finite"},
	}
	for _, c := range cases {
		t.Run(c.family.String()+"-"+c.fault.String(), func(t *testing.T) {
			dir := t.TempDir()
			b, f, log := selfTested(t, c.prec, SelfTestAuto, dir, func(f *fakecuda.Fake) { f.Inject(c.kernel, c.fault) })
			if d := b.Disabled(); !slices.Equal(d, []Family{c.family}) {
				t.Fatalf("disabled %v, want [%s]\n%s", d, c.family, b.SelfTest().Table())
			}
			l := log.String()
			if !strings.Contains(l, "kernel family disabled by the self-test") || !strings.Contains(l, "family="+string(c.family)) || !strings.Contains(l, c.logs) {
				t.Errorf("log does not name the family and why:\n%s", l)
			}
			if c.fault == fakecuda.FaultIllegalAddress {
				if f.Contexts() < 2 || !strings.Contains(l, "reopening the device") {
					t.Errorf("context not recreated after the fault (%d contexts)", f.Contexts())
				}
			}
			t.Logf("\n%s", b.SelfTest().Table())

			// The op is still right: the fallback runs, not the kernel.
			before := f.Launched(c.kernel)
			runParityCase(t, b, c.prec, c.op)
			if c.family != FamAttnGemm && f.Launched(c.kernel) != before {
				t.Errorf("%s launched after its family was disabled", c.kernel)
			}

			// Cached: disabled again, nothing launched.
			b2, f2, _ := selfTested(t, c.prec, SelfTestAuto, dir, nil)
			if !slices.Equal(b2.Disabled(), []Family{c.family}) || f2.TotalLaunches() != 0 {
				t.Errorf("cached start: disabled %v, %d launches", b2.Disabled(), f2.TotalLaunches())
			}
		})
	}
}

// runParityCase runs the named parity case on b against the CPU backend.
func runParityCase(t *testing.T, b *Backend, prec Precision, name string) {
	t.Helper()
	for _, pc := range parity.Cases {
		if pc.Name == name {
			parity.Run(t, b, prec == BF16, []parity.Case{pc})
			return
		}
	}
	t.Fatalf("no parity case %s", name)
}

func TestSelfTestFatalFamily(t *testing.T) {
	f := fakecuda.New()
	lib, err := hostshim.Load()
	if errors.Is(err, hostshim.ErrNoCompiler) {
		t.Skip("g++ not installed: host shim unavailable")
	}
	if err != nil {
		t.Fatal(err)
	}
	f.Shim = lib
	f.Inject("zk_cvt_f32_bf16", fakecuda.FaultWrong)
	dir := t.TempDir()
	_, err = New(Options{Driver: f.API, BLAS: fakecuda.NewBLAS(f).API, SelfTest: SelfTestAuto, SelfTestCache: dir})
	var se *SelfTestError
	if !errors.As(err, &se) || se.Result.Family != FamConvert || !strings.Contains(err.Error(), "cannot be used") {
		t.Fatalf("got %v", err)
	}
	if l := f.Leaks(); l != "" {
		t.Errorf("failed New leaked: %s", l)
	}
}

// FuzzLoadSelfTest: whatever the cache file holds, loading it never panics
// and yields either nothing or a report for the key asked for.
func FuzzLoadSelfTest(f *testing.F) {
	f.Add([]byte(`{"version":1,"key":"k","families":[{"family":"rope","status":"FAIL","case":"x","max_err":3}]}`))
	f.Add([]byte(`{"version":1,"key":"k","families":[{"family":"convert","status":"FAIL"}]}`))
	f.Add([]byte(`{"version":2,"key":"k"}`))
	f.Add([]byte("{"))
	f.Add([]byte(`{"version":1,"key":"k","families":[{"family":"nope","status":"FAIL"}],"duration_ns":-1}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "c.json")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		r := loadSelfTest(path, "k")
		if r != nil && (r.Key != "k" || !r.Cached || len(r.Families) == 0) {
			t.Fatalf("bad report %+v", r)
		}
		if r != nil {
			_ = r.Table()
			_ = r.Disabled()
		}
	})
}

func TestSelfTestModeFromEnv(t *testing.T) {
	for env, want := range map[string]SelfTestMode{"": SelfTestAuto, "off": SelfTestOff, "force": SelfTestForce, "junk": SelfTestAuto} {
		t.Setenv("ZIMAGE_SELFTEST", env)
		if got := selfTestMode(Options{}); got != want {
			t.Errorf("ZIMAGE_SELFTEST=%q: %v, want %v", env, got, want)
		}
		if got := selfTestMode(Options{SelfTest: SelfTestOff}); got != SelfTestOff {
			t.Errorf("explicit option overridden by ZIMAGE_SELFTEST=%q", env)
		}
	}
}

func TestDisableOption(t *testing.T) {
	b, f, _ := newFake(t, BF16, true, func(o *Options, _ *fakecuda.Fake) { o.Disable = []Family{FamAttnTC128, FamFusedNorm} })
	if d := b.Disabled(); !slices.Equal(d, []Family{FamFusedNorm, FamAttnTC128}) {
		t.Fatalf("disabled %v", d)
	}
	runParityCase(t, b, BF16, "AttentionD128CausalGQA")
	runParityCase(t, b, BF16, "FusedRMSNormModulate")
	if n := f.Launched("zk_tc_flash_attn_bf16_d128") + f.Launched("zk_rmsnorm_ex_bf16"); n != 0 {
		t.Errorf("disabled kernels launched %d times", n)
	}
	for _, bad := range []Family{"nope", FamConvert} {
		fk := fakecuda.New()
		_, err := New(Options{Driver: fk.API, BLAS: fakecuda.NewBLAS(fk).API, Disable: []Family{bad}})
		if err == nil {
			t.Errorf("Disable %q accepted", bad)
		}
		if l := fk.Leaks(); l != "" {
			t.Errorf("failed New leaked: %s", l)
		}
	}
}

// TestParityAllFallbacks runs every parity case with every family that has
// a fallback turned off: the host ops, the unfused sequences and the
// attention fallbacks all give the CPU backend's results, and none of the
// disabled kernels runs.
func TestParityAllFallbacks(t *testing.T) {
	var all []Family
	for _, f := range Families {
		if f.Fallback() != "" {
			all = append(all, f)
		}
	}
	for _, prec := range []Precision{F32, BF16} {
		t.Run(prec.String(), func(t *testing.T) {
			b, f, _ := newFake(t, prec, true, func(o *Options, _ *fakecuda.Fake) { o.Disable = all })
			parity.Run(t, b, prec == BF16, parity.Cases)
			s := dtypeSuffix[b.dt]
			for _, k := range []string{"zk_silu_", "zk_rmsnorm_", "zk_rope_", "zk_gn_stats_", "zk_im2col_", "zk_im2col_s2_", "zk_rmsnorm_ex_",
				"zk_head_norm_rope_", "zk_flash_attn_", "zk_softmax_warp_", "zk_transpose_", "zk_copy2d_", "zk_gather_"} {
				if n := f.Launched(k + s); n != 0 {
					t.Errorf("%s%s launched %d times with its family off", k, s, n)
				}
			}
			if n := f.Launched("zk_tc_flash_attn_bf16_d128"); n != 0 {
				t.Errorf("tensor-core attention launched %d times with its family off", n)
			}
		})
	}
}

// TestSelfTestWithDisabledFamily: a family the caller disables is still
// tested (the cache must hold for starts without the option) and stays off.
func TestSelfTestWithDisabledFamily(t *testing.T) {
	dir := t.TempDir()
	b, f, _ := newFake(t, F32, true, func(o *Options, _ *fakecuda.Fake) {
		o.Disable, o.SelfTest, o.SelfTestCache = []Family{FamRoPE}, SelfTestAuto, dir
	})
	if f.Launched("zk_rope_f32") == 0 {
		t.Error("the disabled family was not tested")
	}
	if !slices.Equal(b.Disabled(), []Family{FamRoPE}) || len(b.SelfTest().Disabled()) != 0 {
		t.Errorf("backend disabled %v, self-test failed %v", b.Disabled(), b.SelfTest().Disabled())
	}
	b2, _, _ := selfTested(t, F32, SelfTestAuto, dir, nil)
	if !b2.SelfTest().Cached || len(b2.Disabled()) != 0 {
		t.Errorf("cached start without Disable: %v", b2.Disabled())
	}
}
