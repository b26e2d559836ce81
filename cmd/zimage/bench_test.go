package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
)

// TestBenchModel runs `zimage bench` on the fixture model on the CPU.
func TestBenchModel(t *testing.T) {
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"bench", "--model", model, "--device", "cpu", "--size", "64x64,96x64",
		"--steps", "2", "--runs", "2", "--warmup", "1"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	t.Log("\n" + out)
	for _, want := range []string{"device: cpu", "text encoder", "DiT step", "VAE", "total", "peak memory",
		"64x64 ", "96x64 ", "64x64 steps (ms): ", "96x64 plan: ", "text encoder loaded then released", "medians of 2 run(s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// Two step figures per size.
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "steps (ms):") && len(strings.Fields(strings.SplitN(l, ":", 2)[1])) != 2 {
			t.Errorf("want 2 step times: %q", l)
		}
	}
}

// TestBenchSynthetic runs the tiny synthetic model on the CPU, with a
// budget small enough to tile the VAE.
func TestBenchSynthetic(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"bench", "--synthetic", "--config", "tiny", "--device", "cpu",
		"--size", "128x128", "--steps", "2", "--runs", "1", "--warmup", "0", "--tokens", "20", "--budget", "6MB"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	t.Log("\n" + out)
	for _, want := range []string{"synthetic tiny config", "128x128 ", "VAE tiled", "n/a (host)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestBenchUsage(t *testing.T) {
	t.Setenv("ZIMAGE_MODEL", "")
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"bench"}, 2, "--synthetic is required"},
		{[]string{"bench", "--synthetic", "--model", "x"}, 2, "exclude each other"},
		{[]string{"bench", "--synthetic", "--size", "100x100"}, 2, "multiples of 16"},
		{[]string{"bench", "--synthetic", "--config", "huge"}, 2, "want turbo or tiny"},
		{[]string{"bench", "--synthetic", "--budget", "lots"}, 2, "--budget"},
		{[]string{"bench", "--synthetic", "--steps", "0"}, 2, "--steps"},
		{[]string{"bench", "--synthetic", "--device", "cpu"}, 2, "takes hours"},
		{[]string{"bench", "--model", "/nonexistent/model", "--device", "cpu"}, 1, "zimage bench:"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), c.args, &stdout, &stderr); code != c.code || !strings.Contains(stderr.String(), c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, stderr.String(), c.code, c.msg)
		}
	}
	for in, want := range map[string]uint64{"": 0, "1000": 1000, "15.5GB": 15.5e9, "2GiB": 2 << 30, "512 MiB": 512 << 20} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v", in, got, err)
		}
	}
}

// TestMemoryBudgetFlags: generate and serve take --memory-budget.
func TestMemoryBudgetFlags(t *testing.T) {
	for _, cmd := range []string{"generate", "serve"} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{cmd, "--memory-budget", "lots"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--memory-budget") {
			t.Errorf("%s: exit %d, stderr %q", cmd, code, stderr.String())
		}
	}
	// A budget the fixture model cannot fit in fails the request clearly.
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"generate", "--model", model, "--device", "cpu", "--prompt", "x",
		"--width", "64", "--height", "64", "--steps", "1", "--memory-budget", "1000", "--out", t.TempDir() + "/x.png"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "does not fit in device memory") {
		t.Errorf("tiny budget: exit %d, stderr %q", code, stderr.String())
	}
}
