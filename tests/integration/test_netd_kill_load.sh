#!/bin/bash
# Integration: three unmodified servers in indirect mode under continuous load while libretto-netd is killed (SIGKILL) or live-upgraded every 3 s.
#
# Servers (libretto run --mode indirect): nginx, one process, on the shared
# IP 10.42.0.2:8094; python3 http.server on 10.42.0.2:8095; redis-server on
# a dedicated pool IP 10.42.0.60:6379.  From the peer, for NETD_LOAD_SECONDS
# (default 20; `make soak` runs 60): wrk with keep-alive connections on
# nginx, redis-benchmark runs back to back (SET and GET), curl loops
# fetching a 1 MiB file from each web server with a sha256 check, and a
# 200/s ping of the shared IP (answered by netd itself) whose longest gap
# between two replies is the outage the peer sees.
#
# NETD_EVENT=kill (default): every 3 s `kill -9` of netd; librettod starts a
# new one which adopts the rings.  NETD_EVENT=upgrade: every 3 s `libretto
# netd upgrade` (the same binary); then netd's counters must also show that
# no frame was lost: over every netd of the run, each frame taken from the
# PF is delivered, handled or counted as dropped (netd.h), the kernel
# dropped none on the PF's socket (xsk_rx_dropped, xsk_rx_ring_full) and
# no application ring overflowed (rx_ring_full).
#
# Pass: zero failed requests and zero connection errors at every client,
# every file intact, every event followed by a running netd.  Prints the
# outage per event (librettod's netd_last_gap_ms and the peer's ping gap).
# Exit 0 pass, 1 fail, 77 skip.  Bounded: NETD_LOAD_SECONDS + about 60 s.
set -uo pipefail
lt_name=test_netd_${NETD_EVENT:-kill}_load
. "$(dirname "$0")/lib.sh"

event=${NETD_EVENT:-kill}
secs=${NETD_LOAD_SECONDS:-20}
every=${NETD_EVENT_EVERY:-3}
shared=10.42.0.2
dedicated=10.42.0.60
case "$event" in kill | upgrade) ;; *) echo "NETD_EVENT must be kill or upgrade" >&2; exit 1 ;; esac
lt_init
lt_need curl sha256sum redis-server redis-benchmark nginx wrk ping python3
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3)
lt_testbed_up
lt_daemon_up

[ "$(lt_status_get netd)" = running ] || lt_skip "the network server is not running"

mkdir -p "$LT_TMP/www" "$LT_TMP/nginx"
head -c $((1024 * 1024 + 7)) /dev/urandom >"$LT_TMP/www/m1.bin"
head -c 1000 /dev/urandom >"$LT_TMP/www/k1.bin"
want=$(sha256sum <"$LT_TMP/www/m1.bin")
lt_nginx_conf "$LT_TMP/nginx" 8094 "$LT_TMP/www" "keepalive_requests 1000000;"
lt_run_mode indirect kl_nginx "$shared" nginx -c "$LT_TMP/nginx/nginx.conf" -p "$LT_TMP/nginx/"
lt_run_mode indirect kl_web "$shared" "$py" -m http.server 8095 --bind 0.0.0.0 --directory "$LT_TMP/www"
lt_run_mode indirect kl_redis "$dedicated" redis-server --port 6379 --save '' --appendonly no --protected-mode no
for hp in "$shared 8094" "$shared 8095" "$dedicated 6379"; do
	set -- $hp
	lt_wait_tcp "$LT_NS_PEER" "$1" "$2" 30 ||
		lt_fail "nothing accepts on $1:$2 within 30 s: $(tail -n 3 "$LT_TMP"/*.err)"
done
lt_log "nginx and http.server on $shared, redis on $dedicated; ${secs}s of load, netd $event every ${every}s"

stats_json() { timeout 10 "$LIBRETTO" stats --json >"$1" 2>"$1.err"; }
stats_json "$LT_TMP/stats0.json" || lt_fail "libretto stats failed: $(cat "$LT_TMP/stats0.json.err")"
restarts0=$(lt_status_get netd_restarts)
upgrades0=$(lt_status_get netd_upgrades)

end=$((SECONDS + secs))
end_epoch=$(( $(date +%s) + secs ))
log=$(dirname "${LIBRETTO_CONTROL:-/run/librettos/control.sock}")/librettod.log
log_size0=$(stat -c %s "$log" 2>/dev/null || echo 0)
peer() { ip netns exec "$LT_NS_PEER" "$@"; }

# The loads, all bounded by the deadline.
lt_bg ping peer timeout $((secs + 5)) ping -D -n -i 0.005 -W 2 "$shared"
timeout $((secs + 30)) ip netns exec "$LT_NS_PEER" wrk -t 2 -c 8 -d "${secs}s" \
	"http://$shared:8094/k1.bin" >"$LT_TMP/wrk.out" 2>&1 &
p_wrk=$!
(
	n=0
	while [ $SECONDS -lt $end ]; do
		timeout 60 ip netns exec "$LT_NS_PEER" redis-benchmark -h "$dedicated" -p 6379 -c 8 \
			-n 20000 -t set,get -q >"$LT_TMP/rb.$n" 2>&1 || { echo "run $n exit $?" >"$LT_TMP/rb.fail"; exit 1; }
		if ! lt_redis_bench_ok "$LT_TMP/rb.$n"; then
			echo "run $n: $(tail -3 "$LT_TMP/rb.$n.txt")" >"$LT_TMP/rb.fail"
			exit 1
		fi
		n=$((n + 1))
	done
	echo "$n" >"$LT_TMP/rb.runs"
) &
p_rb=$!
lt_fetch_loop cn "http://$shared:8094/m1.bin" "$want" "$end" &
p_cn=$!
lt_fetch_loop cp "http://$shared:8095/m1.bin" "$want" "$end" &
p_cp=$!

# The events, every $every s on the clock (not $every s after the previous
# one finished).  netd is found as librettod's child with pgrep: `libretto
# status` is too slow on loaded CPUs to keep the pace.
events=0
dpid=$(lt_status_get pid)
netd_child() { pgrep -x -P "$dpid" libretto-netd | head -1; }
t_next=$(date +%s.%N)
while :; do
	t_next=$(awk -v t="$t_next" -v e="$every" 'BEGIN { printf "%.3f", t + e }')
	[ "$(awk -v t="$t_next" -v e="$end_epoch" 'BEGIN { if (t + 1 < e) print 1; else print 0 }')" = 1 ] || break
	sleep "$(awk -v t="$t_next" -v now="$(date +%s.%N)" 'BEGIN { d = t - now; if (d < 0) d = 0; printf "%.3f", d }')"
	old=$(netd_child)
	[ -n "$old" ] || lt_fail "no netd running before event $((events + 1))"
	date +%s.%N >>"$LT_TMP/event_times"
	if [ "$event" = kill ]; then
		kill -KILL "$old"
	else
		timeout 20 "$LIBRETTO" netd upgrade >"$LT_TMP/upgrade.out" 2>&1 ||
			lt_fail "libretto netd upgrade failed: $(cat "$LT_TMP/upgrade.out")"
	fi
	new=
	for ((i = 0; i < 250; i++)); do
		new=$(netd_child)
		[ -n "$new" ] && [ "$new" != "$old" ] && ! kill -0 "$old" 2>/dev/null && break
		new=
		sleep 0.02
	done
	[ -n "$new" ] || lt_fail "no new netd within 5 s of event $((events + 1)) ($event of $old)"
	events=$((events + 1))
done
[ "$(lt_status_get netd)" = running ] || lt_fail "netd is not running after the last event"
# librettod's own measure of each outage, from its log.
mapfile -t gaps < <(tail -c +"$((log_size0 + 1))" "$log" | sed -n 's/.*serves again \([0-9]*\) ms after.*/\1/p')

wait "$p_wrk" || lt_fail "wrk failed: $(cat "$LT_TMP/wrk.out")"
wait "$p_rb" || lt_fail "redis-benchmark failed: $(cat "$LT_TMP/rb.fail" 2>/dev/null)"
wait "$p_cn" || lt_fail "curl from nginx failed: $(cat "$LT_TMP/cn.fail" 2>/dev/null)"
wait "$p_cp" || lt_fail "curl from http.server failed: $(cat "$LT_TMP/cp.fail" 2>/dev/null)"
grep -qE 'Socket errors|Non-2xx' "$LT_TMP/wrk.out" && lt_fail "wrk saw errors: $(cat "$LT_TMP/wrk.out")"
grep -q 'requests in' "$LT_TMP/wrk.out" || lt_fail "wrk gave no result: $(cat "$LT_TMP/wrk.out")"
[ "$events" -ge 2 ] || lt_fail "only $events events in ${secs}s"
if [ "$event" = kill ]; then
	got=$(( $(lt_status_get netd_restarts) - restarts0 ))
else
	got=$(( $(lt_status_get netd_upgrades) - upgrades0 ))
fi
[ "$got" -eq "$events" ] || lt_fail "librettod counted $got ${event}s, the test made $events"
lt_log "clients: wrk $(awk '/requests in/ { print $1 }' "$LT_TMP/wrk.out") requests ($(awk '/Requests\/sec/ { print $2 }' "$LT_TMP/wrk.out") req/s) no error;" \
	"redis-benchmark $(cat "$LT_TMP/rb.runs") runs of 20000 SET+GET, no error;" \
	"$(cat "$LT_TMP/cn.runs") + $(cat "$LT_TMP/cp.runs") MiB files intact (nginx + http.server)"

# The outage per event: librettod's measure, and the longest silence of the peer's ping.
lt_stop_pid "$lt_last_pid" 3 2>/dev/null
python3 - "$LT_TMP/ping.out" "$LT_TMP/event_times" "${gaps[@]}" <<'PY' >"$LT_TMP/outage.txt" || true
import bisect, sys
ts = []
for line in open(sys.argv[1]):
    if line.startswith("[") and "bytes from" in line:
        ts.append(float(line[1:line.index("]")]))
ev = [float(l) for l in open(sys.argv[2]) if l.strip()]
sup = [int(g) for g in sys.argv[3:] if g.lstrip("-").isdigit()]
# The peer's outage of an event: the longest silence between two replies in
# the 600 ms after the event was issued (ping every 5 ms; one host, one
# clock).  The event's own command (status, the CLI) takes a few ms first.
per = []
for t in ev:
    i = max(bisect.bisect_left(ts, t) - 1, 0)
    w = [x for x in ts[i:] if x <= t + 0.6]
    if len(w) > 1:
        per.append(max(b - a for a, b in zip(w, w[1:])) * 1000)
other = sorted(((b - a) * 1000 for a, b in zip(ts, ts[1:])), reverse=True)
print("librettod's gap per event (ms): %s (max %s)" % (" ".join(map(str, sup)), max(sup) if sup else "-"))
print("peer's ping silence across each event (ms): %s (max %s)" % (
    " ".join("%.0f" % g for g in per), "%.0f" % max(per) if per else "-"))
print("peer ping (every 5 ms): %d replies; longest silences of the whole run (ms): %s" %
      (len(ts), " ".join("%.0f" % g for g in other[:5])))
PY
while read -r line; do lt_log "$line"; done <"$LT_TMP/outage.txt"

# Counters: every frame accounted for (netd.h's identity), per netd and, for
# upgrades, across all of them; none dropped by the kernel on the PF.
stats_json "$LT_TMP/stats1.json" || lt_fail "libretto stats failed: $(cat "$LT_TMP/stats1.json.err")"
python3 - "$LT_TMP/stats0.json" "$LT_TMP/stats1.json" "$event" <<'PY' || lt_fail "netd's counters do not add up (above)"
import json, sys
s0, s1 = (json.load(open(p)) for p in sys.argv[1:3])
event = sys.argv[3]
g0, g1 = s0["global"], s1["global"]
def total(g, k):
    return int(g.get("prev_" + k, 0)) + int(g.get(k, 0))
ok = True
cur = int(g1["rx_frames"]) - (int(g1["rx_delivered"]) + int(g1["rx_handled"]) + int(g1["rx_dropped"]))
print("current netd: rx_frames %s = delivered %s + handled %s + dropped %s%s" % (
    g1["rx_frames"], g1["rx_delivered"], g1["rx_handled"], g1["rx_dropped"],
    "" if cur == 0 else "  MISMATCH %d" % cur), file=sys.stderr)
ok &= cur == 0
kernel = {k: int(g1.get(k, 0)) - int(g0.get(k, 0)) for k in ("xsk_rx_dropped", "xsk_rx_ring_full")}
print("kernel drops on the PF's socket during the run: %s" % kernel, file=sys.stderr)
ring_full = sum(int(a.get("rx_ring_full", 0)) for a in s1["apps"])
print("application rx rings full (current netd): %d" % ring_full, file=sys.stderr)
if event == "upgrade":
    fr = total(g1, "rx_frames") - total(g0, "rx_frames")
    acc = sum(total(g1, k) - total(g0, k) for k in ("rx_delivered", "rx_handled", "rx_dropped"))
    drop = total(g1, "rx_dropped") - total(g0, "rx_dropped")
    print("all netds of the run: %d frames from the PF, %d accounted for, %d of them counted drops"
          % (fr, acc, drop), file=sys.stderr)
    ok &= fr == acc and fr > 0
    ok &= all(v == 0 for v in kernel.values()) and ring_full == 0
sys.exit(0 if ok else 1)
PY
lt_log "$events ${event}s of netd under load: no failed request, no connection error, data intact"
lt_log "PASS"
exit 0
