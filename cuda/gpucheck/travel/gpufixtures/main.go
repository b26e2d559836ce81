// Command gpufixtures reads tracked file paths (relative to the repository
// root, one a line, as `git ls-files` prints them) on stdin and prints the
// testdata files the GPU tests do not need (-unneeded) or need (default).
// scripts/gpu-travel.sh uses it; the list itself is travel.Patterns.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/zimage/zimage/cuda/gpucheck/travel"
)

func main() {
	unneeded := flag.Bool("unneeded", false, "print the testdata files the GPU tests do not read")
	flag.Parse()
	sc := bufio.NewScanner(os.Stdin)
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for sc.Scan() {
		f := sc.Text()
		rel, ok := strings.CutPrefix(f, "testdata/")
		if !ok {
			continue
		}
		if travel.Needed(rel) != *unneeded {
			fmt.Fprintln(w, f)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "gpufixtures:", err)
		os.Exit(1)
	}
}
