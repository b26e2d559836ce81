#!/bin/sh
# Regenerates testdata/gguf/kquant/ with ggml's C reference quantizers.
#
#   testdata/generators/kquant_ref/generate.sh UPSTREAM [OUTDIR]
#
# UPSTREAM is a checkout of github.com/ggml-org/ggml (src/ggml-quants.c) or
# of github.com/ggml-org/llama.cpp (ggml/src/ggml-quants.c); its
# ggml-quants.c is compiled together with kquant_ref.c (nothing upstream is
# copied into this repository). OUTDIR defaults to testdata/gguf/kquant.
# With KQUANT_REF_BIN=PATH the program is kept at PATH (see below).
# Plain C float arithmetic as in a default x86-64 build of ggml-base: -O2,
# no FMA contraction, no fast-math; NDEBUG as in release builds (some rows
# feed nearest_int values outside its asserted range, see testdata/README.md).
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
	echo "usage: $0 UPSTREAM [OUTDIR]" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
up=$(cd "$1" && pwd)
out=${2:-$repo/testdata/gguf/kquant}
if [ -f "$up/ggml/src/ggml-quants.c" ]; then
	up=$up/ggml
fi
if [ ! -f "$up/src/ggml-quants.c" ]; then
	echo "$0: no src/ggml-quants.c under $1" >&2
	exit 1
fi
CC=${CC:-gcc}
CFLAGS="-std=gnu11 -O2 -ffp-contract=off -fno-fast-math -DNDEBUG"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
$CC $CFLAGS -I"$up/include" -I"$up/src" -I"$up/src/ggml-cpu" \
	"$here/kquant_ref.c" "$up/src/ggml-quants.c" -lm -o "$tmp/kquant_ref"
mkdir -p "$out"
"$tmp/kquant_ref" "$out"
# KQUANT_REF_BIN=PATH keeps the program, for ZIMAGE_KQUANT_REF=PATH go test ./weights
if [ -n "${KQUANT_REF_BIN:-}" ]; then
	cp "$tmp/kquant_ref" "$KQUANT_REF_BIN"
fi

# Files of 64 KiB or more are stored zstd-compressed (testdata/README.md).
for f in "$out"/*; do
	case $f in *.zst) continue ;; esac
	if [ "$(wc -c <"$f")" -ge 65536 ]; then
		zstd -q -19 -f --rm "$f" -o "$f.zst"
	fi
done

echo "upstream: $(git -C "$up" rev-parse HEAD 2>/dev/null || echo "$up (not a git checkout)")"
echo "compiler: $($CC --version | head -n 1); flags: $CFLAGS"
