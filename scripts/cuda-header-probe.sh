#!/usr/bin/env bash
# Regenerates cuda/driver/testdata/cuda_h_values.txt: the enum values, type
# sizes and struct offsets of cuda.h / cublasLt.h that the Go bindings mirror.
# Needs gcc and the CUDA headers (Debian: nvidia-cuda-toolkit). The Go tests
# compare against the committed file, so they run without the toolkit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src=$root/cuda/driver/testdata/header_probe.c
out=$root/cuda/driver/testdata/cuda_h_values.txt
inc=${CUDA_INCLUDE:-/usr/include}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gcc -std=c11 -Wall -I"$inc" -o "$tmp/probe" "$src"
"$tmp/probe" > "$out"
echo "wrote $out ($(wc -l < "$out") values)"
