package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/zimage/zimage/zimage"
)

// TestSelfTestFlag: generate and bench take --selftest auto|force|off (a
// bad value is a usage error, exit 2); generate keeps the mode for Load.
func TestSelfTestFlag(t *testing.T) {
	for _, cmd := range [][]string{
		{"generate", "--prompt", "x", "--out", "x.png"},
		{"bench", "--synthetic", "--config", "tiny"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append(cmd, "--selftest", "sometimes"), &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), `invalid value "sometimes" for flag -selftest: want auto, force or off`) {
			t.Errorf("%s --selftest sometimes: exit %d, stderr %q", cmd[0], code, stderr.String())
		}
	}
	for _, v := range []string{"auto", "force", "off"} {
		g := newGenerateArgs(&bytes.Buffer{})
		if err := g.fs.Parse([]string{"--selftest", v}); err != nil || g.selfTest.mode != zimage.SelfTestMode(v) {
			t.Errorf("--selftest %s: mode %q, %v", v, g.selfTest.mode, err)
		}
	}
	if g := newGenerateArgs(&bytes.Buffer{}); g.selfTest.mode != zimage.SelfTestDefault {
		t.Errorf("default mode %q", g.selfTest.mode)
	}
}
