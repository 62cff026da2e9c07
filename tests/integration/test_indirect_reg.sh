#!/bin/bash
# Indirect mode's registration and port table without the runtime:
# indirect_client registers mode=indirect with librettod (shared IP
# 10.42.0.2), claims udp:7001 and echoes what netd puts on its rx ring; the
# peer's datagrams to 10.42.0.2:7001 come back.  A second client on the same
# IP with udp:7002 gets only its own traffic, and its `port` for udp:7001 is
# refused with EADDRINUSE naming the first.  `libretto ps` shows both as
# mode=indirect backend=shm vf=- with their ports.  Once the clients have
# exited their ports are free (a third client takes udp:7001) and netd's
# stats list no application.  Runs on its own testbed (prefix lbind) and
# control socket.  Exit 0 pass, 1 fail, 77 skip (not root).
set -u
export LIBRETTO_TESTBED_PREFIX=${LIBRETTO_TESTBED_PREFIX:-lbind}
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
lt_init
lt_need ip python3 timeout

CLIENT=${INDIRECT_CLIENT:-$LIBRETTO_BUILD/tests/integration/indirect_client}
[ -x "$CLIENT" ] || lt_fail "no indirect_client at $CLIENT"
if [ -z "${LIBRETTO_NETD:-}" ] && [ -x "$LIBRETTO_BUILD/src/netd/libretto-netd" ]; then
	export LIBRETTO_NETD=$LIBRETTO_BUILD/src/netd/libretto-netd
fi

if ! lt_ns_exists "$LT_NS_HOST"; then
	lt_on_exit 'timeout 60 "$LIBRETTO" testbed down >/dev/null 2>&1'
fi
lt_testbed_up
lt_on_exit 'timeout 20 "$LIBRETTO" down >/dev/null 2>&1'
lt_on_exit 'ip -n "$LT_NS_HOST" link set pf0 xdp off 2>/dev/null'
L=$LIBRETTO
timeout 20 "$L" down >/dev/null 2>&1
lt_daemon_up
for ((i = 0; i < 50; i++)); do
	timeout 10 "$L" status --json 2>/dev/null | grep -q '"netd": *"running"' && break
	sleep 0.1
done
timeout 10 "$L" status --json | grep -q '"netd": *"running"' ||
	lt_fail "netd is not running: $(timeout 10 "$L" status)"

# wait_ready NAME: until the client NAME printed its ready line (10 s).
wait_ready() {
	local i
	for ((i = 0; i < 100; i++)); do
		grep -q '^ready ' "$LT_TMP/$1.out" 2>/dev/null && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
# udp_echo PORT MESSAGE [IP]: send MESSAGE from the peer to IP:PORT (default
# the shared 10.42.0.2) and check the answer is the same text from there
# (one retry after 2 s).
udp_echo() {
	lt_peer timeout 10 python3 - "$1" "$2" "${3:-10.42.0.2}" <<'PY'
import socket, sys
port, msg, host = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for attempt in range(2):
    s.sendto(msg, (host, port))
    try:
        data, src = s.recvfrom(2048)
    except socket.timeout:
        continue
    if data == msg and src == (host, port):
        sys.exit(0)
    print("unexpected answer %r from %r" % (data, src))
    sys.exit(1)
print("no answer")
sys.exit(1)
PY
}

# 1. Two clients on the shared IP, udp:7001 and udp:7002; the second tries 7001.
lt_bg ca "$CLIENT" --name ca --port 7001 --count 3 --timeout 40
capid=$lt_last_pid
wait_ready ca "$capid" || lt_fail "client ca did not get ready: $(cat "$LT_TMP/ca.err")"
lt_bg cb "$CLIENT" --name cb --port 7002 --count 3 --timeout 40 --busy-port 7001
cbpid=$lt_last_pid
wait_ready cb "$cbpid" || lt_fail "client cb did not get ready: $(cat "$LT_TMP/cb.err")"
grep -q '^ready id=[0-9]* ip=10.42.0.2 ' "$LT_TMP/ca.out" || lt_fail "ca: $(cat "$LT_TMP/ca.out")"
grep -q '^busy errno=98 error=.*app=[0-9]* (ca)' "$LT_TMP/cb.out" ||
	lt_fail "port udp:7001 for cb was not refused with EADDRINUSE naming ca: $(grep busy "$LT_TMP/cb.out")"
lt_log "two clients on 10.42.0.2; udp:7001 for the second: $(grep busy "$LT_TMP/cb.out")"

# A lease of another user may not take a port below 1024 (EACCES).
if command -v setpriv >/dev/null 2>&1; then
	setpriv --reuid 65534 --regid 65534 --clear-groups "$CLIENT" --name nobody --port 7005 \
		--busy-port 80 --count 0 --timeout 10 >"$LT_TMP/nobody.out" 2>"$LT_TMP/nobody.err" ||
		lt_fail "a client of uid 65534 failed: $(cat "$LT_TMP/nobody.err")"
	grep -q '^busy errno=13 .*below 1024' "$LT_TMP/nobody.out" ||
		lt_fail "udp:80 for uid 65534 was not refused with EACCES: $(cat "$LT_TMP/nobody.out")"
	lt_log "udp:80 for a lease of uid 65534: EACCES"
fi

# 2. ps shows them as indirect.
lt_ps_json >"$LT_TMP/ps.json" || lt_fail "libretto ps --json failed"
python3 - "$LT_TMP/ps.json" <<'PY' || lt_fail "ps: $(cat "$LT_TMP/ps.json")"
import json, sys
apps = {a["name"]: a for a in json.load(open(sys.argv[1]))["apps"]}
for name, port in (("ca", "udp:7001"), ("cb", "udp:7002")):
    a = apps[name]
    assert a["mode"] == "indirect" and a["backend"] == "shm" and a["vf"] == "-", a
    assert a["ip"] == "10.42.0.2" and a["ports"] == [port], a
PY
lt_log "ps: ca udp:7001 and cb udp:7002, mode=indirect backend=shm vf=-"

# 3. Traffic: each client echoes only its own datagrams.
for i in 1 2 3; do
	udp_echo 7001 "to-ca-$i" || lt_fail "no echo from 10.42.0.2:7001 (#$i): $(cat "$LT_TMP/ca.out" "$LT_TMP/ca.err")"
	udp_echo 7002 "to-cb-$i" || lt_fail "no echo from 10.42.0.2:7002 (#$i): $(cat "$LT_TMP/cb.out" "$LT_TMP/cb.err")"
done
lt_wait_pid "$capid" 10 || lt_fail "ca did not finish"
lt_wait_pid "$cbpid" 10 || lt_fail "cb did not finish"
grep '^got' "$LT_TMP/ca.out" | grep -qv 'to-ca-' && lt_fail "ca got another's traffic: $(cat "$LT_TMP/ca.out")"
grep '^got' "$LT_TMP/cb.out" | grep -qv 'to-cb-' && lt_fail "cb got another's traffic: $(cat "$LT_TMP/cb.out")"
[ "$(grep -c '^got 7001 to-ca-' "$LT_TMP/ca.out")" = 3 ] || lt_fail "ca: $(cat "$LT_TMP/ca.out")"
[ "$(grep -c '^got 7002 to-cb-' "$LT_TMP/cb.out")" = 3 ] || lt_fail "cb: $(cat "$LT_TMP/cb.out")"
lt_log "3 datagrams each echoed through netd, none to the wrong client"

# 4. After the exits: no application left in ps or netd's stats, port free.
for ((i = 0; i < 50; i++)); do
	[ "$(lt_ps_json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["apps"]))')" = 0 ] && break
	sleep 0.1
done
timeout 10 "$L" stats --json >"$LT_TMP/stats.json" || lt_fail "libretto stats --json failed"
python3 -c 'import json,sys; a = json.load(open(sys.argv[1]))["apps"]; sys.exit(0 if a == [] else 1)' \
	"$LT_TMP/stats.json" || lt_fail "netd still lists applications: $(cat "$LT_TMP/stats.json")"
lt_bg cc "$CLIENT" --name cc --port 7001 --count 1 --timeout 20
ccpid=$lt_last_pid
wait_ready cc "$ccpid" || lt_fail "udp:7001 is not free after ca exited: $(cat "$LT_TMP/cc.err")"
# A dedicated pool address beside it, with the same port.
lt_peer ip neigh del 10.42.0.20 dev wire0 2>/dev/null
lt_bg ce "$CLIENT" --name ce --ip 10.42.0.20 --port 7001 --count 1 --timeout 20
cepid=$lt_last_pid
wait_ready ce "$cepid" || lt_fail "client ce on 10.42.0.20 did not get ready: $(cat "$LT_TMP/ce.err")"
lt_ps_json | python3 -c '
import json, sys
a = [a for a in json.load(sys.stdin)["apps"] if a["name"] == "ce"][0]
assert a["ip"] == "10.42.0.20" and a["ports"] == ["udp:7001"], a' || lt_fail "ps does not show ce on 10.42.0.20"
udp_echo 7001 "to-cc" || lt_fail "no echo from the new holder of udp:7001: $(cat "$LT_TMP/cc.out")"
udp_echo 7001 "to-ce" 10.42.0.20 || lt_fail "no echo from 10.42.0.20:7001: $(cat "$LT_TMP/ce.out" "$LT_TMP/ce.err")"
lt_wait_pid "$ccpid" 10 || lt_fail "cc did not finish"
lt_wait_pid "$cepid" 10 || lt_fail "ce did not finish"
grep -q '^got 7001 to-cc' "$LT_TMP/cc.out" && grep -q '^got 7001 to-ce' "$LT_TMP/ce.out" &&
	! grep -q 'to-ce' "$LT_TMP/cc.out" || lt_fail "cc/ce traffic mixed: $(cat "$LT_TMP/cc.out" "$LT_TMP/ce.out")"
lt_log "after the exits netd lists no application and a new client took udp:7001;" \
	"udp:7001 on the dedicated 10.42.0.20 works beside it"

# 5. netd dies: librettod hands the lease back to the new netd, traffic resumes.
lt_bg cd "$CLIENT" --name cd --port 7003 --count 2 --timeout 30
cdpid=$lt_last_pid
wait_ready cd "$cdpid" || lt_fail "client cd did not get ready: $(cat "$LT_TMP/cd.err")"
udp_echo 7003 "to-cd-1" || lt_fail "no echo from 10.42.0.2:7003: $(cat "$LT_TMP/cd.out")"
npid=$(timeout 10 "$L" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["netd_pid"])')
kill -9 "$npid" 2>/dev/null || lt_fail "cannot kill netd pid '$npid'"
for ((i = 0; i < 50; i++)); do
	new=$(timeout 10 "$L" status --json | python3 -c 'import json,sys; j = json.load(sys.stdin); print(j["netd_pid"] if j["netd"] == "running" else 0)')
	[ "$new" != 0 ] && [ "$new" != "$npid" ] && break
	sleep 0.1
done
[ "$new" != 0 ] && [ "$new" != "$npid" ] || lt_fail "no new netd after kill -9 of $npid"
udp_echo 7003 "to-cd-2" || lt_fail "no echo from 10.42.0.2:7003 after netd's restart: $(cat "$LT_TMP/cd.out" "$LT_TMP/cd.err")"
lt_wait_pid "$cdpid" 10 || lt_fail "cd did not finish"
grep -q '^resync ' "$LT_TMP/cd.out" || lt_fail "cd did not see a new generation: $(cat "$LT_TMP/cd.out")"
lt_log "netd killed ($npid -> $new): the client's lease was handed back, echo works again"

# 6. Without netd, register mode=indirect is refused with ENETDOWN and why.
timeout 20 "$L" down >/dev/null 2>&1 || lt_fail "libretto down failed"
LIBRETTO_NETD=/nonexistent/libretto-netd lt_daemon_up
"$CLIENT" --name nonetd --port 7001 --timeout 5 >"$LT_TMP/nonetd.out" 2>"$LT_TMP/nonetd.err" &&
	lt_fail "register mode=indirect succeeded without netd"
grep -q 'errno=100 .*netd is stopped.*nonexistent' "$LT_TMP/nonetd.err" ||
	lt_fail "register without netd: $(cat "$LT_TMP/nonetd.err")"
lt_log "without netd: $(cat "$LT_TMP/nonetd.err")"
lt_log "PASS"
