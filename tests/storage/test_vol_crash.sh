#!/bin/bash
# Storage: SIGKILL of a writer during fsync'ed writes; after journal recovery the volume is clean and every acknowledged record is there.
#
# st_records writes self-checking records and prints each record's id on a
# pipe only after its fsync; it is killed with SIGKILL at a random moment,
# each round into a new directory.  Rounds 1 and 3 append records to three
# files (fsync/fdatasync); rounds 2 and 4 use the atomic-replace pattern
# (write tmp.N, fsync, rename over m<N % 50>, fsync the directory).  Then:
#   rounds 1-3: `e2fsck -fy IMG` replays the journal (status 0 or 1, and
#     nothing fixed but the journal and free-space summaries), `e2fsck -fn`
#     is clean, and debugfs (the image read without our code) finds every
#     acknowledged record intact, every replaced file whole and not older
#     than acknowledged;
#   round 4: the next `libretto run --volume` recovers the journal itself:
#     its checkers find the same for all rounds, and e2fsck -fn is clean
#     afterwards.
# ST_CRASH_SEED fixes the kill moments (default: random, printed).
# Exit 0 pass, 1 fail, 77 skip.
set -uo pipefail
lt_name=test_vol_crash
here=$(dirname "$0")
. "$here/../integration/lib.sh"
. "$here/lib_vol.sh"

sv_init
lt_need debugfs
seed=${ST_CRASH_SEED:-$RANDOM}
RANDOM=$seed
lt_log "kill moments from seed $seed (ST_CRASH_SEED=$seed replays them)"
rec=$LT_TMP/st_records
cp "$ST_BIN/st_records" "$rec" || lt_fail "no $ST_BIN/st_records (build first)"
sv_image "$LT_TMP/vol.img"
D=$ST_DATA

# kind N: the writer of round N (write: appended records, meta: replaces).
kind() { if [ $(($1 % 2)) -eq 1 ]; then echo write; else echo meta; fi; }

# crash_round N: start the writer, wait for its first acknowledgement, kill
# it after a random 0.2-2.2 s more; the acknowledged ids go to acks.N.
crash_round() {
	local n=$1 fifo writer reader delay i
	fifo=$LT_TMP/acks.$n.fifo
	rm -f "$fifo"
	mkfifo "$fifo"
	cat "$fifo" >"$LT_TMP/acks.$n" &
	reader=$!
	lt_pids+=("$reader")
	sv_attach
	if [ "$ST_STORAGE" = loop ]; then
		"$rec" "$(kind "$n")" "$D/r$n" 30 >"$fifo" 2>"$LT_TMP/writer.$n.err" &
	else
		sv_run_args "writer$n" ""
		"$LIBRETTO" "${ST_ARGS[@]}" -- "$rec" "$(kind "$n")" "$D/r$n" 30 >"$fifo" 2>"$LT_TMP/writer.$n.err" &
	fi
	writer=$!
	lt_pids+=("$writer")
	for ((i = 0; i < 300; i++)); do
		[ -s "$LT_TMP/acks.$n" ] && break
		kill -0 "$writer" 2>/dev/null || break
		sleep 0.1
	done
	[ -s "$LT_TMP/acks.$n" ] || {
		cat "$LT_TMP/writer.$n.err" >&2
		lt_fail "round $n: the writer acknowledged nothing within 30 s"
	}
	delay=$((200 + RANDOM % 2000))
	sleep "$((delay / 1000)).$(printf %03d $((delay % 1000)))"
	kill -0 "$writer" 2>/dev/null || {
		cat "$LT_TMP/writer.$n.err" >&2
		lt_fail "round $n: the writer ended before it was killed"
	}
	kill -KILL "$writer"
	# (bash's "Killed" notice for the job is expected: kept off the log.)
	lt_wait_pid "$writer" 10 >/dev/null 2>&1
	lt_wait_pid "$reader" 10 >/dev/null
	sort -n "$LT_TMP/acks.$n" >"$LT_TMP/acks.$n.sorted"
	lt_log "round $n ($(kind "$n")): killed after $delay ms more, $(wc -l <"$LT_TMP/acks.$n") records acknowledged"
}

# acked_present N LIST: every id of acks.N is in LIST (sorted ids).
acked_present() {
	local missing
	missing=$(comm -23 <(sort "$LT_TMP/acks.$1") <(sort "$2") | head -n 5)
	[ -z "$missing" ] || lt_fail "round $1: acknowledged records missing after recovery, e.g. $(echo $missing)"
}

# check_round N DIR OUT CMD...: run the round's checker (CMD... st_records,
# on the kernel or under libretto) on DIR; fails the test on a loss.
check_round() {
	local n=$1 dir=$2 out=$3
	shift 3
	if [ "$(kind "$n")" = write ]; then
		"$@" check "$dir" "$LT_TMP/ids.$n" >"$out" || lt_fail "round $n: $(cat "$out")"
		acked_present "$n" "$LT_TMP/ids.$n"
	else
		"$@" check-meta "$dir" "$LT_TMP/acks.$n" >"$out" ||
			lt_fail "round $n: replaced files lost or torn: $(head -n 5 "$out")"
	fi
}

for n in 1 2 3; do
	crash_round "$n"
	sv_detach
	sv_wait_released
	timeout 120 e2fsck -fy "$ST_IMG" >"$LT_TMP/fsck.y.$n" 2>&1
	rc=$?
	if [ $rc -gt 1 ]; then
		cat "$LT_TMP/fsck.y.$n" >&2
		lt_fail "round $n: e2fsck -fy: status $rc (more than journal recovery)"
	fi
	# Only the journal replay and the free-space summaries (which ext4 does
	# not journal exactly, the kernel neither) may be fixed; anything else
	# (an inode, a directory, a bitmap, an orphan list) is damage.
	fixes=$(grep -iE '\? yes|FIXED|^Clearing|^Salvag' "$LT_TMP/fsck.y.$n" |
		grep -viE '^(Free (blocks|inodes) count wrong|Directories count wrong)' | head -n 5)
	if [ -n "$fixes" ]; then
		cat "$LT_TMP/fsck.y.$n" >&2
		lt_fail "round $n: e2fsck -fy repaired more than the journal: $fixes"
	fi
	lt_log "round $n: e2fsck -fy status $rc: $(grep -ciE 'recovering journal' "$LT_TMP/fsck.y.$n") journal replay, $(grep -ciE 'count wrong' "$LT_TMP/fsck.y.$n") summary counts fixed"
	sv_fsck_clean "after round $n's recovery"
	# Read the records with debugfs: the image as e2fsprogs sees it (the
	# directory is at the volume's root in every mode).
	mkdir -p "$LT_TMP/dump.$n"
	debugfs -R "rdump /r$n $LT_TMP/dump.$n" "$ST_IMG" >/dev/null 2>"$LT_TMP/debugfs.err"
	[ -d "$LT_TMP/dump.$n/r$n" ] || lt_fail "debugfs cannot dump /r$n: $(cat "$LT_TMP/debugfs.err")"
	check_round "$n" "$LT_TMP/dump.$n/r$n" "$LT_TMP/check.$n" "$rec"
	lt_log "round $n: every acknowledged record intact ($(tail -1 "$LT_TMP/check.$n"))"
done

# Round 4: no e2fsck in between; the next run on the volume recovers it.
crash_round 4
sv_detach
sv_wait_released
if dumpe2fs -h "$ST_IMG" 2>/dev/null | grep -q '^Filesystem features:.*needs_recovery'; then
	lt_log "the image needs journal recovery now (needs_recovery is set)"
else
	lt_log "the image does not need journal recovery (the writer's volume was unmounted, as fsd does)"
fi
# The checkers themselves run on the volume (sv_exec: one `libretto run`
# each, the first of which replays the journal).
for n in 1 2 3 4; do
	if [ "$(kind "$n")" = write ]; then
		sv_must "check$n" "$rec" check "$D/r$n" "$LT_TMP/ids.$n"
		acked_present "$n" "$LT_TMP/ids.$n"
	else
		sv_exec "check$n" "$rec" check-meta "$D/r$n" "$LT_TMP/acks.$n" ||
			lt_fail "round $n on the volume: $(cat "$LT_TMP/check$n.out" "$LT_TMP/check$n.err")"
	fi
	lt_log "round $n, read on the volume after its own recovery: $(tail -1 "$LT_TMP/check$n.out")"
done
sv_fsck_clean "after the volume's own journal recovery"
lt_log "PASS"
exit 0
