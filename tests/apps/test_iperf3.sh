#!/bin/bash
# Application: an unmodified `iperf3 -s` (default: a dual-stack socket on ::) under `libretto run --mode direct`, iperf3 -c from the peer.
#
# Checks, each in iperf3's JSON (no error, bytes > 0): TCP with -P 4
# parallel streams, reverse (-R, the server sends) also with -P 4, UDP at
# 100 Mbit/s both ways.  Exit 0 pass, 1 fail, 77 skip.  Bounded: under a
# minute.
set -uo pipefail
lt_name=test_iperf3
. "$(dirname "$0")/../integration/lib.sh"

ip=${IPERF3_IP:-10.42.0.35}
port=5201
lt_init
lt_need iperf3 python3
lt_testbed_up
lt_daemon_up

lt_run_libos iperf3 "$ip" iperf3 -s -p "$port"
server=$lt_last_pid
# iperf3 -s serves one test at a time: do not probe its port with a bare
# connect (it would count as a test); wait for `libretto ps` instead.
if ! lt_wait_ps_port iperf3 tcp:$port 15; then
	tail -n 20 "$LT_TMP/iperf3.err" "$LT_TMP/iperf3.out" >&2
	lt_fail "iperf3 -s did not listen on $ip:$port within 15 s"
fi

# client NAME ARGS...: iperf3 -c from the peer; checks its JSON.
client() {
	local name=$1
	shift
	ip -n "$LT_NS_PEER" neigh del "$ip" dev wire0 2>/dev/null
	timeout 25 ip netns exec "$LT_NS_PEER" iperf3 -c "$ip" -p "$port" -t 3 -J \
		--connect-timeout 5000 "$@" >"$LT_TMP/$name.json" 2>"$LT_TMP/$name.err"
	local rc=$?
	local sum
	sum=$(python3 - "$LT_TMP/$name.json" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print("bad JSON: %s" % e); sys.exit(1)
if d.get("error"):
    print("error: %s" % d["error"]); sys.exit(1)
end = d.get("end", {})
if "sum_received" in end:
    b = end["sum_received"].get("bytes", 0)
    streams = len(end.get("streams", []))
    print("received %d bytes over %d streams" % (b, streams))
else:
    s = end.get("sum", {})
    b = s.get("bytes", 0)
    print("%d bytes, %d/%d datagrams lost" % (b, s.get("lost_packets", -1), s.get("packets", -1)))
sys.exit(0 if b > 0 else 1)
EOF
	)
	local ok=$?
	if [ $rc -ne 0 ] || [ $ok -ne 0 ]; then
		cat "$LT_TMP/$name.err" >&2
		tail -n 5 "$LT_TMP/iperf3.out" >&2
		lt_fail "iperf3 -c $*: status $rc: $sum"
	fi
	lt_log "iperf3 -c $*: $sum"
}

client tcp4 -P 4
client rev4 -R -P 4
client udp -u -b 100M
client udprev -u -b 100M -R
kill -0 "$server" 2>/dev/null || lt_fail "iperf3 -s exited: $(tail -n 3 "$LT_TMP/iperf3.err")"
lt_log "PASS"
exit 0
