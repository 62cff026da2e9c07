#!/bin/bash
# make soak: the long variants of the recovery and switching tests, one after another; ends with "N passed, N failed".
#
# Each entry is "NAME|ENVIRONMENT|SCRIPT" (script relative to
# tests/integration); the scripts are the same as make check's, with longer
# durations.  Needs root (exit 77 of a script counts as skipped).
set -uo pipefail
build=$(cd "${1:-build}" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
soaks=(
	# Issue 7: netd killed (SIGKILL) / live-upgraded every 3 s for 60 s under load.
	"netd_kill_load_60s|NETD_LOAD_SECONDS=60 NETD_EVENT=kill|test_netd_kill_load.sh"
	"netd_upgrade_load_60s|NETD_LOAD_SECONDS=60 NETD_EVENT=upgrade|test_netd_kill_load.sh"
	# Issue 6: servers switched every second under load, 60 times each and
	# iperf3 for 30 s each way; the auto policy with 30 s steady periods.
	"switch_load_60|SWITCH_COUNT=60 SWITCH_IPERF_SECONDS=30|test_switch_load.sh"
	"switch_auto_steady30|AUTO_STEADY_SECONDS=30|test_switch_auto.sh"
)
pass=0 fail=0 skip=0
for e in "${soaks[@]}"; do
	IFS='|' read -r name envs script <<<"$e"
	echo "soak: $name ..."
	# shellcheck disable=SC2086
	env LIBRETTO_BUILD="$build" LIBRETTO_SRC="$src" $envs timeout 600 "$src/tests/integration/$script"
	rc=$?
	case $rc in
	0) pass=$((pass + 1)); echo "soak: $name: ok" ;;
	77) skip=$((skip + 1)); echo "soak: $name: skipped" ;;
	*) fail=$((fail + 1)); echo "soak: $name: FAILED (exit $rc)" ;;
	esac
done
line="$pass passed, $fail failed"
[ "$skip" -gt 0 ] && line="$line, $skip skipped"
echo "$line"
[ "$fail" -eq 0 ]
