#!/bin/bash
# Application: kill -9 of a server under the library OS; a peer with an open connection must see EOF or RST within about a second, as on Linux.
#
# redis-server runs first on the kernel stack (netns LT_NS_LINUX, the
# baseline) and then under `libretto run --mode direct`; each time a peer
# client holds one idle connection (waiting in recv) and one that sends a
# command after the kill, and reports how each connection ended.  Passes
# only when the library OS's peers see what the baseline's see.
# Exit 0 pass, 1 fail, 77 skip.  Bounded: under a minute.
#
# What makes it pass: the runtime lists its TCP connections in the lease's
# shared region, and librettod, when the lease ends with connections still
# listed, resets each peer (a SYN elicits the peer's challenge ACK, whose
# acknowledgement number is the sequence number of our RST; see
# docs/librettod.md, "Resetting the peers of a dead application").
set -uo pipefail
lt_name=test_kill9
. "$(dirname "$0")/../integration/lib.sh"

ip=${KILL9_IP:-10.42.0.36}
port=6379
lt_init
lt_need redis-server python3
lt_testbed_up
lt_daemon_up

cat >"$LT_TMP/client.py" <<'EOF'
# Connect, check the server answers, signal readiness, then report how the
# connection ends after the kill: "send" sends a command first, "idle" waits.
import os, socket, sys, time
host, port, flag, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.create_connection((host, port), timeout=5)
s.sendall(b"PING\r\n")
assert s.recv(100) == b"+PONG\r\n"
open(flag + "." + mode, "w").close()
while os.path.exists(flag + "." + mode):
    time.sleep(0.01)
t0 = time.time()
s.settimeout(3)
try:
    if mode == "send":
        s.sendall(b"PING\r\n")
    d = s.recv(100)
    what = "EOF" if d == b"" else "data"
except ConnectionResetError:
    what = "RST"
except socket.timeout:
    print("nothing within 3 s")
    sys.exit(0)
print("%s after %.2f s" % (what, time.time() - t0))
EOF

# trial NAME HOST CMD...: start the server with CMD, connect both clients,
# kill -9; $result tells how each connection ended.
trial() {
	local name=$1 host=$2 flag=$LT_TMP/$1.flag server c
	shift 2
	lt_bg "$name" "$@"
	server=$lt_last_pid
	lt_wait_tcp "$LT_NS_PEER" "$host" "$port" 15 || lt_fail "$name: the server did not start"
	for c in idle send; do
		lt_bg "$name-$c" timeout 30 ip netns exec "$LT_NS_PEER" python3 "$LT_TMP/client.py" \
			"$host" "$port" "$flag" "$c"
		eval "pid_$c=$lt_last_pid"
		for _ in $(seq 50); do [ -e "$flag.$c" ] && break; sleep 0.1; done
		[ -e "$flag.$c" ] || lt_fail "$name: client $c did not connect: $(cat "$LT_TMP/$name-$c.err")"
	done
	kill -KILL "$server"
	wait "$server" 2>/dev/null
	rm -f "$flag.idle" "$flag.send"
	lt_wait_pid "$pid_idle" 10
	lt_wait_pid "$pid_send" 10
	result="idle: $(cat "$LT_TMP/$name-idle.out"); send: $(cat "$LT_TMP/$name-send.out")"
}

srv=(redis-server --port "$port" --bind 0.0.0.0 --protected-mode no --save '' --daemonize no
	--dir "$LT_TMP")
trial linux "$LT_LINUX_IP" ip netns exec "$LT_NS_LINUX" "${srv[@]}"
linux=$result
lt_log "Linux kernel stack: $linux"
ip -n "$LT_NS_PEER" neigh del "$ip" dev wire0 2>/dev/null
trial libos "$ip" "$LIBRETTO" run --mode "$LT_MODE" --name kill9 --ip "$ip" -- "${srv[@]}"
libos=$result
lt_log "library OS:         $libos"
ok() { [[ "$1" =~ ^idle:\ (EOF|RST)\ after\ 0\.[0-9]+\ s\;\ send:\ (EOF|RST)\ after\ (0|1)\.[0-9]+\ s$ ]]; }
ok "$linux" || lt_fail "the Linux baseline itself did not end the connections promptly"
ok "$libos" || lt_fail "peers of a killed library-OS server are not told promptly"
lt_log "PASS"
exit 0
