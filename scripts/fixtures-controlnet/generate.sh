#!/usr/bin/env bash
# Regenerate testdata/fixtures/e2e_controlnet/ with upstream diffusers (ZImageControlNetPipeline,
# ZImageControlNetInpaintPipeline, ZImageControlNetModel) on the tiny model, using the shared
# fixture generator (shared/tools/zref, see its README for the Debian torch 1.13 setup and the
# upstream snapshots) with this folder's two patches:
#   tiny_configs.patch        the public set's `controlnet` entry (a Union-2.1-style tiny ControlNet)
#   fixtures_controlnet.patch the no-control run must match e2e/ within the PNG/latent criteria
#                             instead of bitwise (e2e/ was made on another CPU; OpenBLAS kernels differ)
# and modes.py (this folder): one upstream forward of the Union v1 and 2.0 block arrangements.
#
#   ZREF_UPSTREAM=... ZREF_NODE_MODULES=... scripts/fixtures-controlnet/generate.sh SCRATCH [SHARED]
#
# SCRATCH (outside the repo) receives the patched generator copy and the full output; the
# model directory it writes must be byte-identical to testdata/fixtures/tiny-z-image-turbo
# (checked); e2e_controlnet/ is then copied to testdata/ (files >= 64 KiB as NAME.zst).
set -euo pipefail
: "${ZREF_UPSTREAM:?}" "${ZREF_NODE_MODULES:?}"
scratch=${1:?scratch dir}
shared=${2:-$(cd "$(dirname "$0")/../../.." && pwd)/shared}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
rm -rf "$scratch/zref" "$scratch/out"
mkdir -p "$scratch/out"
cp -r "$shared/tools/zref" "$scratch/zref"
(cd "$scratch/zref" && patch -p1 < "$here/tiny_configs.patch" && patch -p1 < "$here/fixtures_controlnet.patch")
# the no-control reference runs are compared with e2e/
cp -r "$shared/fixtures/e2e" "$scratch/out/e2e"
(cd "$scratch/zref" && /usr/bin/python3 make_fixtures.py --set public --out "$scratch/out" \
    --tokenizer-dir "$shared/tokenizer/qwen3" --only controlnet)
diff -r "$scratch/out/tiny-z-image-turbo" "$shared/fixtures/tiny-z-image-turbo"
# the Union v1 / 2.0 block arrangements (one forward each), see modes.py
cp "$here/modes.py" "$scratch/zref/"
(cd "$scratch/zref" && /usr/bin/python3 modes.py --model-dir "$scratch/out/tiny-z-image-turbo" \
    --out "$scratch/out/e2e_controlnet/modes")
dst=$repo/testdata/fixtures/e2e_controlnet
rm -rf "$dst"
mkdir -p "$dst"
(cd "$scratch/out/e2e_controlnet" && find . -type f | sort) | while read -r f; do
  mkdir -p "$dst/$(dirname "$f")"
  case $f in ./controlnet_single_file.safetensors) continue ;; esac  # a byte copy of controlnet/'s file
  if [ "$(stat -c %s "$scratch/out/e2e_controlnet/$f")" -ge 65536 ]; then
    zstd -q -19 "$scratch/out/e2e_controlnet/$f" -o "$dst/$f.zst"
  else
    cp "$scratch/out/e2e_controlnet/$f" "$dst/$f"
  fi
done
echo "wrote $dst"
