package main

import (
	"bufio"
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zimage/zimage/internal/fixturefs"
)

// TestReadmeSetupFromClone clones the repository (its committed HEAD) into a
// temporary directory and, in the clone, runs the README's set-up `generate`
// line as written, on the tiny fixture model (ZIMAGE_MODEL, which the README
// documents; --width/--height 64 are appended to keep it cheap), then builds
// the README's library example against the clone through a Go workspace, as
// the README says. It also checks that .ci/run ends with the README's test
// command. Skipped with -short, without git or outside a git checkout.
// Nothing is downloaded: GOPROXY=off, modules come from the module cache.
func TestReadmeSetupFromClone(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the command in a fresh clone")
	}
	gitPath, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git not found")
	}
	top, err := exec.Command(gitPath, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	root := strings.TrimSpace(string(top))
	clone := filepath.Join(t.TempDir(), "zimage")
	if out, err := exec.Command(gitPath, "clone", "--quiet", "--no-hardlinks", root, clone).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}

	readme, err := os.ReadFile(filepath.Join(clone, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	setup := codeBlocks(string(readme), "## Set-up", "sh")
	var generate, test string
	for _, line := range strings.Split(setup, "\n") {
		switch {
		case strings.Contains(line, "cmd/zimage generate"):
			generate = strings.TrimSpace(line)
		case strings.HasPrefix(line, "go test"):
			test = strings.TrimSpace(line)
		}
	}
	if !strings.HasPrefix(generate, "go run ./cmd/zimage generate ") || test != "go test ./..." {
		t.Fatalf("README set-up commands not found or not the clone form: generate %q, test %q", generate, test)
	}
	ci, err := os.ReadFile(filepath.Join(clone, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(ci)), "\n"); lines[len(lines)-1] != test {
		t.Errorf(".ci/run ends with %q, not the README's %q", lines[len(lines)-1], test)
	}

	env := append(os.Environ(), "GOPROXY=off", "GOTOOLCHAIN=local", "GOWORK=off",
		"ZIMAGE_MODEL="+fixturefs.Path(t, "fixtures/tiny-z-image-turbo"),
		"HF_HUB_OFFLINE=1", "HF_HUB_CACHE="+t.TempDir(), "ZIMAGE_LIBCUDA="+filepath.Join(t.TempDir(), "libcuda.so.1"))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "sh", "-c", generate+" --width 64 --height 64")
	cmd.Dir, cmd.Env = clone, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", generate, err, out)
	}
	t.Logf("%s (in the clone): %s", generate, time.Since(start).Round(time.Millisecond))
	outFile := "fox.png"
	if f := strings.Fields(generate); len(f) > 1 && f[len(f)-2] == "--out" {
		outFile = f[len(f)-1]
	}
	f, err := os.Open(filepath.Join(clone, outFile))
	if err != nil {
		t.Fatalf("no image in the clone: %v\n%s", err, out)
	}
	defer f.Close()
	if cfg, err := png.DecodeConfig(f); err != nil || cfg.Width != 64 || cfg.Height != 64 {
		t.Errorf("%s: not a 64x64 PNG: %v %+v", outFile, err, cfg)
	}

	// The library example, built as the README says: a module of its own
	// next to the clone, with a replace pointing at it. -mod=mod stands in
	// for the README's go mod tidy, which would need the network; the
	// clone's go.sum covers every module the build needs.
	example := codeBlocks(string(readme), "## Library", "go")
	if !strings.Contains(example, "package main") {
		t.Fatalf("README library example not found")
	}
	app := filepath.Join(filepath.Dir(clone), "myapp")
	if err := os.MkdirAll(app, 0o755); err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(clone, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	goVersion := "1.26"
	if gm, err := os.ReadFile(filepath.Join(clone, "go.mod")); err == nil {
		for _, l := range strings.Split(string(gm), "\n") {
			if v, ok := strings.CutPrefix(l, "go "); ok {
				goVersion = strings.TrimSpace(v)
			}
		}
	}
	for name, data := range map[string]string{
		"main.go": example,
		"go.sum":  string(sum),
		"go.mod": "module example.com/myapp\n\ngo " + goVersion + "\n\nrequire github.com/zimage/zimage v0.0.0\n\n" +
			"replace github.com/zimage/zimage => ../zimage\n",
	} {
		if err := os.WriteFile(filepath.Join(app, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd = exec.CommandContext(ctx, "go", "build", "-o", os.DevNull, ".")
	cmd.Dir, cmd.Env = app, append(env, "GOSUMDB=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build (README library example): %v\n%s", err, out)
	}
}

// codeBlocks returns the first fenced code block of language lang after the
// heading line that starts with heading.
func codeBlocks(md, heading, lang string) string {
	var b bytes.Buffer
	sc := bufio.NewScanner(strings.NewReader(md))
	found, in := false, false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !found:
			found = strings.HasPrefix(line, heading)
		case !in && line == "```"+lang:
			in = true
		case in && line == "```":
			return b.String()
		case in:
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
