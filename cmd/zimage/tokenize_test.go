package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zimage/zimage/internal/fixturefs"
)

func runTokenizeCmd(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	if stdin != "" {
		old := tokenizeStdin
		tokenizeStdin = strings.NewReader(stdin)
		defer func() { tokenizeStdin = old }()
	}
	var out, errOut bytes.Buffer
	code = run(context.Background(), append([]string{"tokenize"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestTokenizeCommand(t *testing.T) {
	model := fixturefs.Path(t, "fixtures/tiny-z-image-turbo")
	tokJSON := filepath.Join(model, "tokenizer", "tokenizer.json")
	const hello = "[151644,872,198,9707,151645,198,151644,77091,198]\n"

	for _, c := range []struct {
		name        string
		stdin       string
		args        []string
		code        int
		out, errSub string
	}{
		{"plain", "", []string{"--tokenizer", tokJSON, "Hello", "a cat"}, 0, "[9707]\n[64,8251]\n", ""},
		{"chat", "", []string{"--tokenizer", model, "--chat", "Hello"}, 0, hello, ""},
		{"empty chat", "", []string{"--tokenizer", model, "--chat", ""}, 0, "[151644,872,198,151645,198,151644,77091,198]\n", ""},
		{"jsonl", "\"Hello\"\n\n\"<|im_start|>\"\n", []string{"--tokenizer", model, "--jsonl"}, 0, "[9707]\n[151644]\n", ""},
		{"jsonl chat", "\"Hello\"\n", []string{"--tokenizer", model, "--jsonl", "--chat"}, 0, hello, ""},
		{"truncated", "", []string{"--tokenizer", model, "--chat", strings.Repeat("a cat ", 300)}, 0, "", "truncated to 512 of 609 tokens"},
		{"bad json", "\"ok\"\nnot json\n", []string{"--tokenizer", model, "--jsonl"}, 1, "[562]\n", "stdin line 2: not a JSON string"},
		{"bad utf8", "", []string{"--tokenizer", model, "ok", "a\xffb"}, 1, "[562]\n", "prompt 2: tokenizer: encode: byte 1: invalid UTF-8"},
		{"bad path", "", []string{"--tokenizer", filepath.Join(model, "nope"), "x"}, 1, "", "nope"},
		{"no prompt", "", []string{"--tokenizer", model}, 2, "", "no prompt"},
		{"jsonl and args", "", []string{"--tokenizer", model, "--jsonl", "x"}, 2, "", "stdin"},
	} {
		code, out, errOut := runTokenizeCmd(t, c.stdin, c.args...)
		if code != c.code {
			t.Errorf("%s: exit %d, want %d (stderr %q)", c.name, code, c.code, errOut)
		}
		if c.name == "truncated" {
			if strings.Count(out, ",") != 511 {
				t.Errorf("%s: want 512 ids, got %q…", c.name, out[:min(len(out), 80)])
			}
		} else if out != c.out {
			t.Errorf("%s: stdout %q, want %q", c.name, out, c.out)
		}
		if !strings.Contains(errOut, c.errSub) {
			t.Errorf("%s: stderr %q does not contain %q", c.name, errOut, c.errSub)
		}
		if c.code == 1 && strings.Count(errOut, "\n") != 1 {
			t.Errorf("%s: stderr is not one line: %q", c.name, errOut)
		}
	}
}

func TestTokenizeDefaultModel(t *testing.T) {
	t.Setenv("ZIMAGE_MODEL", fixturefs.Path(t, "fixtures/tiny-z-image-turbo"))
	if code, out, errOut := runTokenizeCmd(t, "", "Hello"); code != 0 || out != "[9707]\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	t.Setenv("ZIMAGE_MODEL", "")
	if code, _, errOut := runTokenizeCmd(t, "", "Hello"); code != 2 || !strings.Contains(errOut, "--tokenizer") {
		t.Fatalf("no model: exit %d, stderr %q", code, errOut)
	}
}
