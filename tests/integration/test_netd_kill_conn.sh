#!/bin/bash
# Integration: a download from an indirect-mode server survives netd being killed (SIGKILL) twice mid-transfer.
#
# An unmodified `python3 -m http.server` under `libretto run --mode
# indirect` serves 20 MB; curl in the peer fetches it at 4 MB/s; meanwhile
# libretto-netd is killed twice.  librettod restarts netd (new pid,
# restarts counted), the application keeps its connection (its TCP/IP state
# lives in the application; TCP resends what was lost in the gap) and the
# file arrives intact.  Exit 0 pass, 1 fail, 77 skip.  Bounded: ~1 minute.
set -uo pipefail
lt_name=test_netd_kill_conn
. "$(dirname "$0")/lib.sh"

shared=${INDIRECT_IP:-10.42.0.2}
port=8086
lt_init
lt_need curl cmp
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3) || lt_skip "python3 is not installed"
lt_testbed_up
lt_daemon_up

netd_pid() { "$LIBRETTO" status 2>/dev/null | sed -n 's/.*netd.*running (pid \([0-9]*\)).*/\1/p'; }
netd_restarts() { "$LIBRETTO" status 2>/dev/null | sed -n 's/.*netd.*restarts \([0-9]*\).*/\1/p'; }
[ -n "$(netd_pid)" ] || lt_skip "the network server is not running"

mkdir -p "$LT_TMP/www"
head -c 20000000 /dev/urandom >"$LT_TMP/www/big.bin"
ip -n "$LT_NS_PEER" neigh del "$shared" dev wire0 2>/dev/null
lt_bg web "$LIBRETTO" run --mode indirect --name killconn -- \
	"$py" -m http.server "$port" --bind 0.0.0.0 --directory "$LT_TMP/www"
lt_wait_tcp "$LT_NS_PEER" "$shared" "$port" 30 || lt_fail "the server did not come up: $(tail -3 "$LT_TMP/web.err")"

before=$(netd_restarts)
timeout 60 ip netns exec "$LT_NS_PEER" curl -sS --max-time 50 --limit-rate 4M \
	-o "$LT_TMP/got.bin" "http://$shared:$port/big.bin" 2>"$LT_TMP/curl.err" &
curl_pid=$!
for k in 1 2; do
	sleep 1.5
	p=$(netd_pid)
	[ -n "$p" ] || lt_fail "no netd to kill (kill $k)"
	kill -KILL "$p"
	for ((i = 0; i < 50; i++)); do
		np=$(netd_pid)
		[ -n "$np" ] && [ "$np" != "$p" ] && break
		sleep 0.1
	done
	[ -n "$np" ] && [ "$np" != "$p" ] || lt_fail "netd was not restarted within 5 s after kill $k"
	lt_log "netd $p killed, $np runs"
done
wait "$curl_pid" || lt_fail "the download failed: $(cat "$LT_TMP/curl.err")"
cmp -s "$LT_TMP/got.bin" "$LT_TMP/www/big.bin" || lt_fail "the file arrived different ($(stat -c %s "$LT_TMP/got.bin") bytes)"
after=$(netd_restarts)
[ "$((after - before))" -ge 2 ] 2>/dev/null || lt_fail "restarts went from '$before' to '$after'"
lt_log "20 MB intact across two netd kills (restarts $before -> $after)"
lt_log "PASS"
exit 0
