#!/bin/bash
# Storage: libretto-fsd SIGKILLed twice while two applications write fsync'ed records through it; both continue, nothing acknowledged is lost.
#
# Two `libretto run --storage indirect` programs (st_records write) share
# one volume, each appending self-checking records to its own directory and
# acknowledging each record on a pipe after its fsync.  fsd is killed with
# SIGKILL twice while they write.  librettod must restart it, the new fsd
# must adopt both sessions, and both writers must run to their end (exit
# 0, no I/O error seen by the program).  Then every acknowledged record is
# read back on the volume (a third program, through fsd) and from the image
# by debugfs (without our code), and `e2fsck -fn` is clean after the last
# program leaves.  Exit 0 pass, 1 fail, 77 skip.
set -uo pipefail
lt_name=test_vol_fsd_kill
here=$(dirname "$0")
. "$here/../integration/lib.sh"
. "$here/lib_vol.sh"

ST_STORAGE=indirect
sv_init
lt_need debugfs
rec=$LT_TMP/st_records
cp "$ST_BIN/st_records" "$rec" || lt_fail "no $ST_BIN/st_records (build first)"
sv_image "$LT_TMP/vol.img"
secs=12

fsd_pid() { lt_status_get fsd_pid; }
restarts0=$(lt_status_get fsd_restarts)
[ -n "$restarts0" ] || lt_fail "libretto status shows no fsd_restarts (is libretto-fsd supervised?)"

writers=()
for w in a b; do
	mkfifo "$LT_TMP/acks.$w.fifo"
	cat "$LT_TMP/acks.$w.fifo" >"$LT_TMP/acks.$w" &
	lt_pids+=("$!")
	sv_run_args "writer-$w" ""
	"$LIBRETTO" "${ST_ARGS[@]}" -- "$rec" write "/data/$w" "$secs" \
		>"$LT_TMP/acks.$w.fifo" 2>"$LT_TMP/writer.$w.err" &
	writers+=("$!")
	lt_pids+=("$!")
done
lt_log "two writers on one indirect volume for $secs s: pids ${writers[*]}"

# Both must have acknowledged records before the first kill.
for ((i = 0; i < 300; i++)); do
	[ -s "$LT_TMP/acks.a" ] && [ -s "$LT_TMP/acks.b" ] && break
	sleep 0.1
done
[ -s "$LT_TMP/acks.a" ] && [ -s "$LT_TMP/acks.b" ] ||
	lt_fail "the writers acknowledged nothing within 30 s: $(cat "$LT_TMP"/writer.*.err)"

for k in 1 2; do
	sleep 2
	pid=$(fsd_pid)
	[ -n "$pid" ] && [ "$pid" -gt 0 ] || lt_fail "kill $k: libretto status shows no running fsd"
	before=$(cat "$LT_TMP/acks.a" "$LT_TMP/acks.b" | wc -l)
	kill -KILL "$pid" || lt_fail "kill $k: cannot SIGKILL fsd pid $pid"
	lt_log "kill $k: SIGKILL fsd pid $pid with $before records acknowledged"
	# librettod restarts it: a new pid, running.
	for ((i = 0; i < 100; i++)); do
		new=$(fsd_pid)
		[ -n "$new" ] && [ "$new" -gt 0 ] && [ "$new" != "$pid" ] && break
		sleep 0.1
	done
	[ -n "$new" ] && [ "$new" -gt 0 ] && [ "$new" != "$pid" ] || lt_fail "kill $k: fsd was not restarted within 10 s"
	# And the writers go on: more acknowledgements after the restart.
	for ((i = 0; i < 100; i++)); do
		[ "$(cat "$LT_TMP/acks.a" "$LT_TMP/acks.b" | wc -l)" -gt "$before" ] && break
		sleep 0.1
	done
	after=$(cat "$LT_TMP/acks.a" "$LT_TMP/acks.b" | wc -l)
	[ "$after" -gt "$before" ] || lt_fail "kill $k: no record acknowledged within 10 s after fsd's restart"
	lt_log "kill $k: fsd restarted as pid $new, the writers went on ($after acknowledged)"
done

for i in 0 1; do
	w=$([ $i -eq 0 ] && echo a || echo b)
	lt_wait_pid "${writers[$i]}" $((secs + 60))
	rc=$?
	[ $rc -ne 124 ] || lt_fail "writer $w did not end $((secs + 60)) s after its start"
	[ $rc -eq 0 ] || { cat "$LT_TMP/writer.$w.err" >&2; lt_fail "writer $w ended with status $rc (an error surfaced to the program)"; }
done
restarts=$(lt_status_get fsd_restarts)
[ "$restarts" -ge $((restarts0 + 2)) ] || lt_fail "fsd_restarts went from $restarts0 to $restarts, not by 2"
lt_log "both writers ran to their end: $(wc -l <"$LT_TMP/acks.a") and $(wc -l <"$LT_TMP/acks.b") records acknowledged; fsd_restarts $restarts0 -> $restarts"

# Every acknowledged record, read through fsd by a new program...
for w in a b; do
	sv_must "check-$w" "$rec" check "/data/$w" "$LT_TMP/ids.$w"
	missing=$(comm -23 <(sort "$LT_TMP/acks.$w") <(sort "$LT_TMP/ids.$w") | head -n 5)
	[ -z "$missing" ] || lt_fail "writer $w: acknowledged records missing on the volume, e.g. $(echo $missing)"
	lt_log "writer $w, read through fsd: $(tail -1 "$LT_TMP/check-$w.out")"
done
# ... and from the image by debugfs, once no program uses it.
sv_fsck_clean "after two fsd kills"
for w in a b; do
	mkdir -p "$LT_TMP/dump"
	debugfs -R "rdump /$w $LT_TMP/dump" "$ST_IMG" >/dev/null 2>"$LT_TMP/debugfs.err"
	"$rec" check "$LT_TMP/dump/$w" "$LT_TMP/dids.$w" >"$LT_TMP/dcheck.$w" || lt_fail "debugfs copy of /$w: $(cat "$LT_TMP/dcheck.$w")"
	missing=$(comm -23 <(sort "$LT_TMP/acks.$w") <(sort "$LT_TMP/dids.$w") | head -n 5)
	[ -z "$missing" ] || lt_fail "writer $w: acknowledged records missing in the image, e.g. $(echo $missing)"
done
lt_log "every acknowledged record is in the image as e2fsprogs reads it"
lt_log "PASS"
exit 0
