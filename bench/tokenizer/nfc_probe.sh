#!/usr/bin/env bash
# Regenerates tokenizer/nfc_table.go and tokenizer/testdata/nfc_cases.jsonl:
# the code points whose NFC differs between Go's tables and the reference
# tokenizer's (see tokenizer/internal/nfcgen). Needs node and npm.
#   bench/tokenizer/nfc_probe.sh [TOKENIZER_JSON]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tokjson=${1:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ -z "$tokjson" ]]; then
	# The materialized copy of testdata/tokenizer/qwen3/tokenizer.json.
	zstd -dq "$root/testdata/tokenizer/qwen3/tokenizer.json.zst" -o "$work/tokenizer.json"
	tokjson=$work/tokenizer.json
fi
(cd "$work" && npm init -y >/dev/null && npm install --no-save --silent @anush008/tokenizers@0.6.0 >/dev/null)
cp "$here/rust_ref.js" "$work/"
cd "$root/tokenizer"
go run ./internal/nfcgen probes >"$work/probes.jsonl"
UV_THREADPOOL_SIZE=1 node "$work/rust_ref.js" decode "$tokjson" <"$work/probes.jsonl" >"$work/ref.jsonl"
go run ./internal/nfcgen -cases testdata/nfc_cases.jsonl table "$work/probes.jsonl" "$work/ref.jsonl" >nfc_table.go
