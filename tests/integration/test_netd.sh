#!/bin/bash
# libretto-netd end to end without librettod: netd_harness (supervisor + two
# synthetic applications) drives netd on the PF of a testbed of its own
# (prefix lbnetd unless LIBRETTO_TESTBED_PREFIX says otherwise): ping and ARP
# answered by netd, UDP steered to one application and echoed back, spoofed
# transmissions dropped and counted, RST for an unbound TCP port, a stalled
# application that does not stall the other.  Exit 0 pass, 1 fail, 77 skip.
set -u
export LIBRETTO_TESTBED_PREFIX=${LIBRETTO_TESTBED_PREFIX:-lbnetd}
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
lt_init
lt_need ip ping python3 timeout
HARNESS=${NETD_HARNESS:-$LIBRETTO_BUILD/tests/integration/netd_harness}
NETD=${LIBRETTO_NETD:-$LIBRETTO_BUILD/src/netd/libretto-netd}
[ -x "$HARNESS" ] || lt_fail "no harness at $HARNESS"
[ -x "$NETD" ] || lt_fail "no libretto-netd at $NETD"

if ! lt_ns_exists "$LT_NS_HOST"; then
	# Ours: take it down again at the end.
	lt_on_exit 'timeout 60 "$LIBRETTO" testbed down >/dev/null 2>&1'
fi
lt_testbed_up
# libxdp (1.3) leaves its dispatcher on the PF when the socket goes.
lt_on_exit 'ip -n "$LT_NS_HOST" link set pf0 xdp off 2>/dev/null'

mac=$(ip netns exec "$LT_NS_HOST" cat /sys/class/net/pf0/address) || lt_fail "no pf0 in $LT_NS_HOST"
lt_log "netd on pf0 ($mac) in $LT_NS_HOST, peer $LT_NS_PEER"
start=$(date +%s)
export NETD_STATS_JSON=$LT_TMP/netd-stats.json
timeout 45 ip netns exec "$LT_NS_HOST" "$HARNESS" --netd "$NETD" --ifname pf0 --mac "$mac" \
	--peer-ns "$LT_NS_PEER" --ip 10.42.0.2 --peer-ip "$LT_PEER_IP"
rc=$?
lt_log "harness exit $rc after $(( $(date +%s) - start )) s"
[ "$rc" -eq 0 ] || lt_fail "netd_harness failed (exit $rc)"
# netd's --stats-json file, written at its exit: A is the one app left.
python3 - "$NETD_STATS_JSON" <<'PY' || lt_fail "--stats-json: unexpected content"
import json, sys
j = json.load(open(sys.argv[1]))
a = j["apps"]
assert j["echo_replies"] >= 5 and j["rst_sent"] >= 1 and j["unreach_sent"] >= 1, j
assert len(a) == 1 and a[0]["id"] == 1, a
assert a[0]["tx_drop"] == {"src_mac": 1, "src_ip": 1, "src_port": 1}, a[0]
print("stats-json ok:", json.dumps(a[0]), file=sys.stderr)
PY
lt_log "PASS"
