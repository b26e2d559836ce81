package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/zimage/zimage/weights/hub"
	"github.com/zimage/zimage/zimage"
)

func init() {
	register("pull", "download a model from the Hugging Face Hub into its cache", runPull)
}

func runPull(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("pull", stderr,
		"usage: zimage pull [flags] [ORG/NAME[@REVISION]]",
		fmt.Sprintf("Downloads the files the pipeline needs (default %s) into the Hugging Face cache,", hub.DefaultRepo),
		"resuming interrupted downloads and verifying every file. Environment: HF_HOME, HF_HUB_CACHE,",
		"HF_ENDPOINT, HF_TOKEN (or HF_TOKEN_PATH, $HF_HOME/token), HF_HUB_OFFLINE.")
	configsOnly := fs.Bool("configs-only", false, "fetch only configs and tokenizer (for weights from single files)")
	parallel := fs.Int("parallel", 4, "files downloaded at once")
	bf16 := fs.Bool("bf16", true, "convert float32 transformer/text-encoder weights to bfloat16 once, as generate would on first use")
	verify := fs.Bool("check", true, "open the downloaded model and check every tensor's name and shape")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 1 {
		fmt.Fprintf(stderr, "zimage pull: unexpected argument %q\n", fs.Arg(1))
		fs.Usage()
		return 2
	}
	if *parallel < 1 {
		fmt.Fprintln(stderr, "zimage pull: --parallel must be at least 1")
		return 2
	}
	name := hub.DefaultRepo
	if fs.NArg() == 1 {
		name = fs.Arg(0)
	}
	ref, err := hub.ParseRef(name)
	if err != nil {
		fmt.Fprintf(stderr, "zimage pull: %s\n", strings.TrimPrefix(err.Error(), "hub: "))
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "zimage pull: %s\n", strings.TrimPrefix(oneLine(err), "hub: "))
		return 1
	}

	c := hub.FromEnv()
	c.Parallel = *parallel
	bar := newDownloadBar(stderr)
	c.Progress = bar.update
	sel := hub.PipelineAll()
	if *configsOnly {
		sel = hub.Pipeline()
	}
	start := time.Now()
	snap, err := c.Pull(ctx, ref, sel)
	bar.finish()
	if err != nil {
		return fail(err)
	}
	elapsed := time.Since(start)
	fmt.Fprintf(stdout, "%s: commit %s\n", ref, snap.Commit)
	switch {
	case c.Offline:
		fmt.Fprintln(stdout, "offline (HF_HUB_OFFLINE): found complete in the cache")
	case snap.Downloaded > 0:
		fmt.Fprintf(stdout, "downloaded %s in %s (%s/s)\n", hub.FormatBytes(snap.Downloaded), round(elapsed),
			hub.FormatBytes(int64(float64(snap.Downloaded)/max(elapsed.Seconds(), 1e-3))))
	default:
		fmt.Fprintln(stdout, "already up to date in the cache")
	}
	fmt.Fprintf(stdout, "snapshot %s\n", snap.Dir)

	if !*configsOnly && (*verify || *bf16) {
		log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		p, err := zimage.Load(ctx, snap.Dir, zimage.WithDevice("cpu"), zimage.WithThreads(1),
			zimage.WithF32Conversion(*bf16), zimage.WithLogger(log))
		if err != nil {
			return fail(err)
		}
		for _, comp := range []string{"transformer", "text_encoder"} {
			if path, _, converted := p.Model().Source(comp); converted {
				fmt.Fprintf(stdout, "%s: bf16 copy of the float32 weights in %s\n", comp, path)
			}
		}
		p.Close()
		fmt.Fprintln(stdout, "check ok: every component loads")
	}
	return 0
}

// downloadBar draws download progress (bytes, rate, ETA) on a terminal; it
// is silent when the writer is not a character device.
type downloadBar struct {
	mu    sync.Mutex
	w     io.Writer
	on    bool
	drawn bool
}

func newDownloadBar(w io.Writer) *downloadBar {
	return &downloadBar{w: w, on: isTerminal(w)}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (b *downloadBar) update(p hub.Progress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.on || p.Total == 0 {
		return
	}
	fmt.Fprintf(b.w, "\r\x1b[K%s", progressLine(p, 30))
	b.drawn = true
}

func (b *downloadBar) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.drawn {
		fmt.Fprint(b.w, "\r\x1b[K")
		b.drawn = false
	}
}

// progressLine renders one line: bar, bytes done/total, rate, ETA, files
// and the file that advanced last.
func progressLine(p hub.Progress, width int) string {
	filled := 0
	if p.Total > 0 {
		filled = int(int64(width) * min(p.Done, p.Total) / p.Total)
	}
	line := fmt.Sprintf("[%s%s] %s / %s", strings.Repeat("#", filled), strings.Repeat(".", width-filled),
		hub.FormatBytes(p.Done), hub.FormatBytes(p.Total))
	if p.Rate > 0 {
		line += fmt.Sprintf("  %s/s", hub.FormatBytes(int64(p.Rate)))
	}
	if p.ETA > 0 {
		line += fmt.Sprintf("  ETA %s", p.ETA.Round(time.Second))
	}
	line += fmt.Sprintf("  %d/%d files", p.FilesDone, p.Files)
	if p.File != "" && !p.Finished {
		line += "  " + p.File
	}
	return line
}
