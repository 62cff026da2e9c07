# Shared helpers of the storage scenarios (sourced after ../integration/lib.sh, bash).
# shellcheck shell=bash
#
# Every scenario runs its programs on a volume in one of three ways, chosen
# by ST_STORAGE:
#   direct    `libretto run --volume IMG:/data --storage direct`: ext4 in the
#             application's own process (the default)
#   indirect  the same with --storage indirect: through libretto-fsd
#   loop      the Linux kernel's ext4 on a loop mount of an image made the
#             same way, programs on the kernel (network servers in the
#             testbed's Linux namespace): the baseline that checks the
#             scenario itself
# Functions are prefixed sv_.  ST_DATA is where the programs see the volume
# (/data, or the loop mount point).

ST_STORAGE=${ST_STORAGE:-direct}
ST_VOL_SIZE=${ST_VOL_SIZE:-1G}
ST_RUN_TIMEOUT=${ST_RUN_TIMEOUT:-120}

# sv_init: lt_init, the testbed and librettod (the volume modes need them;
# the loop mode only for network servers, which pass "net").
sv_init() {
	lt_init
	lt_need e2fsck mke2fs
	chmod 755 "$LT_TMP"
	case $ST_STORAGE in
	direct | indirect)
		ST_DATA=/data
		lt_testbed_up
		lt_daemon_up ;;
	loop)
		ST_DATA=$LT_TMP/mnt
		mkdir -p "$ST_DATA"
		lt_on_exit "mountpoint -q '$ST_DATA' && umount '$ST_DATA'"
		[ "${1:-}" = net ] && lt_testbed_up ;;
	*) lt_fail "ST_STORAGE=$ST_STORAGE: direct, indirect or loop" ;;
	esac
	ST_BIN=$LIBRETTO_BUILD/tests/storage
	lt_log "storage: $ST_STORAGE"
}

# sv_image IMG: a new volume image of ST_VOL_SIZE (`libretto volume create`,
# or mke2fs with its options for the loop mode).
sv_image() {
	local img=$1
	rm -f "$img"
	if [ "$ST_STORAGE" = loop ]; then
		truncate -s "$ST_VOL_SIZE" "$img" &&
			mke2fs -q -F -t ext4 -b 4096 -O ^inline_data,^metadata_csum_seed \
				-E lazy_itable_init=0,lazy_journal_init=0 "$img" >"$LT_TMP/mkfs.out" 2>&1 ||
			lt_fail "mke2fs $img failed: $(cat "$LT_TMP/mkfs.out")"
	else
		timeout 60 "$LIBRETTO" volume create "$img" --size "$ST_VOL_SIZE" >"$LT_TMP/mkfs.out" 2>&1 ||
			lt_fail "libretto volume create $img --size $ST_VOL_SIZE failed: $(cat "$LT_TMP/mkfs.out")"
	fi
	ST_IMG=$img
	lt_log "volume $img ($ST_VOL_SIZE) made"
}

# sv_attach / sv_detach: the loop mode mounts the image while programs run
# (the volume modes attach it in every run).
sv_attach() {
	[ "$ST_STORAGE" = loop ] || return 0
	mountpoint -q "$ST_DATA" && return 0
	mount -o loop "$ST_IMG" "$ST_DATA" || lt_fail "loop mount of $ST_IMG failed"
}
sv_detach() {
	[ "$ST_STORAGE" = loop ] || return 0
	mountpoint -q "$ST_DATA" || return 0
	umount "$ST_DATA" || lt_fail "umount $ST_DATA failed"
}

# sv_wait_released: lt_wait_volume_released for the scenario's image (the
# loop mode has nothing to wait for).
sv_wait_released() {
	[ "$ST_STORAGE" = loop ] && return 0
	lt_wait_volume_released "$ST_IMG"
}

# sv_fsck_clean WHAT: `e2fsck -fn` of the image must find nothing.
sv_fsck_clean() {
	local rc
	sv_detach
	sv_wait_released
	timeout 120 e2fsck -fn "$ST_IMG" >"$LT_TMP/fsck.out" 2>&1
	rc=$?
	if [ $rc -ne 0 ]; then
		cat "$LT_TMP/fsck.out" >&2
		lt_fail "e2fsck -fn $ST_IMG: status $rc $1"
	fi
	lt_log "e2fsck -fn: clean $1"
}

# sv_run_args NAME NET: the `libretto run` arguments for the current volume
# (NET: "" for the default network mode of volume-only programs, which need
# no NIC of their own, or e.g. "--mode direct --ip 10.42.0.40").
sv_run_args() {
	local name=$1 net=${2:-}
	[ -n "$net" ] || net="--mode indirect"
	# shellcheck disable=SC2206
	ST_ARGS=(run $net --name "$name" --volume "$ST_IMG:/data" --storage "$ST_STORAGE")
}

# sv_exec NAME CMD...: run CMD on the volume in the foreground (bounded by
# ST_RUN_TIMEOUT), stdout and stderr in $LT_TMP/NAME.out/.err; returns its
# status.  A refusal because the previous run's lease is still being
# released (nothing printed, "in use" on stderr) is retried for up to 10 s.
sv_exec() {
	local name=$1 rc i
	shift
	sv_attach
	if [ "$ST_STORAGE" = loop ]; then
		timeout -k 5 "$ST_RUN_TIMEOUT" "$@" >"$LT_TMP/$name.out" 2>"$LT_TMP/$name.err"
		return $?
	fi
	sv_run_args "$name" ""
	for ((i = 0; i < 50; i++)); do
		timeout -k 5 "$ST_RUN_TIMEOUT" "$LIBRETTO" "${ST_ARGS[@]}" -- "$@" \
			>"$LT_TMP/$name.out" 2>"$LT_TMP/$name.err"
		rc=$?
		if [ $rc -ne 0 ] && [ ! -s "$LT_TMP/$name.out" ] && grep -qiE "in use|EBUSY" "$LT_TMP/$name.err"; then
			sleep 0.2
			continue
		fi
		return $rc
	done
	return $rc
}

# sv_must NAME CMD...: sv_exec that must succeed.
sv_must() {
	local name=$1 rc
	sv_exec "$@"
	rc=$?
	if [ $rc -ne 0 ]; then
		tail -n 20 "$LT_TMP/$name.out" "$LT_TMP/$name.err" >&2
		lt_fail "$name: '${*:2}' failed on the volume (status $rc)"
	fi
}

# sv_bg NAME IP CMD...: start a network server on the volume in the
# background (lt_bg); ST_ADDR is where the peer reaches it.  In the volume
# modes it runs under `libretto run --mode $LT_MODE --ip IP`, in the loop
# mode on the kernel in the testbed's Linux namespace.
sv_bg() {
	local name=$1 ip=$2
	shift 2
	sv_attach
	if [ "$ST_STORAGE" = loop ]; then
		ST_ADDR=$LT_LINUX_IP
		lt_bg "$name" ip netns exec "$LT_NS_LINUX" "$@"
		return
	fi
	ST_ADDR=$ip
	ip -n "$LT_NS_PEER" neigh del "$ip" dev wire0 2>/dev/null
	sv_run_args "$name" "--mode $LT_MODE --ip $ip"
	lt_bg "$name" "$LIBRETTO" "${ST_ARGS[@]}" -- "$@"
}

# sv_bg_wait_tcp NAME IP PORT CMD...: sv_bg, then wait (up to 20 s) until
# PORT accepts connections from the peer; a start refused because the
# previous lease is still in release is retried (up to 10 times).  Sets
# ST_PID.
sv_bg_wait_tcp() {
	local name=$1 ip=$2 port=$3 try
	shift 3
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		sv_bg "$name" "$ip" "$@"
		ST_PID=$lt_last_pid
		local end=$((SECONDS + 20))
		while [ $SECONDS -lt $end ]; do
			if timeout 2 ip netns exec "$LT_NS_PEER" bash -c "exec 3<>/dev/tcp/$ST_ADDR/$port" 2>/dev/null; then
				return 0
			fi
			kill -0 "$ST_PID" 2>/dev/null || break
			sleep 0.2
		done
		if ! kill -0 "$ST_PID" 2>/dev/null && grep -qiE "in use|EBUSY" "$LT_TMP/$name.err"; then
			sleep 0.5
			continue
		fi
		break
	done
	tail -n 20 "$LT_TMP/$name.err" "$LT_TMP/$name.out" >&2
	if kill -0 "$ST_PID" 2>/dev/null; then
		lt_fail "$name did not accept connections on $ST_ADDR:$port within 20 s (still running: hung?)"
	fi
	lt_fail "$name did not accept connections on $ST_ADDR:$port (it exited)"
}
