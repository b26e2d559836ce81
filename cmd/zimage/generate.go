package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/zimage/zimage/weights/hub"
	"github.com/zimage/zimage/zimage"
)

func init() {
	register("generate", "generate an image from a text prompt", runGenerate)
}

func runGenerate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	model := fs.String("model", os.Getenv("ZIMAGE_MODEL"), "model: a diffusers directory, a Hugging Face repo id (Org/Name[@revision], downloaded on first use) or a checkpoint file; default $ZIMAGE_MODEL, else "+zimage.DefaultModel)
	transformer := fs.String("transformer", "", "transformer weights from a single file (ComfyUI z_image_turbo_*.safetensors, or an all-in-one checkpoint)")
	textEncoder := fs.String("text-encoder", "", "text encoder weights from a single file (ComfyUI qwen_3_4b.safetensors)")
	vaeFile := fs.String("vae", "", "VAE weights from a single file (FLUX ae.safetensors)")
	tokenizerPath := fs.String("tokenizer", "", "tokenizer directory or tokenizer.json (with single files; else taken from --model)")
	prompt := fs.String("prompt", "", "text prompt (required)")
	neg := fs.String("negative-prompt", "", "negative prompt (used with --guidance > 0)")
	width := fs.Int("width", 1024, "image width in pixels (multiple of 16)")
	height := fs.Int("height", 1024, "image height in pixels (multiple of 16)")
	seed := fs.Int64("seed", -1, "random seed (-1 = random; the seed used is printed)")
	steps := fs.Int("steps", zimage.DefaultSteps, "denoising steps")
	guidance := fs.Float64("guidance", 0, "classifier-free guidance scale (0 = off, the Turbo setting)")
	device := fs.String("device", "auto", "compute device: cpu, cuda or auto")
	threads := fs.Int("threads", 0, "CPU threads (0 = all cores)")
	memBudget := fs.String("memory-budget", "", "device memory budget, e.g. 15.5GB or 14GiB (default: the free device memory)")
	out := fs.String("out", "", "output PNG file (required)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: zimage generate [--model MODEL] --prompt TEXT --out FILE.png [flags]")
		fmt.Fprintln(stderr, "MODEL defaults to "+zimage.DefaultModel+", downloaded into the Hugging Face cache on first use")
		fmt.Fprintln(stderr, "(see \"zimage pull -h\"); ComfyUI users pass --transformer, --text-encoder, --vae and --tokenizer.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	usageErr := func(msg string) int {
		fmt.Fprintf(stderr, "zimage generate: %s\n", msg)
		fs.Usage()
		return 2
	}
	budgetBytes, err := parseBytes(*memBudget)
	if err != nil {
		return usageErr(fmt.Sprintf("--memory-budget: %v", err))
	}
	switch {
	case fs.NArg() > 0:
		return usageErr(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	case !set["prompt"]:
		return usageErr("--prompt is required")
	case *out == "":
		return usageErr("--out is required")
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "zimage generate: %s\n", oneLine(err))
		return 1
	}

	start := time.Now()
	dl := newDownloadBar(stderr)
	p, err := zimage.Load(ctx, *model, zimage.WithDevice(*device), zimage.WithThreads(*threads), zimage.WithMemoryBudget(budgetBytes),
		zimage.WithSingleFiles(*transformer, *textEncoder, *vaeFile, *tokenizerPath), zimage.WithDownloadProgress(dl.update))
	dl.finish()
	if err != nil {
		return fail(err)
	}
	defer p.Close()
	loadTime := time.Since(start)

	req := zimage.Request{
		Prompt: *prompt, NegativePrompt: *neg, Width: *width, Height: *height,
		Seed: *seed, Steps: *steps, Guidance: float32(*guidance),
	}
	bar := newProgressBar(stderr)
	req.Progress = bar.update
	res, err := p.Run(ctx, req)
	bar.finish()
	if err != nil {
		return fail(err)
	}

	meta := []textChunk{
		{"prompt", *prompt},
		{"seed", strconv.FormatInt(res.Seed, 10)},
		{"steps", strconv.Itoa(res.Steps)},
		{"guidance", strconv.FormatFloat(*guidance, 'g', -1, 32)},
		{"size", fmt.Sprintf("%dx%d", res.Width, res.Height)},
		{"model", modelLabel(*model, *transformer)},
		{"Software", "zimage"},
	}
	if *neg != "" {
		meta = append(meta[:1], append([]textChunk{{"negative_prompt", *neg}}, meta[1:]...)...)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, res.Image); err != nil {
		return fail(err)
	}
	data, err := insertTextChunks(buf.Bytes(), meta)
	if err != nil {
		return fail(err)
	}
	if err := writeFileAtomic(*out, data); err != nil {
		return fail(err)
	}

	t := res.Timings
	fmt.Fprintf(stdout, "seed %d\n", res.Seed)
	if res.Truncated {
		fmt.Fprintf(stdout, "prompt truncated to %d tokens\n", res.Tokens)
	}
	fmt.Fprintf(stdout, "load          %s (device %s)\n", round(loadTime), p.Backend().Name())
	fmt.Fprintf(stdout, "tokenize      %s (%d tokens)\n", round(t.Tokenize), res.Tokens)
	fmt.Fprintf(stdout, "text encoder  %s\n", round(t.TextEncoder))
	perStep := time.Duration(0)
	if len(t.Steps) > 0 {
		perStep = t.Denoise / time.Duration(len(t.Steps))
	}
	fmt.Fprintf(stdout, "denoise       %s (%d steps, %s/step)\n", round(t.Denoise), len(t.Steps), round(perStep))
	fmt.Fprintf(stdout, "vae           %s\n", round(t.VAE))
	fmt.Fprintf(stdout, "total         %s\n", round(t.Total))
	if m := res.Memory; m.Peak > 0 { // device backends only (residency.go)
		fmt.Fprintf(stdout, "memory        peak %.2f GB on the device (%s)\n", float64(m.Peak)/1e9, m.Plan)
	}
	fmt.Fprintf(stdout, "wrote %s (%dx%d)\n", *out, res.Width, res.Height)
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
		return err
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
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
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
