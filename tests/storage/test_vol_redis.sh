#!/bin/bash
# Storage: redis-server with its append-only file on a volume (dir /data, appendonly yes, appendfsync always): 1000 keys survive a SHUTDOWN and restart, and every write acknowledged before a SIGKILL survives it.
#
# 1. SET key:0..999 (pipelined, from the peer), SHUTDOWN, restart on the
#    same volume: every key with its value.
# 2. A client SETs crash:N one at a time and records each +OK; redis is
#    killed with SIGKILL meanwhile (at a random moment after 200 acks);
#    after a restart every acknowledged key is there (appendfsync always:
#    acknowledged means fsync'ed).
# Then e2fsck -fn is clean.  Exit 0 pass, 1 fail, 77 skip.
set -uo pipefail
lt_name=test_vol_redis
here=$(dirname "$0")
. "$here/../integration/lib.sh"
. "$here/lib_vol.sh"

ip=${REDIS_IP:-10.42.0.42}
port=6390
sv_init net
lt_need redis-server redis-cli python3
lt_testbed_up
sv_image "$LT_TMP/vol.img"

start_redis() {
	sv_bg_wait_tcp "redis$1" "$ip" "$port" redis-server --port "$port" --bind 0.0.0.0 --protected-mode no \
		--daemonize no --dir "$ST_DATA" --appendonly yes --appendfsync always --save ''
	server=$ST_PID
}
cli() { timeout 20 ip netns exec "$LT_NS_PEER" redis-cli -h "$ST_ADDR" -p "$port" "$@"; }

# The client side, in the peer: set N keys pipelined, check N keys, or set
# keys one by one until killed, printing each acknowledged one.
cat >"$LT_TMP/client.py" <<'PY'
import socket, sys
host, port, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((host, port), timeout=20)
f = s.makefile("rb")
def resp(*args):
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in (x.encode() for x in args))
def val(i):
    return "value-%d-%s" % (i, "x" * (i % 300))
if cmd == "set":
    n = int(sys.argv[4])
    s.sendall(b"".join(resp("SET", "key:%d" % i, val(i)) for i in range(n)))
    ok = sum(1 for i in range(n) if f.readline() == b"+OK\r\n")
    print("set", ok)
elif cmd == "check":
    prefix, ids = sys.argv[4], [int(x) for x in open(sys.argv[5]).read().split()]
    s.sendall(b"".join(resp("GET", "%s:%d" % (prefix, i)) for i in ids))
    bad = []
    for i in ids:
        line = f.readline()
        if line.startswith(b"$-1"):
            bad.append(i)
            continue
        data = f.read(int(line[1:]) + 2)[:-2].decode()
        if data != val(i):
            bad.append(i)
    print("checked", len(ids), "missing or wrong", len(bad), bad[:5])
    sys.exit(1 if bad else 0)
elif cmd == "trickle":
    i = 0
    while True:
        s.sendall(resp("SET", "crash:%d" % i, val(i)))
        if f.readline() != b"+OK\r\n":
            break
        print(i, flush=True)
        i += 1
PY
peer_py() { timeout 60 ip netns exec "$LT_NS_PEER" python3 "$LT_TMP/client.py" "$ST_ADDR" "$port" "$@"; }

# 1. Orderly shutdown and restart.
start_redis 1
got=$(peer_py set 1000) || lt_fail "setting 1000 keys failed: $got"
[ "$got" = "set 1000" ] || lt_fail "setting 1000 keys: $got"
lt_log "1000 keys set (appendfsync always)"
cli SHUTDOWN >/dev/null 2>&1
lt_wait_pid "$server" 20 || lt_fail "redis did not exit on SHUTDOWN: $(tail -n 5 "$LT_TMP/redis1.out")"
grep -qiE 'error|failed' "$LT_TMP/redis1.out" && lt_fail "redis logged errors: $(grep -iE 'error|failed' "$LT_TMP/redis1.out" | head -3)"
sv_must list1 ls -lR "$ST_DATA"
lt_log "on the volume after SHUTDOWN: $(grep -oE 'appendonly[^ ]*' "$LT_TMP/list1.out" | tr '\n' ' ')"
seq 0 999 >"$LT_TMP/ids.all"
start_redis 2
got=$(peer_py check key "$LT_TMP/ids.all") || lt_fail "after the restart: $got"
lt_log "after SHUTDOWN and restart on the same volume: $got"
[ "$(cli DBSIZE)" = 1000 ] || lt_fail "DBSIZE after restart: $(cli DBSIZE)"

# 2. SIGKILL during writes.
ip netns exec "$LT_NS_PEER" timeout 60 python3 "$LT_TMP/client.py" "$ST_ADDR" "$port" trickle \
	>"$LT_TMP/acks" 2>"$LT_TMP/trickle.err" &
trickle=$!
lt_pids+=("$trickle")
for ((i = 0; i < 300; i++)); do
	[ "$(wc -l <"$LT_TMP/acks")" -ge 200 ] && break
	kill -0 "$trickle" 2>/dev/null || break
	sleep 0.1
done
[ "$(wc -l <"$LT_TMP/acks")" -ge 200 ] || lt_fail "the writing client got fewer than 200 acks in 30 s: $(cat "$LT_TMP/trickle.err")"
delay=$((RANDOM % 1000))
sleep "0.$(printf %03d "$delay")"
kill -KILL "$server"
lt_wait_pid "$server" 10 >/dev/null 2>&1
lt_wait_pid "$trickle" 30 >/dev/null 2>&1
acked=$(wc -l <"$LT_TMP/acks")
lt_log "redis killed with SIGKILL $delay ms after the 200th ack: $acked writes acknowledged"
start_redis 3
got=$(peer_py check crash "$LT_TMP/acks") || lt_fail "after SIGKILL and restart: $got"
lt_log "after SIGKILL and restart: $got"
got=$(peer_py check key "$LT_TMP/ids.all") || lt_fail "the first 1000 keys after the crash: $got"
cli SHUTDOWN >/dev/null 2>&1
lt_wait_pid "$server" 20 || lt_fail "redis did not exit on SHUTDOWN"
sv_fsck_clean "after redis"
lt_log "PASS"
exit 0
