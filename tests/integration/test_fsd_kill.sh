#!/bin/sh
# Two applications write through libretto-fsd (records, mkdirs, appends to a
# shared file, fsyncs) while fsd is SIGKILLed twice; afterwards every
# acknowledged write is on the volume exactly once and e2fsck -fn is clean.
set -u
: "${FSD_HARNESS:?set by meson}" "${LIBRETTO_FSD:?set by meson}"
SECS=${FSD_KILL_SECS:-8}
command -v mke2fs >/dev/null && command -v e2fsck >/dev/null || { echo "SKIP: no e2fsprogs"; exit 77; }
dir=$(mktemp -d /tmp/v3-fsdkill.XXXXXX)
trap 'rm -rf "$dir"' EXIT
img=$dir/vol.img
# Sparse images big enough for what the writers can do in their time (at
# most 200000 records of 4 KiB and 25000 directories each): a fast machine
# must not turn the test into ENOSPC.  Only the blocks written take space.
mke2fs -q -F -t ext4 -b 4096 -O ^inline_data,^metadata_csum_seed \
	-E lazy_itable_init=0,lazy_journal_init=0 "$img" 2G || exit 1
export LIBRETTO_FSD
fail=0
echo "== run: 2 writers, $SECS s, 2 SIGKILLs of fsd"
timeout 300 "$FSD_HARNESS" run "$img" /data 2 "$SECS" 2 "$dir" || { echo "FAIL: run"; fail=1; }
echo "== e2fsck -fn after the orderly stop"
e2fsck -fn "$img" >"$dir/fsck1" 2>&1 || { cat "$dir/fsck1"; echo "FAIL: e2fsck after run"; fail=1; }
echo "== verify every acknowledged write"
timeout 120 "$FSD_HARNESS" verify "$img" /data 2 "$dir" || { echo "FAIL: verify"; fail=1; }
e2fsck -fn "$img" >"$dir/fsck2" 2>&1 || { cat "$dir/fsck2"; echo "FAIL: e2fsck after verify"; fail=1; }
echo "== hang: fsd stopped (SIGSTOP) under load; librettod's ping must replace it"
img2=$dir/vol2.img
mkdir -p "$dir/hang"
mke2fs -q -F -t ext4 -b 4096 -O ^inline_data,^metadata_csum_seed \
	-E lazy_itable_init=0,lazy_journal_init=0 "$img2" 1G || exit 1
timeout 120 env FSD_HARNESS_HANG=1 "$FSD_HARNESS" run "$img2" /data 1 9 1 "$dir/hang" ||
	{ echo "FAIL: hang run"; fail=1; }
timeout 120 "$FSD_HARNESS" verify "$img2" /data 1 "$dir/hang" || { echo "FAIL: verify after hang"; fail=1; }
e2fsck -fn "$img2" >"$dir/fsck3" 2>&1 || { cat "$dir/fsck3"; echo "FAIL: e2fsck after hang"; fail=1; }
echo "== restart: fsd stopped cleanly and replaced twice under load (libretto fsd restart)"
img3=$dir/vol3.img
mkdir -p "$dir/restart"
mke2fs -q -F -t ext4 -b 4096 -O ^inline_data,^metadata_csum_seed \
	-E lazy_itable_init=0,lazy_journal_init=0 "$img3" 2G || exit 1
timeout 120 env FSD_HARNESS_RESTART=1 "$FSD_HARNESS" run "$img3" /data 2 6 2 "$dir/restart" ||
	{ echo "FAIL: restart run"; fail=1; }
timeout 120 "$FSD_HARNESS" verify "$img3" /data 2 "$dir/restart" || { echo "FAIL: verify after restart"; fail=1; }
e2fsck -fn "$img3" >"$dir/fsck4" 2>&1 || { cat "$dir/fsck4"; echo "FAIL: e2fsck after restart"; fail=1; }
[ $fail = 0 ] && echo "PASS: fsd_kill"
exit $fail
