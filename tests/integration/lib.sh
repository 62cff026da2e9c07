# Shared helpers of the integration scenarios and the behaviour runner (sourced, bash).
# shellcheck shell=bash
#
# Conventions: every scenario exits 0 (pass), 1 (fail) or 77 (skip: not root,
# missing tool); it calls lt_init first, registers what it starts with
# lt_bg / lt_on_exit, and never waits without a bound.  Functions are
# prefixed lt_; they print diagnostics on stderr prefixed with the scenario.
#
# Environment:
#   LIBRETTO_BUILD  the Meson build directory (set by meson test; default:
#                   <source>/build)
#   LIBRETTO        the CLI (default: $LIBRETTO_BUILD/src/cli/libretto)
#   LT_KEEP=1       keep the scenario's scratch directory for inspection
#   LIBRETTO_TESTBED_PREFIX  the testbed's namespace prefix (default
#                   "libretto": libretto-peer, libretto-host, libretto-linux),
#                   as `libretto testbed` reads it.  A private prefix with
#                   LIBRETTO_CONTROL unset also selects a private librettod:
#                   /run/PREFIX/control.sock (see lt_init), so a developer's
#                   testbed never meets the shared one's daemon.

LT_PREFIX=${LIBRETTO_TESTBED_PREFIX:-libretto}
# The mode lt_run_libos runs programs in: direct (the suites' default), or
# indirect to run the same scenarios through the network server (by hand:
# LT_MODE=indirect meson test --suite apps).
LT_MODE=${LT_MODE:-direct}
LT_NS_PEER=${LT_NS_PEER:-$LT_PREFIX-peer}
LT_NS_HOST=${LT_NS_HOST:-$LT_PREFIX-host}
LT_NS_LINUX=${LT_NS_LINUX:-$LT_PREFIX-linux}
LT_PEER_IP=${LT_PEER_IP:-10.42.0.1}
LT_LINUX_IP=${LT_LINUX_IP:-10.42.0.254}

lt_name=${lt_name:-$(basename "$0" .sh)}
lt_cleanups=()
lt_pids=()

lt_log() { echo "$lt_name: $*" >&2; }
lt_skip() { echo "$lt_name: SKIP: $*" >&2; exit 77; }
lt_fail() { echo "$lt_name: FAIL: $*" >&2; exit 1; }

# Run a shell command at exit (last registered runs first).
lt_on_exit() { lt_cleanups=("$1" "${lt_cleanups[@]}"); }

lt_cleanup() {
	local rc=$? p c
	trap - EXIT INT TERM
	for p in "${lt_pids[@]}"; do
		kill "$p" 2>/dev/null
	done
	for p in "${lt_pids[@]}"; do
		# Bounded: a process that ignores TERM gets KILL after 3 s.
		for _ in 1 2 3 4 5 6; do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.5
		done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	for c in "${lt_cleanups[@]}"; do
		eval "$c" || true
	done
	if [ -n "${LT_TMP:-}" ] && [ -d "$LT_TMP" ]; then
		if [ "${LT_KEEP:-0}" = 1 ] || { [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; }; then
			lt_log "scratch files kept in $LT_TMP"
		else
			rm -rf "$LT_TMP"
		fi
	fi
	exit "$rc"
}

# Check root, find the build and the CLI, make a scratch directory and arm
# the exit trap.
lt_init() {
	[ "$(id -u)" -eq 0 ] || lt_skip "needs root (network namespaces, XDP)"
	local here
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
	LIBRETTO_SRC=${LIBRETTO_SRC:-$(cd "$here/../.." && pwd)}
	LIBRETTO_BUILD=${LIBRETTO_BUILD:-$LIBRETTO_SRC/build}
	LIBRETTO=${LIBRETTO:-$LIBRETTO_BUILD/src/cli/libretto}
	[ -x "$LIBRETTO" ] || lt_fail "no CLI at $LIBRETTO (build first, or set LIBRETTO_BUILD)"
	export LIBRETTO_BUILD LIBRETTO_SRC LIBRETTO
	if [ "$LT_PREFIX" != libretto ] && [ -z "${LIBRETTO_CONTROL:-}" ]; then
		# `libretto up` would otherwise find the shared librettod (on
		# libretto-host) running and `run` would go there.
		LIBRETTO_CONTROL=/run/$LT_PREFIX/control.sock
	fi
	if [ -n "${LIBRETTO_CONTROL:-}" ]; then
		export LIBRETTO_CONTROL
		mkdir -p "$(dirname "$LIBRETTO_CONTROL")"
	fi
	LT_TMP=$(mktemp -d "/tmp/$lt_name.XXXXXX")
	trap lt_cleanup EXIT
	trap 'exit 1' INT TERM
}

# lt_init_local: what lt_init does for runs on the kernel alone (the
# reference runs of the behaviour and file suites): no CLI, no daemon.
lt_init_local() {
	local here
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
	LIBRETTO_BUILD=${LIBRETTO_BUILD:-$(cd "$here/../.." && pwd)/build}
	LT_TMP=$(mktemp -d "/tmp/$lt_name.XXXXXX")
	trap lt_cleanup EXIT
	trap 'exit 1' INT TERM
}

lt_need() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 || lt_skip "$t is not installed (scripts/deps.sh check)"
	done
}

lt_ns_exists() { ip netns list 2>/dev/null | awk -v n="$1" '$1 == n { f = 1 } END { exit !f }'; }

# Bring the testbed up unless its three namespaces are there already.
lt_testbed_up() {
	if lt_ns_exists "$LT_NS_PEER" && lt_ns_exists "$LT_NS_HOST" && lt_ns_exists "$LT_NS_LINUX"; then
		return 0
	fi
	lt_log "bringing the testbed up"
	timeout 60 "$LIBRETTO" testbed up >&2 || lt_fail "libretto testbed up failed"
}

# Start librettod unless it runs (libretto up is idempotent).
lt_daemon_up() {
	timeout 30 "$LIBRETTO" up >/dev/null 2>"$LT_TMP/up.err" || {
		cat "$LT_TMP/up.err" >&2
		lt_fail "libretto up failed"
	}
}

# lt_testbed_daemon_own: the testbed and librettod up, each of them taken
# down again at exit if this test brought it up (for tests that run under
# their own LIBRETTO_TESTBED_PREFIX).
lt_testbed_daemon_own() {
	local brought=0
	lt_ns_exists "$LT_NS_HOST" || brought=1
	lt_testbed_up
	[ "$brought" = 1 ] && lt_on_exit 'timeout 60 "$LIBRETTO" testbed down >/dev/null 2>&1'
	if ! timeout 10 "$LIBRETTO" status >/dev/null 2>&1; then
		lt_daemon_up
		lt_on_exit 'timeout 20 "$LIBRETTO" down >/dev/null 2>&1'
	fi
}

# lt_bg NAME CMD...: start CMD in the background, output in $LT_TMP/NAME.out
# and .err; it is killed at exit.  Sets lt_last_pid.
lt_bg() {
	local name=$1
	shift
	"$@" >"$LT_TMP/$name.out" 2>"$LT_TMP/$name.err" &
	lt_last_pid=$!
	lt_pids+=("$lt_last_pid")
}

# lt_run_libos NAME IP CMD...: start CMD under `libretto run --mode $LT_MODE`
# in the background (see lt_bg).
lt_run_libos() { lt_run_mode "$LT_MODE" "$@"; }

# lt_run_mode MODE NAME IP CMD...: the same in an explicit mode (direct,
# indirect or auto); IP may be `shared` for indirect.
lt_run_mode() {
	local mode=$1 name=$2 ip=$3
	shift 3
	# A stale neighbour entry for the IP (another VF's MAC from an earlier
	# run) would delay the first packets until it expires.
	[ "$ip" = shared ] || ip -n "$LT_NS_PEER" neigh del "$ip" dev wire0 2>/dev/null
	lt_bg "$name" "$LIBRETTO" run --mode "$mode" --name "$name" --ip "$ip" -- "$@"
}

# lt_fetch_loop TAG URL SHA256 END: fetch URL from the peer again and again
# until $SECONDS reaches END, each copy checked against SHA256 (as
# `sha256sum <file` prints it).  The first failure goes to $LT_TMP/TAG.fail
# and ends the loop with status 1; the count of good fetches to
# $LT_TMP/TAG.runs.  Meant to run in the background (&).
lt_fetch_loop() {
	local tag=$1 url=$2 want=$3 end=$4 n=0
	while [ $SECONDS -lt "$end" ]; do
		if ! timeout 40 ip netns exec "$LT_NS_PEER" curl -sS --max-time 30 -o "$LT_TMP/$tag.got" \
			"$url" 2>"$LT_TMP/$tag.err"; then
			echo "fetch $n: $(cat "$LT_TMP/$tag.err")" >"$LT_TMP/$tag.fail"
			return 1
		fi
		if [ "$(sha256sum <"$LT_TMP/$tag.got")" != "$want" ]; then
			echo "fetch $n: $(stat -c %s "$LT_TMP/$tag.got") bytes, sha256 differs" >"$LT_TMP/$tag.fail"
			return 1
		fi
		n=$((n + 1))
	done
	echo "$n" >"$LT_TMP/$tag.runs"
}

# lt_redis_bench_ok FILE: redis-benchmark -q -t set,get output in FILE has a
# SET and a GET result and no error, reset or refusal (FILE.txt gets the
# output with its carriage-return redraws as lines).
lt_redis_bench_ok() {
	tr '\r' '\n' <"$1" >"$1.txt"
	! grep -qiE 'error|reset|refused' "$1.txt" &&
		grep -q '^SET: .*requests per second' "$1.txt" &&
		grep -q '^GET: .*requests per second' "$1.txt"
}

# lt_wait_volume_released IMG: wait (bounded, 15 s) until librettod lists
# no program using the volume image IMG.  The lease of a program that exited
# ends when librettod sees its death, and libretto-fsd unmounts a volume when
# its last session goes: e2fsck must not look at an image before that.
lt_wait_volume_released() {
	local i real
	real=$(realpath "$1")
	for ((i = 0; i < 75; i++)); do
		timeout 10 "$LIBRETTO" volume ls --json 2>/dev/null | python3 -c '
import json, sys
vols = json.load(sys.stdin).get("volumes", [])
sys.exit(1 if any(v.get("image") == sys.argv[1] for v in vols) else 0)' "$real" && return 0
		sleep 0.2
	done
	lt_fail "librettod still lists $1 in use 15 s after its programs ended: $("$LIBRETTO" volume ls 2>&1)"
}

# The value of KEY in `libretto status --json` ("" if absent or no librettod).
lt_status_get() {
	timeout 10 "$LIBRETTO" status --json 2>/dev/null |
		python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1], ""))' "$1" 2>/dev/null
}

# lt_nginx_conf DIR PORT ROOT [HTTP-LINES [WORKERS [ACCESS-LOG]]]:
# DIR/nginx.conf for nginx in the foreground (daemon off), serving ROOT on
# PORT, its pid, logs and temporary files in DIR; HTTP-LINES (e.g.
# "keepalive_requests 1000000;") go into the http block.  WORKERS 0 (the
# default) is one process (master_process off), N a master with N workers;
# ACCESS-LOG is the access log's path (default off).  Run it with
# `nginx -c DIR/nginx.conf -p DIR`.
lt_nginx_conf() {
	local dir=$1 port=$2 root=$3 extra=${4:-} workers=${5:-0} alog=${6:-off}
	local master=on
	[ "$workers" -gt 0 ] || { master=off; workers=1; }
	mkdir -p "$dir"
	cat >"$dir/nginx.conf" <<NGINX_CONF
daemon off;
master_process $master;
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 256; }
http {
	access_log $alog;
	default_type application/octet-stream;
	$extra
	client_body_temp_path $dir/body;
	proxy_temp_path $dir/proxy;
	fastcgi_temp_path $dir/fastcgi;
	uwsgi_temp_path $dir/uwsgi;
	scgi_temp_path $dir/scgi;
	server { listen $port; root $root; }
}
NGINX_CONF
}

# lt_wait_tcp NS IP PORT SECONDS: wait until a TCP connect from NS to
# IP:PORT succeeds.  Each probe opens and closes one connection.
lt_wait_tcp() {
	local ns=$1 ip=$2 port=$3 secs=$4 i
	for ((i = 0; i < secs * 5; i++)); do
		if timeout 2 ip netns exec "$ns" bash -c "exec 3<>/dev/tcp/$ip/$port" 2>/dev/null; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}

# lt_wait_ps_port NAME PORTSPEC SECONDS: wait until `libretto ps` lists the
# application NAME with PORTSPEC (e.g. tcp:5201) among its ports, without
# touching the port itself.
lt_wait_ps_port() {
	local name=$1 spec=$2 secs=$3 i
	for ((i = 0; i < secs * 5; i++)); do
		if lt_ps_json | python3 -c '
import json, sys
apps = json.load(sys.stdin)["apps"]
sys.exit(0 if any(a.get("name") == sys.argv[1] and a.get("alive") and sys.argv[2] in a.get("ports", [])
              for a in apps) else 1)' "$name" "$spec" 2>/dev/null; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}

lt_ps_json() { timeout 10 "$LIBRETTO" ps --json; }

# lt_ps_counters NAME: print "rx_packets tx_packets rx_bytes tx_bytes" of the
# live application NAME (the newest if several), or nothing.
lt_ps_counters() {
	lt_ps_json | python3 -c '
import json, sys
apps = [a for a in json.load(sys.stdin)["apps"] if a.get("name") == sys.argv[1]]
live = [a for a in apps if a.get("alive")] or apps
if live:
    a = live[-1]
    print(a.get("rx_packets"), a.get("tx_packets"), a.get("rx_bytes"), a.get("tx_bytes"))' "$1"
}

# lt_wait_pid PID SECONDS: wait for a background process to end; returns its
# status, or 124 if it is still running (it is then killed at exit).
lt_wait_pid() {
	local pid=$1 secs=$2 i
	for ((i = 0; i < secs * 10; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid"
			return $?
		fi
		sleep 0.1
	done
	return 124
}

# lt_peer CMD...: run CMD in the peer namespace (the outside world).
lt_peer() { ip netns exec "$LT_NS_PEER" "$@"; }

# lt_stop_pid PID SECONDS: TERM, then KILL after SECONDS; waits for it.
lt_stop_pid() {
	local pid=$1 secs=$2
	kill "$pid" 2>/dev/null
	lt_wait_pid "$pid" "$secs" >/dev/null
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null
		lt_wait_pid "$pid" 3 >/dev/null
	fi
	return 0
}

# lt_www_make DIR: the static files the web-server scenarios serve, from 0
# bytes to 10 MiB (random content, so a misplaced byte changes the sum).
lt_www_make() {
	local www=$1
	mkdir -p "$www"
	: >"$www/empty.bin"
	printf 'hello\n' >"$www/small.txt"
	head -c 1000 /dev/urandom >"$www/k1.bin"
	head -c 65537 /dev/urandom >"$www/k64.bin"
	head -c $((1024 * 1024 + 13)) /dev/urandom >"$www/m1.bin"
	head -c $((10 * 1024 * 1024)) /dev/urandom >"$www/m10.bin"
}

# lt_http_check BASE WWW: from the peer, every file of lt_www_make fetched
# intact (status 200, sha256), three over one keep-alive connection, a 404,
# and, when wrk is installed, a short load with no socket error and no
# non-2xx answer.  Fails the test on the first difference.
lt_http_check() {
	local base=$1 www=$2 f code
	for f in empty.bin small.txt k1.bin k64.bin m1.bin m10.bin; do
		code=$(timeout 40 ip netns exec "$LT_NS_PEER" curl -sS --max-time 30 -o "$LT_TMP/got.$f" \
			-w '%{http_code}' "$base/$f" 2>"$LT_TMP/curl.err") ||
			lt_fail "curl $f: $(cat "$LT_TMP/curl.err")"
		[ "$code" = 200 ] || lt_fail "curl $f: status $code"
		[ "$(sha256sum <"$LT_TMP/got.$f")" = "$(sha256sum <"$www/$f")" ] ||
			lt_fail "$f arrived different ($(stat -c %s "$LT_TMP/got.$f") of $(stat -c %s "$www/$f") bytes)"
	done
	lt_log "6 files from 0 bytes to 10 MiB fetched intact"

	timeout 40 ip netns exec "$LT_NS_PEER" curl -sS -v --max-time 30 -o "$LT_TMP/ka1" -o "$LT_TMP/ka2" \
		-o "$LT_TMP/ka3" "$base/k1.bin" "$base/m1.bin" "$base/small.txt" 2>"$LT_TMP/ka.err" ||
		lt_fail "keep-alive fetch failed: $(tail -n 5 "$LT_TMP/ka.err")"
	cmp -s "$LT_TMP/ka1" "$www/k1.bin" && cmp -s "$LT_TMP/ka2" "$www/m1.bin" &&
		cmp -s "$LT_TMP/ka3" "$www/small.txt" || lt_fail "a file fetched over keep-alive differs"
	[ "$(grep -c 'Re-using existing connection' "$LT_TMP/ka.err")" -ge 2 ] ||
		lt_fail "curl did not reuse the connection: $(grep -iE 'connect|closing' "$LT_TMP/ka.err")"
	lt_log "keep-alive: 3 files over one connection"

	code=$(timeout 20 ip netns exec "$LT_NS_PEER" curl -sS --max-time 10 -o /dev/null -w '%{http_code}' \
		"$base/missing") || lt_fail "curl of a missing file failed"
	[ "$code" = 404 ] || lt_fail "a missing file gave status $code, not 404"

	if command -v wrk >/dev/null 2>&1; then
		timeout 30 ip netns exec "$LT_NS_PEER" wrk -t 2 -c 16 -d 3s "$base/k1.bin" >"$LT_TMP/wrk.out" 2>&1 ||
			lt_fail "wrk failed: $(cat "$LT_TMP/wrk.out")"
		if grep -qE 'Socket errors|Non-2xx' "$LT_TMP/wrk.out"; then
			cat "$LT_TMP/wrk.out" >&2
			lt_fail "wrk saw errors"
		fi
		lt_log "wrk: $(grep -E 'requests in|Requests/sec' "$LT_TMP/wrk.out" | tr -s ' ' | tr '\n' ' ')"
	else
		lt_log "wrk is not installed: load step skipped"
	fi
}
