package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/zimage/zimage/cuda/synthetic"
	"github.com/zimage/zimage/sampler"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/dit"
)

func init() {
	register("doctor", "check this machine, its GPU and a model, and time one DiT step", runDoctor)
}

// doctorReport is everything doctor finds; --json prints it as is.
type doctorReport struct {
	Go          string   `json:"go"`
	OS          string   `json:"os"`
	CPUs        int      `json:"cpus"`
	CPUFeatures []string `json:"cpu_features"`
	// Env holds the set variables that change what zimage does on this
	// machine (ZIMAGE_*, CUDA_VISIBLE_DEVICES, HF_*).
	Env map[string]string `json:"env"`

	CUDA doctorCUDA `json:"cuda"`

	// SelfTest is the CUDA kernel self-test (cuda.SelfTestReport), and its
	// table in markdown rows.
	SelfTest      any    `json:"selftest,omitempty"`
	SelfTestTable string `json:"selftest_table,omitempty"`

	Plans []doctorPlan  `json:"plans"`
	Model *doctorModel  `json:"model,omitempty"`
	Timed *doctorTiming `json:"timed,omitempty"`

	// Problems are the findings that need attention, one line each.
	Problems []string `json:"problems"`
}

type doctorCUDA struct {
	Driver          string         `json:"driver"` // library path asked for
	DriverVersion   string         `json:"driver_version,omitempty"`
	DriverErr       string         `json:"driver_err,omitempty"`
	CuBLASLt        string         `json:"cublaslt,omitempty"` // library loaded
	CuBLASLtVersion uint64         `json:"cublaslt_version,omitempty"`
	CuBLASLtErr     string         `json:"cublaslt_err,omitempty"`
	Devices         []doctorDevice `json:"devices"`
	// Usable says whether the pipeline can run on the GPU (else Reason).
	Usable bool   `json:"usable"`
	Reason string `json:"reason,omitempty"`
}

type doctorDevice struct {
	Ordinal   int    `json:"ordinal"`
	Name      string `json:"name"`
	UUID      string `json:"uuid,omitempty"`
	CC        int    `json:"cc"`
	SMs       int    `json:"sms"`
	Total     uint64 `json:"total_bytes"`
	Free      uint64 `json:"free_bytes,omitempty"`
	Supported bool   `json:"supported"`
	Err       string `json:"err,omitempty"`
}

type doctorPlan struct {
	Size string `json:"size"`
	Plan string `json:"plan,omitempty"`
	Peak uint64 `json:"peak_bytes,omitempty"`
	Err  string `json:"err,omitempty"`
}

type doctorModel struct {
	Path  string   `json:"path"`
	Check []string `json:"check"` // zimage inspect's report
	Err   string   `json:"err,omitempty"`
}

type doctorTiming struct {
	Device   string        `json:"device"`
	Size     string        `json:"size"`
	What     string        `json:"what"`
	Measured time.Duration `json:"measured_ns"`
	// Step is the time of one DiT step at the size (Measured on a GPU, an
	// extrapolation on the CPU: see Note).
	Step time.Duration `json:"step_ns"`
	Note string        `json:"note,omitempty"`
	Err  string        `json:"err,omitempty"`
}

// doctorOptions are doctor's flags.
type doctorOptions struct {
	model    string
	selfTest string
	run      bool
	config   string // turbo (real shapes) or tiny (tests)
	size     int    // side of the timed run's image (512)
	threads  int
}

func runDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("doctor", stderr,
		"usage: zimage doctor [--model M] [--json] [--selftest force|auto|off] [--run=false]",
		"Reports Go, OS and CPU features; the CUDA driver, cuBLASLt and devices; the kernel self-test;",
		"the memory plan at 512² and 1024²; the model's files; and one timed DiT step (GPU, or CPU extrapolated).")
	var o doctorOptions
	fs.StringVar(&o.model, "model", os.Getenv("ZIMAGE_MODEL"), "model to check (as for generate); default $ZIMAGE_MODEL, none when empty")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fs.StringVar(&o.selfTest, "selftest", "force", "CUDA kernel self-test: force (run it now), auto (use the cached result) or off")
	fs.BoolVar(&o.run, "run", true, "time one DiT step (--size) on synthetic weights of the real shapes")
	fs.StringVar(&o.config, "config", "turbo", "network shapes of the timed run and plans when no --model: turbo or tiny")
	fs.IntVar(&o.threads, "threads", 0, "CPU threads (0 = all cores)")
	fs.IntVar(&o.size, "size", 512, "image side of the timed run (a multiple of 16)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 || (o.config != "turbo" && o.config != "tiny") || o.size < zimage.MinSize || o.size > zimage.MaxSize || o.size%16 != 0 {
		fs.Usage()
		return 2
	}
	switch o.selfTest {
	case "force", "auto", "off":
	default:
		fmt.Fprintf(stderr, "zimage doctor: --selftest %q: want force, auto or off\n", o.selfTest)
		return 2
	}
	r := doctor(ctx, o)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			fmt.Fprintf(stderr, "zimage doctor: %v\n", err)
			return 1
		}
	} else {
		r.print(stdout)
	}
	if len(r.Problems) > 0 {
		return 1
	}
	return 0
}

// doctor gathers the report. Every section is independent: a failure is
// noted and the next one runs.
func doctor(ctx context.Context, o doctorOptions) *doctorReport {
	r := &doctorReport{Problems: []string{}, Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH, CPUs: runtime.NumCPU(), CPUFeatures: cpuFeatureNames(), Env: map[string]string{}}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "ZIMAGE_") || strings.HasPrefix(k, "HF_") || k == "CUDA_VISIBLE_DEVICES" {
			if strings.Contains(k, "TOKEN") || strings.Contains(k, "KEY") {
				v = "(set)"
			}
			r.Env[k] = v
		}
	}
	teC, ditC, vaeC := weights.DefaultQwen3Config(), weights.DefaultDiTConfig(), weights.DefaultVAEConfig()
	if o.config == "tiny" {
		teC, ditC, vaeC = tinyConfigs()
	}
	if o.model != "" {
		r.Model = &doctorModel{Path: o.model}
		var buf bytes.Buffer
		in := &inspector{w: &buf}
		if err := in.inspect(o.model); err != nil {
			r.Model.Err = flatLine(err.Error())
			r.Problems = append(r.Problems, "model: "+r.Model.Err)
		}
		r.Model.Check = strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
		for _, l := range r.Model.Check {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "check" && f[1] != "ok" {
				r.Problems = append(r.Problems, "model: "+strings.TrimSpace(l))
			}
		}
		// Plans and the timed run use the model's shapes.
		if p, err := zimage.Load(ctx, o.model, zimage.WithDevice("cpu"), zimage.WithPull(false)); err == nil {
			m := p.Model()
			teC, ditC, vaeC = m.TextEncoder, m.DiT, m.VAE
			p.Close()
		} else if r.Model.Err == "" {
			r.Model.Err = flatLine(err.Error())
			r.Problems = append(r.Problems, "model: "+r.Model.Err)
		}
	}
	dc := doctorGPU(ctx, r, o, teC, ditC, vaeC) // fills CUDA, SelfTest, and on a GPU Plans and Timed
	if !dc {
		if r.CUDA.Reason != "" {
			r.CUDA.Reason += "; "
		}
		r.CUDA.Reason += "checking the CPU path instead"
		fp := zimage.MeasureFootprint(synthetic.TextEncoder(teC), synthetic.DiT(ditC), synthetic.VAE(vaeC), teC, ditC, vaeC, 4)
		r.Plans = plans(zimage.PlanInput{Host: true, Model: fp})
		if o.run {
			r.Timed = cpuTimedStep(ctx, ditC, 1<<(len(vaeC.BlockOutChannels)-1), o.size, o.threads)
		}
	}
	if r.Timed != nil && r.Timed.Err != "" {
		r.Problems = append(r.Problems, "timed run: "+r.Timed.Err)
	}
	for _, p := range r.Plans {
		if p.Err != "" {
			r.Problems = append(r.Problems, fmt.Sprintf("plan %s: %s", p.Size, p.Err))
		}
	}
	return r
}

// plans runs zimage.PlanResidency at 512² and 1024² for a 100-token prompt.
func plans(in zimage.PlanInput) []doctorPlan {
	var out []doctorPlan
	for _, s := range []int{512, 1024} {
		in.Width, in.Height, in.Tokens = s, s, 100
		p := doctorPlan{Size: fmt.Sprintf("%dx%d", s, s)}
		if pl, err := zimage.PlanResidency(in); err != nil {
			p.Err = flatLine(err.Error())
		} else {
			p.Plan, p.Peak = pl.String(), pl.Peak
		}
		out = append(out, p)
	}
	return out
}

// ditStep builds a DiT of cfg from src on b, runs warm untimed forwards and
// then one timed forward at w×h with a tokens-long random caption.
func ditStep(ctx context.Context, b compute.Backend, cfg weights.DiTConfig, src zimage.TensorLister, spatial, w, h, tokens, warm int) (time.Duration, error) {
	m, err := dit.New(b, cfg, src)
	if err != nil {
		return 0, err
	}
	defer m.Close()
	rng := rand.New(rand.NewPCG(5, 5))
	feats := make([]float32, tokens*cfg.CapFeatDim)
	for i := range feats {
		feats[i] = float32(rng.NormFloat64())
	}
	capt, err := m.PrepareCaption(ctx, feats, tokens, nil)
	if err != nil {
		return 0, err
	}
	defer capt.Free()
	hl, wl := h/spatial, w/spatial
	x := sampler.Randn(1, cfg.InChannels*hl*wl)
	var d time.Duration
	for i := 0; i <= warm; i++ {
		t0 := time.Now()
		if _, err := m.Forward(ctx, x, hl, wl, 0.5, capt, nil); err != nil {
			return 0, err
		}
		d = time.Since(t0)
	}
	return d, nil
}

// cpuTimedStep times one DiT block at 512² on the CPU (the embedders and
// final layer included) and extrapolates to the whole network: a full step
// takes minutes on a few cores.
func cpuTimedStep(ctx context.Context, cfg weights.DiTConfig, spatial, size, threads int) *doctorTiming {
	one := cfg
	one.NLayers, one.NRefinerLayers = 1, 0
	t := &doctorTiming{Device: "cpu", Size: fmt.Sprintf("%dx%d", size, size),
		What: fmt.Sprintf("one DiT block at %dx%d, 100 caption tokens, random bf16 weights of the model's shapes", size, size)}
	src := fillRandom(synthetic.DiT(one), 2)
	d, err := ditStep(ctx, newCPU(threads), one, src, spatial, size, size, 100, 0)
	if err != nil {
		t.Err = flatLine(err.Error())
		return t
	}
	blocks := cfg.NLayers + cfg.NRefinerLayers
	t.Measured, t.Step = d, d*time.Duration(max(blocks, 1))
	t.Note = fmt.Sprintf("extrapolated: measured time × %d blocks (%d layers + %d noise-refiner layers; the context refiner, on caption tokens only, is left out)",
		blocks, cfg.NLayers, cfg.NRefinerLayers)
	return t
}

func (r *doctorReport) print(w io.Writer) {
	gb := func(n uint64) string { return fmt.Sprintf("%.2f GB", float64(n)/1e9) }
	fmt.Fprintf(w, "system      %s, %s, %d CPUs, features %s\n", r.Go, r.OS, r.CPUs, strings.Join(r.CPUFeatures, " "))
	if len(r.Env) > 0 {
		keys := slices.Sorted(maps.Keys(r.Env))
		var kv []string
		for _, k := range keys {
			kv = append(kv, k+"="+r.Env[k])
		}
		fmt.Fprintf(w, "environment %s\n", strings.Join(kv, " "))
	}
	c := r.CUDA
	drv := c.DriverVersion
	if c.DriverErr != "" {
		drv = "not usable: " + c.DriverErr
	}
	fmt.Fprintf(w, "CUDA driver %s (%s)\n", c.Driver, drv)
	lt := fmt.Sprintf("%s (version %d)", c.CuBLASLt, c.CuBLASLtVersion)
	if c.CuBLASLtErr != "" {
		lt = "not usable: " + c.CuBLASLtErr
	}
	fmt.Fprintf(w, "cuBLASLt    %s\n", lt)
	for _, d := range c.Devices {
		s := fmt.Sprintf("device %d    %s %s, sm_%d, %d SMs, %s", d.Ordinal, d.Name, d.UUID, d.CC, d.SMs, gb(d.Total))
		if d.Free > 0 {
			s += fmt.Sprintf(" (%s free)", gb(d.Free))
		}
		if !d.Supported {
			s += ", not supported: " + d.Err
		}
		fmt.Fprintln(w, s)
	}
	if c.Usable {
		fmt.Fprintln(w, "GPU         usable")
	} else {
		fmt.Fprintf(w, "GPU         none usable: %s\n", c.Reason)
	}
	if r.SelfTestTable != "" {
		fmt.Fprintf(w, "\n%s\n", r.SelfTestTable)
	}
	for _, p := range r.Plans {
		if p.Err != "" {
			fmt.Fprintf(w, "plan %-9s does not fit: %s\n", p.Size, p.Err)
			continue
		}
		fmt.Fprintf(w, "plan %-9s %s\n", p.Size, p.Plan)
	}
	if m := r.Model; m != nil {
		fmt.Fprintf(w, "\nmodel       %s\n", m.Path)
		for _, l := range m.Check {
			fmt.Fprintf(w, "  %s\n", l)
		}
		if m.Err != "" {
			fmt.Fprintf(w, "  ERROR: %s\n", m.Err)
		}
	}
	if t := r.Timed; t != nil {
		fmt.Fprintln(w)
		if t.Err != "" {
			fmt.Fprintf(w, "timed run   %s on %s failed: %s\n", t.What, t.Device, t.Err)
		} else {
			fmt.Fprintf(w, "timed run   %s on %s: %.1f ms; DiT step at %s ≈ %.1f ms\n", t.What, t.Device,
				float64(t.Measured)/1e6, t.Size, float64(t.Step)/1e6)
			if t.Note != "" {
				fmt.Fprintf(w, "            (%s)\n", t.Note)
			}
		}
	}
	if len(r.Problems) == 0 {
		fmt.Fprintln(w, "\nno problems found")
		return
	}
	fmt.Fprintln(w, "\nproblems:")
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  - %s\n", p)
	}
}

// cpuFeatureNames is the present half of cpuFeatures (version.go).
func cpuFeatureNames() []string {
	have, _ := cpuFeatures()
	return have
}
