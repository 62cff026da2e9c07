#!/bin/bash
# make check: run every Meson test suite and end with "N passed, N failed".
set -uo pipefail
build=${1:-build}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

meson test -C "$build" --print-errorlogs --num-processes 2 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

ok=$(sed -n 's/^Ok: *\([0-9]*\).*/\1/p' "$log" | tail -1)
fail=$(sed -n 's/^Fail: *\([0-9]*\).*/\1/p' "$log" | tail -1)
xpass=$(sed -n 's/^Unexpected Pass: *\([0-9]*\).*/\1/p' "$log" | tail -1)
tmo=$(sed -n 's/^Timeout: *\([0-9]*\).*/\1/p' "$log" | tail -1)
skip=$(sed -n 's/^Skipped: *\([0-9]*\).*/\1/p' "$log" | tail -1)
failed=$(( ${fail:-0} + ${xpass:-0} + ${tmo:-0} ))
if [ -z "$ok" ]; then
	echo "check: meson test printed no summary" >&2
	failed=$(( failed + 1 ))
fi
line="${ok:-0} passed, $failed failed"
[ "${skip:-0}" -gt 0 ] && line="$line, ${skip} skipped"
echo "$line"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
