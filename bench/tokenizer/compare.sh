#!/usr/bin/env bash
# Compares package tokenizer with the Hugging Face Rust `tokenizers` library
# (through its Node binding, @anush008/tokenizers, which made the golden ids):
#   1. ids: both encode every golden text and chat text; they must be equal;
#   2. load time of tokenizer.json;
#   3. single-threaded encode throughput over the golden corpus, RUNS times each
#      (median reported): Go cold (empty BPE cache per pass) and warm, Rust warm.
# Needs go, node and npm (the npm registry); installs into a temp dir only.
#   bench/tokenizer/compare.sh [RUNS]
set -euo pipefail
runs=${1:-3}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$root"

go build -o "$work/gocheck" ./bench/tokenizer/gocheck
{ read -r tokjson; read -r corpus; } < <("$work/gocheck" paths)
(cd "$work" && npm init -y >/dev/null && npm install --no-save --silent @anush008/tokenizers@0.6.0 >/dev/null)
cp "$here/rust_ref.js" "$work/"
export UV_THREADPOOL_SIZE=1 # the binding runs encode on libuv's pool: one thread

echo "== ids (Go vs Rust reference)"
"$work/gocheck" texts >"$work/texts.jsonl"
node "$work/rust_ref.js" ids "$tokjson" <"$work/texts.jsonl" >"$work/ids.jsonl"
"$work/gocheck" compare "$work/ids.jsonl"

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "== Go (go test -bench, one goroutine), $runs runs"
go test -run '^$' -bench 'BenchmarkEncodeCorpus|BenchmarkLoad$' -benchtime 2s -count "$runs" ./tokenizer/ | tee "$work/go.txt" | grep -E '^Benchmark'
for v in cold warm; do
	m=$(grep "EncodeCorpus/$v" "$work/go.txt" | awk '{for (i=1;i<=NF;i++) if ($i=="tokens/s") print $(i-1)}' | median)
	echo "go $v: median $m tokens/s"
done
m=$(grep '^BenchmarkLoad' "$work/go.txt" | awk '{print $3/1e6}' | median)
echo "go Load: median $m ms"

echo "== Rust tokenizers 0.22 via Node (sequential awaits, warm cache), $runs runs"
for i in $(seq "$runs"); do
	node "$work/rust_ref.js" bench "$tokjson" "$corpus" 50
done | tee "$work/rust.txt"
m=$(sed -E 's/.*"tokens_per_s":([0-9]+).*/\1/' "$work/rust.txt" | median)
l=$(sed -E 's/.*"load_ms":([0-9.]+).*/\1/' "$work/rust.txt" | median)
echo "rust warm: median $m tokens/s; load: median $l ms"
echo "(machine: $(nproc) cores, shared with other work: $(cut -d' ' -f1-3 /proc/loadavg) load average)"
