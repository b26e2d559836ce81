// Command gocheck is the Go side of bench/tokenizer/compare.sh.
//
//	gocheck paths             print the materialized tokenizer.json and golden corpus paths
//	gocheck texts             print every corpus text, then every chat text, one JSON string per line
//	gocheck compare IDS       compare the reference ids of those texts (one JSON array per line) with ours
//	gocheck load [N]          time tokenizer.Load N times (default 5) and print the median
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/zimage/zimage/internal/fixturefs"
	"github.com/zimage/zimage/tokenizer"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gocheck:", err)
		os.Exit(1)
	}
}

func paths() (tokJSON, corpus string, err error) {
	dir, err := fixturefs.Materialize("tokenizer")
	if err != nil {
		return "", "", err
	}
	return dir + "/qwen3/tokenizer.json", dir + "/golden_public.jsonl", nil
}

// texts returns the corpus texts followed by their chat texts.
func texts(corpus string) ([]string, error) {
	f, err := os.Open(corpus)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var plain, chat []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var r struct {
			Text     string `json:"text"`
			ChatText string `json:"chat_text"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, err
		}
		plain = append(plain, r.Text)
		chat = append(chat, r.ChatText)
	}
	return append(plain, chat...), sc.Err()
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: gocheck paths | texts | compare IDS | load [N]")
	}
	tokJSON, corpus, err := paths()
	if err != nil {
		return err
	}
	switch args[0] {
	case "paths":
		fmt.Println(tokJSON)
		fmt.Println(corpus)
		return nil
	case "texts":
		ts, err := texts(corpus)
		if err != nil {
			return err
		}
		w := bufio.NewWriter(os.Stdout)
		for _, t := range ts {
			b, _ := json.Marshal(t)
			w.Write(append(b, '\n'))
		}
		return w.Flush()
	case "compare":
		if len(args) != 2 {
			return fmt.Errorf("usage: gocheck compare IDS")
		}
		ts, err := texts(corpus)
		if err != nil {
			return err
		}
		tok, err := tokenizer.Load(tokJSON)
		if err != nil {
			return err
		}
		f, err := os.Open(args[1])
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<24)
		n, bad := 0, 0
		for ; sc.Scan(); n++ {
			var want []int
			if err := json.Unmarshal(sc.Bytes(), &want); err != nil {
				return err
			}
			if n >= len(ts) {
				return fmt.Errorf("%s has more lines than the %d texts", args[1], len(ts))
			}
			got, err := tok.Encode(ts[n])
			if err != nil || !slices.Equal(got, want) {
				bad++
				fmt.Printf("differ: %q\n  go   %v (%v)\n  rust %v\n", ts[n], got, err, want)
			}
		}
		if n != len(ts) {
			return fmt.Errorf("%s has %d lines, want %d", args[1], n, len(ts))
		}
		fmt.Printf("ids: %d texts (plain and chat), %d differ\n", n, bad)
		if bad > 0 {
			return fmt.Errorf("ids differ")
		}
		return sc.Err()
	case "load":
		n := 5
		if len(args) > 1 {
			if n, err = strconv.Atoi(args[1]); err != nil || n < 1 {
				return fmt.Errorf("bad count %q", args[1])
			}
		}
		var ds []time.Duration
		for i := 0; i < n; i++ {
			start := time.Now()
			if _, err := tokenizer.Load(tokJSON); err != nil {
				return err
			}
			ds = append(ds, time.Since(start))
		}
		slices.Sort(ds)
		fmt.Printf(`{"impl":"go","load_ms":%.1f,"runs":%d}`+"\n", float64(ds[n/2].Microseconds())/1000, n)
		return nil
	}
	return fmt.Errorf("unknown command %q", args[0])
}
