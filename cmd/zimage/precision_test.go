package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
)

// TestPrecisionFlag: generate and bench reject an unknown --precision, and
// generate runs the fixture model in bf16.
func TestPrecisionFlag(t *testing.T) {
	for _, args := range [][]string{{"generate"}, {"bench", "--synthetic", "--config", "tiny"}} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), append(args, "--precision", "int4"), &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--precision: ") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr.String())
		}
	}
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	out := t.TempDir() + "/x.png"
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"generate", "--model", model, "--device", "cpu", "--prompt", "x",
		"--width", "64", "--height", "64", "--steps", "1", "--precision", "bf16", "--out", out}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("bf16 generate: exit %d, stderr %q", code, stderr.String())
	}
	if _, err := os.Stat(out); err != nil {
		t.Fatal(err)
	}
}
