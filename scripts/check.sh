#!/bin/bash
# make check: run every Meson test suite and end with "N passed, N failed".
set -uo pipefail
build=${1:-build}
log=$(mktemp)

# The suites bring up the testbed and librettod when they need them and
# leave them up for the next test; put the machine back as it was found.
cli="$build/src/cli/libretto"
had_testbed=0; had_daemon=0
[ -e /run/netns/libretto-host ] && had_testbed=1
"$cli" status >/dev/null 2>&1 && had_daemon=1
tidy() {
	[ "$had_daemon" -eq 1 ] || "$cli" down >/dev/null 2>&1
	[ "$had_testbed" -eq 1 ] || "$cli" testbed down >/dev/null 2>&1
	rm -f "$log"
}
trap tidy EXIT

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
# The failing tests' own verdicts, last before the count: a CI report that
# keeps only the tail of the output still says why (their whole logs are
# above, from --print-errorlogs, and in meson-logs/testlog.txt).
if [ "$failed" -gt 0 ]; then
	echo "check: what the failed tests said:"
	grep -aE 'FAIL|check failed: ' "$log" | grep -avE '^ *[0-9]+/[0-9]+ |^Fail: |^Summary of Failures' |
		cut -c1-400 | head -n 20 | sed 's/^/  /'
fi
line="${ok:-0} passed, $failed failed"
[ "${skip:-0}" -gt 0 ] && line="$line, ${skip} skipped"
echo "$line"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
