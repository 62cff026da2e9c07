#!/bin/bash
# The storage benchmark (issue 8): fio on the kernel's ext4 over a loop mount of an image, and on the same image as a libretto volume, direct and indirect.
#
# Usage:
#   bench/storage.sh [--quick] [--out DIR] [--runs N]
#     (the same as: bench/run.sh --workloads storage ...)
#
# Sourced by bench/run.sh, which runs the group "storage" like the network
# groups: every run, each configuration in rotating order, rows in the same
# results.csv and the same report with ratios to "linux".  Here "linux" is
# the kernel's ext4 (mount -o loop IMAGE), "direct" is `libretto run
# --volume IMAGE:MOUNT -- fio ...` (ext4 inside fio's own process) and
# "indirect" the same with --storage indirect (libretto-fsd serves it).
# Each configuration of each run starts from a freshly made image (the same
# file, `libretto volume create --force`), and the page cache is dropped
# before every job so that reads come from the disk in all three.
#
# Jobs (fio, ioengine=psync, direct=0, one thread, a file of
# STORAGE_SIZE, each bounded to STORAGE_RUNTIME seconds):
#   fio_seqwrite_1m   sequential 1 MiB writes, fsync at the end   MiB/s
#   fio_seqread_1m    sequential 1 MiB reads                      MiB/s
#   fio_randwrite_4k  random 4 KiB writes, fsync at the end       IOPS
#   fio_randread_4k   random 4 KiB reads                          IOPS
#   fio_randwrite_4k_fsync  random 4 KiB writes, fsync after each IOPS
# p50_us/p99_us are fio's completion latencies; cpu_s is the CPU time of
# the fio process (all threads, the library OS's included), for indirect
# plus libretto-fsd's over the job; rss_kib fio's peak RSS (GNU time).
#
# Environment: STORAGE_SIZE (fio's file, default 512M; --quick 128M),
# STORAGE_RUNTIME (s per job, default 10; --quick 2), STORAGE_DIR (where the
# image lives, default the runner's scratch directory: it must be a disk
# file system, not tmpfs, for the page-cache drops to mean anything).

STORAGE_JOBS="fio_seqwrite_1m fio_seqread_1m fio_randwrite_4k fio_randread_4k fio_randwrite_4k_fsync"
# The volume's mount point inside the program: a path absent on the host,
# so that a runtime without volume support fails instead of writing to the
# host's file system.
STORAGE_MNT=/libretto-bench-volume

# storage_job_spec JOB: "RW BS UNIT EXTRA" for fio.
storage_job_spec() {
	case "$1" in
	fio_seqwrite_1m) echo "write 1M MiB/s --end_fsync=1" ;;
	fio_seqread_1m) echo "read 1M MiB/s" ;;
	fio_randwrite_4k) echo "randwrite 4k IOPS --end_fsync=1" ;;
	fio_randread_4k) echo "randread 4k IOPS" ;;
	fio_randwrite_4k_fsync) echo "randwrite 4k IOPS --fsync=1" ;;
	esac
}

# fsd_pid: libretto-fsd's pid as librettod reports it (empty if none).
storage_fsd_pid() {
	timeout 10 "$LIBRETTO" status --json 2>/dev/null | sed -n 's/.*"fsd_pid":\([0-9][0-9]*\).*/\1/p'
}

storage_drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# storage_parse JSON UNIT: "VALUE P50 P99" from fio's JSON output (the
# read or write side, whichever did the I/O); empty if it has none.
storage_parse() {
	python3 - "$1" "$2" <<'EOF' 2>/dev/null
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
side = max(("read", "write"), key=lambda s: j[s]["io_bytes"])
s = j[side]
if s["io_bytes"] == 0:
    sys.exit(1)
v = s["bw_bytes"] / 1048576.0 if sys.argv[2] == "MiB/s" else s["iops"]
pct = s["clat_ns"].get("percentile", {})
p50 = pct.get("50.000000", 0) / 1000.0
p99 = pct.get("99.000000", 0) / 1000.0
print("%.1f %.0f %.0f" % (v, p50, p99))
EOF
}

# storage_fio JOB CONFIG RUN DIR IMAGE: one fio job on DIR (the loop mount)
# or on the volume IMAGE under libretto; one row in results.csv.
storage_fio() {
	local job=$1 config=$2 run=$3 dir=$4 image=$5 ip=$6
	local spec rw bs unit extra json err cpu res fp0="" ft0=0 fp1 v p50 p99 tu ts rss
	spec=$(storage_job_spec "$job")
	read -r rw bs unit extra <<<"$spec"
	json=$tmp/$job-$config-$run.json
	err=$tmp/$job-$config-$run.err
	local fio=(fio --name="$job" --thread --ioengine=psync --direct=0 --rw="$rw" --bs="$bs"
		--size="$STORAGE_SIZE" --runtime="$STORAGE_RUNTIME" --filename="$dir/fio.dat"
		--fallocate=none --fadvise_hint=0 --invalidate=0 --randrepeat=1
		--output-format=json --output="$json" $extra)
	local cmd=()
	case "$config" in
	linux) cmd=("${fio[@]}") ;;
	direct | indirect)
		ip -n $NS_PEER neigh del "$ip" dev wire0 2>/dev/null
		cmd=("$LIBRETTO" run --name b-fio --ip "$ip" --storage "$config"
			--volume "$image:$STORAGE_MNT" -- "${fio[@]}")
		;;
	esac
	note_cmd "$config: ${cmd[*]//$tmp/\$TMP}"
	storage_drop_caches
	if [ "$config" = indirect ]; then
		fp0=$(storage_fsd_pid)
		[ -n "$fp0" ] && ft0=$(cpu_ticks "$fp0")
	fi
	rm -f "$json" "$tmp/time.out"
	# GNU time: the CPU of the whole process (every thread) and its peak
	# RSS; `libretto run` execs fio, so it is fio's.
	/usr/bin/time -f '%U %S %M' -o "$tmp/time.out" \
		timeout $((STORAGE_RUNTIME * 3 + 60)) "${cmd[@]}" >"$err" 2>&1
	read -r tu ts rss <<<"$(tail -1 "$tmp/time.out" 2>/dev/null)"
	cpu=$(awk -v u="${tu:-0}" -v s="${ts:-0}" 'BEGIN { printf "%.2f", u + s }')
	if [ "$config" = indirect ]; then
		fp1=$(storage_fsd_pid)
		if [ -n "$fp0" ] && [ "$fp0" = "$fp1" ]; then
			cpu=$(awk -v a="$cpu" -v t0="$ft0" -v t1="$(cpu_ticks "$fp1")" -v hz="$CLK_TCK" \
				'BEGIN { printf "%.2f", a + (t1 - t0) / hz }')
		else
			cpu=NA
		fi
	fi
	res=$([ -s "$json" ] && storage_parse "$json" "$unit")
	if [ -z "$res" ]; then
		echo "$job,$config,$run,NA,$unit,NA,NA,NA,NA" >>"$csv"
		fail_row "$job" "$config" "$run" "fio failed: $(tail -c 300 "$err" | tr '\n' ' ')"
		log "$job $config run $run: failed (see logs/storage-$job-$config-$run.err)"
		mkdir -p "$out/logs"
		cp "$err" "$out/logs/storage-$job-$config-$run.err"
		return 1
	fi
	read -r v p50 p99 <<<"$res"
	echo "$job,$config,$run,$v,$unit,$p50,$p99,$cpu,${rss:-NA}" >>"$csv"
	log "$(printf '%-24s %-8s run %s: %s %s (p50 %s us, p99 %s us, cpu %s s, rss %s KiB)' \
		"$job" "$config" "$run" "$v" "$unit" "$p50" "$p99" "$cpu" "${rss:-NA}")"
}

# group_storage CONFIG RUN IP: every job on a fresh image in CONFIG.
group_storage() {
	local config=$1 run=$2 ip=$3 img dir job mnt=""
	command -v fio >/dev/null || { srv_fail="fio is not installed (scripts/deps.sh bench)"; return 1; }
	[ -x /usr/bin/time ] || { srv_fail="GNU time (/usr/bin/time) is not installed (scripts/deps.sh bench)"; return 1; }
	img=${STORAGE_DIR:-$tmp}/storage.img
	timeout 120 "$LIBRETTO" volume create "$img" --size "$STORAGE_IMAGE_SIZE" --force \
		>/dev/null 2>"$tmp/volume-create.err" ||
		{ srv_fail="libretto volume create failed: $(tr '\n' ' ' <"$tmp/volume-create.err")"; return 1; }
	note_cmd "image: libretto volume create IMAGE --size $STORAGE_IMAGE_SIZE --force (each configuration, each run)"
	case "$config" in
	linux)
		mnt=$tmp/storage-mnt
		mkdir -p "$mnt"
		mount -o loop "$img" "$mnt" 2>"$tmp/mount.err" ||
			{ srv_fail="mount -o loop failed: $(tr '\n' ' ' <"$tmp/mount.err")"; return 1; }
		note_cmd "linux: mount -o loop IMAGE MNT"
		dir=$mnt
		;;
	direct | indirect)
		[ ! -e "$STORAGE_MNT" ] || { srv_fail="$STORAGE_MNT exists on the host"; return 1; }
		# A runtime without volumes would not see the new file system's lost+found.
		if ! timeout 30 "$LIBRETTO" run --name b-fio --ip "$ip" --storage "$config" \
			--volume "$img:$STORAGE_MNT" -- test -d "$STORAGE_MNT/lost+found" \
			>"$tmp/probe.err" 2>&1; then
			srv_fail="the volume is not usable under libretto --storage $config (a program there does not see $STORAGE_MNT/lost+found) $(tail -c 300 "$tmp/probe.err" | tr '\n' ' ')"
			return 1
		fi
		dir=$STORAGE_MNT
		;;
	esac
	for job in $STORAGE_JOBS; do
		storage_fio "$job" "$config" "$run" "$dir" "$img" "$ip"
	done
	if [ -n "$mnt" ]; then
		umount "$mnt" || log "umount $mnt failed"
	fi
	# The image must still be a clean ext4 after every configuration.
	if ! timeout 120 "$LIBRETTO" volume check "$img" >"$tmp/check.out" 2>&1; then
		log "storage $config run $run: the image is not clean afterwards:"
		tail -5 "$tmp/check.out" >&2
		mkdir -p "$out/logs"
		cp "$tmp/check.out" "$out/logs/storage-check-$config-$run.txt"
	fi
	rm -f "$img"
	return 0
}

# storage_setup QUICK: the sizes for the mode (1 quick, 0 full), once
# bench_main knows it; the environment's STORAGE_* win.
storage_setup() {
	if [ "$1" = 1 ]; then
		STORAGE_SIZE=${STORAGE_SIZE:-128M}
		STORAGE_RUNTIME=${STORAGE_RUNTIME:-2}
	else
		STORAGE_SIZE=${STORAGE_SIZE:-512M}
		STORAGE_RUNTIME=${STORAGE_RUNTIME:-10}
	fi
	# Room for fio's file, the journal and metadata.
	STORAGE_IMAGE_SIZE=$(python3 -c '
import sys
s = sys.argv[1].upper()
m = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
n = int(s[:-1]) * m[s[-1]] if s[-1] in m else int(s)
print("%dM" % ((n * 2 + (256 << 20)) >> 20))' "$STORAGE_SIZE")
}

# Run directly: the storage group of the runner alone.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	exec "$(dirname "$0")/run.sh" --workloads storage "$@"
fi
