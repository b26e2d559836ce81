package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/zimage/zimage/weights"
	"github.com/zimage/zimage/weights/hub"
	"github.com/zimage/zimage/zimage"
)

func init() {
	register("generate", "generate an image from a text prompt", runGenerate)
}

// generateArgs are generate's flags. A feature that needs more (LoRA,
// img2img) adds its flags in newGenerateArgs, its checks in check and its
// fields in request or loadOptions.
type generateArgs struct {
	fs  *flag.FlagSet
	set map[string]bool // flags given on the command line

	model, transformer, textEncoder, vae, tokenizer string

	prompt, negative string
	width, height    int
	seed             int64
	steps            int
	guidance         float64

	device, memoryBudget string
	packBudget           string
	threads              int
	precision            string // --precision (zimage.ParsePrecision)
	warmup               bool   // --warmup: zimage.WithWarmup at the image size

	out     string
	quality int

	loras   loraFlags    // --lora, merged at load (lora.go)
	edit    editFlags    // --image, --mask, --strength (edit.go)
	control controlFlags // --controlnet, --control-image, --control-scale (control.go)

	selfTest selfTestFlag // --selftest (selftestflag.go)

	log *slog.Logger // the library's warnings, on stderr
}

func newGenerateArgs(stderr io.Writer) *generateArgs {
	g := &generateArgs{fs: flag.NewFlagSet("generate", flag.ContinueOnError), log: newWarnLogger(stderr, "zimage generate")}
	fs := g.fs
	fs.SetOutput(stderr)
	fs.StringVar(&g.model, "model", os.Getenv("ZIMAGE_MODEL"), "model: a diffusers directory, a Hugging Face repo id (Org/Name[@revision], downloaded on first use) or a checkpoint file; default $ZIMAGE_MODEL, else "+zimage.DefaultModel)
	fs.StringVar(&g.transformer, "transformer", "", "transformer weights from a single file (ComfyUI z_image_turbo_*.safetensors or *.gguf, or an all-in-one checkpoint)")
	fs.StringVar(&g.textEncoder, "text-encoder", "", "text encoder weights from a single file (ComfyUI qwen_3_4b.safetensors, or a llama.cpp Qwen3-4B *.gguf)")
	fs.StringVar(&g.vae, "vae", "", "VAE weights from a single file (FLUX ae.safetensors)")
	fs.StringVar(&g.tokenizer, "tokenizer", "", "tokenizer directory or tokenizer.json (with single files; else taken from --model, or from a GGUF --text-encoder's embedded vocabulary)")
	fs.StringVar(&g.prompt, "prompt", "", "text prompt (required)")
	fs.StringVar(&g.negative, "negative-prompt", "", "negative prompt (used with --guidance > 0)")
	fs.IntVar(&g.width, "width", gpuDefaultSize, fmt.Sprintf("image width in pixels (multiple of 16; default %d on a GPU, %d on the CPU)", gpuDefaultSize, cpuDefaultSize))
	fs.IntVar(&g.height, "height", gpuDefaultSize, fmt.Sprintf("image height in pixels (multiple of 16; default %d on a GPU, %d on the CPU)", gpuDefaultSize, cpuDefaultSize))
	fs.Int64Var(&g.seed, "seed", -1, "random seed (-1 = random; the seed used is printed)")
	fs.IntVar(&g.steps, "steps", zimage.DefaultSteps, "denoising steps (≥ 1)")
	fs.Float64Var(&g.guidance, "guidance", 0, "classifier-free guidance scale (0 = off, the Turbo setting)")
	fs.StringVar(&g.device, "device", "auto", "compute device: cpu, cuda, cuda:N or auto")
	fs.IntVar(&g.threads, "threads", 0, "CPU threads (0 = all cores)")
	fs.StringVar(&g.precision, "precision", "fp32", "CPU matrix-product precision: fp32 (exact) or bf16 (faster; float32 accumulation)")
	fs.BoolVar(&g.warmup, "warmup", false, "CPU: prepare at load for the image size (bind the networks, map their weights in, pre-pack bf16 weights, pre-fault the first generation's working memory); moves that work from the timed stages into load, and costs a one-shot run more than it saves")
	fs.StringVar(&g.memoryBudget, "memory-budget", "", "device memory budget, e.g. 15.5GB or 14GiB (default: the free device memory)")
	fs.StringVar(&g.packBudget, "pack-budget", "", "with --precision bf16 on the CPU: memory for pre-packed weights, e.g. 4GiB, or 0 for none (default: a quarter of RAM)")
	fs.StringVar(&g.out, "out", "", "output file: .png, .jpg/.jpeg, or - for a PNG on standard output (required)")
	fs.IntVar(&g.quality, "quality", 90, "JPEG quality (1-100)")
	fs.Var(&g.loras, "lora", "LoRA file FILE[:SCALE] merged into the transformer (repeatable, applied in order; SCALE defaults to 1)")
	g.edit.register(fs)
	g.control.register(fs)
	g.selfTest.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: zimage generate [--model MODEL] --prompt TEXT --out FILE.png|FILE.jpg|- [flags]")
		fmt.Fprintln(stderr, "MODEL defaults to "+zimage.DefaultModel+", downloaded into the Hugging Face cache on first use")
		fmt.Fprintln(stderr, "(see \"zimage pull -h\"); ComfyUI users pass --transformer, --text-encoder, --vae and --tokenizer.")
		fmt.Fprintln(stderr, "Flags go before any other argument. Exit status: 0 done, 1 failed, 2 usage error, 130 interrupted.")
		fs.PrintDefaults()
	}
	return g
}

// Default image sizes: the model's native 1024² on a GPU; on the CPU, where
// 1024² takes about 43 minutes, 512² (about 8 minutes) unless asked.
const (
	gpuDefaultSize = 1024
	cpuDefaultSize = 512
)

// usageError is a bad command line: exit status 2.
type usageError string

func (e usageError) Error() string { return string(e) }

// check validates everything that needs no model, before anything slow.
func (g *generateArgs) check() error {
	if g.fs.NArg() > 0 {
		return positionalError(g.fs.Args())
	}
	if _, err := parseBytes(g.memoryBudget); err != nil {
		return usageError(fmt.Sprintf("--memory-budget: %v", err))
	}
	if _, err := parsePackBudget(g.packBudget); err != nil {
		return usageError(fmt.Sprintf("--pack-budget: %v", err))
	}
	if _, err := zimage.ParsePrecision(g.precision); err != nil {
		return usageError(fmt.Sprintf("--precision: %v", err))
	}
	switch {
	case !g.set["prompt"]:
		return usageError("--prompt is required")
	case strings.TrimSpace(g.prompt) == "":
		return usageError("--prompt is empty")
	case g.out == "":
		return usageError("--out is required")
	case g.steps < 1 || g.steps > zimage.MaxSteps:
		return usageError(fmt.Sprintf("--steps %d: want 1 to %d", g.steps, zimage.MaxSteps))
	case g.seed < -1:
		return usageError(fmt.Sprintf("--seed %d: want ≥ 0, or -1 for a random seed", g.seed))
	case math.IsNaN(g.guidance) || math.IsInf(g.guidance, 0) || g.guidance < 0:
		return usageError(fmt.Sprintf("--guidance %v: want a finite value ≥ 0", g.guidance))
	case g.threads < 0:
		return usageError(fmt.Sprintf("--threads %d: want ≥ 0 (0 = all cores)", g.threads))
	case g.quality < 1 || g.quality > 100:
		return usageError(fmt.Sprintf("--quality %d: want 1 to 100", g.quality))
	}
	if err := g.edit.check(g.set); err != nil {
		return err
	}
	if err := g.control.check(g.set); err != nil {
		return err
	}
	mult := g.sizeMultiple()
	for _, d := range []struct {
		name string
		v    int
	}{{"width", g.width}, {"height", g.height}} {
		if g.set[d.name] && (d.v < zimage.MinSize || d.v > zimage.MaxSize || d.v%mult != 0) {
			return usageError(fmt.Sprintf("--%s %d: want a multiple of %d from %d to %d", d.name, d.v, mult, zimage.MinSize, zimage.MaxSize))
		}
	}
	return nil
}

// sizeMultiple is the multiple image sizes must be: read from the configs
// of a local model directory (cheap: no weights), else Z-Image's 16.
func (g *generateArgs) sizeMultiple() int {
	if st, err := os.Stat(g.model); err == nil && st.IsDir() {
		if m, err := weights.OpenModel(g.model); err == nil {
			return zimage.SizeMultiple(m)
		}
	}
	return 16
}

// fallbackReason shortens the CUDA probe's error for the fallback note:
// "no CUDA driver: libcuda.so.1: cannot open shared object file: …".
func fallbackReason(err error) string {
	msg := strings.ReplaceAll(oneLine(err), "cuda: ", "")
	if rest, ok := strings.CutPrefix(msg, "no CUDA device: "); ok && rest != "" {
		msg = rest
	}
	if msg == "" {
		msg = "no reason given"
	}
	return msg
}

// positionalError explains a leftover argument: Go's flag parsing stops at
// the first argument that is not a flag, so flags after it are not read.
func positionalError(args []string) error {
	for _, a := range args[1:] {
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			return usageError(fmt.Sprintf("flags must come before other arguments: %s follows the argument %q (quote a prompt and pass it with --prompt)", a, args[0]))
		}
	}
	return usageError(fmt.Sprintf("unexpected argument %q (the prompt goes in --prompt \"…\", quoted)", args[0]))
}

// resolveSize fills in the sizes not given: gpuDefaultSize on a GPU,
// cpuDefaultSize on the CPU. It reports whether a CPU default was used.
func (g *generateArgs) resolveSize(dev zimage.DeviceChoice) (cpuDefault bool) {
	if g.edit.keepsImageSize(g.set) {
		return false // the image's size (request)
	}
	def := gpuDefaultSize
	if dev.Kind == "cpu" {
		def = cpuDefaultSize
	}
	if !g.set["width"] {
		g.width, cpuDefault = def, dev.Kind == "cpu"
	}
	if !g.set["height"] {
		g.height, cpuDefault = def, cpuDefault || dev.Kind == "cpu"
	}
	return cpuDefault
}

func (g *generateArgs) loadOptions(dev zimage.DeviceChoice, onDownload func(hub.Progress)) []zimage.Option {
	device := g.device
	if dev.Kind == "cpu" {
		device = "cpu" // "auto" already fell back; do not probe again
	}
	budget, _ := parseBytes(g.memoryBudget)       // checked in check
	prec, _ := zimage.ParsePrecision(g.precision) // checked in check

	packBudget, _ := parsePackBudget(g.packBudget) // checked in check
	opts := []zimage.Option{
		zimage.WithPrecision(prec), zimage.WithPackBudget(packBudget),
		zimage.WithDevice(device), zimage.WithThreads(g.threads), zimage.WithMemoryBudget(budget),
		zimage.WithSingleFiles(g.transformer, g.textEncoder, g.vae, g.tokenizer),
		zimage.WithDownloadProgress(onDownload),
		zimage.WithLogger(g.log), zimage.WithSelfTest(g.selfTest.mode),
	}
	if g.warmup {
		opts = append(opts, zimage.WithWarmup(g.width, g.height)) // first Run's fresh memory faulted in at load
	}
	return append(opts, append(g.loras.mergeOptions(), g.control.options()...)...)
}

func (g *generateArgs) request() zimage.Request {
	req := zimage.Request{
		Prompt: g.prompt, NegativePrompt: g.negative, Width: g.width, Height: g.height,
		Seed: g.seed, Steps: g.steps, Guidance: float32(g.guidance),
	}
	g.edit.apply(g.set, &req)
	g.control.apply(&req)
	return req
}

// metadata is what the PNG's text chunks record.
func (g *generateArgs) metadata(res *zimage.Result) []textChunk {
	meta := []textChunk{{"prompt", g.prompt}}
	if g.negative != "" {
		meta = append(meta, textChunk{"negative_prompt", g.negative})
	}
	meta = append(meta, g.edit.metadata()...)
	return append(append(meta,
		textChunk{"seed", strconv.FormatInt(res.Seed, 10)},
		textChunk{"steps", strconv.Itoa(res.Steps)},
		textChunk{"guidance", strconv.FormatFloat(g.guidance, 'g', -1, 32)},
		textChunk{"size", fmt.Sprintf("%dx%d", res.Width, res.Height)},
		textChunk{"model", modelLabel(g.model, g.transformer)},
		textChunk{"Software", "zimage"},
	), append(g.loras.chunks(), g.control.meta()...)...)
}

func runGenerate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := newGenerateArgs(stderr)
	if err := g.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	g.set = map[string]bool{}
	g.fs.Visit(func(f *flag.Flag) { g.set[f.Name] = true })
	fail := func(err error) int {
		var ue usageError
		var re *zimage.RequestError
		switch {
		case errors.As(err, &ue):
			fmt.Fprintf(stderr, "zimage generate: %s\n", ue)
			fmt.Fprintln(stderr, "Run \"zimage generate -h\" for the flags.")
			return 2
		case ctx.Err() != nil && errors.Is(err, ctx.Err()):
			fmt.Fprintln(stderr, "zimage generate: interrupted; no image written")
			return 1 // main turns this into 128+signal
		case errors.As(err, &re):
			fmt.Fprintf(stderr, "zimage generate: %s\n", oneLine(err))
			return 2
		}
		fmt.Fprintf(stderr, "zimage generate: %s\n", oneLine(err))
		if hint := hubHint(err, g.model); hint != "" {
			fmt.Fprintf(stderr, "zimage generate: hint: %s\n", hint)
		}
		return 1
	}
	if err := g.check(); err != nil {
		return fail(err)
	}
	out, err := parseOutput(g.out, g.quality, stdout)
	if err != nil {
		return fail(err)
	}
	dev, err := resolveDeviceFlag(g.device)
	if err != nil {
		return fail(err)
	}
	if err := out.check(); err != nil {
		return fail(err)
	}
	// Messages go to stderr; with --out - so does the report.
	report := stdout
	if out.stdout {
		report = stderr
	}
	if g.negative != "" && g.guidance == 0 {
		fmt.Fprintln(stderr, "zimage generate: warning: --negative-prompt has no effect without --guidance > 0 (Turbo runs without classifier-free guidance)")
	}
	printFallback(stderr, "generate", dev)
	if g.resolveSize(dev) {
		fmt.Fprintf(stderr, "zimage generate: %dx%d, the CPU default size (1024x1024 takes about 5 times as long); pass --width and --height to choose\n", g.width, g.height)
	}
	if err := g.edit.load(); err != nil {
		return fail(err)
	}
	if err := g.control.load(); err != nil {
		return fail(err)
	}
	if err := g.loras.check(); err != nil {
		return fail(err)
	}

	start := time.Now()
	dl := newDownloadBar(stderr)
	p, err := zimage.Load(ctx, g.model, g.loadOptions(dev, dl.update)...)
	dl.finish()
	if err != nil {
		return fail(err)
	}
	defer p.Close()
	loadTime := time.Since(start)

	req := g.request()
	bar := newProgressBar(stderr)
	req.Progress = bar.update
	res, err := p.Run(ctx, req)
	bar.finish()
	if err != nil {
		return fail(err)
	}
	if err := out.write(res.Image, g.metadata(res)); err != nil {
		return fail(err)
	}

	t := res.Timings
	fmt.Fprintf(report, "seed %d\n", res.Seed)
	if res.Truncated {
		fmt.Fprintf(report, "prompt truncated to %d tokens\n", res.Tokens)
	}
	fmt.Fprintf(report, "load          %s (device %s)\n", round(loadTime), p.Backend().Name())
	fmt.Fprintf(report, "tokenize      %s (%d tokens)\n", round(t.Tokenize), res.Tokens)
	fmt.Fprintf(report, "text encoder  %s\n", round(t.TextEncoder))
	if t.EncodeImage > 0 {
		fmt.Fprintf(report, "image encoder %s\n", round(t.EncodeImage))
	}
	perStep := time.Duration(0)
	if len(t.Steps) > 0 {
		perStep = t.Denoise / time.Duration(len(t.Steps))
	}
	fmt.Fprintf(report, "denoise       %s (%d steps, %s/step)\n", round(t.Denoise), len(t.Steps), round(perStep))
	fmt.Fprintf(report, "vae           %s\n", round(t.VAE))
	fmt.Fprintf(report, "total         %s\n", round(t.Total))
	if m := res.Memory; m.Peak > 0 { // device backends only (residency.go)
		fmt.Fprintf(report, "memory        peak %.2f GB on the device (%s)\n", float64(m.Peak)/1e9, m.Plan)
	}
	fmt.Fprintf(report, "wrote %s (%dx%d %s)\n", out.name(), res.Width, res.Height, strings.ToUpper(out.format))
	return 0
}

// modelLabel names the model in the PNG metadata: a repository id as given,
// otherwise the base name of the directory or checkpoint file.
func modelLabel(model, transformer string) string {
	switch {
	case model == "" && transformer != "":
		return filepath.Base(transformer)
	case model == "":
		return zimage.DefaultModel
	}
	if _, err := os.Stat(model); err != nil && hub.LooksLikeRef(model) {
		return model
	}
	return filepath.Base(filepath.Clean(model))
}

// oneLine flattens an error message to a single line (without the library's
// own "zimage: " prefix, which the command prefix already says).
func oneLine(err error) string {
	return strings.TrimPrefix(strings.Join(strings.Fields(err.Error()), " "), "zimage: ")
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond)
	}
	return d
}

// writeFileAtomic writes data to a temporary file next to path and renames
// it into place, so path never holds a partial image.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, bareError(err))
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, bareError(err))
	}
	return nil
}

// bareError drops the file name of a *fs.PathError (the temporary file's,
// which the user never named).
func bareError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// textChunk is one PNG text entry.
type textChunk struct{ key, value string }

// insertTextChunks adds the entries to an encoded PNG right after IHDR:
// tEXt when the value is Latin-1, iTXt (UTF-8) otherwise.
func insertTextChunks(pngData []byte, chunks []textChunk) ([]byte, error) {
	const sigLen = 8
	if len(pngData) < sigLen+8 || string(pngData[sigLen+4:sigLen+8]) != "IHDR" {
		return nil, errors.New("png: no IHDR chunk")
	}
	ihdrEnd := sigLen + 8 + int(binary.BigEndian.Uint32(pngData[sigLen:])) + 4
	var out bytes.Buffer
	out.Write(pngData[:ihdrEnd])
	for _, c := range chunks {
		if latin1, ok := toLatin1(c.value); ok {
			writeChunk(&out, "tEXt", append(append([]byte(c.key), 0), latin1...))
			continue
		}
		// keyword, NUL, compression flag 0, method 0, empty language tag and
		// translated keyword (each NUL-terminated), UTF-8 text.
		body := append([]byte(c.key), 0, 0, 0, 0, 0)
		writeChunk(&out, "iTXt", append(body, c.value...))
	}
	out.Write(pngData[ihdrEnd:])
	return out.Bytes(), nil
}

func toLatin1(s string) ([]byte, bool) {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff {
			return nil, false
		}
		b = append(b, byte(r))
	}
	return b, true
}

func writeChunk(w *bytes.Buffer, typ string, body []byte) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(body)))
	w.Write(n[:])
	crc := crc32.NewIEEE()
	crc.Write([]byte(typ))
	crc.Write(body)
	w.WriteString(typ)
	w.Write(body)
	binary.BigEndian.PutUint32(n[:], crc.Sum32())
	w.Write(n[:])
}

// progressBar draws the denoising progress on a terminal; it is silent when
// the writer is not a character device.
type progressBar struct {
	w     io.Writer
	on    bool
	drawn bool
}

func newProgressBar(w io.Writer) *progressBar {
	on := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			on = true
		}
	}
	return &progressBar{w: w, on: on}
}

func (b *progressBar) update(p zimage.Progress) {
	if !b.on || p.Stage == "done" {
		return
	}
	const width = 30
	line := fmt.Sprintf("%-12s", p.Stage)
	if p.Steps > 0 {
		filled := width * p.Step / p.Steps
		line += fmt.Sprintf(" [%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat(".", width-filled), p.Step, p.Steps)
	}
	line += fmt.Sprintf("  %s", p.Elapsed.Round(100*time.Millisecond))
	fmt.Fprintf(b.w, "\r\x1b[K%s", line)
	b.drawn = true
}

func (b *progressBar) finish() {
	if b.drawn {
		fmt.Fprint(b.w, "\r\x1b[K")
	}
}

// parsePackBudget parses --pack-budget: "" is -1 (the default), "0" none.
func parsePackBudget(s string) (int64, error) {
	switch strings.TrimSpace(s) {
	case "":
		return -1, nil
	case "0":
		return 0, nil
	}
	n, err := parseBytes(s)
	return int64(min(n, 1<<62)), err
}
