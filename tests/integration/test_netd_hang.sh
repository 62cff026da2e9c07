#!/bin/bash
# Integration: a hung libretto-netd (SIGSTOP) is found by its heartbeat, replaced, and traffic resumes; an idle one is left alone.
#
# An unmodified python3 http.server in indirect mode on the shared IP.  First
# netd idles for 3 s (no traffic at all): its heartbeat still moves (it wakes
# at least every 100 ms), so librettod must not take it for hung.  Then,
# while the peer downloads a file at a limited rate, netd is stopped with
# SIGSTOP: librettod must see the heartbeat stand still, kill it within
# about 1.5 s, start a new netd that adopts the rings; the download finishes
# intact (TCP resends what waited), status names the reason ("hung") and
# librettod's log says it once.  Then netd is killed five times right
# after each start: librettod logs the exponential back-off and a netd runs
# again afterwards.  Exit 0 pass, 1 fail, 77 skip.  About 25 s.
set -uo pipefail
lt_name=test_netd_hang
. "$(dirname "$0")/lib.sh"

shared=10.42.0.2
port=8096
lt_init
lt_need curl cmp python3
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3)
lt_testbed_up
lt_daemon_up

[ "$(lt_status_get netd)" = running ] || lt_skip "the network server is not running"
log=$(dirname "${LIBRETTO_CONTROL:-/run/librettos/control.sock}")/librettod.log

mkdir -p "$LT_TMP/www"
head -c 8000000 /dev/urandom >"$LT_TMP/www/big.bin"
ip -n "$LT_NS_PEER" neigh del "$shared" dev wire0 2>/dev/null
lt_bg web "$LIBRETTO" run --mode indirect --name hang_web -- \
	"$py" -m http.server "$port" --bind 0.0.0.0 --directory "$LT_TMP/www"
lt_wait_tcp "$LT_NS_PEER" "$shared" "$port" 30 || lt_fail "the server did not come up: $(tail -3 "$LT_TMP/web.err")"

# 1. Idle is not hung.
pid0=$(lt_status_get netd_pid)
restarts0=$(lt_status_get netd_restarts)
sleep 3
[ "$(lt_status_get netd_pid)" = "$pid0" ] && [ "$(lt_status_get netd_restarts)" = "$restarts0" ] ||
	lt_fail "an idle netd was replaced (pid $pid0 -> $(lt_status_get netd_pid), last event $(lt_status_get netd_last_event))"
lt_log "netd idle for 3 s: not taken for hung"

# 2. Stopped is hung: replaced, and the download goes on.
timeout 60 ip netns exec "$LT_NS_PEER" curl -sS --max-time 50 --limit-rate 2M \
	-o "$LT_TMP/got.bin" "http://$shared:$port/big.bin" 2>"$LT_TMP/curl.err" &
curl_pid=$!
sleep 1
t0=$(date +%s%N)
kill -STOP "$pid0"
new=
for ((i = 0; i < 60; i++)); do
	new=$(lt_status_get netd_pid)
	[ -n "$new" ] && [ "$new" != 0 ] && [ "$new" != "$pid0" ] && [ "$(lt_status_get netd)" = running ] && break
	new=
	sleep 0.05
done
t1=$(date +%s%N)
[ -n "$new" ] || { kill -CONT "$pid0" 2>/dev/null; lt_fail "a stopped netd was not replaced within 3 s"; }
kill -0 "$pid0" 2>/dev/null && lt_fail "the hung netd $pid0 still exists"
lt_log "stopped netd $pid0 replaced by $new (seen by this test $(( (t1 - t0) / 1000000 )) ms after SIGSTOP, polling status)"
lt_status_get netd_last_event | grep -q '^hung' || lt_fail "status's last event is '$(lt_status_get netd_last_event)', not hung"
grep -q "netd pid=$pid0 is hung" "$log" || lt_fail "librettod's log does not say netd $pid0 was hung"
wait "$curl_pid" || lt_fail "the download failed: $(cat "$LT_TMP/curl.err")"
cmp -s "$LT_TMP/got.bin" "$LT_TMP/www/big.bin" || lt_fail "the file arrived different"
lt_log "the 8 MB download across the hang arrived intact; last event: $(lt_status_get netd_last_event), outage $(lt_status_get netd_last_gap_ms) ms"
# 3. A netd that keeps dying at start-up: back-off, said clearly, then it
# runs again.  Each netd must die within 1 s of its start to count as quick:
# found as librettod's child (pgrep), faster than `libretto status`.
dpid=$(lt_status_get pid)
p=$(lt_status_get netd_pid)
for ((k = 1; k <= 5; k++)); do
	kill -KILL "$p" 2>/dev/null
	np=
	for ((i = 0; i < 300; i++)); do
		np=$(pgrep -x -P "$dpid" libretto-netd | grep -vx "$p" | head -1)
		[ -n "$np" ] && break
		sleep 0.01
	done
	[ -n "$np" ] || lt_fail "no new netd within 3 s (start-up kill $k)"
	p=$np
done
kill -KILL "$p" 2>/dev/null
grep -q 'it keeps dying at start-up (3 times in a row within 1000 ms): next start in 100 ms (exponential back-off)' "$log" ||
	lt_fail "no back-off line in librettod's log: $(grep 'netd pid=' "$log" | tail -5)"
grep -q 'next start in 200 ms (exponential back-off)' "$log" || lt_fail "the back-off did not double"
for ((i = 0; i < 50; i++)); do
	[ "$(lt_status_get netd)" = running ] && break
	sleep 0.1
done
[ "$(lt_status_get netd)" = running ] || lt_fail "netd did not come back after the back-off"
lt_wait_tcp "$LT_NS_PEER" "$shared" "$port" 10 || lt_fail "the server is not reachable after the back-off"
lt_log "5 deaths at start-up: exponential back-off logged (100, 200 ms ...), netd runs again, the server answers"
lt_log "PASS"
exit 0
