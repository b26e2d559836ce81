package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/zimage/zimage/weights"
)

func init() {
	register("convert", "convert a checkpoint's float tensors to bf16, f16 or f32", runConvert)
}

func runConvert(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("convert", stderr,
		"usage: zimage convert [--to bf16|f16|f32] [--shard-size SIZE] [-v] SRC DST",
		"       zimage convert --to q8_0|q6_k|q5_k|q4_k|q4_0|... [--component C] [-v] SRC DST.gguf",
		"A .gguf SRC converted to bf16|f16|f32 is dequantized tensor by tensor (names kept as in the GGUF).",
		"SRC is a .safetensors file, a *.safetensors.index.json or a component directory;",
		"DST is the output .safetensors file (with --shard-size: the base name of the shards and index).")
	to := fs.String("to", "bf16", "target dtype: bf16, f16 or f32; or a GGUF type q8_0, q6_k, q5_k, q4_k, q4_0, ... (writes DST.gguf)")
	component := fs.String("component", "", "with a GGUF type: the component to write, transformer or text_encoder (default: the one SRC holds, the transformer of a model directory)")
	shard := fs.String("shard-size", "", "split the output into shards of at most this size (e.g. 5GB, 500MiB); default one file")
	verbose := fs.Bool("v", false, "log every tensor to stderr")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return 2
	}
	if qt, err := weights.ParseQuantType(*to); err == nil || strings.HasSuffix(strings.ToLower(fs.Arg(1)), ".gguf") {
		return runConvertGGUF(ctx, fs.Arg(0), fs.Arg(1), *to, qt, *component, *verbose, stdout, stderr) // convert_gguf.go
	}
	dt, ok := parseTargetDType(*to)
	if !ok {
		fmt.Fprintf(stderr, "zimage convert: --to %q: want bf16, f16 or f32\n", *to)
		return 2
	}
	opts := []weights.ConvertOption{weights.WithContext(ctx)}
	if *shard != "" {
		n, err := parseByteSize(*shard)
		if err != nil {
			fmt.Fprintf(stderr, "zimage convert: --shard-size: %v\n", err)
			return 2
		}
		opts = append(opts, weights.WithShardSize(n))
	}
	if *verbose {
		opts = append(opts, weights.WithLogger(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	}
	src, dst := fs.Arg(0), fs.Arg(1)
	if err := weights.Convert(src, dst, dt, opts...); err != nil {
		fmt.Fprintf(stderr, "zimage convert: %s\n", strings.Join(strings.Fields(err.Error()), " "))
		return 1
	}
	out := dst
	if _, err := os.Stat(dst); err != nil {
		out = dst + ".index.json" // sharded output
	}
	s, err := weights.Open(out)
	if err != nil {
		fmt.Fprintf(stderr, "zimage convert: reading back %s: %v\n", out, err)
		return 1
	}
	defer s.Close()
	var bytes int64
	for _, n := range s.Names() {
		t, _ := s.Tensor(n)
		bytes += int64(len(t.Data))
	}
	fmt.Fprintf(stdout, "wrote %s: %d tensors in %d file(s), %s bytes of %s data\n", out, s.Len(), len(s.Files()), groupDigits(bytes), dt)
	return 0
}

func parseTargetDType(s string) (weights.DType, bool) {
	switch strings.ToLower(s) {
	case "bf16", "bfloat16":
		return weights.BF16, true
	case "f16", "fp16", "float16", "half":
		return weights.F16, true
	case "f32", "fp32", "float32", "float":
		return weights.F32, true
	}
	return weights.Invalid, false
}

// parseByteSize reads sizes like "5GB" (10^9), "5GiB" (2^30), "500MB",
// "123" (bytes).
func parseByteSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"TIB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
	}
	u := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, x := range units {
		if strings.HasSuffix(u, x.suffix) {
			u, mult = strings.TrimSpace(strings.TrimSuffix(u, x.suffix)), x.mult
			break
		}
	}
	v, err := strconv.ParseFloat(u, 64)
	if err != nil || !(v > 0) || v*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("%q is not a positive size like 5GB or 500MiB", s)
	}
	return int64(v * float64(mult)), nil
}
