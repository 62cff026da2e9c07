#!/bin/bash
# librettod supervising libretto-netd, as a user meets it through the CLI:
# `libretto up` starts netd on pf0; the peer pings the shared IP 10.42.0.2
# (netd answers) and resolves it to pf0's MAC; `libretto stats [--json]`
# shows netd's counters; kill -9 of netd gives a new netd within 1 s, ping
# works again and status says restarts=1; a direct-mode application beside
# it is unaffected; `libretto down` leaves no netd; a librettod whose netd
# binary is missing still leases VFs and says why netd is stopped.  Runs on
# its own testbed (prefix lbsup) and control socket.
# Exit 0 pass, 1 fail, 77 skip (not root).
set -u
export LIBRETTO_TESTBED_PREFIX=${LIBRETTO_TESTBED_PREFIX:-lbsup}
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
lt_init
lt_need ip ping python3 timeout pgrep

if ! lt_ns_exists "$LT_NS_HOST"; then
	lt_on_exit 'timeout 60 "$LIBRETTO" testbed down >/dev/null 2>&1'
fi
lt_testbed_up
# Whatever happens, no librettod (and so no netd) of ours outlives the test.
lt_on_exit 'timeout 20 "$LIBRETTO" down >/dev/null 2>&1'
lt_on_exit 'ip -n "$LT_NS_HOST" link set pf0 xdp off 2>/dev/null'

L=$LIBRETTO
# status_get KEY: one key of `libretto status --json`.
status_get() {
	timeout 10 "$L" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1], ""))' "$1"
}
daemon_pid() { status_get pid; }
# The libretto-netd children of librettod (pid $1), one per line.
netd_children() { pgrep -x -P "$1" libretto-netd; }
ping_shared() { lt_peer ping -c "${1:-3}" -i 0.2 -W 1 10.42.0.2 >"$LT_TMP/ping.out" 2>&1; }

timeout 20 "$L" down >/dev/null 2>&1
lt_daemon_up
dpid=$(daemon_pid)
[ -n "$dpid" ] || lt_fail "no librettod pid in status"

# 1. netd runs, as librettod's child, and status says so.
[ "$(status_get netd)" = running ] || lt_fail "netd is not running: $(timeout 10 "$L" status)"
npid=$(status_get netd_pid)
[ "$(netd_children "$dpid")" = "$npid" ] ||
	lt_fail "status says netd pid $npid, librettod's children are: $(netd_children "$dpid" | tr '\n' ' ')"
[ "$(status_get netd_restarts)" = 0 ] || lt_fail "restarts is not 0 at start"
timeout 10 "$L" status | grep -qE "^  netd +running \(pid $npid\), restarts 0" ||
	lt_fail "libretto status has no netd line: $(timeout 10 "$L" status)"
lt_log "netd runs (pid $npid, child of librettod $dpid)"

# 2. The peer reaches the shared IP: ARP to pf0's MAC, echo answered by netd.
pfmac=$(ip netns exec "$LT_NS_HOST" cat /sys/class/net/pf0/address)
lt_peer ip neigh flush dev wire0 to 10.42.0.2 2>/dev/null
ping_shared 3 || lt_fail "ping 10.42.0.2 from the peer failed: $(cat "$LT_TMP/ping.out")"
nmac=$(lt_peer ip neigh show 10.42.0.2 dev wire0 | awk '{ for (i = 1; i < NF; i++) if ($i == "lladdr") print $(i + 1) }')
[ "$nmac" = "$pfmac" ] || lt_fail "the peer resolved 10.42.0.2 to '$nmac', not pf0's $pfmac"
lt_log "ping 10.42.0.2 answered, ARP gives pf0's MAC $pfmac"

# 3. stats: text and JSON, the echo replies counted.
timeout 10 "$L" stats >"$LT_TMP/stats.txt" 2>&1 || lt_fail "libretto stats failed: $(cat "$LT_TMP/stats.txt")"
grep -qE '^  echo_replies +[1-9]' "$LT_TMP/stats.txt" || lt_fail "stats: no echo_replies: $(cat "$LT_TMP/stats.txt")"
timeout 10 "$L" stats --json >"$LT_TMP/stats.json" || lt_fail "libretto stats --json failed"
python3 -m json.tool "$LT_TMP/stats.json" >/dev/null || lt_fail "stats --json is not JSON: $(cat "$LT_TMP/stats.json")"
python3 - "$LT_TMP/stats.json" "$npid" <<'PY' || lt_fail "stats --json: unexpected content"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["netd_pid"] == int(sys.argv[2]) and j["netd_restarts"] == 0, j
g = j["global"]
assert g["echo_replies"] >= 3 and g["rx_frames"] >= 3 and g["tx_frames"] >= 3, g
assert j["apps"] == [], j["apps"]
PY
lt_log "stats and stats --json show $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["global"]["echo_replies"])' "$LT_TMP/stats.json") echo replies"

# 4. A direct-mode application beside netd works as before (its own VF).
lt_run_libos web 10.42.0.10 python3 -m http.server 8080 --bind 0.0.0.0
webpid=$lt_last_pid
lt_wait_tcp "$LT_NS_PEER" 10.42.0.10 8080 20 || lt_fail "the direct-mode server on 10.42.0.10:8080 did not come up: $(cat "$LT_TMP/web.err")"
lt_log "a direct-mode server answers on 10.42.0.10 beside netd"

# 5. kill -9 netd: a new one within 1 s, ping again, restarts=1.
kill -KILL "$npid"
new=
for ((i = 0; i < 20; i++)); do
	new=$(netd_children "$dpid")
	[ -n "$new" ] && [ "$new" != "$npid" ] && [ "$(status_get netd)" = running ] && break
	new=
	sleep 0.05
done
[ -n "$new" ] || lt_fail "no new netd within 1 s of kill -9 (status: $(timeout 10 "$L" status | grep -A1 netd))"
[ "$(status_get netd_pid)" = "$new" ] || lt_fail "status does not name the new netd $new"
[ "$(status_get netd_restarts)" = 1 ] || lt_fail "restarts is $(status_get netd_restarts), not 1"
status_get netd_last_exit | grep -q 'signal 9' || lt_fail "last exit is '$(status_get netd_last_exit)', not signal 9"
ping_shared 3 || lt_fail "ping 10.42.0.2 after the restart failed: $(cat "$LT_TMP/ping.out")"
lt_wait_tcp "$LT_NS_PEER" 10.42.0.10 8080 5 || lt_fail "the direct-mode server stopped answering after netd's restart"
lt_log "netd restarted as pid $new (restarts=1, last exit: $(status_get netd_last_exit)); ping works"
grep -q "netd pid=$npid ended: signal 9" "$(dirname "$LIBRETTO_CONTROL")/librettod.log" ||
	lt_fail "librettod's log does not record netd's death"
lt_stop_pid "$webpid" 5

# 6. down: librettod waits for netd, which is gone with it.
timeout 20 "$L" down >"$LT_TMP/down.out" 2>&1 || lt_fail "libretto down failed: $(cat "$LT_TMP/down.out")"
for ((i = 0; i < 20; i++)); do
	kill -0 "$new" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$new" 2>/dev/null && lt_fail "netd $new still runs after libretto down"
pgrep -x -P "$dpid" libretto-netd >/dev/null && lt_fail "a netd child of $dpid remains"
lt_log "libretto down: no netd left"

# 7. No netd binary: librettod starts, says why, still leases VFs.
LIBRETTO_NETD=/nonexistent/libretto-netd lt_daemon_up
[ "$(status_get netd)" = stopped ] || lt_fail "netd is '$(status_get netd)' without a binary, not stopped"
status_get netd_error | grep -q 'nonexistent' || lt_fail "status does not say why netd is stopped: '$(status_get netd_error)'"
timeout 10 "$L" stats >"$LT_TMP/stats2.out" 2>&1 && lt_fail "libretto stats succeeded without netd"
grep -q 'netd is stopped' "$LT_TMP/stats2.out" || lt_fail "stats without netd: $(cat "$LT_TMP/stats2.out")"
timeout 20 "$L" run --mode direct --ip 10.42.0.11 -- true >"$LT_TMP/run.out" 2>&1 ||
	lt_fail "a direct-mode run without netd failed: $(cat "$LT_TMP/run.out")"
timeout 20 "$L" down >/dev/null 2>&1 || lt_fail "libretto down failed"
lt_log "without a netd binary: stopped with the reason, direct mode works"
lt_log "PASS"
