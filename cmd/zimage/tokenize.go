package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/zimage/zimage/tokenizer"
)

func init() {
	register("tokenize", "print the Qwen3 token ids of prompts", runTokenize)
}

// tokenizeStdin is where --jsonl reads prompts from (tests replace it).
var tokenizeStdin io.Reader = os.Stdin

func runTokenize(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("tokenize", stderr,
		"usage: zimage tokenize [--tokenizer PATH] [--chat] [--jsonl] [PROMPT...]",
		"Prints the token ids of each prompt as a JSON array, one line per prompt.")
	tokPath := fs.String("tokenizer", os.Getenv("ZIMAGE_MODEL"), "model directory, tokenizer directory or tokenizer.json; default $ZIMAGE_MODEL")
	chat := fs.Bool("chat", false, fmt.Sprintf("encode the Z-Image form: chat template, truncated to %d tokens", tokenizer.MaxSequenceLength))
	jsonl := fs.Bool("jsonl", false, "read prompts from stdin, one JSON string per line, instead of arguments")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	usageErr := func(msg string) int {
		fmt.Fprintf(stderr, "zimage tokenize: %s\n", msg)
		fs.Usage()
		return 2
	}
	switch {
	case *tokPath == "":
		return usageErr("no tokenizer: pass --tokenizer PATH (a model or tokenizer directory, or tokenizer.json) or set ZIMAGE_MODEL")
	case *jsonl && fs.NArg() > 0:
		return usageErr("--jsonl reads prompts from stdin; do not also give them as arguments")
	case !*jsonl && fs.NArg() == 0:
		return usageErr("no prompt given (pass prompts as arguments, or --jsonl and lines on stdin)")
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "zimage tokenize: %s\n", strings.Join(strings.Fields(err.Error()), " "))
		return 1
	}

	tok, err := tokenizer.Load(*tokPath)
	if err != nil {
		return fail(err)
	}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	var line []byte
	encode := func(what, prompt string) error {
		var ids []int
		var err error
		if *chat {
			var truncated bool
			ids, truncated, err = tok.EncodeZImage(prompt, 0)
			if err == nil && truncated {
				full, _ := tok.Encode(tokenizer.ChatTemplate(prompt))
				fmt.Fprintf(stderr, "zimage tokenize: %s: truncated to %d of %d tokens (the end of the chat template is lost)\n", what, len(ids), len(full))
			}
		} else {
			ids, err = tok.Encode(prompt)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		line = append(line[:0], '[')
		for i, id := range ids {
			if i > 0 {
				line = append(line, ',')
			}
			line = strconv.AppendInt(line, int64(id), 10)
		}
		line = append(line, "]\n"...)
		_, err = out.Write(line)
		return err
	}

	if !*jsonl {
		for i, p := range fs.Args() {
			if err := encode(fmt.Sprintf("prompt %d", i+1), p); err != nil {
				return fail(err)
			}
		}
		if err := out.Flush(); err != nil {
			return fail(err)
		}
		return 0
	}
	sc := bufio.NewScanner(tokenizeStdin)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	for n := 1; sc.Scan(); n++ {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		b := sc.Bytes()
		if len(strings.TrimSpace(string(b))) == 0 {
			continue
		}
		var prompt string
		if err := json.Unmarshal(b, &prompt); err != nil {
			return fail(fmt.Errorf("stdin line %d: not a JSON string: %w", n, err))
		}
		if err := encode(fmt.Sprintf("stdin line %d", n), prompt); err != nil {
			return fail(err)
		}
	}
	if err := sc.Err(); err != nil {
		return fail(fmt.Errorf("stdin: %w", err))
	}
	if err := out.Flush(); err != nil {
		return fail(err)
	}
	return 0
}
