package main

import (
	"bytes"
	"errors"
	"flag"
	"image"
	"image/jpeg"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/zimage"
)

// The tests below run the command as a process: the test binary re-executes
// itself with ZIMAGE_TEST_MAIN=1 and then runs main() with the arguments,
// so exit statuses, signals and standard output are the real ones without
// a separate go build.
func TestMain(m *testing.M) {
	if os.Getenv("ZIMAGE_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// zimageCmd is the command as a process, with a cache-less, offline hub and
// without a CUDA driver, so nothing reaches the network or a GPU.
func zimageCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "ZIMAGE_TEST_MAIN=1", "ZIMAGE_MODEL=", "HF_HUB_OFFLINE=1",
		"HF_HUB_CACHE="+t.TempDir(), "ZIMAGE_LIBCUDA="+filepath.Join(t.TempDir(), "libcuda.so.1"))
	return cmd
}

// runProcess runs the command and returns its exit status, stdout and stderr.
func runProcess(t *testing.T, cmd *exec.Cmd) (int, []byte, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.Bytes(), stderr.String()
	case err != nil:
		t.Fatal(err)
	}
	return 0, stdout.Bytes(), stderr.String()
}

func TestGenerateProcessExitStatus(t *testing.T) {
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	out := filepath.Join(t.TempDir(), "x.png")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"generate", "--model", model, "--prompt", "x", "--out", out, "--steps", "0"}, 2, "--steps 0: want 1 to"},
		{[]string{"generate", "--model", model, "--prompt", "x", "--out", out, "--width", "1e3"}, 2, "invalid value"},
		{[]string{"generate", "--prompt", "x", "--out", out}, 1, "not in the cache"},
		{[]string{"nonsense"}, 2, "unknown command"},
		// No driver: refused before the (default, uncached) model is looked up.
		{[]string{"generate", "--prompt", "x", "--out", out, "--device", "cuda"}, 1, `device "cuda": no usable CUDA GPU`},
	} {
		code, _, stderr := runProcess(t, zimageCmd(t, tc.args...))
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, stderr, tc.code, tc.msg)
		}
	}
}

// TestGenerateInterrupt: Ctrl-C during a generation exits with 130 and
// leaves no file (not even a temporary one) in the output directory.
func TestGenerateInterrupt(t *testing.T) {
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	dir := t.TempDir()
	cmd := zimageCmd(t, "generate", "--model", model, "--prompt", "a fox", "--width", "128", "--height", "128",
		"--steps", "1000", "--device", "cpu", "--out", filepath.Join(dir, "fox.png"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("still running 30 s after SIGINT")
	}
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("exit %d after SIGINT, want 130; stderr %q", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("stderr %q does not say it was interrupted", stderr.String())
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("left %d file(s) in the output directory: %v", len(left), left)
	}
}

// TestGenerateOutputs: .jpg writes a JPEG, - writes the PNG to stdout with
// the report on stderr; a negative prompt without guidance warns.
func TestGenerateOutputs(t *testing.T) {
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	common := []string{"generate", "--model", model, "--prompt", "a fox", "--width", "48", "--height", "32",
		"--steps", "1", "--seed", "3", "--device", "cpu"}

	jpg := filepath.Join(t.TempDir(), "fox.JPG")
	code, stdout, stderr := runProcess(t, zimageCmd(t, append(common, "--out", jpg, "--quality", "80")...))
	if code != 0 {
		t.Fatalf("jpg: exit %d: %s", code, stderr)
	}
	f, err := os.Open(jpg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if img, err := jpeg.Decode(f); err != nil || img.Bounds().Dx() != 48 || img.Bounds().Dy() != 32 {
		t.Errorf("--out .JPG: not a 48x32 JPEG: %v", err)
	}
	if data, _ := os.ReadFile(jpg); !bytes.Contains(data, []byte("prompt: a fox\nseed: 3\n")) {
		t.Errorf("--out .JPG: no parameters in a COM segment")
	}
	if !strings.Contains(string(stdout), "wrote "+jpg+" (48x32 JPEG)") {
		t.Errorf("stdout %q", stdout)
	}

	code, stdout, stderr = runProcess(t, zimageCmd(t, append(common, "--out", "-", "--negative-prompt", "blurry")...))
	if code != 0 {
		t.Fatalf("stdout: exit %d: %s", code, stderr)
	}
	img, err := png.Decode(bytes.NewReader(stdout))
	if err != nil || img.Bounds().Dx() != 48 {
		t.Fatalf("--out -: stdout is not the PNG: %v", err)
	}
	if !strings.Contains(stderr, "seed 3") || !strings.Contains(stderr, "wrote standard output") {
		t.Errorf("--out -: report not on stderr: %q", stderr)
	}
	if !strings.Contains(stderr, "warning: --negative-prompt has no effect without --guidance") {
		t.Errorf("no warning for a negative prompt without guidance: %q", stderr)
	}
}

// TestGenerateDeviceFallbackFirst: --device auto without a driver says so,
// with the driver's reason, before anything is loaded (here the load fails
// at once: an offline, empty hub cache), and picks the CPU default size.
func TestGenerateDeviceFallbackFirst(t *testing.T) {
	out := filepath.Join(t.TempDir(), "x.png")
	code, _, stderr := runProcess(t, zimageCmd(t, "generate", "--prompt", "x", "--out", out))
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if code != 1 || len(lines) < 3 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if !strings.HasPrefix(lines[0], "zimage generate: no usable CUDA GPU (no CUDA driver: ") ||
		!strings.Contains(lines[0], "libcuda.so.1: cannot open shared object file") ||
		!strings.HasSuffix(lines[0], "); running on the CPU") {
		t.Errorf("fallback line %q", lines[0])
	}
	if !strings.Contains(lines[1], "512x512, the CPU default size") {
		t.Errorf("size line %q", lines[1])
	}
	if !strings.Contains(lines[2], "not in the cache") {
		t.Errorf("failure line %q", lines[2])
	}
}

// TestGenerateDefaultSize: without --width/--height the size is 1024² on a
// GPU and 512² on the CPU; a given size stays.
func TestGenerateDefaultSize(t *testing.T) {
	for _, tc := range []struct {
		kind   string
		args   []string
		w, h   int
		cpuDef bool
	}{
		{"cuda", nil, 1024, 1024, false},
		{"cpu", nil, 512, 512, true},
		{"cpu", []string{"--width", "768", "--height", "256"}, 768, 256, false},
		{"cpu", []string{"--width", "768"}, 768, 512, true},
	} {
		g := newGenerateArgs(&bytes.Buffer{})
		if err := g.fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		g.set = map[string]bool{}
		g.fs.Visit(func(f *flag.Flag) { g.set[f.Name] = true })
		cpuDef := g.resolveSize(zimage.DeviceChoice{Kind: tc.kind})
		if r := g.request(); r.Width != tc.w || r.Height != tc.h || cpuDef != tc.cpuDef {
			t.Errorf("%s %v: %dx%d (CPU default %v), want %dx%d (%v)", tc.kind, tc.args, r.Width, r.Height, cpuDef, tc.w, tc.h, tc.cpuDef)
		}
	}
}

// TestWriteErrorNamesTheUserPath: a failed write names --out, not the
// temporary file next to it.
func TestWriteErrorNamesTheUserPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "x.png")
	err := writeFileAtomic(path, []byte("x"))
	if err == nil || !strings.HasPrefix(err.Error(), "write "+path+": ") || strings.Contains(err.Error(), ".tmp-") {
		t.Errorf("got %v", err)
	}
}

// TestGenerateNotSafetensors: an image passed as the model or a component
// is named as an image.
func TestGenerateNotSafetensors(t *testing.T) {
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	dir := t.TempDir()
	pngFile := filepath.Join(dir, "cat.png")
	var buf bytes.Buffer
	png.Encode(&buf, image.NewGray(image.Rect(0, 0, 8, 8)))
	if err := os.WriteFile(pngFile, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "x.png")
	for _, args := range [][]string{
		{"--model", pngFile},
		{"--model", model, "--transformer", pngFile},
	} {
		code, _, stderr := runProcess(t, zimageCmd(t, append([]string{"generate", "--prompt", "x", "--device", "cpu", "--out", out}, args...)...))
		if code != 1 || !strings.Contains(stderr, pngFile+": is a PNG image, not a safetensors file") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
}

// TestWarnLogger: the library's warnings reach stderr as single lines;
// info and debug records do not.
func TestWarnLogger(t *testing.T) {
	var buf bytes.Buffer
	log := newWarnLogger(&buf, "zimage generate").With("repo", "Org/M")
	log.Info("zimage: loaded")
	log.Warn("hub: retrying", "err", "connection\nreset")
	if got, want := buf.String(), "zimage generate: warning: hub: retrying (repo=Org/M, err=connection reset)\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
