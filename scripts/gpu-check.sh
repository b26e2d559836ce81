#!/usr/bin/env bash
# GPU check for the CUDA backend, meant for ONE call on a lent H100/H200
# (no network there, ~8 minutes). Every step is time-boxed; a failing step
# does not stop the others; a summary table comes last and is also written to
# $OUT/gpu-check.txt (full log: $OUT/gpu-check.log) when $OUT is set.
#
#   scripts/gpu-check.sh --build   # here, with Go and the module cache: builds
#                                  # .gpucheck/gpucheck.test (go test -c -tags gpu);
#                                  # --build --doctor also .gpucheck/zimage (for the
#                                  # doctor step; ≈21 MB more to carry)
#   scripts/gpu-check.sh           # there: runs the steps with that binary
#                                  # (carry .gpucheck); builds it first if Go and
#                                  # the module cache are available
#
# The `device` tool copies tracked + untracked-not-ignored files + carry and
# refuses more than 64 MiB; testdata/ alone is about that. So: --build (prints
# the travelling size, FAIL when over), scripts/gpu-travel.sh slim (untracks +
# excludes the testdata the GPU tests do not read, cuda/gpucheck/travel),
# ONE device call with carry [".gpucheck"], then scripts/gpu-travel.sh restore
# (do restore even when the call failed). --doctor's 21 MB does not fit.
#
# Steps: the startup kernel self-test (every kernel family against the CPU
# backend, bf16 and f32; its table is printed at once); zimage doctor (when
# .gpucheck/zimage exists: driver, devices, plans, one timed DiT step);
# device info; op-by-op parity against the CPU backend (f32 tight,
# bf16 ≤ 1e-2 relative L2; small cases and real widths); fused attention vs
# the cuBLASLt path at full DiT size; allocation failures; the whole pipeline
# on the fixture model (every Turbo case, f32 and bf16); img2img and inpaint
# on the fixture model (every case, f32 and bf16) and the real-size encoder's
# time at 512² and 1024²; ControlNet and ControlNet-inpaint on the fixture
# model (every case, f32 and bf16); GGUF (every dequant kernel bit-exact,
# quantized MatMul, a Q8_0 pipeline); the full-size
# synthetic benchmark (Turbo config, bf16, 1024² and 512², 8 steps).
# The summary is markdown (bench/RESULTS.md rows): steps, self-test table,
# per-check details, benchmark — paste it as it is.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/.gpucheck
test=$bin/gpucheck.test
budget=${GPU_CHECK_BUDGET:-450} # seconds for all steps together
out=${OUT:-}

if [ "${1:-}" = "--build" ]; then
	mkdir -p "$bin"
	(cd "$root" && CGO_ENABLED=0 go test -c -tags gpu -o "$test" ./cuda/gpucheck) || exit 1
	if [ "${2:-}" = "--doctor" ]; then
		# ≈21 MB more: the working tree that travels is capped at 64 MiB.
		(cd "$root" && CGO_ENABLED=0 go build -ldflags='-s -w' -o "$bin/zimage" ./cmd/zimage) || exit 1
	fi
	ls -l "$bin"
	# What the GPU tests read and what would travel (see the header).
	if (cd "$root" && git ls-files testdata | go run ./cuda/gpucheck/travel/gpufixtures >"$bin/fixtures-needed.txt"); then
		echo "testdata the GPU tests read ($bin/fixtures-needed.txt), by directory:"
		(cd "$root" && tr '\n' '\0' <"$bin/fixtures-needed.txt" | xargs -0 -r stat -c '%s %n' -- |
			awk '{n = split($2, p, "/"); d = p[2] (n > 3 ? "/" p[3] : ""); s[d] += $1; t += $1}
				END {for (d in s) printf "  %6.1f MiB  testdata/%s\n", s[d] / 1048576, d; printf "  %6.1f MiB  total\n", t / 1048576}' | sort -k3)
	fi
	"$root/scripts/gpu-travel.sh" size || echo "(scripts/gpu-travel.sh slim before the device call, restore after)"
	echo "built $test; carry .gpucheck to the GPU machine"
	exit 0
fi

log=${out:+$out/gpu-check.log}
log=${log:-$(mktemp)}
start=$(date +%s)
results=()
say() { echo "$@" | tee -a "$log"; }

step() { # name timeout command...
	local name=$1 limit=$2
	shift 2
	local now left t0 rc status
	now=$(date +%s)
	left=$((budget - (now - start)))
	if [ "$left" -le 5 ]; then
		results+=("$(printf '| %s | SKIPPED | - |' "$name")")
		say "== $name: skipped (time budget spent)"
		return
	fi
	[ "$limit" -gt "$left" ] && limit=$left
	say "== $name (limit ${limit}s): $*"
	t0=$(date +%s)
	local so
	so=$(mktemp)
	timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$log" "$so"
	rc=${PIPESTATUS[0]}
	case $rc in
	0) status=PASS ;;
	124 | 137) status=TIMEOUT ;;
	*) status="FAIL($rc)" ;;
	esac
	# A top-level test that skipped (no GPU) is not a pass.
	if [ "$status" = PASS ] && grep -q '^--- SKIP: TestGPU' "$so"; then status=SKIP; fi
	if [ "$status" = PASS ] && grep -q '^    --- SKIP: TestGPU' "$so" && ! grep -q '^    --- PASS: TestGPU' "$so"; then status=SKIP; fi
	rm -f "$so"
	results+=("$(printf '| %s | %s | %ss |' "$name" "$status" $(($(date +%s) - t0)))")
}

# Libraries: the driver is on the loader path on GPU machines; cuBLASLt may
# live in the toolkit or a pip wheel.
if [ -z "${ZIMAGE_LIBCUBLASLT:-}" ] && ! ldconfig -p 2>/dev/null | grep -q 'libcublasLt\.so\.1[123]'; then
	lt=$(find /usr/local /opt /usr/lib /usr/lib64 -name 'libcublasLt.so.1[321]*' 2>/dev/null | sort -r | head -1)
	[ -n "$lt" ] && export ZIMAGE_LIBCUBLASLT=$lt
fi
if [ -z "${ZIMAGE_LIBCUDA:-}" ] && ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1'; then
	lc=$(find /usr/local/nvidia /usr/lib /usr/lib64 /usr/local -name 'libcuda.so.1' 2>/dev/null | head -1)
	[ -n "$lc" ] && export ZIMAGE_LIBCUDA=$lc
fi
say "gpu-check: $(date -u +%FT%TZ) root=$root"
say "libcuda: ${ZIMAGE_LIBCUDA:-libcuda.so.1 (loader path)}; cuBLASLt: ${ZIMAGE_LIBCUBLASLT:-loader path}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader 2>&1 | tee -a "$log"

# The test binary resolves fixtures through the source path it was built
# at; make that path reach this checkout.
if [ ! -x "$test" ] && command -v go >/dev/null; then
	step build 240 env CGO_ENABLED=0 go test -c -tags gpu -o "$test" "$root/cuda/gpucheck"
fi
if [ ! -x "$test" ]; then
	say "gpu-check: no $test (run scripts/gpu-check.sh --build where Go is, and carry .gpucheck)"
	results+=("| build | MISSING | - |")
else
	built=$(grep -a -o -m1 '/[[:alnum:]_./-]*/internal/fixturefs/fixturefs.go' "$test" | head -1 | sed 's|/internal/fixturefs/fixturefs.go||')
	if [ -n "$built" ] && [ "$built" != "$root" ] && [ ! -e "$built" ]; then
		mkdir -p "$(dirname "$built")" && ln -s "$root" "$built" && say "linked $built -> $root"
	fi
	export GPU_CHECK_OUT=${out:-$(mktemp -d)}
	t() { step "$1" "$2" "$test" -test.v -test.count=1 -test.run "$3" -test.timeout "$(($2 + 5))s"; }
	t selftest 40 '^TestGPUSelfTest$'
	[ -f "$GPU_CHECK_OUT/gpu-check-selftest.md" ] && tee -a "$log" <"$GPU_CHECK_OUT/gpu-check-selftest.md"
	if [ -x "$bin/zimage" ]; then
		step doctor 90 sh -c "'$bin/zimage' doctor --selftest auto --json >'$GPU_CHECK_OUT/doctor.json'; rc=\$?; '$bin/zimage' doctor --selftest auto --run=false >'$GPU_CHECK_OUT/doctor.txt'; exit \$rc"
	fi
	t device 30 '^TestGPUDevice$'
	t parity 100 '^TestGPUParity$'
	t flash 45 '^TestGPUFlashVsGemm$'
	t downsample 30 '^TestGPUDownsample$'
	t memory 30 '^TestGPUMemoryErrors$'
	t pipeline 90 '^TestGPUPipeline$'
	t lora 60 '^TestGPULoRA$'
	t edit 60 '^TestGPUEdit'
	t controlnet 60 '^TestGPUControlNet$'
	t gguf 45 '^TestGPUQuant$'
	t bench 150 '^TestGPUBenchmark$'
fi

summary=$(
	echo "## gpu-check $(date -u +%F) ($(($(date +%s) - start))s)"
	command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/card: /'
	echo
	echo "| step | result | time |"
	echo "| --- | --- | --- |"
	printf '%s\n' "${results[@]}"
	echo
	if [ -f "${GPU_CHECK_OUT:-/nonexistent}/gpu-check-selftest.md" ]; then
		cat "$GPU_CHECK_OUT/gpu-check-selftest.md"
	else
		echo "(no self-test table)"
	fi
	echo
	if [ -f "${GPU_CHECK_OUT:-/nonexistent}/doctor.txt" ]; then
		echo '```'
		grep -E '^(system|CUDA driver|cuBLASLt|device|GPU|plan)' "$GPU_CHECK_OUT/doctor.txt"
		grep -h -o '"step_ns": [0-9]*' "$GPU_CHECK_OUT/doctor.json" 2>/dev/null | sed 's/"step_ns": /doctor: DiT step at 512x512 (ns): /'
		echo '```'
		echo
	fi
	echo "| check | result |"
	echo "| --- | --- |"
	grep -E -- '--- (FAIL|PASS|SKIP): TestGPU[A-Za-z]+/?[^ ]* ' "$log" | grep -v -- '--- PASS: TestGPUParity/' | head -40 |
		sed -E 's/^ *--- (FAIL|PASS|SKIP): ([^ ]+) (.*)$/| \2 | \1 \3 |/'
	grep -E 'flash vs gemm|%.*>1 level off|level off|encoder [0-9]+x|downsample [a-z0-9]+ [0-9]' "$log" | sed 's/^ *//; s/^[a-z_]*_test\.go:[0-9]*: //' | head -30 |
		sed -E 's/\|/\//g; s/^([^:]*): (.*)$/| \1 | \2 |/'
	echo
	if [ -f "${GPU_CHECK_OUT:-/nonexistent}/gpu-check-bench.md" ]; then
		cat "$GPU_CHECK_OUT/gpu-check-bench.md"
	elif [ -f "${GPU_CHECK_OUT:-/nonexistent}/gpu-check-bench.txt" ]; then
		cat "$GPU_CHECK_OUT/gpu-check-bench.txt"
	else
		echo "(no benchmark table)"
	fi
)
echo "$summary" | tee -a "$log"
[ -n "$out" ] && echo "$summary" >"$out/gpu-check.txt"
exit 0
