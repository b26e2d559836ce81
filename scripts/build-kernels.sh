#!/usr/bin/env bash
# Builds cuda/kernels/kernels.fatbin from cuda/kernels/all.cu with the pinned
# toolchain (Debian nvidia-cuda-toolkit 11.8.89, host compiler gcc-11):
# sm_80/86/89/90 cubins + compute_80 PTX, ptxas warnings for spills and local
# memory as errors. Also writes kernels.manifest (toolchain, flags, sha256 of
# every source and of this script), kernels.resources.txt (per-kernel
# registers/shared/stack from cuobjdump) and kernels.sigs (each kernel's PTX
# parameter list, checked against the Go launch table by go test).
#
# Usage: scripts/build-kernels.sh [outdir]   (default: cuda/kernels; run by
# `go generate ./cuda/...`). Deterministic: same inputs give the same bytes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src=$root/cuda/kernels
out=${1:-$src}
mkdir -p "$out"
command -v nvcc >/dev/null || { echo "build-kernels: nvcc not found (apt-get install nvidia-cuda-toolkit)" >&2; exit 1; }

FLAGS=(-O3 -std=c++17 -Xptxas -warn-spills,-warn-lmem-usage,-Werror)
# Each cubin is compiled from its own arch's PTX; compute_80 PTX is kept for
# the driver to JIT on newer GPUs.
GENCODE=(-gencode arch=compute_80,code=sm_80 -gencode arch=compute_86,code=sm_86
	-gencode arch=compute_89,code=sm_89 -gencode arch=compute_90,code=sm_90
	-gencode arch=compute_80,code=compute_80)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$src"  # relative paths only, so nothing machine-specific lands in the output
nvcc -fatbin "${FLAGS[@]}" "${GENCODE[@]}" -o "$tmp/kernels.fatbin" all.cu
cp "$tmp/kernels.fatbin" "$out/kernels.fatbin"

# Resource report: registers, shared memory, stack per kernel and arch.
cuobjdump -res-usage "$tmp/kernels.fatbin" 2>/dev/null |
	awk '/^arch = /{arch=$3} /Function /{fn=$2; sub(":$","",fn)} /REG:/{print arch, fn, $0}' |
	sed 's/  */ /g' | sort > "$out/kernels.resources.txt"

# The tensor-core kernels must really use tensor cores (HMMA) and
# asynchronous copies (LDGSTS, from cp.async) on every arch.
for a in 80 86 89 90; do
	for k in $(cuobjdump -sass -arch "sm_$a" "$tmp/kernels.fatbin" | awk '/Function : zk_tc_/{print $3}'); do
		sass=$(cuobjdump -sass -arch "sm_$a" -fun "$k" "$tmp/kernels.fatbin")
		for op in HMMA.16816.F32.BF16 LDGSTS; do
			n=$(grep -c "$op" <<<"$sass" || true)
			[ "$n" -gt 0 ] || { echo "build-kernels: $k has no $op on sm_$a" >&2; exit 1; }
			echo "sm_$a $k $op:$n" >> "$out/kernels.resources.txt"
		done
	done
done

# Kernel signatures from the embedded PTX: "name kinds", kinds one letter per
# parameter: p (.u64), i (.u32/.s32), f (.f32).
cuobjdump -ptx "$tmp/kernels.fatbin" | awk '
	/^\.visible \.entry/ { name=$3; sub(/\(.*/, "", name); sig=""; inent=1; next }
	inent && /\.param/ {
		t=$2
		if (t==".u64"||t==".s64") sig=sig "p"; else if (t==".u32"||t==".s32") sig=sig "i"; else if (t==".f32") sig=sig "f"; else sig=sig "?"
	}
	inent && /^\)/ { print name, sig; inent=0 }
' | sort > "$out/kernels.sigs"

{
	echo "nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\), V\([0-9.]*\).*/\2/p')"
	echo "host $(gcc-11 --version 2>/dev/null | head -1 || echo unknown)"
	echo "flags ${FLAGS[*]} ${GENCODE[*]}"
	for f in $(ls *.cu *.cuh | sort); do echo "sha256 $f $(sha256sum "$f" | cut -d' ' -f1)"; done
	echo "sha256 scripts/build-kernels.sh $(sha256sum "$root/scripts/build-kernels.sh" | cut -d' ' -f1)"
	echo "fatbin $(sha256sum "$out/kernels.fatbin" | cut -d' ' -f1) $(stat -c %s "$out/kernels.fatbin")"
} > "$out/kernels.manifest"
echo "build-kernels: $(wc -l < "$out/kernels.sigs") kernels, $(stat -c %s "$out/kernels.fatbin") bytes -> $out"
