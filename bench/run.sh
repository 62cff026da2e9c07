#!/bin/bash
# The benchmark runner behind `make bench` and `libretto bench`: unmodified servers on the Linux kernel stack and under libretto, driven from the peer.
#
# Usage:
#   bench/run.sh [--quick] [--out DIR] [--runs N] [--workloads LIST]
#   bench/run.sh timeline --event-at SECONDS --event CMD [--duration S]
#                [--config linux|direct|indirect] [--out DIR]
#
# Configurations: "linux" (the program in netns libretto-linux, 10.42.0.254,
# the kernel stack), "direct" (the same program under `libretto run --mode
# direct`, pool IPs 10.42.0.40-45) and "indirect" (the same program under
# `libretto run --mode indirect --ip A`, its frames through libretto-netd,
# dedicated pool IPs 10.42.0.46-51).  Clients run in netns libretto-peer.
# Runs are interleaved and the order rotates: run 1 linux, direct,
# indirect; run 2 direct, indirect, linux; run 3 indirect, linux, direct;
# ... so that drift hits all three.  For indirect, cpu_s and rss_kib
# include libretto-netd's (also written apart to netd.csv).
#
# LIST is a comma-separated list of workload groups: nginx, latency (wrk,
# 1 connection), sockperf (TCP ping-pong), redis, memcached, iperf3,
# storage (fio on a volume; bench/storage.sh: there "linux" is the kernel's
# ext4 on a loop mount of the same image) (default: all).
# Every load is bounded in time (timeout)
# and the machine is left as found: servers stopped, and the testbed and
# librettod taken down again if this runner brought them up.
#
# Environment: LIBRETTO (the CLI; default: the build's, see below),
# LIBRETTO_BUILD (the build directory, default <source>/build),
# LIBRETTO_TESTBED_PREFIX and LIBRETTO_CONTROL (as in tests/integration/lib.sh).
set -uo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC_DIR=$(cd "$BENCH_DIR/.." && pwd)
LIBRETTO_BUILD=${LIBRETTO_BUILD:-$SRC_DIR/build}
LIBRETTO=${LIBRETTO:-$LIBRETTO_BUILD/src/cli/libretto}

# The testbed's namespaces, as tests/integration/lib.sh names them: a
# private prefix also selects a private librettod (its own control socket),
# so that a benchmark can run beside a shared testbed.
PREFIX=${LIBRETTO_TESTBED_PREFIX:-libretto}
NS_PEER=$PREFIX-peer
NS_LINUX=$PREFIX-linux
NS_HOST=$PREFIX-host
if [ "$PREFIX" != libretto ] && [ -z "${LIBRETTO_CONTROL:-}" ]; then
	export LIBRETTO_CONTROL=/run/$PREFIX/control.sock
fi
LINUX_IP=10.42.0.254
# Pool IPs reserved for the benchmark (10.42.0.40-49).
IP_NGINX=10.42.0.40
IP_REDIS=10.42.0.41
IP_MEMCACHED=10.42.0.42
IP_IPERF3=10.42.0.43
IP_TIMELINE=10.42.0.44
IP_SOCKPERF=10.42.0.45
# Indirect mode's own addresses, so that an address just released by a
# direct server (and its neighbour entry in the peer) is never reused by
# an indirect one.
IP_IND_NGINX=10.42.0.46
IP_IND_REDIS=10.42.0.47
IP_IND_MEMCACHED=10.42.0.48
IP_IND_IPERF3=10.42.0.49
IP_IND_TIMELINE=10.42.0.50
IP_IND_SOCKPERF=10.42.0.51
# The storage group's fio (its network lease is unused).
IP_STORAGE=10.42.0.52
IP_IND_STORAGE=10.42.0.53

log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

usage() {
	sed -n '4,7p' "${BASH_SOURCE[0]}" | sed 's/^# *//'
}

# ---------------------------------------------------------------- setup --

started_testbed=0
started_daemon=0
srv_pid=""
tmp=""

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[ -n "$srv_pid" ] && stop_server
	# The clients' stderr, with the results.
	if [ -n "${out:-}" ] && [ -d "$out" ] && [ -s "$tmp/client.err" ]; then
		mkdir -p "$out/logs"
		cp "$tmp/client.err" "$out/logs/client.err"
	fi
	if [ "$started_daemon" = 1 ]; then
		log "stopping librettod (this runner started it)"
		timeout 30 "$LIBRETTO" down >/dev/null 2>&1
		# The private control directory made in bench_init, if now empty.
		[ -n "${LIBRETTO_CONTROL:-}" ] && [ "$PREFIX" != libretto ] &&
			rmdir "$(dirname "$LIBRETTO_CONTROL")" 2>/dev/null
	fi
	if [ "$started_testbed" = 1 ]; then
		log "removing the testbed (this runner brought it up)"
		timeout 60 "$LIBRETTO" testbed down >/dev/null 2>&1
	fi
	[ -n "$tmp" ] && [ -d "$tmp" ] && rm -rf "$tmp"
	exit "$rc"
}

ns_exists() { ip netns list 2>/dev/null | awk -v n="$1" '$1 == n { f = 1 } END { exit !f }'; }

need() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 || die "$t is not installed (scripts/deps.sh bench)"
	done
}

bench_init() {
	[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, XDP)"
	[ -x "$LIBRETTO" ] || die "no CLI at $LIBRETTO (build first, or set LIBRETTO)"
	need python3 timeout ip ss
	[ -n "${LIBRETTO_CONTROL:-}" ] && mkdir -p "$(dirname "$LIBRETTO_CONTROL")"
	tmp=$(mktemp -d /tmp/libretto-bench.XXXXXX)
	trap cleanup EXIT
	trap 'exit 1' INT TERM
	if ! { ns_exists $NS_PEER && ns_exists $NS_HOST && ns_exists $NS_LINUX; }; then
		log "bringing the testbed up"
		timeout 60 "$LIBRETTO" testbed up >&2 || die "libretto testbed up failed"
		started_testbed=1
	fi
	if ! timeout 10 "$LIBRETTO" status >/dev/null 2>&1; then
		log "starting librettod"
		timeout 30 "$LIBRETTO" up >/dev/null || die "libretto up failed"
		started_daemon=1
	fi
	others=$(timeout 10 "$LIBRETTO" ps --json 2>/dev/null | python3 -c '
import json, sys
apps = [a for a in json.load(sys.stdin).get("apps", []) if a.get("alive")]
print(" ".join("%s(pid %s)" % (a.get("name"), a.get("pid")) for a in apps))' 2>/dev/null)
	if [ -n "$others" ]; then
		log "WARNING: other applications run under libretto: $others (they share the CPUs)"
	fi
}

# ------------------------------------------------------------ processes --

# cpu_ticks PID: utime + stime of the whole process (all threads), in ticks.
cpu_ticks() {
	awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0
}
CLK_TCK=$(getconf CLK_TCK)

# rss_kib PID: the current resident set (VmRSS) in KiB.
rss_kib() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
shmem_kib() { awk '$1 == "RssShmem:" { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kib() { awk '$1 == "VmHWM:" { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# netd_pid: libretto-netd's pid as this librettod reports it (empty if it
# does not run).  Asked each time, because librettod restarts a dead netd
# under a new pid.
netd_pid() {
	timeout 10 "$LIBRETTO" stats --json 2>/dev/null | sed -n 's/.*"netd_pid":\([0-9][0-9]*\).*/\1/p'
}

# cpu_mark CONFIG: a snapshot of the CPU time to charge to the
# configuration: the server's ticks, and for indirect also netd's pid and
# ticks ("SERVER:NETD_PID:NETD_TICKS").
cpu_mark() {
	local np
	if [ "$1" = indirect ]; then
		np=$(netd_pid)
		echo "$(cpu_ticks "$srv_pid"):${np:-none}:$([ -n "$np" ] && cpu_ticks "$np" || echo 0)"
	else
		cpu_ticks "$srv_pid"
	fi
}

# start_server NAME CONFIG IP PORT CMD...: start CMD on the kernel stack
# (linux) or under libretto (direct, indirect) and wait until PORT listens
# (for libretto: until `libretto ps` lists the port), without
# connecting to it (iperf3 -s would count a bare connect as a test).
# Sets srv_pid (the server's own pid: both `ip netns exec` and `libretto
# run` exec the program).
start_server() {
	local name=$1 config=$2 ip=$3 port=$4 i
	shift 4
	srv_name=$name
	srv_out=$tmp/$name-$config.log
	case "$config" in
	linux)
		ip netns exec $NS_LINUX "$@" >"$srv_out" 2>&1 &
		srv_pid=$!
		for ((i = 0; i < 75; i++)); do
			ip netns exec $NS_LINUX ss -Hltn "sport = :$port" 2>/dev/null | grep -q . && return 0
			kill -0 "$srv_pid" 2>/dev/null || break
			sleep 0.2
		done
		;;
	direct | indirect)
		# A stale neighbour entry (another VF's MAC for this IP) would
		# delay the first packets until it expires.
		ip -n $NS_PEER neigh del "$ip" dev wire0 2>/dev/null
		if [ "$config" = indirect ] && [ -z "$(netd_pid)" ]; then
			srv_fail="libretto-netd does not run (libretto stats)"
			log "$srv_fail"
			return 1
		fi
		"$LIBRETTO" run --mode "$config" --name "b-$name" --ip "$ip" -- "$@" >"$srv_out" 2>&1 &
		srv_pid=$!
		for ((i = 0; i < 75; i++)); do
			if timeout 10 "$LIBRETTO" ps --json 2>/dev/null | python3 -c '
import json, sys
apps = json.load(sys.stdin)["apps"]
sys.exit(0 if any(a.get("name") == sys.argv[1] and a.get("alive") and sys.argv[2] in a.get("ports", [])
              for a in apps) else 1)' "b-$name" "tcp:$port" 2>/dev/null; then
				return 0
			fi
			kill -0 "$srv_pid" 2>/dev/null || break
			sleep 0.2
		done
		;;
	esac
	tail -n 5 "$srv_out" >&2
	# The reason, for the report: how it ended and the server's (or
	# libretto's) last words.
	local why last
	if kill -0 "$srv_pid" 2>/dev/null; then
		why="did not listen on port $port within 15 s"
	else
		wait "$srv_pid" 2>/dev/null
		why="exited (status $?) before listening on port $port"
	fi
	last=$(grep -v '^$' "$srv_out" 2>/dev/null | tail -n 1 | tr ',\n' '; ' | cut -c1-200 | sed 's/ *$//')
	srv_fail="$why${last:+: $last}"
	stop_server
	return 1
}

stop_server() {
	local i
	[ -n "$srv_pid" ] || return 0
	kill "$srv_pid" 2>/dev/null
	for ((i = 0; i < 50; i++)); do
		kill -0 "$srv_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$srv_pid" 2>/dev/null
	wait "$srv_pid" 2>/dev/null
	srv_pid=""
	# Keep the server's output (and nginx's error log) with the results.
	if [ -n "${out:-}" ] && [ -d "$out" ] && [ -s "${srv_out:-/nonexistent}" ]; then
		mkdir -p "$out/logs"
		cat "$srv_out" >>"$out/logs/$(basename "$srv_out")"
	fi
	if [ -n "${out:-}" ] && [ -s "$tmp/nginx/error.log" ]; then
		mkdir -p "$out/logs"
		cat "$tmp/nginx/error.log" >>"$out/logs/nginx-error.log"
		: >"$tmp/nginx/error.log"
	fi
	return 0
}

peer() { ip netns exec $NS_PEER "$@"; }

# ------------------------------------------------------------- recording --

csv=""
cmds=""

# record WORKLOAD CONFIG RUN VALUE UNIT P50 P99 MARK [P999]: one CSV row,
# with the CPU time since MARK (from cpu_mark) and the current RSS.  For
# indirect both add libretto-netd's (its CPU over the load, its RSS now),
# and netd's share goes to netd.csv as well; if netd restarted during the
# load its CPU time is unknown and cpu_s is NA rather than a guess.
record() {
	local w=$1 c=$2 r=$3 v=$4 u=$5 p50=$6 p99=$7 mark=$8 p999=${9:-}
	local t0=${mark%%:*} t1 cpu rss np0="" nt0=0 np1 ncpu=NA nrss=NA nshm=NA
	t1=$(cpu_ticks "$srv_pid")
	cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / hz }')
	rss=$(rss_kib "$srv_pid")
	if [ "$c" = indirect ]; then
		np0=${mark#*:} nt0=${np0#*:} np0=${np0%%:*}
		np1=$(netd_pid)
		if [ -n "$np1" ] && [ "$np0" = "$np1" ]; then
			ncpu=$(awk -v a="$nt0" -v b="$(cpu_ticks "$np1")" -v hz="$CLK_TCK" \
				'BEGIN { printf "%.2f", (b - a) / hz }')
			cpu=$(awk -v a="$cpu" -v b="$ncpu" 'BEGIN { printf "%.2f", a + b }')
		else
			log "$w $c run $r: libretto-netd changed (pid $np0 -> ${np1:-none}): cpu_s NA"
			cpu=NA
		fi
		if [ -n "$np1" ]; then
			nrss=$(rss_kib "$np1")
			nshm=$(shmem_kib "$np1")
			rss=$((rss + nrss))
		else
			rss=NA
		fi
		echo "$w,$r,$ncpu,$nrss,$nshm" >>"$out/netd.csv"
	fi
	if [ -z "$v" ]; then
		v=NA
		fail_row "$w" "$c" "$r" "the client reported no result (logs/client.err)"
	fi
	echo "$w,$c,$r,$v,$u,$p50,$p99,$cpu,$rss" >>"$csv"
	[ -n "$p999" ] && echo "$w,$c,$r,$p50,$p99,$p999" >>"$out/latency.csv"
	log "$(printf '%-22s %-8s run %s: %s %s (p50 %s us, p99 %s us, cpu %s s, rss %s KiB)' \
		"$w" "$c" "$r" "$v" "$u" "$p50" "$p99" "$cpu" "$rss")"
}

# fail_row WORKLOAD CONFIG RUN REASON: why a row has no value, for the
# report (failures.csv).
fail_row() {
	local reason=${4//,/;}
	echo "$1,$2,$3,${reason//$'\n'/ }" >>"$out/failures.csv"
}

# group_workloads GROUP: the rows a workload group produces, so that a
# server that does not start still gives each of them a failed row.
group_workloads() {
	local n
	case "$1" in
	nginx) for n in $NGINX_CONNS; do echo "nginx_1k_c$n nginx_64k_c$n"; done ;;
	latency) echo latency ;;
	sockperf) echo sockperf ;;
	redis) echo redis_set_P1 redis_get_P1 redis_set_P16 redis_get_P16 ;;
	memcached) echo memcached_set memcached_get ;;
	iperf3) echo iperf3_P1 iperf3_P4 ;;
	storage) echo "$STORAGE_JOBS" ;;
	esac
}

# group_failed GROUP CONFIG RUN REASON: failed rows (value NA) for every
# row of the group that this run did not record.
group_failed() {
	local g=$1 c=$2 r=$3 reason=$4 w u
	for w in $(group_workloads "$g"); do
		grep -q "^$w,$c,$r," "$csv" && continue
		u=req/s
		[ "$g" = iperf3 ] && u=bit/s
		[ "$g" = storage ] && u=$(storage_job_spec "$w" | awk '{ print $3 }')
		echo "$w,$c,$r,NA,$u,NA,NA,NA,NA" >>"$csv"
		fail_row "$w" "$c" "$r" "$reason"
		log "$w $c run $r: failed: $reason"
	done
}

# note_cmd TEXT: remember a command line for the report (once).
note_cmd() {
	grep -qxF -- "$1" "$cmds" 2>/dev/null || echo "$1" >>"$cmds"
}

# ------------------------------------------------------------ workloads --

# Each group function runs one server in one configuration for one run and
# all of its workloads against it.

WRK_LUA=$BENCH_DIR/wrk_report.lua

nginx_prepare() {
	local d=$tmp/nginx
	mkdir -p "$d/www" "$d/tmp"
	head -c 1024 /dev/urandom >"$d/www/1k.bin"
	head -c 65536 /dev/urandom >"$d/www/64k.bin"
	sed "s|@PREFIX@|$d|g" "$BENCH_DIR/nginx.conf.in" >"$d/nginx.conf"
}

# wrk_run WORKLOAD CONFIG RUN IP FILE CONNS
wrk_run() {
	local w=$1 c=$2 r=$3 ip=$4 file=$5 conns=$6 thr=2 t0 line
	[ "$conns" -lt 2 ] && thr=1
	local cmd=(wrk -t"$thr" -c"$conns" -d"${DUR}s" --timeout 5s -s "$WRK_LUA" "http://$ip:8080/$file")
	note_cmd "peer: ${cmd[*]}"
	t0=$(cpu_mark "$c")
	line=$(timeout $((DUR + 20)) ip netns exec $NS_PEER "${cmd[@]}" 2>>"$tmp/client.err" | grep '^BENCH ')
	local rps p50 p99 p999
	rps=$(sed -n 's/.* rps=\([0-9.]*\).*/\1/p' <<<"$line")
	p50=$(sed -n 's/.* p50_us=\([0-9]*\).*/\1/p' <<<"$line")
	p99=$(sed -n 's/.* p99_us=\([0-9]*\).*/\1/p' <<<"$line")
	p999=$(sed -n 's/.* p999_us=\([0-9]*\).*/\1/p' <<<"$line")
	local errs
	errs=$(sed -n 's/.* errors=\([0-9]*\).*/\1/p' <<<"$line")
	[ -n "$errs" ] && [ "$errs" != 0 ] && log "$w $c run $r: wrk reported $errs socket errors"
	if [ "$w" = latency ]; then
		record "$w" "$c" "$r" "$rps" req/s "$p50" "$p99" "$t0" "${p999:-NA}"
	else
		record "$w" "$c" "$r" "$rps" req/s "$p50" "$p99" "$t0"
	fi
}

group_nginx() {
	local c=$1 r=$2 ip=$3 conns
	need nginx wrk
	nginx_prepare
	local cmd=(nginx -p "$tmp/nginx/" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log")
	note_cmd "server: ${cmd[*]}   (nginx.conf: bench/nginx.conf.in: master_process off; daemon off)"
	start_server nginx "$c" "$ip" 8080 "${cmd[@]}" || { log "nginx ($c) did not start"; return 1; }
	for conns in $NGINX_CONNS; do
		wrk_run "nginx_1k_c$conns" "$c" "$r" "$ip" 1k.bin "$conns"
		wrk_run "nginx_64k_c$conns" "$c" "$r" "$ip" 64k.bin "$conns"
	done
	stop_server
}

group_latency() {
	local c=$1 r=$2 ip=$3
	need nginx wrk
	nginx_prepare
	start_server nginx "$c" "$ip" 8080 nginx -p "$tmp/nginx/" -c "$tmp/nginx/nginx.conf" \
		-e "$tmp/nginx/error.log" || { log "nginx ($c) did not start"; return 1; }
	wrk_run latency "$c" "$r" "$ip" 1k.bin 1
	stop_server
}

group_redis() {
	local c=$1 r=$2 ip=$3 p t t0 line n
	need redis-server redis-benchmark
	mkdir -p "$tmp/redis"
	local cmd=(redis-server --port 6379 --bind 0.0.0.0 --protected-mode no --save '' --appendonly no
		--daemonize no --dir "$tmp/redis")
	note_cmd "server: ${cmd[*]}"
	start_server redis "$c" "$ip" 6379 "${cmd[@]}" || { log "redis ($c) did not start"; return 1; }
	for p in 1 16; do
		for t in set get; do
			n=$REDIS_N
			[ "$p" = 16 ] && n=$((REDIS_N * 4))
			local bcmd=(redis-benchmark -h "$ip" -p 6379 -c 32 -n "$n" -r 100000 -P "$p" -t "$t" --csv)
			note_cmd "peer: ${bcmd[*]}"
			t0=$(cpu_mark "$c")
			line=$(timeout $((DUR * 4 + 30)) ip netns exec $NS_PEER "${bcmd[@]}" 2>>"$tmp/client.err" |
				grep -i "^\"$t\"")
			# "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
			local rps p50 p99
			rps=$(awk -F'"' '{ print $4 }' <<<"$line")
			p50=$(awk -F'"' '{ if ($10 != "") printf "%d", $10 * 1000 }' <<<"$line")
			p99=$(awk -F'"' '{ if ($14 != "") printf "%d", $14 * 1000 }' <<<"$line")
			record "redis_${t}_P$p" "$c" "$r" "$rps" req/s "$p50" "$p99" "$t0"
		done
	done
	stop_server
}

group_memcached() {
	local c=$1 r=$2 ip=$3 t t0 out_t keys secs
	need memcached memcslap
	local cmd=(memcached -u root -l 0.0.0.0 -p 11211 -U 0 -t 2 -m 256)
	note_cmd "server: ${cmd[*]}"
	start_server memcached "$c" "$ip" 11211 "${cmd[@]}" || { log "memcached ($c) did not start"; return 1; }
	for t in set get; do
		local bcmd=(memcslap --servers="$ip:11211" --concurrency=16 --execute-number="$MC_N" --test="$t")
		note_cmd "peer: ${bcmd[*]}"
		t0=$(cpu_mark "$c")
		out_t=$(timeout $((DUR * 4 + 30)) ip netns exec $NS_PEER "${bcmd[@]}" 2>>"$tmp/client.err" |
			grep "^Time to $t ")
		# "Time to get           32000 keys by   16 threads:     0.396 seconds."
		keys=$(awk '{ print $4 }' <<<"$out_t")
		secs=$(awk '{ print $(NF - 1) }' <<<"$out_t")
		local rps=""
		[ -n "$keys" ] && [ -n "$secs" ] && rps=$(awk -v k="$keys" -v s="$secs" 'BEGIN { if (s > 0) printf "%.0f", k / s }')
		record "memcached_$t" "$c" "$r" "$rps" req/s NA NA "$t0"
	done
	stop_server
}

group_iperf3() {
	local c=$1 r=$2 ip=$3 p t0 bps
	need iperf3
	local cmd=(iperf3 -s -p 5201)
	note_cmd "server: ${cmd[*]}"
	start_server iperf3 "$c" "$ip" 5201 "${cmd[@]}" || { log "iperf3 ($c) did not start"; return 1; }
	for p in 1 4; do
		local bcmd=(iperf3 -c "$ip" -p 5201 -t "$DUR" -P "$p" -J --connect-timeout 5000)
		note_cmd "peer: ${bcmd[*]}"
		t0=$(cpu_mark "$c")
		bps=$(timeout $((DUR + 25)) ip netns exec $NS_PEER "${bcmd[@]}" 2>>"$tmp/client.err" | python3 -c '
import json, sys
try:
    d = json.load(sys.stdin)
    print("%.0f" % d["end"]["sum_received"]["bits_per_second"])
except Exception:
    pass')
		record "iperf3_P$p" "$c" "$r" "$bps" bit/s NA NA "$t0"
		# iperf3 -s takes a moment to be ready for the next test.
		sleep 0.5
	done
	stop_server
}

# sockperf ping-pong over TCP: one outstanding message at a time, so its
# rate is 1 / round trip; the percentiles are full round trips (--full-rtt).
group_sockperf() {
	local c=$1 r=$2 ip=$3 t0 txt
	need sockperf
	local cmd=(sockperf server --tcp -i 0.0.0.0 -p 11111)
	note_cmd "server: ${cmd[*]}"
	start_server sockperf "$c" "$ip" 11111 "${cmd[@]}" || { log "sockperf ($c) did not start"; return 1; }
	local bcmd=(sockperf ping-pong --tcp -i "$ip" -p 11111 -t "$DUR" -m 64 --full-rtt)
	note_cmd "peer: ${bcmd[*]}"
	t0=$(cpu_mark "$c")
	txt=$(timeout $((DUR + 20)) ip netns exec $NS_PEER "${bcmd[@]}" 2>&1 | sed 's/\x1b\[[0-9;]*m//g')
	local rt rx rps p50 p99 p999
	rt=$(sed -n 's/.*\[Total Run\] RunTime=\([0-9.]*\) sec.*/\1/p' <<<"$txt")
	rx=$(sed -n 's/.*ReceivedMessages=\([0-9]*\).*/\1/p' <<<"$txt")
	pct() { sed -n "s/.*percentile $1 = *\([0-9.]*\).*/\1/p" <<<"$txt" | awk '{ printf "%d", $1 + 0.5 }'; }
	p50=$(pct 50.000) p99=$(pct 99.000) p999=$(pct 99.900)
	[ -n "$rt" ] && [ -n "$rx" ] && rps=$(awk -v n="$rx" -v t="$rt" 'BEGIN { if (t > 0) printf "%.0f", n / t }')
	record sockperf "$c" "$r" "${rps:-}" req/s "${p50:-NA}" "${p99:-NA}" "$t0" "${p999:-NA}"
	stop_server
}

group_ip() {
	case "$1:$2" in
	*:linux) echo "$LINUX_IP" ;;
	nginx:indirect | latency:indirect) echo "$IP_IND_NGINX" ;;
	sockperf:indirect) echo "$IP_IND_SOCKPERF" ;;
	redis:indirect) echo "$IP_IND_REDIS" ;;
	memcached:indirect) echo "$IP_IND_MEMCACHED" ;;
	iperf3:indirect) echo "$IP_IND_IPERF3" ;;
	storage:indirect) echo "$IP_IND_STORAGE" ;;
	storage:*) echo "$IP_STORAGE" ;;
	nginx:* | latency:*) echo "$IP_NGINX" ;;
	sockperf:*) echo "$IP_SOCKPERF" ;;
	redis:*) echo "$IP_REDIS" ;;
	memcached:*) echo "$IP_MEMCACHED" ;;
	iperf3:*) echo "$IP_IPERF3" ;;
	esac
}

# The storage group (issue 8): group_storage and its helpers.
. "$BENCH_DIR/storage.sh"

# ------------------------------------------------------------------ main --

bench_main() {
	local quick=0 runs="" groups=""
	out=""
	while [ $# -gt 0 ]; do
		case "$1" in
		--quick) quick=1 ;;
		--out) out=${2:?--out needs a directory}; shift ;;
		--out=*) out=${1#--out=} ;;
		--runs) runs=${2:?--runs needs a number}; shift ;;
		--runs=*) runs=${1#--runs=} ;;
		--workloads) groups=${2:?--workloads needs a list}; shift ;;
		--workloads=*) groups=${1#--workloads=} ;;
		-h | --help) usage; exit 0 ;;
		*) echo "bench: unknown option '$1'" >&2; usage >&2; exit 2 ;;
		esac
		shift
	done
	if [ "$quick" = 1 ]; then
		DUR=1 NGINX_CONNS="1 16" REDIS_N=20000 MC_N=1500
		runs=${runs:-2}
		groups=${groups:-nginx,sockperf,redis,memcached,iperf3,storage}
	else
		DUR=5 NGINX_CONNS="1 16 128" REDIS_N=250000 MC_N=12000
		runs=${runs:-3}
		groups=${groups:-nginx,latency,sockperf,redis,memcached,iperf3,storage}
	fi
	storage_setup "$quick"
	[[ "$runs" =~ ^[0-9]+$ ]] && [ "$runs" -ge 1 ] && [ "$runs" -le 20 ] || die "--runs must be 1..20"
	local g
	for g in ${groups//,/ }; do
		case "$g" in
		nginx | latency | sockperf | redis | memcached | iperf3 | storage) ;;
		*) echo "bench: unknown workload group '$g' (nginx, latency, sockperf, redis, memcached, iperf3, storage)" >&2; exit 2 ;;
		esac
	done
	[ -n "$out" ] || out=bench/results/$(date -u +%Y%m%dT%H%M%SZ)
	mkdir -p "$out" || die "cannot create $out"
	out=$(cd "$out" && pwd)
	csv=$out/results.csv
	cmds=$out/commands.txt
	echo "workload,config,run,value,unit,p50_us,p99_us,cpu_s,rss_kib" >"$csv"
	echo "workload,config,run,p50_us,p99_us,p999_us" >"$out/latency.csv"
	echo "workload,run,netd_cpu_s,netd_rss_kib,netd_shmem_kib" >"$out/netd.csv"
	echo "workload,config,run,reason" >"$out/failures.csv"
	: >"$cmds"
	bench_init
	local start
	start=$(date -u +%s)
	{
		echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
		echo "nproc=$(nproc)"
		echo "kernel=$(uname -srm)"
		echo "cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
		echo "mode=$([ "$quick" = 1 ] && echo quick || echo full)"
		echo "runs=$runs"
		echo "duration_s=$DUR"
		echo "others=${others:-}"
		echo "netd_pid=$(netd_pid)"
		echo "nginx=$(nginx -v 2>&1 | sed 's/.*nginx\///')"
		echo "redis=$(redis-server --version 2>/dev/null | awk '{ print $3 }')"
		echo "memcached=$(memcached -V 2>/dev/null | awk '{ print $2 }')"
		echo "iperf3=$(iperf3 -v 2>/dev/null | awk 'NR == 1 { print $2 }')"
		echo "fio=$(fio --version 2>/dev/null)"
		echo "storage_size=${STORAGE_SIZE:-}"
		echo "storage_runtime_s=${STORAGE_RUNTIME:-}"
	} >"$out/machine.txt"
	log "results in $out ($runs runs per configuration, ${DUR} s per load)"
	local r c order
	for g in ${groups//,/ }; do
		for ((r = 1; r <= runs; r++)); do
			# Interleave, rotating which configuration goes first.
			case $((r % 3)) in
			1) order="linux direct indirect" ;;
			2) order="direct indirect linux" ;;
			0) order="indirect linux direct" ;;
			esac
			for c in $order; do
				srv_fail=""
				"group_$g" "$c" "$r" "$(group_ip "$g" "$c")" ||
					group_failed "$g" "$c" "$r" "${srv_fail:-the server did not start}"
				stop_server
			done
		done
	done
	echo "elapsed_s=$(($(date -u +%s) - start))" >>"$out/machine.txt"
	python3 "$BENCH_DIR/report.py" "$out"
}

# ------------------------------------------------------------- timeline --

timeline_main() {
	local at="" event="" duration=10 config=direct conns=4
	out=""
	while [ $# -gt 0 ]; do
		case "$1" in
		--event-at) at=${2:?}; shift ;;
		--event) event=${2:?}; shift ;;
		--duration) duration=${2:?}; shift ;;
		--config) config=${2:?}; shift ;;
		--connections) conns=${2:?}; shift ;;
		--out) out=${2:?}; shift ;;
		-h | --help) usage; exit 0 ;;
		*) echo "bench timeline: unknown option '$1'" >&2; usage >&2; exit 2 ;;
		esac
		shift
	done
	[ -n "$at" ] && [ -n "$event" ] || { usage >&2; exit 2; }
	[[ "$duration" =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk -v d="$duration" 'BEGIN { exit !(d > 0 && d <= 600) }' ||
		die "--duration must be 0 < S <= 600"
	[[ "$at" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--event-at must be a number of seconds"
	case "$config" in linux | direct | indirect) ;;
	*) die "--config: linux, direct or indirect" ;; esac
	need nginx
	[ -n "$out" ] || out=bench/results/timeline-$(date -u +%Y%m%dT%H%M%SZ)
	mkdir -p "$out" || die "cannot create $out"
	out=$(cd "$out" && pwd)
	bench_init
	nginx_prepare
	local ip=$IP_TIMELINE
	[ "$config" = linux ] && ip=$LINUX_IP
	[ "$config" = indirect ] && ip=$IP_IND_TIMELINE
	srv_fail=""
	start_server timeline "$config" "$ip" 8080 nginx -p "$tmp/nginx/" -c "$tmp/nginx/nginx.conf" \
		-e "$tmp/nginx/error.log" || die "nginx did not start ($config): ${srv_fail:-?}"
	# NETD_PID for events that hit the network server (empty unless indirect).
	local npid=""
	[ "$config" = indirect ] && npid=$(netd_pid)
	log "timeline: $config, $duration s, event at $at s: $event"
	# The client counts completed requests per 100 ms bucket; the event runs
	# in this namespace with SERVER_PID and SERVER_IP in its environment.
	timeout $(awk -v d="$duration" 'BEGIN { printf "%d", d + 30 }') ip netns exec $NS_PEER \
		python3 "$BENCH_DIR/timeline.py" "$ip" 8080 /1k.bin "$duration" "$conns" "$out/timeline.csv" &
	local cpid=$!
	# The client starts its clock when it begins; give it a moment.
	sleep "$at"
	local t_event
	t_event=$(date +%s.%N)
	# SERVER_NAME and LIBRETTO let an event switch the server's mode:
	# "$LIBRETTO" switch "$SERVER_NAME" indirect (docs/switching.md).
	SERVER_PID=$srv_pid SERVER_IP=$ip NETD_PID=$npid SERVER_NAME=b-timeline LIBRETTO=$LIBRETTO \
		timeout 120 bash -c "$event" >"$out/event.log" 2>&1
	local erc=$?
	echo "event_at_s=$at" >"$out/event.txt"
	echo "event=$event" >>"$out/event.txt"
	echo "event_status=$erc" >>"$out/event.txt"
	echo "event_wall=$t_event" >>"$out/event.txt"
	wait "$cpid"
	local crc=$?
	stop_server
	[ "$crc" -eq 0 ] || die "the timeline client failed (status $crc)"
	python3 "$BENCH_DIR/timeline_plot.py" "$out" "$config"
}

case "${1:-}" in
timeline) shift; timeline_main "$@" ;;
*) bench_main "$@" ;;
esac
