#!/bin/bash
# Integration: servers started exactly as a new user types them (no bind options) are reachable from the peer.
#
# `python3 -m http.server` and `iperf3 -s` listen on a dual-stack AF_INET6
# socket on :: by default; IPv4 clients reach them through IPv4-mapped
# addresses.  Under libretto the library OS must serve that listener on its
# IPv4 address (test_app_http.sh and test_app_iperf3.sh use explicit IPv4
# binds so that their data paths are tested regardless).
# Exit 0 pass, 1 fail, 77 skip.  Bounded: about 1 minute at most.
set -uo pipefail
lt_name=test_app_default_bind
. "$(dirname "$0")/lib.sh"

ip=${DEFAULT_BIND_IP:-10.42.0.24}
lt_init
lt_need curl iperf3 python3
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3)
lt_testbed_up
lt_daemon_up

mkdir -p "$LT_TMP/www"
echo "hello from the library OS" >"$LT_TMP/www/hello.txt"
fails=0

(cd "$LT_TMP/www" && exec "$LIBRETTO" run --mode direct --name http-default --ip "$ip" -- "$py" -m http.server 8090) \
	>"$LT_TMP/http.out" 2>"$LT_TMP/http.err" &
lt_pids+=("$!")
ip -n "$LT_NS_PEER" neigh del "$ip" dev wire0 2>/dev/null
if lt_wait_tcp "$LT_NS_PEER" "$ip" 8090 15 &&
	timeout 20 ip netns exec "$LT_NS_PEER" curl -sS --max-time 15 "http://$ip:8090/hello.txt" 2>&1 |
	grep -q "hello from the library OS"; then
	lt_log "python3 -m http.server (default bind): reachable"
else
	lt_log "python3 -m http.server (default bind) is not reachable on $ip:8090"
	tail -5 "$LT_TMP/http.err" >&2
	fails=1
fi
kill "${lt_pids[-1]}" 2>/dev/null
lt_wait_pid "${lt_pids[-1]}" 5

lt_run_libos iperf3-default "$ip" "$(command -v iperf3)" -s -p 5202 --forceflush
for ((i = 0; i < 75; i++)); do
	grep -q "Server listening" "$LT_TMP/iperf3-default.out" 2>/dev/null && break
	sleep 0.2
done
if timeout 20 ip netns exec "$LT_NS_PEER" iperf3 -c "$ip" -p 5202 -t 1 -J --connect-timeout 3000 \
	>"$LT_TMP/iperf.json" 2>&1 &&
	python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(1 if j.get("error") else 0)' \
		"$LT_TMP/iperf.json"; then
	lt_log "iperf3 -s (default bind): reachable"
else
	lt_log "iperf3 -s (default bind) is not reachable on $ip:5202: $(python3 -c '
import json,sys
try: print(json.load(open(sys.argv[1])).get("error"))
except Exception as e: print(e)' "$LT_TMP/iperf.json")"
	fails=1
fi
[ "$fails" -eq 0 ] || lt_fail "a default-bind (dual-stack) server is not served by the library OS"
lt_log "PASS"
exit 0
