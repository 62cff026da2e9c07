#!/bin/bash
# Integration: unmodified `iperf3 -s` in direct mode, `iperf3 -c` from the peer: TCP, UDP and reverse TCP.
#
# Checks in iperf3's JSON (-J): no "error", bytes received > 0; then that
# `libretto ps` counted the traffic.  Exit 0 pass, 1 fail, 77 skip.
# Bounded: about 1.5 minutes at most.
set -uo pipefail
lt_name=test_app_iperf3
. "$(dirname "$0")/lib.sh"

ip=${IPERF_IP:-10.42.0.22}
port=5201
lt_init
lt_need iperf3 python3
lt_testbed_up
lt_daemon_up

# -4: the library OS serves IPv4 sockets; iperf3's default dual-stack
# listener (AF_INET6 on ::) is covered by test_app_default_bind.sh.
lt_run_libos iperf3 "$ip" "$(command -v iperf3)" -s -4 -p "$port" --forceflush
server=$lt_last_pid
# iperf3 prints its banner once it listens; waiting for it avoids opening a
# probe connection that the server would count as a failed test.
for ((i = 0; i < 150; i++)); do
	grep -q "Server listening" "$LT_TMP/iperf3.out" 2>/dev/null && break
	kill -0 "$server" 2>/dev/null || break
	sleep 0.2
done
grep -q "Server listening" "$LT_TMP/iperf3.out" 2>/dev/null || {
	tail -20 "$LT_TMP/iperf3.err" >&2
	lt_fail "iperf3 -s did not start listening within 30 s"
}

# check NAME JSONFILE: bytes received > 0 and no error; prints a summary.
check() {
	python3 - "$1" "$2" <<'PY'
import json, sys
name, path = sys.argv[1], sys.argv[2]
try:
    j = json.load(open(path))
except Exception as e:
    print(f"{name}: no JSON from iperf3 ({e})", file=sys.stderr)
    sys.exit(1)
if j.get("error"):
    print(f"{name}: iperf3 error: {j['error']}", file=sys.stderr)
    sys.exit(1)
end = j.get("end", {})
# iperf3 3.12 reports what the server received in sum_received for TCP and
# UDP alike; UDP adds loss figures in "sum".
got = end.get("sum_received", {}).get("bytes", 0)
bps = end.get("sum_received", {}).get("bits_per_second", 0)
extra = ""
if "lost_percent" in end.get("sum", {}):
    extra = f", lost {end['sum']['lost_percent']:.1f}%"
if not got:
    print(f"{name}: no bytes received", file=sys.stderr)
    sys.exit(1)
print(f"{name}: {got} bytes, {bps / 1e6:.1f} Mbit/s{extra}", file=sys.stderr)
PY
}

# run NAME ARGS...: one client run from the peer, bounded.
run() {
	local name=$1
	shift
	ip -n "$LT_NS_PEER" neigh del "$ip" dev wire0 2>/dev/null
	timeout 40 ip netns exec "$LT_NS_PEER" iperf3 -c "$ip" -p "$port" -J --connect-timeout 5000 "$@" \
		>"$LT_TMP/$name.json" 2>"$LT_TMP/$name.err"
	local rc=$?
	if ! check "$name" "$LT_TMP/$name.json"; then
		cat "$LT_TMP/$name.err" >&2
		tail -10 "$LT_TMP/iperf3.err" >&2
		lt_fail "$name (client exit $rc)"
	fi
}

run tcp -t 5
run udp -u -b 50M -t 3
run reverse -R -t 3
kill -0 "$server" 2>/dev/null || lt_fail "iperf3 -s died: $(tail -3 "$LT_TMP/iperf3.err")"

read -r rxp txp rxb txb < <(lt_ps_counters iperf3)
lt_log "libretto ps: rx_packets=${rxp:-?} tx_packets=${txp:-?} rx_bytes=${rxb:-?} tx_bytes=${txb:-?}"
[[ "${rxp:-0}" =~ ^[0-9]+$ && "${txp:-0}" =~ ^[0-9]+$ ]] || lt_fail "libretto ps shows no counters for iperf3"
[ "$rxp" -gt 0 ] && [ "$txp" -gt 0 ] || lt_fail "libretto ps counts no traffic for iperf3"
lt_log "PASS"
exit 0
