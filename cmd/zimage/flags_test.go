package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestSubcommandFlags: the subcommands built on newFlagSet/parseFlags
// print their usage and flags for -h (exit 0) and take an unknown flag as
// a usage error (exit 2).
func TestSubcommandFlags(t *testing.T) {
	for _, cmd := range []string{"bench", "convert", "doctor", "inspect", "pull", "tokenize", "version"} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{cmd, "-h"}, &stdout, &stderr)
		if code != 0 || !strings.HasPrefix(stderr.String(), "usage: zimage "+cmd) || !strings.Contains(stderr.String(), "\n  -") {
			t.Errorf("%s -h: exit %d, stderr %q", cmd, code, stderr.String())
		}
		stderr.Reset()
		code = run(context.Background(), []string{cmd, "--no-such-flag"}, &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), "flag provided but not defined: -no-such-flag") {
			t.Errorf("%s --no-such-flag: exit %d, stderr %q", cmd, code, stderr.String())
		}
	}
}
