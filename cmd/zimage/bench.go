package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zimage/zimage/cuda/synthetic"
	"github.com/zimage/zimage/sampler"
	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/zimage"
	"github.com/zimage/zimage/zimage/compute"
	"github.com/zimage/zimage/zimage/cpu"
	"github.com/zimage/zimage/zimage/dit"
	"github.com/zimage/zimage/zimage/qwen3"
	"github.com/zimage/zimage/zimage/vae"
)

func init() {
	register("bench", "measure per-stage latency and peak device memory", runBench)
}

// benchPrompt is the prompt of --model runs (about 60 tokens with the template).
const benchPrompt = "A red fox sitting in a snowy forest at dawn, photorealistic, 35mm photo, shallow depth of field, soft golden light, detailed fur, breath visible in the cold air"

// benchRun is one timed generation.
type benchRun struct {
	te, vae, total time.Duration
	steps          []time.Duration
	peak           uint64 // device bytes (0: not reported)
}

// benchSize collects the runs of one image size.
type benchSize struct {
	w, h int
	runs []benchRun
	plan string
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench", stderr,
		"usage: zimage bench [--model PATH | --synthetic [--config turbo|tiny]] [--device auto] [--size 1024x1024,512x512] [--steps 8] [--runs 3]",
		"Prints the median latency of each stage (text encoder, each DiT step, VAE, total) and the peak device memory per size.")
	model := fs.String("model", os.Getenv("ZIMAGE_MODEL"), "model to run (as for generate); default $ZIMAGE_MODEL")
	synth := fs.Bool("synthetic", false, "random weights instead of a checkpoint (generated on the GPU; on the CPU needs --config tiny or sizes up to 256x256)")
	config := fs.String("config", "turbo", "network sizes with --synthetic: turbo (the real model) or tiny")
	device := fs.String("device", "auto", "compute device: cpu, cuda or auto")
	sizes := fs.String("size", "1024x1024,512x512", "image sizes WxH, comma-separated")
	steps := fs.Int("steps", zimage.DefaultSteps, "denoising steps")
	runs := fs.Int("runs", 3, "timed runs per size (the median is shown)")
	warmup := fs.Int("warmup", 1, "untimed runs per size first (weights bound, kernels and plans warmed)")
	tokens := fs.Int("tokens", 100, "prompt tokens with --synthetic")
	threads := fs.Int("threads", 0, "CPU threads (0 = all cores)")
	precision := fs.String("precision", "fp32", "CPU matrix-product precision: fp32 (exact) or bf16 (faster; float32 accumulation)")
	budget := fs.String("budget", "", "device memory budget, e.g. 15.5GB or 14GiB (default: none)")
	var selfTest selfTestFlag
	selfTest.register(fs)
	quant := fs.String("quant", "", "with --synthetic: store the text encoder and DiT weights as this GGUF type (q8_0, q4_k, ...; random blocks), as a converted GGUF stores them (kept quantized on the CPU and the CUDA backend)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	usageErr := func(msg string) int {
		fmt.Fprintf(stderr, "zimage bench: %s\n", msg)
		fs.Usage()
		return 2
	}
	szs, err := parseSizes(*sizes)
	switch {
	case fs.NArg() > 0:
		return usageErr(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	case err != nil:
		return usageErr(err.Error())
	case *synth && set["model"]:
		return usageErr("--model and --synthetic exclude each other")
	case !*synth && *model == "":
		return usageErr("--model (or $ZIMAGE_MODEL) or --synthetic is required")
	case !*synth && set["config"]:
		return usageErr("--config goes with --synthetic")
	case *config != "turbo" && *config != "tiny":
		return usageErr(fmt.Sprintf("--config %q: want turbo or tiny", *config))
	case *steps < 1 || *steps > zimage.MaxSteps:
		return usageErr(fmt.Sprintf("--steps %d: want 1..%d", *steps, zimage.MaxSteps))
	case *runs < 1 || *warmup < 0:
		return usageErr("--runs must be at least 1 and --warmup not negative")
	case *tokens < 1 || *tokens > zimage.DefaultMaxSequenceLen:
		return usageErr(fmt.Sprintf("--tokens %d: want 1..%d", *tokens, zimage.DefaultMaxSequenceLen))
	}
	budgetBytes, err := parseBytes(*budget)
	if err != nil {
		return usageErr(fmt.Sprintf("--budget: %v", err))
	}
	prec, err := zimage.ParsePrecision(*precision)
	if err != nil {
		return usageErr(fmt.Sprintf("--precision: %v", err))
	}
	benchPrecision = prec
	fail := func(err error) int {
		fmt.Fprintf(stderr, "zimage bench: %s\n", oneLine(err))
		return 1
	}
	// The device first: a fallback to the CPU is said at once, before the
	// model loads or the synthetic weights are made.
	if code, ok := announceDevice(stderr, "bench", *device, usageErr); !ok {
		return code
	}
	opts := benchOptions{sizes: szs, steps: *steps, runs: *runs, warmup: *warmup, tokens: *tokens,
		device: *device, threads: *threads, budget: budgetBytes, config: *config, selfTest: selfTest.mode}
	if *quant != "" {
		if !*synth {
			return usageErr("--quant goes with --synthetic (a GGUF model is benchmarked with --model)")
		}
		if opts.quant, err = weights.ParseQuantType(*quant); err != nil {
			return usageErr(err.Error())
		}
	}

	var (
		res    []benchSize
		header []string
	)
	if *synth {
		res, header, err = syntheticBench(ctx, opts, usageErr)
		if errors.Is(err, errUsage) {
			return 2
		}
	} else {
		res, header, err = modelBench(ctx, *model, opts)
	}
	for _, l := range header {
		fmt.Fprintln(stdout, l)
	}
	if len(res) > 0 {
		printBench(stdout, res)
	}
	if err != nil {
		return fail(err)
	}
	return 0
}

type benchOptions struct {
	sizes                       [][2]int
	steps, runs, warmup, tokens int
	device                      string
	threads                     int
	budget                      uint64
	config                      string
	quant                       weights.DType // bench_quant.go; Invalid: bf16 weights
	selfTest                    zimage.SelfTestMode
}

// errUsage marks a usage error already reported.
var errUsage = errors.New("usage")

// modelBench runs the pipeline on a real checkpoint.
func modelBench(ctx context.Context, model string, o benchOptions) ([]benchSize, []string, error) {
	t0 := time.Now()
	p, err := zimage.Load(ctx, model, zimage.WithDevice(o.device), zimage.WithThreads(o.threads), zimage.WithMemoryBudget(o.budget),
		zimage.WithPrecision(benchPrecision), zimage.WithSelfTest(o.selfTest))
	if err != nil {
		return nil, nil, err
	}
	defer p.Close()
	header := []string{
		fmt.Sprintf("model: %s (loaded in %s)", model, round(time.Since(t0))),
		"device: " + deviceLine(p.Backend()),
	}
	var out []benchSize
	for _, sz := range o.sizes {
		bs := benchSize{w: sz[0], h: sz[1]}
		for i := 0; i < o.warmup+o.runs; i++ {
			res, err := p.Run(ctx, zimage.Request{Prompt: benchPrompt, Width: sz[0], Height: sz[1], Seed: 42, Steps: o.steps})
			if err != nil {
				return out, header, fmt.Errorf("%dx%d: %w", sz[0], sz[1], err)
			}
			bs.plan = res.Memory.Plan.String()
			if i < o.warmup {
				continue
			}
			t := res.Timings
			bs.runs = append(bs.runs, benchRun{te: t.TextEncoder, steps: t.Steps, vae: t.VAE, total: t.Total, peak: res.Memory.Peak})
		}
		out = append(out, bs)
	}
	return out, header, nil
}

// tinyConfigs are small networks of the real architecture, for --config tiny.
func tinyConfigs() (weights.Qwen3Config, weights.DiTConfig, weights.VAEConfig) {
	te := weights.DefaultQwen3Config()
	te.HiddenSize, te.NumHiddenLayers, te.NumAttentionHeads, te.NumKeyValueHeads = 64, 4, 4, 2
	te.HeadDim, te.IntermediateSize, te.VocabSize = 16, 128, 4096
	d := weights.DefaultDiTConfig()
	d.Dim, d.NHeads, d.NKVHeads, d.NLayers, d.NRefinerLayers = 192, 4, 4, 2, 1
	d.AxesDims, d.CapFeatDim = []int{12, 18, 18}, te.HiddenSize
	v := weights.DefaultVAEConfig()
	v.BlockOutChannels, v.NormNumGroups, v.LayersPerBlock = []int{32, 32, 64, 64}, 8, 1
	return te, d, v
}

// randomSource is a synthetic checkpoint with random bf16 data on the host,
// for backends that cannot fill weights themselves (the CPU).
type randomSource map[string]*weights.Tensor

func (r randomSource) Tensor(name string) (*weights.Tensor, bool) {
	t, ok := r[name]
	return t, ok
}

func (r randomSource) Names() []string {
	names := make([]string, 0, len(r))
	for n := range r {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// fillRandom gives every tensor of s seeded uniform bf16 values of the
// scales the networks expect: biases and pad tokens near 0, norm gains near
// 1, matrices with variance 1/fan-in.
func fillRandom(s *synthetic.Source, seed uint64) randomSource {
	out := randomSource{}
	for i, name := range s.Names() {
		t, _ := s.Tensor(name)
		out[name] = fillRandomOne(name, t, seed, i)
	}
	return out
}

// syntheticBench runs the three networks on random weights, planned like
// the pipeline plans a request (zimage.PlanResidency).
func syntheticBench(ctx context.Context, o benchOptions, usageErr func(string) int) ([]benchSize, []string, error) {
	teC, ditC, vaeC := weights.DefaultQwen3Config(), weights.DefaultDiTConfig(), weights.DefaultVAEConfig()
	if o.config == "tiny" {
		teC, ditC, vaeC = tinyConfigs()
	}
	b, err := openBenchBackend(o.device, o.threads, o.budget, o.selfTest)
	if err != nil {
		return nil, nil, err
	}
	if c, ok := b.(io.Closer); ok {
		defer c.Close()
	}
	dev, isDev := b.(benchDevice)
	keepQuant := false // the device holds the random blocks as they are (bench_quant.go)
	if isDev && o.quant != weights.Invalid {
		if keepQuant = deviceKeepsQuant(b, o.quant); !keepQuant {
			usageErr("--quant: this device backend expands quantized weights to bf16 at bind time; benchmark quantized weights on the CPU")
			return nil, nil, errUsage
		}
	}
	if !isDev && o.config == "turbo" {
		for _, sz := range o.sizes {
			if sz[0]*sz[1] > 256*256 && !(o.quant != weights.Invalid && sz[0]*sz[1] <= 512*512) {
				usageErr("the Turbo-size model on the CPU takes hours at 1024x1024 (and ~20 GB of memory for its random weights): pass --config tiny, or --size 256x256 or smaller")
				return nil, nil, errUsage
			}
		}
	}
	var te, tr, va zimage.TensorLister
	t0 := time.Now()
	if keepQuant { // random blocks from the host, the VAE filled on the device
		te, tr, va = fillRandomQuant(synthetic.TextEncoder(teC), 1, o.quant), fillRandomQuant(synthetic.DiT(ditC), 2, o.quant), synthetic.VAE(vaeC)
	} else if isDev {
		te, tr, va = synthetic.TextEncoder(teC), synthetic.DiT(ditC), synthetic.VAE(vaeC) // filled on the device
	} else if o.quant != weights.Invalid {
		te, tr, va = fillRandomQuant(synthetic.TextEncoder(teC), 1, o.quant), fillRandomQuant(synthetic.DiT(ditC), 2, o.quant), fillRandom(synthetic.VAE(vaeC), 3)
	} else {
		te, tr, va = fillRandom(synthetic.TextEncoder(teC), 1), fillRandom(synthetic.DiT(ditC), 2), fillRandom(synthetic.VAE(vaeC), 3)
	}
	what := "random bf16 weights"
	if o.quant != weights.Invalid {
		what = "random " + o.quant.String() + " text encoder and DiT weights (bf16 VAE)"
	}
	header := []string{fmt.Sprintf("model: synthetic %s config, %s (%s)", o.config, what, round(time.Since(t0))),
		"device: " + deviceLine(b)}
	elem := 4
	if isDev {
		t := b.FromHost([]float32{0}, 1)
		elem = t.DType().Size()
		b.Free(t)
	}
	fp := zimage.MeasureFootprint(te, tr, va, teC, ditC, vaeC, elem)
	if keepQuant {
		fp = zimage.MeasureQuantFootprint(te, tr, va, teC, ditC, vaeC, elem)
	}
	h := &harness{b: b, dev: dev, te: te, tr: tr, va: va, teC: teC, ditC: ditC, vaeC: vaeC, fp: fp, budget: o.budget}
	defer h.close()

	rng := rand.New(rand.NewPCG(9, 9))
	ids := make([]int, o.tokens)
	for i := range ids {
		ids[i] = rng.IntN(teC.VocabSize)
	}
	var out []benchSize
	for _, sz := range o.sizes {
		bs := benchSize{w: sz[0], h: sz[1]}
		for i := 0; i < o.warmup+o.runs; i++ {
			r, plan, err := h.run(ctx, ids, sz[0], sz[1], o.steps)
			if err != nil {
				return out, header, fmt.Errorf("%dx%d: %w", sz[0], sz[1], err)
			}
			bs.plan = plan.String()
			if i >= o.warmup {
				bs.runs = append(bs.runs, r)
			}
		}
		out = append(out, bs)
	}
	return out, header, nil
}

// benchDevice is a backend with device memory (the CUDA backend).
type benchDevice interface {
	MemInfo() (free, total uint64, err error)
	CurrentBytes() uint64
	PeakBytes() uint64
	ResetPeak()
}

// harness runs the networks the way the pipeline does, without a tokenizer
// or checkpoint files.
type harness struct {
	b          compute.Backend
	dev        benchDevice
	te, tr, va zimage.TensorLister
	teC        weights.Qwen3Config
	ditC       weights.DiTConfig
	vaeC       weights.VAEConfig
	fp         zimage.Footprint
	budget     uint64
	enc        *qwen3.Encoder // kept across runs when the plan says so
	dit        *dit.Model
	dec        *vae.Decoder
}

func (h *harness) close() {
	if h.enc != nil {
		h.enc.Close()
	}
	if h.dit != nil {
		h.dit.Close()
	}
	if h.dec != nil {
		h.dec.Close()
	}
	h.enc, h.dit, h.dec = nil, nil, nil
}

func (h *harness) run(ctx context.Context, ids []int, w, ht, steps int) (benchRun, zimage.Plan, error) {
	var r benchRun
	in := zimage.PlanInput{Budget: h.budget, Model: h.fp, Width: w, Height: ht, Tokens: len(ids),
		Resident: zimage.Parts{TextEncoder: h.enc != nil, DiT: h.dit != nil, VAE: h.dec != nil}}
	if h.dev != nil {
		free, _, err := h.dev.MemInfo()
		if err != nil {
			return r, zimage.Plan{}, err
		}
		var mine uint64
		if h.enc != nil {
			mine += h.fp.TextEncoder + h.fp.TextEmbed
		}
		if h.dit != nil {
			mine += h.fp.DiT
		}
		if h.dec != nil {
			mine += h.fp.VAE
		}
		held := h.dev.CurrentBytes()
		in.Free, in.Overhead, in.Scratch = free, held-min(held, mine), zimage.CUDAScratch+h.fp.QuantScratch
	} else {
		in.Host = true
	}
	plan, err := zimage.PlanResidency(in)
	if err != nil {
		return r, plan, err
	}
	if plan.Release.TextEncoder && h.enc != nil {
		h.enc.Close()
		h.enc = nil
	}
	if plan.Release.DiT && h.dit != nil {
		h.dit.Close()
		h.dit = nil
	}
	if plan.Release.VAE && h.dec != nil {
		h.dec.Close()
		h.dec = nil
	}
	if h.dev != nil {
		h.dev.ResetPeak()
	}
	start := time.Now()

	// Text encoder.
	enc := h.enc
	if enc == nil {
		if plan.TextEncoder == zimage.TEStream {
			enc, err = qwen3.NewStreaming(h.b, h.teC, h.te)
		} else {
			enc, err = qwen3.New(h.b, h.teC, h.te)
		}
		if err != nil {
			return r, plan, err
		}
		if plan.TextEncoder == zimage.TEKeep {
			h.enc = enc
		} else {
			defer func() {
				if enc != nil {
					enc.Close()
				}
			}()
		}
	}
	feats, err := enc.Encode(ctx, ids, nil)
	if err != nil {
		return r, plan, err
	}
	if h.enc == nil {
		enc.Close()
		enc = nil
	}
	r.te = time.Since(start)

	// DiT.
	if h.dit == nil {
		if h.dit, err = dit.New(h.b, h.ditC, h.tr); err != nil {
			return r, plan, err
		}
	}
	capt, err := h.dit.PrepareCaption(ctx, feats, len(ids), nil)
	if err != nil {
		return r, plan, err
	}
	spatial := 1 << (len(h.vaeC.BlockOutChannels) - 1)
	hl, wl := ht/spatial, w/spatial
	ps := h.ditC.PatchSize()
	sched, err := sampler.NewSchedule(weights.DefaultSchedulerConfig(), steps, (hl/ps)*(wl/ps))
	if err != nil {
		capt.Free()
		return r, plan, err
	}
	x := sampler.Randn(42, h.ditC.InChannels*hl*wl)
	pred := make([]float32, len(x))
	// As the pipeline does: every step's timestep-only products at once.
	if err := h.dit.PrepareTimesteps(sched.DiTTime[:steps]); err != nil {
		capt.Free()
		return r, plan, err
	}
	for i := 0; i < steps; i++ {
		ts := time.Now()
		v, err := h.dit.Forward(ctx, x, hl, wl, sched.DiTTime[i], capt, nil)
		if err != nil {
			h.dit.ReleaseTimesteps()
			capt.Free()
			return r, plan, err
		}
		sampler.NoisePred(pred, v, nil, 0, 0)
		sampler.Step(x, pred, sched.Sigmas[i], sched.Sigmas[i+1])
		r.steps = append(r.steps, time.Since(ts))
	}
	h.dit.ReleaseTimesteps()
	capt.Free()
	if !plan.Keep.DiT {
		h.dit.Close()
		h.dit = nil
	}

	// VAE.
	tv := time.Now()
	if h.dec == nil {
		if h.dec, err = vae.New(h.b, h.vaeC, h.va); err != nil {
			return r, plan, err
		}
	}
	if plan.VAETile > 0 {
		_, err = h.dec.DecodeTiled(ctx, x, hl, wl, plan.VAETile)
	} else {
		_, err = h.dec.Decode(ctx, x, hl, wl, nil)
	}
	if err != nil {
		return r, plan, err
	}
	if !plan.Keep.VAE {
		h.dec.Close()
		h.dec = nil
	}
	r.vae = time.Since(tv)
	r.total = time.Since(start)
	if h.dev != nil {
		r.peak = h.dev.PeakBytes()
	}
	return r, plan, nil
}

// printBench writes the table: medians over the timed runs.
func printBench(w io.Writer, res []benchSize) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }
	fmt.Fprintf(w, "%-11s %14s %14s %14s %12s %14s %12s\n", "size", "text encoder", "DiT step", "DiT all", "VAE", "total", "peak memory")
	for _, s := range res {
		var te, vv, tot, all []time.Duration
		var stepMeans []time.Duration
		var peak uint64
		for _, r := range s.runs {
			te, vv, tot = append(te, r.te), append(vv, r.vae), append(tot, r.total)
			var sum time.Duration
			for _, d := range r.steps {
				sum += d
			}
			all = append(all, sum)
			if len(r.steps) > 0 {
				stepMeans = append(stepMeans, sum/time.Duration(len(r.steps)))
			}
			peak = max(peak, r.peak)
		}
		mem := "n/a (host)"
		if peak > 0 {
			mem = fmt.Sprintf("%.2f GB", float64(peak)/1e9)
		}
		fmt.Fprintf(w, "%-11s %14s %14s %14s %12s %14s %12s\n", fmt.Sprintf("%dx%d", s.w, s.h),
			ms(median(te)), ms(median(stepMeans)), ms(median(all)), ms(median(vv)), ms(median(tot)), mem)
	}
	for _, s := range res {
		// Each step's median over the runs.
		var per []string
		for i := range s.runs[0].steps {
			var ds []time.Duration
			for _, r := range s.runs {
				if i < len(r.steps) {
					ds = append(ds, r.steps[i])
				}
			}
			per = append(per, fmt.Sprintf("%.1f", float64(median(ds))/1e6))
		}
		fmt.Fprintf(w, "%dx%d steps (ms): %s\n", s.w, s.h, strings.Join(per, " "))
		fmt.Fprintf(w, "%dx%d plan: %s\n", s.w, s.h, s.plan)
	}
	fmt.Fprintf(w, "(medians of %d run(s); peak: device bytes the backend held, weights included)\n", len(res[0].runs))
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// parseSizes reads "1024x1024,512x768".
func parseSizes(s string) ([][2]int, error) {
	var out [][2]int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		ws, hs, ok := strings.Cut(strings.ToLower(part), "x")
		w, err1 := strconv.Atoi(ws)
		h, err2 := strconv.Atoi(hs)
		if !ok || err1 != nil || err2 != nil || w < zimage.MinSize || h < zimage.MinSize || w > zimage.MaxSize || h > zimage.MaxSize || w%16 != 0 || h%16 != 0 {
			return nil, fmt.Errorf("--size %q: want WxH with multiples of 16 in [%d, %d]", part, zimage.MinSize, zimage.MaxSize)
		}
		out = append(out, [2]int{w, h})
	}
	return out, nil
}

// parseBytes reads "" (0), "123" (bytes), "15.5GB", "14GiB", "800MB", "512MiB".
func parseBytes(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	mult := 1.0
	for _, u := range []struct {
		suf string
		m   float64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"GB", 1e9}, {"MB", 1e6}, {"B", 1}} {
		if strings.HasSuffix(s, u.suf) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suf)), u.m
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v <= 0 || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a positive size (e.g. 15.5GB, 14GiB)", s)
	}
	return uint64(v * mult), nil
}

// deviceLine describes the backend for the table header.
func deviceLine(b compute.Backend) string {
	s := b.Name()
	if name := deviceName(b); name != "" {
		s += " (" + name + ")"
	}
	if d, ok := b.(benchDevice); ok {
		if free, total, err := d.MemInfo(); err == nil {
			s += fmt.Sprintf(", %.2f GB free of %.2f GB", float64(free)/1e9, float64(total)/1e9)
		}
	}
	return s
}

// newCPU is the CPU backend of the bench.
func newCPU(threads int) compute.Backend {
	return cpu.New(cpu.WithThreads(threads), cpu.WithBF16(benchPrecision == zimage.BFloat16))
}

// benchPrecision is bench's --precision (one command per process).
var benchPrecision = zimage.Float32
