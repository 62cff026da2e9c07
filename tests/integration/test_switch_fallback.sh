#!/bin/bash
# Integration (issue 6): a direct application whose VF fails falls back to indirect mode by itself, its connections intact; switched back to direct once the VF is up again.
#
# A python3 http.server in direct mode serves a 1 MiB file; from the peer a
# curl loop fetches it back to back with a sha256 check, and a second curl
# downloads a 10 MiB file slowly (--limit-rate) over one connection that
# lives through everything below.  Twice, once for each way a VF fails:
#
#   link  the switch side of the VF goes down (`ip -n PREFIX-host link set
#         vfN-sw down`): the VF loses its carrier;
#   dev   the VF netdev itself goes down (`ip -n PREFIX-host link set vfN
#         down`) under the application's AF_XDP socket;
#
# the application must be in indirect mode within FALLBACK_SECONDS (default
# 3: librettod looks at the VF links every 250 ms) with mode_why starting
# "vf-link-down" (or "runtime:" when the runtime saw its socket fail first),
# the fetches keep passing meanwhile; then the link comes back up and
# `libretto switch APP direct` must work (mode=direct, a VF in ps).
# No TCP reset may reach the peer, and the slow download must complete
# intact.
#
# Runs on its own testbed (prefix lbsw unless LIBRETTO_TESTBED_PREFIX says
# otherwise; never the shared one, whose VFs it takes down) and removes
# what it brought up.  Exit 0 pass, 1 fail, 77 skip.  Bounded: about a
# minute.
set -uo pipefail
lt_name=test_switch_fallback
export LIBRETTO_TESTBED_PREFIX=${LIBRETTO_TESTBED_PREFIX:-lbsw}
. "$(dirname "$0")/lib.sh"

ip=10.42.0.85
port=8000
fallback_s=${FALLBACK_SECONDS:-3}

lt_init
[ "$LT_PREFIX" != libretto ] || lt_skip "takes VFs down: run it on a private testbed (LIBRETTO_TESTBED_PREFIX)"
lt_need curl sha256sum tcpdump python3
sw_testbed_was_up=0
lt_ns_exists "$LT_NS_HOST" && sw_testbed_was_up=1
lt_testbed_up
[ "$sw_testbed_was_up" = 1 ] || lt_on_exit 'timeout 60 "$LIBRETTO" testbed down >/dev/null 2>&1'
sw_daemon_was_up=0
timeout 10 "$LIBRETTO" status >/dev/null 2>&1 && sw_daemon_was_up=1
lt_daemon_up
[ "$sw_daemon_was_up" = 1 ] || lt_on_exit 'timeout 30 "$LIBRETTO" down >/dev/null 2>&1'
timeout 10 "$LIBRETTO" status --json | grep -q '"netd": *"running"' ||
	lt_skip "the network server does not run (indirect mode needs it)"

# app KEY: one key of the application in `libretto ps --json`.
app() {
	lt_ps_json | python3 -c '
import json, sys
apps = [a for a in json.load(sys.stdin)["apps"] if a.get("name") == "fb_web" and a.get("alive")]
print(apps[-1].get(sys.argv[1], "") if apps else "")' "$1"
}

www=$LT_TMP/www
mkdir -p "$www"
head -c $((1024 * 1024 + 3)) /dev/urandom >"$www/m1.bin"
head -c $((10 * 1024 * 1024)) /dev/urandom >"$www/m10.bin"
want=$(sha256sum <"$www/m1.bin")
ip -n "$LT_NS_PEER" neigh del "$ip" dev wire0 2>/dev/null
lt_bg fb_web "$LIBRETTO" run --mode direct --name fb_web --ip "$ip" -- \
	python3 -m http.server "$port" --bind 0.0.0.0 --directory "$www"
server=$lt_last_pid
lt_wait_ps_port fb_web "tcp:$port" 30 || lt_fail "the server did not start: $(tail -n 3 "$LT_TMP/fb_web.err")"
[ "$(app policy)" = manual ] || lt_fail "the application cannot switch (policy=$(app policy))"

lt_bg rst ip netns exec "$LT_NS_PEER" timeout 300 tcpdump -i wire0 -n -l -tt "host $ip and tcp[tcpflags] & tcp-rst != 0"
rst_pid=$lt_last_pid
for ((i = 0; i < 50; i++)); do
	grep -q 'listening on' "$LT_TMP/rst.err" 2>/dev/null && break
	sleep 0.1
done

stop=$LT_TMP/stop
(
	n=0
	while [ ! -e "$stop" ]; do
		if ! timeout 40 ip netns exec "$LT_NS_PEER" curl -sS --max-time 30 -o "$LT_TMP/m1.got" \
			"http://$ip:$port/m1.bin" 2>"$LT_TMP/m1.err"; then
			echo "fetch $n: $(cat "$LT_TMP/m1.err")" >"$LT_TMP/curl.fail"
			exit 1
		fi
		if [ "$(sha256sum <"$LT_TMP/m1.got")" != "$want" ]; then
			echo "fetch $n: $(stat -c %s "$LT_TMP/m1.got") bytes, sha256 differs" >"$LT_TMP/curl.fail"
			exit 1
		fi
		n=$((n + 1))
	done
	echo "$n" >"$LT_TMP/curl.runs"
) &
p_curl=$!
# About 20 s for 10 MiB: one connection across both failures.
timeout 120 ip netns exec "$LT_NS_PEER" curl -sS --max-time 110 --limit-rate 512k -o "$LT_TMP/m10.got" \
	"http://$ip:$port/m10.bin" 2>"$LT_TMP/m10.err" &
p_slow=$!
sleep 2

for how in link dev; do
	vf=$(app vf)
	[ "$(app mode)" = direct ] && [ -n "$vf" ] && [ "$vf" != - ] ||
		lt_fail "$how: not in direct mode on a VF before the failure (mode=$(app mode) vf=$vf)"
	sw0=$(app switches)
	dev=$vf-sw
	[ "$how" = dev ] && dev=$vf
	lt_log "$how: $dev down under the application (on $vf)"
	ip -n "$LT_NS_HOST" link set "$dev" down || lt_fail "cannot take $dev down"
	lt_on_exit "ip -n $LT_NS_HOST link set $dev up 2>/dev/null"
	t0=$(date +%s%N)
	ok=0
	for ((i = 0; i < fallback_s * 20; i++)); do
		if [ "$(app mode)" = indirect ]; then
			ok=1
			break
		fi
		sleep 0.05
	done
	ms=$((($(date +%s%N) - t0) / 1000000))
	[ "$ok" = 1 ] || lt_fail "$how: still mode=$(app mode) $fallback_s s after $dev went down (mode_why=$(app mode_why))"
	why=$(app mode_why)
	lt_log "$how: indirect after $ms ms, mode_why=$why, vf=$(app vf)"
	[[ "$why" == vf-link-down* || "$why" == runtime:* ]] || lt_fail "$how: mode_why=$why, not vf-link-down:..."
	[ $(($(app switches) - sw0)) -eq 1 ] || lt_fail "$how: $(($(app switches) - sw0)) switches, not 1"
	# Connections go on through netd while the VF is down.
	sleep 3
	[ -e "$LT_TMP/curl.fail" ] && lt_fail "$how: $(cat "$LT_TMP/curl.fail")"
	ip -n "$LT_NS_HOST" link set "$dev" up || lt_fail "cannot bring $dev up"
	# The VF is usable again once its carrier is back.
	for ((i = 0; i < 50; i++)); do
		ip -n "$LT_NS_HOST" link show "$vf" | grep -q 'LOWER_UP' && break
		sleep 0.1
	done
	timeout 30 "$LIBRETTO" switch fb_web direct >"$LT_TMP/switch.out" 2>&1 ||
		lt_fail "$how: libretto switch fb_web direct after the link came back: $(cat "$LT_TMP/switch.out")"
	[ "$(app mode)" = direct ] && [ "$(app vf)" != - ] || lt_fail "$how: switched, but ps says mode=$(app mode) vf=$(app vf)"
	lt_log "$how: $dev up again; switched back to direct on $(app vf)"
	sleep 2
done

touch "$stop"
lt_wait_pid "$p_curl" 60 || lt_fail "the curl loop failed: $(cat "$LT_TMP/curl.fail" 2>/dev/null)"
lt_wait_pid "$p_slow" 120 || lt_fail "the slow download failed: $(cat "$LT_TMP/m10.err")"
cmp -s "$LT_TMP/m10.got" "$www/m10.bin" || lt_fail "the slow download arrived different ($(stat -c %s "$LT_TMP/m10.got") bytes)"
t_end=$(date +%s.%N)
sleep 0.3
lt_stop_pid "$rst_pid" 3
n=$(awk -v u="$t_end" '/Flags/ && $1 + 0 <= u + 0' "$LT_TMP/rst.out" | wc -l)
[ "$n" -eq 0 ] || lt_fail "the peer saw $n TCP resets: $(head -n 3 "$LT_TMP/rst.out")"
kill -0 "$server" 2>/dev/null || lt_fail "the server exited: $(tail -n 3 "$LT_TMP/fb_web.err")"
lt_log "$(cat "$LT_TMP/curl.runs") MiB files and one slow 10 MiB download intact across both failures; no reset"
lt_log "PASS"
exit 0
