#!/bin/bash
# Storage: a volume belongs to one application in direct mode (a second run is refused with EBUSY and a clear message, and works once the first has exited); indirect runs share it through libretto-fsd, and a direct run of a volume fsd serves is refused.
#
# The first application (st_records hold) writes a file on the volume and
# waits on its stdin.  While it runs, `libretto run --volume` of the same
# image must fail (status 1, a message naming the image and saying it is in
# use), in both storage modes; after the holder exits the same command
# works and sees the holder's file.  Then two indirect holders at once both
# work, and a direct run meanwhile is refused.  e2fsck -fn is clean at the
# end.  Exit 0 pass, 1 fail, 77 skip.
set -uo pipefail
lt_name=test_vol_exclusive
here=$(dirname "$0")
. "$here/../integration/lib.sh"
ST_STORAGE=direct
. "$here/lib_vol.sh"

sv_init
rec=$ST_BIN/st_records
[ -x "$rec" ] || lt_fail "no $rec (build first)"
sv_image "$LT_TMP/vol.img"

# hold NAME MODE FILE: start a holder on the volume; its stdin is a FIFO we
# keep open (fd 8/9), so closing our end lets it exit.  Waits for "ready".
hold() {
	local name=$1 mode=$2 file=$3 fd=$4 i
	rm -f "$LT_TMP/$name.in"
	mkfifo "$LT_TMP/$name.in"
	"$LIBRETTO" run --mode indirect --name "$name" --volume "$ST_IMG:/data" --storage "$mode" -- \
		"$rec" hold "$file" <"$LT_TMP/$name.in" >"$LT_TMP/$name.out" 2>"$LT_TMP/$name.err" &
	HOLD_PID=$!
	lt_pids+=("$HOLD_PID")
	eval "exec $fd>\"\$LT_TMP/\$name.in\""
	for ((i = 0; i < 300; i++)); do
		grep -q ready "$LT_TMP/$name.out" 2>/dev/null && return 0
		kill -0 "$HOLD_PID" 2>/dev/null || break
		sleep 0.1
	done
	cat "$LT_TMP/$name.err" >&2
	lt_fail "$name ($mode) did not get ready on the volume"
}

# refused NAME MODE: a run of the volume must fail with a clear "in use" message.
refused() {
	local name=$1 mode=$2 rc
	timeout 60 "$LIBRETTO" run --mode indirect --name "$name" --volume "$ST_IMG:/data" --storage "$mode" -- \
		cat /data/held >"$LT_TMP/$name.out" 2>"$LT_TMP/$name.err"
	rc=$?
	[ $rc -ne 0 ] || lt_fail "a $mode run of a volume in use was not refused: it printed '$(cat "$LT_TMP/$name.out")'"
	[ ! -s "$LT_TMP/$name.out" ] || lt_fail "the refused $mode run printed '$(cat "$LT_TMP/$name.out")'"
	grep -qiE "in use|busy" "$LT_TMP/$name.err" || lt_fail "the $mode run was refused without saying the volume is in use: $(cat "$LT_TMP/$name.err")"
	grep -qF "$(basename "$ST_IMG")" "$LT_TMP/$name.err" || lt_fail "the refusal does not name the image: $(cat "$LT_TMP/$name.err")"
	lt_log "a run with --storage $mode while the volume is held: status $rc, '$(head -n 1 "$LT_TMP/$name.err")'"
}

# 1. Direct owner: a second direct and an indirect run are refused.
hold holder direct /data/held 8
holder=$HOLD_PID
refused second_direct direct
refused second_indirect indirect
exec 8>&-
lt_wait_pid "$holder" 15 || lt_fail "the holder did not exit when its stdin closed"
lt_log "the holder exited"
# Its lease is released once librettod sees the death: sv_exec retries a
# refusal for up to 10 s (a bounded wait for that condition).
sv_must after cat /data/held
[ "$(cat "$LT_TMP/after.out")" = held ] || lt_fail "after the holder: /data/held reads '$(cat "$LT_TMP/after.out")'"
lt_log "after the holder exited, a new direct run works and reads its file"
sv_fsck_clean "after the direct holder"

# 2. Indirect: two holders share the volume through fsd; direct is refused meanwhile.
hold ind1 indirect /data/ind1 8
ind1=$HOLD_PID
hold ind2 indirect /data/ind2 9
ind2=$HOLD_PID
lt_log "two indirect applications hold the volume at once"
refused direct_vs_fsd direct
exec 8>&- 9>&-
lt_wait_pid "$ind1" 15 || lt_fail "indirect holder 1 did not exit"
lt_wait_pid "$ind2" 15 || lt_fail "indirect holder 2 did not exit"
sv_must after2 cat /data/ind1 /data/ind2
[ "$(tr '\n' ' ' <"$LT_TMP/after2.out")" = "held held " ] || lt_fail "the indirect holders' files read '$(cat "$LT_TMP/after2.out")'"
lt_log "after the indirect holders exited, a direct run works and reads both files"
sv_fsck_clean "at the end"
lt_log "PASS"
exit 0
