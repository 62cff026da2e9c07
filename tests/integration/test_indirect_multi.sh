#!/bin/bash
# Integration: several unmodified servers in indirect mode at once, under load together, plus clients going out.
#
# Behind the shared IP 10.42.0.2 on different ports: redis-server (6392),
# memcached (11212) and python3 http.server (8087); with a dedicated IP
# through netd (10.42.0.53): a single-process nginx (8088).  From the peer,
# at the same time: redis-benchmark, memcslap set+get, curl of a 4 MiB
# file (sha256) and wrk; every client must succeed with correct results.
# Then: two programs racing to bind one port on the shared IP (exactly one
# wins, the other gets EADDRINUSE); redis-benchmark run under libretto in
# indirect mode against a redis on the peer's kernel stack.  Exit 0 pass,
# 1 fail, 77 skip.  Bounded: about 2 minutes.
set -uo pipefail
lt_name=test_indirect_multi
. "$(dirname "$0")/lib.sh"

shared=10.42.0.2
dedicated=10.42.0.53
lt_init
lt_need curl sha256sum redis-server redis-benchmark memcached memcslap nginx wrk
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3) || lt_skip "python3 is not installed"
lt_testbed_up
lt_daemon_up
"$LIBRETTO" status 2>/dev/null | grep -q 'netd.*running' || lt_skip "the network server is not running"

mkdir -p "$LT_TMP/www" "$LT_TMP/nginx"
head -c $((4 * 1024 * 1024)) /dev/urandom >"$LT_TMP/www/file.bin"
echo hello >"$LT_TMP/www/index.html"
lt_nginx_conf "$LT_TMP/nginx" 8088 "$LT_TMP/www"

lt_run_mode indirect redis "$shared" redis-server --port 6392 --save '' --appendonly no --protected-mode no
lt_run_mode indirect mc "$shared" memcached -u root -l 0.0.0.0 -p 11212 -U 0 -t 2
lt_run_mode indirect web "$shared" "$py" -m http.server 8087 --bind 0.0.0.0 --directory "$LT_TMP/www"
lt_run_mode indirect nginx "$dedicated" nginx -c "$LT_TMP/nginx/nginx.conf" -p "$LT_TMP/nginx/"
for hp in "$shared 6392" "$shared 11212" "$shared 8087" "$dedicated 8088"; do
	set -- $hp
	lt_wait_tcp "$LT_NS_PEER" "$1" "$2" 30 ||
		lt_fail "nothing accepts on $1:$2 within 30 s: $(tail -n 3 "$LT_TMP"/*.err)"
done
lt_log "redis, memcached and http.server on $shared, nginx on $dedicated"

# All the loads at once.
peer() { ip netns exec "$LT_NS_PEER" "$@"; }
timeout 60 ip netns exec "$LT_NS_PEER" redis-benchmark -h "$shared" -p 6392 -t set,get,incr,lpush \
	-n 20000 -c 8 -q >"$LT_TMP/rb.out" 2>&1 &
p1=$!
(timeout 60 ip netns exec "$LT_NS_PEER" memcslap -s "$shared:11212" --concurrency 8 \
	--execute-number 1000 --test set >"$LT_TMP/ms.set" 2>&1 &&
	timeout 60 ip netns exec "$LT_NS_PEER" memcslap -s "$shared:11212" --concurrency 8 \
		--execute-number 1000 --test get >"$LT_TMP/ms.get" 2>&1) &
p2=$!
timeout 60 ip netns exec "$LT_NS_PEER" curl -sS --max-time 50 -o "$LT_TMP/got.bin" \
	"http://$shared:8087/file.bin" 2>"$LT_TMP/curl.err" &
p3=$!
timeout 30 ip netns exec "$LT_NS_PEER" wrk -t 2 -c 16 -d 4s "http://$dedicated:8088/index.html" \
	>"$LT_TMP/wrk.out" 2>&1 &
p4=$!
wait $p1 || lt_fail "redis-benchmark failed: $(tail -3 "$LT_TMP/rb.out")"
wait $p2 || lt_fail "memcslap failed: $(tail -3 "$LT_TMP/ms.set" "$LT_TMP/ms.get" 2>/dev/null)"
wait $p3 || lt_fail "curl failed: $(cat "$LT_TMP/curl.err")"
wait $p4 || lt_fail "wrk failed: $(cat "$LT_TMP/wrk.out")"
# redis-benchmark redraws its progress line with carriage returns.
tr '\r' '\n' <"$LT_TMP/rb.out" >"$LT_TMP/rb.txt"
for t in SET GET INCR LPUSH; do
	grep -q "^$t: .* requests per second" "$LT_TMP/rb.txt" ||
		lt_fail "redis-benchmark has no $t result: $(tr '\r' '\n' <"$LT_TMP/rb.out" | tail -5)"
done
for t in set get; do
	grep -q "Time to $t .* 8000 keys by .*8 threads" "$LT_TMP/ms.$t" ||
		lt_fail "memcslap $t did not finish: $(cat "$LT_TMP/ms.$t")"
done
[ "$(sha256sum <"$LT_TMP/got.bin")" = "$(sha256sum <"$LT_TMP/www/file.bin")" ] ||
	lt_fail "http.server on $shared:8087 served a different file"
grep -qE 'Socket errors|Non-2xx' "$LT_TMP/wrk.out" && lt_fail "wrk saw errors: $(cat "$LT_TMP/wrk.out")"
grep -q 'requests in' "$LT_TMP/wrk.out" || lt_fail "wrk gave no result: $(cat "$LT_TMP/wrk.out")"
lt_log "under load together: redis-benchmark $(grep -c 'requests per second' "$LT_TMP/rb.txt") tests, memcslap set+get, 4 MiB by sha256, wrk $(awk '/Requests\/sec/ { print $2 }' "$LT_TMP/wrk.out") req/s, no error"

# Two programs race for one port on the shared IP: exactly one wins.
race='
import errno, socket, sys, time
s = socket.socket()
try:
    s.bind(("0.0.0.0", 9099))
    s.listen(1)
    print("bound", flush=True)
    time.sleep(3)
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno), flush=True)
'
timeout 30 "$LIBRETTO" run --mode indirect --name race1 -- "$py" -c "$race" >"$LT_TMP/race1" 2>"$LT_TMP/race1.err" &
r1=$!
timeout 30 "$LIBRETTO" run --mode indirect --name race2 -- "$py" -c "$race" >"$LT_TMP/race2" 2>"$LT_TMP/race2.err" &
r2=$!
wait $r1 $r2
got=$(cat "$LT_TMP/race1" "$LT_TMP/race2" | sort | tr '\n' ' ')
[ "$got" = "EADDRINUSE bound " ] || lt_fail "racing binds of 9099: got '$got' ($(cat "$LT_TMP"/race*.err))"
lt_log "two programs racing for one port: one bound, one EADDRINUSE"

# An indirect client going out: redis-benchmark under libretto against a
# redis on the peer's kernel stack.
lt_bg peerredis ip netns exec "$LT_NS_PEER" redis-server --port 6393 --bind 10.42.0.1 --save '' \
	--appendonly no --protected-mode no
sleep 1
timeout 60 "$LIBRETTO" run --mode indirect --name rbclient -- redis-benchmark -h 10.42.0.1 -p 6393 \
	-t set,get -n 5000 -c 4 -q >"$LT_TMP/rbc.out" 2>"$LT_TMP/rbc.err" ||
	lt_fail "redis-benchmark under libretto failed: $(tail -3 "$LT_TMP/rbc.err")"
tr '\r' '\n' <"$LT_TMP/rbc.out" >"$LT_TMP/rbc.txt"
for t in SET GET; do
	grep -q "^$t: .* requests per second" "$LT_TMP/rbc.txt" ||
		lt_fail "redis-benchmark under libretto has no $t result: $(tr '\r' '\n' <"$LT_TMP/rbc.out" | tail -3)"
done
lt_log "redis-benchmark in indirect mode against the peer: SET and GET done"
lt_log "PASS"
exit 0
