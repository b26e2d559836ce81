package cuda

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/zimage/zimage/cuda/driver"
	"github.com/zimage/zimage/cuda/kernels"
	"github.com/zimage/zimage/zimage/cpu"
)

// The startup self-test. Before first use on a device, New runs every
// kernel family (families.go) on small random inputs with ragged edges and
// the real widths' tiling, against the CPU backend on the same inputs. A
// family whose output is off (beyond the parity tolerances), not finite
// where the reference is, or whose launch fails or faults the context
// (CUDA_ERROR_ILLEGAL_ADDRESS: the device is then closed and opened again)
// is disabled for the backend's life, and its ops take the family's
// fallback. Each disabled family gets a Warn log line naming the case, the
// error and where it was largest. The outcome is cached on disk per
// (device, driver, cuBLASLt, kernel fatbin) so later starts run nothing.

// SelfTestMode says whether New runs the self-test.
type SelfTestMode int

const (
	// SelfTestDefault: SelfTestAuto with the system driver, unless the
	// environment variable ZIMAGE_SELFTEST says off, force or auto;
	// SelfTestOff when Options.Driver is set (tests and embedders that
	// bring their own driver table).
	SelfTestDefault SelfTestMode = iota
	// SelfTestAuto runs the self-test unless the cache has this device's
	// result.
	SelfTestAuto
	// SelfTestOff skips it: every family is enabled.
	SelfTestOff
	// SelfTestForce runs it even when a cached result exists (and updates
	// the cache).
	SelfTestForce
)

// ParseSelfTestMode reads "auto", "off" or "force" ("" is the default).
func ParseSelfTestMode(s string) (SelfTestMode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "":
		return SelfTestDefault, nil
	case "auto", "on":
		return SelfTestAuto, nil
	case "off", "0", "false", "no":
		return SelfTestOff, nil
	case "force":
		return SelfTestForce, nil
	}
	return SelfTestDefault, fmt.Errorf("cuda: self-test mode %q: want auto, off or force", s)
}

// FamilyResult is one family's self-test outcome.
type FamilyResult struct {
	Family Family `json:"family"`
	// Status is "pass", "FAIL" or "n/a" (the family is not used with this
	// precision or device, e.g. tensor-core attention in f32).
	Status string `json:"status"`
	Cases  int    `json:"cases"` // cases run (up to the failing one)
	// Where it failed: the case, the error (launch or device), the largest
	// error relative to the reference's magnitude, the relative L2 error and
	// the output index of the largest error.
	Case     string  `json:"case,omitempty"`
	Err      string  `json:"err,omitempty"`
	MaxErr   float64 `json:"max_err,omitempty"`
	RelL2    float64 `json:"rel_l2,omitempty"`
	Where    string  `json:"where,omitempty"`
	Fallback string  `json:"fallback,omitempty"`
}

// SelfTestReport is the outcome of the self-test.
type SelfTestReport struct {
	Version   int            `json:"version"`
	Key       string         `json:"key"`
	Device    string         `json:"device"`
	Driver    int            `json:"driver"`   // cuDriverGetVersion
	CuBLASLt  uint64         `json:"cublaslt"` // cublasLtGetVersion
	Fatbin    string         `json:"fatbin"`   // sha256 of the embedded kernels
	Precision string         `json:"precision"`
	Duration  time.Duration  `json:"duration_ns"`
	Families  []FamilyResult `json:"families"`
	// Cached is true when the result came from the cache (not stored).
	Cached bool   `json:"-"`
	Path   string `json:"-"` // the cache file ("" when not cached)
}

const selfTestVersion = 1

// Disabled returns the families that failed.
func (r *SelfTestReport) Disabled() []Family {
	var out []Family
	for _, f := range r.Families {
		if f.Status == "FAIL" {
			out = append(out, f.Family)
		}
	}
	return out
}

// Table formats the report as markdown table rows (bench/RESULTS.md form).
func (r *SelfTestReport) Table() string {
	var sb strings.Builder
	src := "run"
	if r.Cached {
		src = "cached"
	}
	fmt.Fprintf(&sb, "self-test: %s, driver %d.%d, cuBLASLt %d, %s, fatbin %.12s, %s in %v\n\n", r.Device, r.Driver/1000, r.Driver%1000/10,
		r.CuBLASLt, r.Precision, r.Fatbin, src, r.Duration.Round(time.Millisecond))
	sb.WriteString("| family | result | cases | failing case | max err | rel L2 | where | error | fallback |\n")
	sb.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, f := range r.Families {
		num := func(v float64) string {
			if f.Status != "FAIL" || f.Err != "" {
				return ""
			}
			return fmt.Sprintf("%.3g", v)
		}
		fb := ""
		if f.Status == "FAIL" {
			fb = f.Fallback
		}
		fmt.Fprintf(&sb, "| %s | %s | %d | %s | %s | %s | %s | %s | %s |\n", f.Family, f.Status, f.Cases, f.Case,
			num(f.MaxErr), num(f.RelL2), f.Where, strings.ReplaceAll(f.Err, "|", "/"), fb)
	}
	return sb.String()
}

// SelfTestError is New's error when a family without a fallback
// (conversions, cuBLASLt) fails: the device cannot be used.
type SelfTestError struct {
	Result FamilyResult
}

func (e *SelfTestError) Error() string {
	f := e.Result
	what := f.Err
	if what == "" {
		what = fmt.Sprintf("max error %.3g (rel L2 %.3g) at %s", f.MaxErr, f.RelL2, f.Where)
	}
	return fmt.Sprintf("cuda: self-test: kernel family %s failed in case %s: %s; the GPU cannot be used (ZIMAGE_SELFTEST=force reruns the test, off skips it)", f.Family, f.Case, what)
}

// SelfTest returns the self-test's outcome (nil when it was off).
func (b *Backend) SelfTest() *SelfTestReport { return b.selfTest }

// selfTestMode resolves SelfTestDefault.
func selfTestMode(o Options) SelfTestMode {
	if o.SelfTest != SelfTestDefault {
		return o.SelfTest
	}
	if o.Driver != nil {
		return SelfTestOff
	}
	m, err := ParseSelfTestMode(os.Getenv("ZIMAGE_SELFTEST"))
	if err != nil || m == SelfTestDefault {
		return SelfTestAuto
	}
	return m
}

var (
	fatbinOnce sync.Once
	fatbinSum  string
)

// fatbinSHA is the sha256 of the embedded kernels.
func fatbinSHA() string {
	fatbinOnce.Do(func() {
		s := sha256.Sum256(kernels.Fatbin())
		fatbinSum = hex.EncodeToString(s[:])
	})
	return fatbinSum
}

// selfTestKey identifies what the result depends on: the device (name,
// UUID, compute capability, SMs, memory, ordinal), the driver and cuBLASLt
// versions, the kernels, the precision and the 1-D block size.
func (b *Backend) selfTestKey() (key string, driverVer int, blasVer uint64) {
	var v int32
	b.d.api.DriverGetVersion(&v)
	if b.d.blas.GetVersion != nil {
		blasVer = b.d.blas.GetVersion()
	}
	p := b.d.props
	var uuid [16]byte
	if b.d.api.DeviceGetUuid != nil {
		b.d.api.DeviceGetUuid(&uuid, b.d.dev)
	}
	s := fmt.Sprintf("v%d|%s|%x|%d|%d|%d|%d|%d|%d|%s|%s|%d", selfTestVersion, p.Name, uuid, p.Ordinal, p.CC(), p.SMs, p.TotalMem,
		v, blasVer, fatbinSHA(), b.Precision(), b.d.block)
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:]), int(v), blasVer
}

// selfTestDir returns the cache directory (dir when set).
func selfTestDir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	c, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(c, "zimage", "selftest"), nil
}

// loadSelfTest reads a cached report for key; a missing, unreadable or
// corrupt file, or one for another key, is no result.
func loadSelfTest(path, key string) *SelfTestReport {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var r SelfTestReport
	if json.Unmarshal(data, &r) != nil || r.Version != selfTestVersion || r.Key != key || len(r.Families) == 0 {
		return nil
	}
	for _, f := range r.Families {
		if f.Status == "FAIL" && f.Family.Fallback() == "" {
			return nil // a fatal result is never reused: rerun
		}
	}
	r.Cached, r.Path = true, path
	return &r
}

// storeSelfTest writes r to path atomically (a temporary file renamed).
func storeSelfTest(path string, r *SelfTestReport) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".selftest-*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(append(data, '\n'))
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// startSelfTest runs (or loads) the self-test as o says and applies it. It
// returns a *SelfTestError when a family without a fallback fails.
func (b *Backend) startSelfTest(o Options) error {
	mode := selfTestMode(o)
	if mode == SelfTestOff {
		return nil
	}
	key, dv, bv := b.selfTestKey()
	var path string
	if dir, err := selfTestDir(o.SelfTestCache); err != nil {
		b.log.Warn("cuda: self-test cache unavailable", "err", err)
	} else {
		path = filepath.Join(dir, key[:24]+".json")
	}
	if mode == SelfTestAuto && path != "" {
		if r := loadSelfTest(path, key); r != nil {
			b.applySelfTest(r)
			return nil
		}
	}
	r := &SelfTestReport{Version: selfTestVersion, Key: key, Device: b.d.props.Name, Driver: dv, CuBLASLt: bv,
		Fatbin: fatbinSHA(), Precision: b.Precision().String()}
	start := time.Now()
	fatal := b.runSelfTest(r)
	r.Duration = time.Since(start)
	if path != "" {
		if err := storeSelfTest(path, r); err != nil {
			b.log.Warn("cuda: self-test result not cached", "path", path, "err", err)
		} else {
			r.Path = path
		}
	}
	b.applySelfTest(r)
	if fatal != nil {
		return &SelfTestError{Result: *fatal}
	}
	return nil
}

// applySelfTest disables the failed families and logs the outcome.
func (b *Backend) applySelfTest(r *SelfTestReport) {
	b.selfTest = r
	for _, f := range r.Families {
		if f.Status != "FAIL" {
			continue
		}
		if f.Family.Fallback() != "" {
			b.setFamily(f.Family, false)
		}
		attrs := []any{"family", f.Family, "case", f.Case, "fallback", f.Family.Fallback(), "cached", r.Cached}
		if f.Err != "" {
			attrs = append(attrs, "err", f.Err)
		} else {
			attrs = append(attrs, "max_err", f.MaxErr, "rel_l2", f.RelL2, "where", f.Where)
		}
		b.log.Warn("cuda: kernel family disabled by the self-test", attrs...)
	}
	b.log.Info("cuda: self-test", "device", r.Device, "disabled", fmt.Sprint(r.Disabled()), "cached", r.Cached,
		"duration", r.Duration.Round(time.Millisecond), "cache", r.Path)
}

// runSelfTest runs every family's cases in order and fills r. A family
// that fails is disabled at once, so later families' cases run on its
// fallback. It returns the result of a failed family without a fallback
// (then it stops).
func (b *Backend) runSelfTest(r *SelfTestReport) *FamilyResult {
	ref := cpu.New()
	seed := uint64(1)
	for _, fam := range Families {
		res := FamilyResult{Family: fam, Status: "pass"}
		if dh := tcHead(fam); dh != 0 && b.tc[dh] == nil {
			res.Status = "n/a"
			r.Families = append(r.Families, res)
			continue
		}
		// The attention families are tested alone: the ones the dispatch
		// prefers are turned off meanwhile.
		var prefer []Family
		switch fam {
		case FamAttnGeneric:
			prefer = []Family{FamAttnTC128, FamAttnTC256, FamAttnTC512}
		case FamAttnGemm:
			prefer = []Family{FamAttnTC128, FamAttnTC256, FamAttnTC512, FamAttnGeneric}
		}
		// A family the caller turned off (Options.Disable) is tested all
		// the same, so the cached result holds for starts without it.
		manual := !b.on(fam)
		b.setFamily(fam, true)
		var restore []Family
		for _, p := range prefer {
			if b.on(p) {
				b.setFamily(p, false)
				restore = append(restore, p)
			}
		}
		for _, c := range selfTestCases[fam] {
			seed++
			res.Cases++
			maxErr, l2, where, err := b.runCase(ref, c, seed)
			tolMax, tolL2 := stTolerances(b.dt.Size() == 2)
			switch {
			case err != nil:
				res.Err = err.Error()
			case math.IsNaN(maxErr) || maxErr > tolMax || l2 > tolL2:
				res.MaxErr, res.RelL2 = maxErr, l2
			default:
				continue
			}
			res.Status, res.Case, res.Where, res.Fallback = "FAIL", c.name, where, fam.Fallback()
			if math.IsInf(maxErr, 0) || math.IsNaN(maxErr) {
				res.MaxErr, res.RelL2 = 0, 0 // JSON holds no Inf; Err says it
				res.Err = "non-finite output " + where
			}
			if err != nil {
				b.reopenIfFaulted()
			}
			break
		}
		for _, p := range restore {
			b.setFamily(p, true)
		}
		if res.Status == "FAIL" || manual {
			b.setFamily(fam, false)
		}
		r.Families = append(r.Families, res)
		if res.Status == "FAIL" && fam.Fallback() == "" {
			return &r.Families[len(r.Families)-1]
		}
	}
	return nil
}

// tcHead returns the head size of a tensor-core attention family (0 for
// other families).
func tcHead(f Family) int {
	for _, d := range []int{128, 256, 512} {
		if tcFamily(d) == f {
			return d
		}
	}
	return 0
}

// stTolerances are the self-test's limits on the largest error (relative to
// the reference's magnitude) and the relative L2 error: the parity
// tolerances in bf16 (one rounding of the output), ten times them in f32
// (other GPUs may round exp and rsqrt differently). A wrong kernel is far
// off either.
func stTolerances(bf16 bool) (maxRel, l2 float64) {
	if bf16 {
		return 5e-2, 1e-2
	}
	return 1e-4, 1e-4
}

// runCase runs c on the backend and on the CPU reference from the same
// inputs and compares. err is a launch or device error (the sticky error
// is cleared).
func (b *Backend) runCase(ref *cpu.Backend, c stCase, seed uint64) (maxErr, l2 float64, where string, err error) {
	rin := newSTInputs(ref, seed)
	rout := c.run(ref, rin)
	want := ref.ToHost(rout)
	ref.Free(append(rin.made, rout)...)
	if err := ref.Err(); err != nil {
		ref.ResetErr()
		return 0, 0, "", fmt.Errorf("cpu reference: %w", err)
	}
	gin := newSTInputs(b, seed)
	gout := c.run(b, gin)
	got := b.ToHost(gout)
	shape := gout.Shape()
	b.Free(append(gin.made, gout)...)
	if err := b.Err(); err != nil {
		b.ResetErr()
		return 0, 0, "", err
	}
	if len(got) != len(want) {
		return 0, 0, "", fmt.Errorf("output has %d values, the reference %d", len(got), len(want))
	}
	return compareOut(got, want, shape)
}

// compareOut returns the largest error relative to want's largest
// magnitude, the relative L2 error and where (output coordinates) the
// largest error is. A non-finite value where want is finite counts as an
// infinite error.
func compareOut(got, want []float32, shape []int) (maxErr, l2 float64, where string, err error) {
	var scale, num, den float64
	at := -1
	for i := range want {
		w, g := float64(want[i]), float64(got[i])
		scale = math.Max(scale, math.Abs(w))
		d := math.Abs(g - w)
		if math.IsNaN(d) || math.IsInf(d, 0) {
			if math.IsInf(maxErr, 0) {
				continue
			}
			maxErr, at = math.Inf(1), i
			continue
		}
		if d > maxErr {
			maxErr, at = d, i
		}
		num += d * d
		den += w * w
	}
	if at >= 0 {
		where = coords(at, shape)
	}
	if math.IsInf(maxErr, 0) {
		return maxErr, math.Inf(1), where, nil
	}
	return maxErr / math.Max(scale, 1e-30), math.Sqrt(num / math.Max(den, 1e-30)), where, nil
}

// coords formats flat index i of a row-major shape as [a, b, ...].
func coords(i int, shape []int) string {
	if len(shape) == 0 {
		return fmt.Sprintf("[%d]", i)
	}
	c := make([]string, len(shape))
	for k := len(shape) - 1; k >= 0; k-- {
		d := max(shape[k], 1)
		c[k] = fmt.Sprint(i % d)
		i /= d
	}
	return "[" + strings.Join(c, ", ") + "]"
}

// reopenIfFaulted makes the backend usable after a case failed with a device
// error: when a small round trip fails too, the context is faulted
// (CUDA_ERROR_ILLEGAL_ADDRESS and the like are sticky), so the device is
// closed and opened again (its primary context is destroyed when no one
// else holds it). Nothing is uploaded yet at this point, so nothing is
// lost.
func (b *Backend) reopenIfFaulted() {
	if b.alive() {
		return
	}
	old := b.d
	b.log.Warn("cuda: self-test faulted the context; reopening the device", "device", old.props.Name)
	old.Close() // errors expected: the context is unusable
	// The fault is sticky for the primary context, which is shared by the
	// process: if anything else retains it (another Backend, a library),
	// releasing ours does not destroy it. Reset it so the next retain makes
	// a fresh one; its other users are broken by the fault already.
	if r := old.api.DevicePrimaryCtxReset(old.dev); r != driver.Success {
		b.log.Warn("cuda: self-test: resetting the primary context failed", "err", old.api.Check("cuDevicePrimaryCtxReset_v2", r))
	}
	d, err := openDevice(old.api, old.blas, old.props.Ordinal, old.mem.budget, b.log)
	if err != nil {
		b.setErr(fmt.Errorf("cuda: self-test: reopening the device after a fault: %w", err))
		return
	}
	d.block = old.block
	b.d = d
	b.k = kernelSet{}
	if err := b.k.resolve(d, b.dt); err != nil {
		b.setErr(err)
		return
	}
	b.setupAttention(b.attn)
}

// alive reports whether a small upload and download work.
func (b *Backend) alive() bool {
	t := b.FromHost([]float32{1, 2, 3}, 3)
	v := b.ToHost(t)
	b.Free(t)
	err := b.Err()
	b.ResetErr()
	if err == nil {
		err = b.Sync()
		b.ResetErr()
	}
	return err == nil && v[2] == 3
}
