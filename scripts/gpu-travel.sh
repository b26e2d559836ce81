#!/usr/bin/env bash
# What travels to a lent GPU machine: the `device` tool copies every tracked
# file, every untracked file git does not ignore, and the ignored paths named
# in `carry` (.gpucheck), and refuses a tree over 64 MiB. testdata/ alone is
# about that, so before the call take the testdata files the GPU tests do not
# read (cuda/gpucheck/travel.Patterns) out of the index and exclude them;
# afterwards put them back. Files stay on disk and no commit is touched.
#
#   scripts/gpu-travel.sh slim      # untrack + exclude the unneeded testdata
#   scripts/gpu-travel.sh size      # the size that would travel (FAIL > 64 MiB)
#   scripts/gpu-travel.sh restore   # undo exactly what slim did
#   scripts/gpu-travel.sh needed    # the testdata files the GPU tests read
#
# slim records what it did in .gpucheck/travel-slim.txt (restore reads it;
# both are safe to run twice). The excludes go to testdata/.gitignore, which
# ignores itself, not to .git/info/exclude: a linked worktree shares that
# with the main checkout. GPU_TRAVEL_CARRY (default .gpucheck) lists
# the carried paths that size counts. slim needs Go (go run).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state=.gpucheck/travel-slim.txt
exclude=testdata/.gitignore
mark='# scripts/gpu-travel.sh slim wrote this file (restore removes it); it ignores itself'
limit=$((64 * 1024 * 1024))

bytes() { # sum of the sizes of the NUL-separated existing paths on stdin
	{ xargs -0 -r stat -c %s -- 2>/dev/null || true; } | awk '{s += $1} END {print s + 0}'
}
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }

case "${1:-}" in
needed)
	git ls-files testdata | go run ./cuda/gpucheck/travel/gpufixtures
	;;
size)
	tracked=$(git ls-files -z --cached | bytes)
	untracked=$(git ls-files -z --others --exclude-standard | bytes)
	carried=0
	for c in ${GPU_TRAVEL_CARRY:-.gpucheck}; do
		[ -e "$c" ] && carried=$((carried + $(find "$c" -type f -print0 | bytes)))
	done
	total=$((tracked + untracked + carried))
	[ -f "$state" ] && echo "gpu-travel: slim ($(wc -l <"$state") testdata files out of the index; restore before committing)"
	echo "travel size: $(mib "$total") MiB = tracked $(mib "$tracked") + untracked $(mib "$untracked") + carried (${GPU_TRAVEL_CARRY:-.gpucheck}) $(mib "$carried"); limit 64 MiB"
	if [ "$total" -gt "$limit" ]; then
		echo "FAIL: $(mib "$total") MiB > 64 MiB: the device call would be refused (scripts/gpu-travel.sh slim, or carry less)"
		exit 1
	fi
	echo "OK: fits"
	;;
slim)
	if [ -f "$state" ]; then
		echo "gpu-travel: already slim ($(wc -l <"$state") files out of the index; restore first to redo)"
		exit 0
	fi
	if [ -e "$exclude" ]; then
		echo "gpu-travel: $exclude exists; not overwriting it" >&2
		exit 1
	fi
	# restore resets these paths to HEAD: refuse if they hold staged work.
	if ! git diff --cached --quiet -- testdata; then
		echo "gpu-travel: staged changes under testdata/; commit or unstage them first" >&2
		exit 1
	fi
	mkdir -p .gpucheck
	list=$(mktemp)
	git ls-files testdata | go run ./cuda/gpucheck/travel/gpufixtures -unneeded >"$list"
	if [ ! -s "$list" ]; then
		echo "gpu-travel: nothing to slim"
		rm -f "$list"
		exit 0
	fi
	if grep -q '[][*?!\\#]' "$list"; then
		echo "gpu-travel: a testdata path holds a glob character; not excluding it" >&2
		rm -f "$list"
		exit 1
	fi
	# State first, so an interrupted slim can still be restored.
	mv "$list" "$state"
	{
		echo "$mark"
		echo "/.gitignore"
		sed 's|^testdata/|/|' "$state"
	} >"$exclude"
	tr '\n' '\0' <"$state" | git update-index -z --force-remove --stdin
	echo "gpu-travel: $(wc -l <"$state") testdata files untracked and excluded (files kept on disk; list in $state)"
	echo "gpu-travel: WARNING: the index now stages their removal; run scripts/gpu-travel.sh restore before any git commit"
	;;
restore)
	if [ -f "$state" ]; then
		git reset -q --pathspec-from-file="$state" -- || true
	fi
	if [ -f "$exclude" ] && [ "$(head -1 "$exclude")" = "$mark" ] && [ -z "$(git ls-files -- "$exclude")" ]; then
		rm -f "$exclude"
	fi
	if [ -f "$state" ]; then
		echo "gpu-travel: restored $(wc -l <"$state") files to the index"
		rm -f "$state"
	else
		echo "gpu-travel: nothing to restore"
	fi
	;;
*)
	sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
