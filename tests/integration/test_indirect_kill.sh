#!/bin/bash
# Integration: an indirect-mode application killed with connections open: its peers get a RST, its port is free again.
#
# A python3 server under `libretto run --mode indirect` accepts two
# connections from the peer and holds them; it is killed with SIGKILL.  The
# peer's blocked reads must end with ECONNRESET within 2 s (librettod removes
# the application's ports and has netd probe each peer; the peer's
# challenge ACK reaches a port nobody owns and netd answers with a RST), and
# a new program can bind the port at once.  Exit 0 pass, 1 fail, 77 skip.
set -uo pipefail
lt_name=test_indirect_kill
. "$(dirname "$0")/lib.sh"

shared=10.42.0.2
port=8089
lt_init
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3) || lt_skip "python3 is not installed"
lt_testbed_up
lt_daemon_up
"$LIBRETTO" status 2>/dev/null | grep -q 'netd.*running' || lt_skip "the network server is not running"

ip -n "$LT_NS_PEER" neigh del "$shared" dev wire0 2>/dev/null
lt_bg holder "$LIBRETTO" run --mode indirect --name holder -- "$py" -c '
import socket, time
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", '$port'))
l.listen(4)
conns = [l.accept()[0] for _ in range(2)]
for c in conns:
    c.sendall(b"hi\n")
time.sleep(60)
'
holder=$lt_last_pid
# Two clients in the peer: connect, read the greeting, then block in recv
# and report how it ended and after how long.
ip netns exec "$LT_NS_PEER" "$py" -c '
import socket, sys, time, threading, errno
host, port = sys.argv[1], int(sys.argv[2])
for i in range(150):
    try:
        cs = [socket.create_connection((host, port), timeout=2) for _ in range(2)]
        break
    except OSError:
        time.sleep(0.2)
else:
    print("noconnect"); sys.exit(0)
for c in cs:
    c.settimeout(5)
    c.recv(3)
print("ready", flush=True)
open(sys.argv[3], "w").write("ready")
res = []
def wait(c):
    t0 = time.time()
    try:
        c.settimeout(10)
        d = c.recv(10)
        res.append("eof" if d == b"" else "data")
    except OSError as e:
        res.append(errno.errorcode.get(e.errno, str(e)) + " %.1f" % (time.time() - t0))
ts = [threading.Thread(target=wait, args=(c,)) for c in cs]
[t.start() for t in ts]
[t.join() for t in ts]
print(" ".join(sorted(r.split()[0] for r in res)), max(float(r.split()[1]) if len(r.split()) > 1 else 99 for r in res), flush=True)
' "$shared" "$port" "$LT_TMP/ready" >"$LT_TMP/peer.out" 2>&1 &
peer=$!
for ((i = 0; i < 100; i++)); do
	[ -s "$LT_TMP/ready" ] && break
	sleep 0.1
done
[ -s "$LT_TMP/ready" ] || lt_fail "the peer's clients did not get their greeting: $(cat "$LT_TMP/peer.out")"
kill -KILL "$holder"
wait "$peer"
out=$(tail -1 "$LT_TMP/peer.out")
lt_log "peer after the kill: $out"
set -- $out
[ "${1:-}" = ECONNRESET ] && [ "${2:-}" = ECONNRESET ] ||
	lt_fail "the peer's connections did not end with ECONNRESET: $out"
awk -v t="${3:-99}" 'BEGIN { exit !(t < 2.0) }' || lt_fail "the resets took ${3:-?} s"
got=$(timeout 30 "$LIBRETTO" run --mode indirect --name again -- "$py" -c '
import socket
s = socket.socket()
s.bind(("0.0.0.0", '$port'))
print("bound")' 2>&1)
[ "$got" = bound ] || lt_fail "the port is not free again: $got"
lt_log "both peers reset, the port free again"
lt_log "PASS"
exit 0
