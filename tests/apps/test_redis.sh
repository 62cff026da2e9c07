#!/bin/bash
# Application: an unmodified redis-server under `libretto run --mode direct`, driven from the peer by redis-cli and redis-benchmark.
#
# Checks: SET/GET/INCR/LPUSH/LRANGE with values read back; redis-benchmark
# (plain and pipelined -P 16) with zero errors; BGSAVE and BGREWRITEAOF
# while redis-benchmark runs (the forked child closes the inherited sockets:
# the benchmark sees no error, a connection opened before the forks still
# works, values read back afterwards, the port stays published in `libretto
# ps`); redis-cli over 127.0.0.1 in the server's namespace (the kernel fd);
# exit on SIGTERM: an idle peer connection sees EOF at once.
# Exit 0 pass, 1 fail, 77 skip.  Bounded: under a minute.
set -uo pipefail
lt_name=test_redis
. "$(dirname "$0")/../integration/lib.sh"

ip=${REDIS_IP:-10.42.0.30}
port=6379
lt_init
lt_need redis-server redis-cli redis-benchmark python3
lt_testbed_up
lt_daemon_up

mkdir -p "$LT_TMP/data"
lt_run_libos redis "$ip" redis-server --port "$port" --bind 0.0.0.0 --protected-mode no \
	--save '' --daemonize no --appendonly yes --dir "$LT_TMP/data"
server=$lt_last_pid
if ! lt_wait_tcp "$LT_NS_PEER" "$ip" "$port" 15; then
	tail -n 20 "$LT_TMP/redis.err" "$LT_TMP/redis.out" >&2
	lt_fail "redis-server did not accept connections on $ip:$port within 15 s"
fi

# cli ARGS...: one redis-cli command from the peer, bounded.
cli() { timeout 10 ip netns exec "$LT_NS_PEER" redis-cli -h "$ip" -p "$port" "$@"; }
expect() {
	local want=$1 got
	shift
	got=$(cli "$@" 2>&1) || lt_fail "redis-cli $* failed: $got"
	[ "$got" = "$want" ] || lt_fail "redis-cli $*: expected '$want', got '$got'"
}

# 1. Basic commands, values checked.
expect OK SET greeting "hello libretto"
expect "hello libretto" GET greeting
expect OK SET counter 41
expect 42 INCR counter
expect 43 INCR counter
expect 1 LPUSH mylist c
expect 3 LPUSH mylist b a
expect "$(printf 'a\nb\nc')" LRANGE mylist 0 -1
big=$(head -c 30000 /dev/urandom | od -An -tx1 | tr -d ' \n')
expect OK SET bigval "$big"
expect "${#big}" STRLEN bigval
[ "$(cli GET bigval)" = "$big" ] || lt_fail "a 60000-byte value came back different"
lt_log "SET/GET/INCR/LPUSH/LRANGE: values as written"

# bench NAME ARGS...: redis-benchmark from the peer; fails on any error.
bench() {
	local name=$1
	shift
	timeout 40 ip netns exec "$LT_NS_PEER" redis-benchmark -h "$ip" -p "$port" "$@" \
		>"$LT_TMP/$name.out" 2>"$LT_TMP/$name.err"
	local rc=$?
	tr '\r' '\n' <"$LT_TMP/$name.out" | grep -oE '[A-Z]+: [0-9.]+ requests per second' >"$LT_TMP/$name.sum"
	if [ $rc -ne 0 ] || grep -qiE 'error|reset|refused|broken' "$LT_TMP/$name.out" "$LT_TMP/$name.err"; then
		cat "$LT_TMP/$name.sum" "$LT_TMP/$name.err" >&2
		lt_fail "redis-benchmark $* failed (status $rc)"
	fi
	for t in SET GET; do
		grep -q "^$t: .*requests per second" "$LT_TMP/$name.sum" ||
			lt_fail "redis-benchmark $*: no $t result: $(cat "$LT_TMP/$name.sum")"
	done
	lt_log "redis-benchmark $*: $(tr '\n' ' ' <"$LT_TMP/$name.sum")"
}

# 2. Load, plain and pipelined.
bench plain -q -n 20000 -c 16 -t set,get
bench pipelined -q -n 20000 -c 16 -t set,get -P 16

# 3. BGSAVE and BGREWRITEAOF under load.  A client connected before the
# forks must keep working after them (each child closes its copies).
cat >"$LT_TMP/held.py" <<'EOF'
import socket, sys, os, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
def cmd(c):
    s.sendall(c)
    return s.recv(100)
assert cmd(b"SET held before\r\n") == b"+OK\r\n"
open(sys.argv[3], "w").close()
deadline = time.time() + 40
while os.path.exists(sys.argv[3]) and time.time() < deadline:
    time.sleep(0.05)
r = cmd(b"GET held\r\n")
print(r)
sys.exit(0 if r == b"$6\r\nbefore\r\n" else 1)
EOF
flag=$LT_TMP/held.flag
lt_bg held ip netns exec "$LT_NS_PEER" timeout 50 python3 "$LT_TMP/held.py" "$ip" "$port" "$flag"
held=$lt_last_pid
for _ in $(seq 50); do [ -e "$flag" ] && break; sleep 0.1; done
[ -e "$flag" ] || lt_fail "the held client did not connect: $(cat "$LT_TMP/held.err")"

timeout 45 ip netns exec "$LT_NS_PEER" redis-benchmark -h "$ip" -p "$port" -q -n 150000 -c 16 \
	-t set,get >"$LT_TMP/load.out" 2>"$LT_TMP/load.err" &
load=$!
lt_pids+=("$load")
sleep 0.3
# wait_idle: until no background child runs (bounded).
wait_idle() {
	local i info
	for ((i = 0; i < 100; i++)); do
		info=$(cli INFO persistence | tr -d '\r')
		if grep -q '^rdb_bgsave_in_progress:0' <<<"$info" &&
			grep -q '^aof_rewrite_in_progress:0' <<<"$info" &&
			! grep -q '^aof_rewrite_scheduled:1' <<<"$info"; then
			return 0
		fi
		sleep 0.1
	done
	lt_fail "a background save did not finish within 10 s"
}
forks=0
for round in 1 2 3; do
	kill -0 "$load" 2>/dev/null || break
	got=$(cli BGSAVE 2>&1)
	[[ "$got" == *"Background saving started"* ]] || lt_fail "BGSAVE: $got"
	wait_idle
	got=$(cli BGREWRITEAOF 2>&1)
	[[ "$got" == *"rewriting"* ]] || lt_fail "BGREWRITEAOF: $got"
	wait_idle
	forks=$((forks + 2))
done
info=$(cli INFO persistence | tr -d '\r')
grep -q '^rdb_last_bgsave_status:ok' <<<"$info" || lt_fail "last BGSAVE failed: $info"
grep -q '^aof_last_bgrewrite_status:ok' <<<"$info" || lt_fail "last BGREWRITEAOF failed: $info"
[ "$forks" -ge 2 ] || lt_fail "the load ended before a BGSAVE could run under it"
lt_wait_pid "$load" 45
rc=$?
tr '\r' '\n' <"$LT_TMP/load.out" | grep -oE '[A-Z]+: [0-9.]+ requests per second' >"$LT_TMP/load.sum"
if [ $rc -ne 0 ] || grep -qiE 'error|reset|refused|broken' "$LT_TMP/load.out" "$LT_TMP/load.err"; then
	cat "$LT_TMP/load.sum" "$LT_TMP/load.err" >&2
	lt_fail "redis-benchmark under BGSAVE/BGREWRITEAOF failed (status $rc)"
fi
grep -q 'GET: .*requests per second' "$LT_TMP/load.sum" || lt_fail "the load did not complete: $(cat "$LT_TMP/load.sum")"
lt_log "$forks background saves under load, benchmark clean: $(tr '\n' ' ' <"$LT_TMP/load.sum")"
rm -f "$flag"
lt_wait_pid "$held" 10 || lt_fail "the connection held across the forks broke: $(cat "$LT_TMP/held.out" "$LT_TMP/held.err")"
expect "hello libretto" GET greeting
expect 43 GET counter
expect "$(printf 'a\nb\nc')" LRANGE mylist 0 -1
lt_wait_ps_port redis tcp:$port 5 || lt_fail "after the forks libretto ps no longer lists tcp:$port for redis"
lt_log "after the forks: old connection, values and the published port intact"
kill -0 "$server" 2>/dev/null || lt_fail "redis-server died: $(tail -n 5 "$LT_TMP/redis.out")"

# 4. A local client over loopback, in the server's namespace: the kernel
# fd's listener serves it.
got=$(timeout 10 ip netns exec "$LT_NS_HOST" redis-cli -h 127.0.0.1 -p "$port" GET greeting 2>&1)
[ "$got" = "hello libretto" ] || lt_fail "redis-cli over 127.0.0.1: expected 'hello libretto', got '$got'"
lt_log "redis-cli -h 127.0.0.1 in $LT_NS_HOST works"

# 5. A normal exit (SIGTERM) closes the connections: an idle peer sees EOF
# at once, as when the kernel closes a dying process's sockets.
cat >"$LT_TMP/idle.py" <<'EOF'
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(b"PING\r\n")
assert s.recv(100) == b"+PONG\r\n"
open(sys.argv[3], "w").close()
s.settimeout(5)
try:
    print("EOF" if s.recv(100) == b"" else "data")
except ConnectionResetError:
    print("RST")
except socket.timeout:
    print("nothing")
EOF
flag=$LT_TMP/idle.flag
lt_bg idle ip netns exec "$LT_NS_PEER" timeout 20 python3 "$LT_TMP/idle.py" "$ip" "$port" "$flag"
idle=$lt_last_pid
for _ in $(seq 50); do [ -e "$flag" ] && break; sleep 0.1; done
[ -e "$flag" ] || lt_fail "the idle client did not connect: $(cat "$LT_TMP/idle.err")"
kill -TERM "$server"
lt_wait_pid "$server" 10 >/dev/null
kill -0 "$server" 2>/dev/null && lt_fail "redis-server did not exit within 10 s of SIGTERM"
t0=$(date +%s%N)
lt_wait_pid "$idle" 6 >/dev/null
ms=$((($(date +%s%N) - t0) / 1000000))
got=$(cat "$LT_TMP/idle.out")
[ "$got" = EOF ] || lt_fail "after redis-server exited, its idle peer saw: ${got:-nothing} (Linux: EOF)"
[ "$ms" -lt 1500 ] || lt_fail "the idle peer saw EOF only $ms ms after redis-server exited"
lt_log "redis-server exited on SIGTERM: its idle peer saw EOF within $ms ms"
lt_log "PASS"
exit 0
