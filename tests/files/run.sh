#!/bin/bash
# The file-behaviour suite's runner: each program on a kernel tmpfs, a direct volume and an indirect volume, outputs compared, volumes checked by e2fsck.
#
# Usage: run.sh [PROG...]      (PROG: ft_open or open; default: all)
#
# For each program, the reference run executes it on the kernel: in a fresh
# tmpfs mounted on a private directory (ft_x DIR/t).  Each volume run makes
# a new image with `libretto volume create IMG --size $FT_VOL_SIZE` and runs
# `libretto run $FT_RUN_ARGS --volume IMG:/data --storage MODE -- ft_x
# /data/t`.  The stdouts plus a last line "exit: N" must be identical to the
# reference's, and afterwards `e2fsck -fn IMG` must find the image clean.
# One result line per program and mode; on a difference the unified diff
# (tmpfs first) and the tails of the stderrs follow.  Outputs are kept in
# $LIBRETTO_BUILD/tests/files/out/.
#
# A direct volume serves one process at a time (a forked child may not use
# its parent's mount), so programs in FT_ONE_PROCESS_PROGS ("lock") run
# their direct case with FT_ONE_PROCESS=1 (no fork) and are compared with a
# tmpfs run made the same way.
#
# Environment: LIBRETTO_BUILD (set by meson test), FT_MODES (default
# "direct indirect"; "loop" adds or replaces them with a kernel ext4 loop
# mount of an image made like a volume, to check the programs themselves),
# FT_VOL_SIZE (1G), FT_RUN_ARGS (network mode of the run, default
# "--mode indirect": the volume, not the NIC, is under test), FT_TIMEOUT
# (seconds per run, 90).
# Exit 0 all identical and clean, 1 any difference or error, 77 not root.
set -uo pipefail
lt_name=files
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../integration/lib.sh"

modes=${FT_MODES:-direct indirect}
vol_size=${FT_VOL_SIZE:-1G}
run_args=${FT_RUN_ARGS:---mode indirect}
run_timeout=${FT_TIMEOUT:-90}
one_process_progs=${FT_ONE_PROCESS_PROGS:-lock}
all="open rw large stat dir readdir unlink rename link trunc fd lock mmap stdio sendfile alloc"

[ "$(id -u)" -eq 0 ] || lt_skip "needs root (mount, volumes)"
case " $modes " in
*" direct "* | *" indirect "*) lt_init ;;
*)	# Kernel-only runs need neither the CLI nor the daemon.
	lt_init_local ;;
esac
lt_need e2fsck mke2fs
# The programs switch to uid 65534 for EACCES checks: every directory above
# the test directory must be searchable.
chmod 755 "$LT_TMP"
bin=$LIBRETTO_BUILD/tests/files
out=$bin/out
mkdir -p "$out"

progs=()
for p in "${@:-$all}"; do
	for q in $p; do
		q=${q#ft_}
		[ -x "$bin/ft_$q" ] || lt_fail "no program $bin/ft_$q (build first)"
		progs+=("$q")
	done
done

case " $modes " in
*" direct "* | *" indirect "*) lt_testbed_up; lt_daemon_up ;;
esac

# mkimage IMG: a volume image, made by the CLI (or, for the loop mode, by
# mke2fs with the options `libretto volume create` uses).
mkimage() {
	rm -f "$1"
	if [ "$2" = loop ]; then
		truncate -s "$vol_size" "$1" &&
			mke2fs -q -F -t ext4 -b 4096 -O ^inline_data,^metadata_csum_seed \
				-E lazy_itable_init=0,lazy_journal_init=0 "$1" >"$1.mkfs" 2>&1
	else
		timeout 60 "$LIBRETTO" volume create "$1" --size "$vol_size" >"$1.mkfs" 2>&1
	fi
}

# run_one MODE PROG OUTFILE [one-process]: one run; stdout to OUTFILE plus
# "exit: N"; for volume modes also "e2fsck: clean" or the e2fsck output.
run_one() {
	local mode=$1 prog=$2 file=$3 oneproc=${4:-} rc mnt img env_args=()
	[ -n "$oneproc" ] && env_args=(FT_ONE_PROCESS=1)
	: >"$file.err"
	case $mode in
	tmpfs)
		mnt=$LT_TMP/tmpfs.$prog
		mkdir -p "$mnt"
		mount -t tmpfs -o size=8g,mode=0755 ft-tmpfs "$mnt" || lt_fail "mount tmpfs on $mnt failed"
		{
			timeout -k 5 "$run_timeout" env "${env_args[@]}" "$bin/ft_$prog" "$mnt/t" >"$file" 2>>"$file.err"
			rc=$?
		} 2>>"$file.err"
		umount "$mnt"
		echo "exit: $rc" >>"$file" ;;
	loop)
		img=$LT_TMP/loop.$prog.img
		mnt=$LT_TMP/loop.$prog
		mkdir -p "$mnt"
		mkimage "$img" loop || lt_fail "mke2fs failed: $(cat "$img.mkfs")"
		mount -o loop "$img" "$mnt" || lt_fail "loop mount of $img failed"
		{
			timeout -k 5 "$run_timeout" env "${env_args[@]}" "$bin/ft_$prog" "$mnt/t" >"$file" 2>>"$file.err"
			rc=$?
		} 2>>"$file.err"
		umount "$mnt"
		echo "exit: $rc" >>"$file"
		fsck_line "$img" >>"$file"
		rm -f "$img" ;;
	direct | indirect)
		img=$LT_TMP/$mode.$prog.img
		if ! mkimage "$img" "$mode"; then
			echo "libretto volume create failed: $(cat "$img.mkfs")" >>"$file.err"
			echo "exit: volume create failed" >"$file"
			return
		fi
		{
			timeout -k 5 "$run_timeout" env "${env_args[@]}" "$LIBRETTO" run $run_args --name "ft_$prog" \
				--volume "$img:/data" --storage "$mode" -- "$bin/ft_$prog" /data/t >"$file" 2>>"$file.err"
			rc=$?
		} 2>>"$file.err"
		echo "exit: $rc" >>"$file"
		lt_wait_volume_released "$img"
		fsck_line "$img" >>"$file"
		rm -f "$img" ;;
	esac
}

# fsck_line IMG: "e2fsck: clean" when e2fsck -fn finds nothing, else its
# status and output (which then differs from the reference's line).
fsck_line() {
	local o rc
	o=$(timeout 120 e2fsck -fn "$1" 2>&1)
	rc=$?
	if [ $rc -eq 0 ]; then
		echo "e2fsck: clean"
	else
		echo "e2fsck: status $rc"
		sed 's/^/e2fsck: /' <<<"$o"
	fi
}

failed=0
for prog in "${progs[@]}"; do
	ref=$out/ft_$prog.tmpfs
	run_one tmpfs "$prog" "$ref"
	if [ "$(tail -1 "$ref")" != "exit: 0" ]; then
		echo "FAIL ft_$prog: the tmpfs run itself failed ($(tail -1 "$ref"))"
		tail -5 "$ref.err" | sed 's/^/    tmpfs stderr: /'
		failed=1
		continue
	fi
	# The volume runs add e2fsck's verdict; the reference expects it clean.
	cp "$ref" "$ref.want"
	echo "e2fsck: clean" >>"$ref.want"
	for mode in $modes; do
		want=$ref.want
		oneproc=
		if [ "$mode" = direct ] && [[ " $one_process_progs " == *" $prog "* ]]; then
			oneproc=1
			want=$out/ft_$prog.tmpfs1
			run_one tmpfs "$prog" "$want" 1
			echo "e2fsck: clean" >>"$want"
		fi
		got=$out/ft_$prog.$mode
		t0=$(date +%s%N)
		run_one "$mode" "$prog" "$got" $oneproc
		ms=$((($(date +%s%N) - t0) / 1000000))
		if diff -q "$want" "$got" >/dev/null; then
			echo "PASS ft_$prog $mode: $(($(wc -l <"$want") - 2)) observations identical to tmpfs${oneproc:+ (one process)}, e2fsck clean [$ms ms]"
		else
			echo "FAIL ft_$prog $mode: differs from tmpfs${oneproc:+ (one process)} [$ms ms]"
			diff -u --label "ft_$prog.tmpfs" --label "ft_$prog.$mode" "$want" "$got" | sed 's/^/    /'
			tail -5 "$got.err" | sed 's/^/    '"$mode"' stderr: /'
			failed=1
		fi
	done
done
exit $failed
