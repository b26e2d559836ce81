package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestPackBudgetFlag: generate rejects a bad --pack-budget with a usage
// error and parses the good ones ("" the default, "0" none, sizes).
func TestPackBudgetFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"generate", "--pack-budget", "lots", "--prompt", "x", "--out", "x.png"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--pack-budget: ") {
		t.Errorf("bad --pack-budget: exit %d, stderr %q", code, stderr.String())
	}
	for s, want := range map[string]int64{"": -1, "0": 0, "4GiB": 4 << 30, "1.5GB": 1.5e9} {
		if got, err := parsePackBudget(s); err != nil || got != want {
			t.Errorf("parsePackBudget(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
}
