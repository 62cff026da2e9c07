#!/bin/bash
# Integration: librettod killed (SIGKILL) and started again while a direct and an indirect server run under load; the applications and netd never notice.
#
# Servers: nginx (one process) in direct mode on 10.42.0.50:8094 and
# python3 http.server in indirect mode on the shared IP 10.42.0.2:8095.
# From the peer, for RS_LOAD_SECONDS (default 14): wrk with keep-alive
# connections on nginx, and curl loops fetching a 1 MiB file from each
# server with a sha256 check; tcpdump in the peer counts the TCP resets the
# servers send.
# Meanwhile librettod is killed with SIGKILL and brought back with
# `libretto up` RS_KILLS times (default 2).  Each time the new librettod
# must adopt netd (the same pid keeps running), and both runtimes must
# re-attach to their leases.
#
# Then: zero failed requests, zero resets, every file intact; `libretto ps`
# lists both servers with their modes; the direct one switches to indirect
# mode and back and still serves; a new `libretto run` works and its exit
# releases its lease; an application that exits while librettod is down is
# released by the next librettod; `libretto down` removes the state record
# and stops netd, and a `libretto up` afterwards starts empty.
#
# Runs on its own testbed (prefix lbrs unless LIBRETTO_TESTBED_PREFIX says
# otherwise) and removes what it brought up.  Exit 0 pass, 1 fail, 77 skip.
# Bounded: about a minute.
set -uo pipefail
lt_name=test_librettod_restart
export LIBRETTO_TESTBED_PREFIX=${LIBRETTO_TESTBED_PREFIX:-lbrs}
. "$(dirname "$0")/lib.sh"

secs=${RS_LOAD_SECONDS:-14}
kills=${RS_KILLS:-2}
dip=10.42.0.50
shared=10.42.0.2

lt_init
lt_need nginx wrk curl sha256sum python3
rs_testbed_was_up=0
lt_ns_exists "$LT_NS_HOST" && rs_testbed_was_up=1
lt_testbed_up
timeout 10 "$LIBRETTO" status >/dev/null 2>&1 && lt_skip "a librettod already runs on this testbed"
lt_daemon_up
if [ "$LT_PREFIX" != libretto ]; then
	[ "$rs_testbed_was_up" = 1 ] || lt_on_exit 'timeout 60 "$LIBRETTO" testbed down >/dev/null 2>&1'
	lt_on_exit 'timeout 30 "$LIBRETTO" down >/dev/null 2>&1'
fi
rundir=$(dirname "${LIBRETTO_CONTROL:-/run/librettos/control.sock}")
log=$rundir/librettod.log
state=$rundir/state

[ "$(lt_status_get netd)" = running ] || lt_skip "the network server is not running"
# rs_ps APP KEY: one key of the application APP in `libretto ps --json` ("" if absent).
rs_ps() {
	lt_ps_json | python3 -c '
import json, sys
apps = [a for a in json.load(sys.stdin)["apps"] if a.get("name") == sys.argv[1]]
print(apps[-1].get(sys.argv[2], "") if apps else "")' "$1" "$2"
}
# rs_wait_ps APP KEY VALUE SECONDS
rs_wait_ps() {
	local i
	for ((i = 0; i < $4 * 5; i++)); do
		[ "$(rs_ps "$1" "$2")" = "$3" ] && return 0
		sleep 0.2
	done
	return 1
}
peer() { ip netns exec "$LT_NS_PEER" "$@"; }
fetch_ok() {
	timeout 20 ip netns exec "$LT_NS_PEER" curl -sS --max-time 15 -o "$LT_TMP/one.got" "$1" \
		2>"$LT_TMP/one.err" && [ "$(sha256sum <"$LT_TMP/one.got")" = "$want" ]
}

mkdir -p "$LT_TMP/www" "$LT_TMP/nginx"
head -c $((1024 * 1024 + 7)) /dev/urandom >"$LT_TMP/www/m1.bin"
head -c 1000 /dev/urandom >"$LT_TMP/www/k1.bin"
want=$(sha256sum <"$LT_TMP/www/m1.bin")
lt_nginx_conf "$LT_TMP/nginx" 8094 "$LT_TMP/www" "keepalive_requests 1000000;"
py=$(command -v python3)
ip -n "$LT_NS_PEER" neigh del "$dip" dev wire0 2>/dev/null
lt_bg rs_dir "$LIBRETTO" run --mode direct --name rs_dir --ip "$dip" -- \
	nginx -c "$LT_TMP/nginx/nginx.conf" -p "$LT_TMP/nginx/"
pid_dir=$lt_last_pid
lt_bg rs_ind "$LIBRETTO" run --mode indirect --name rs_ind --ip shared -- \
	"$py" -m http.server 8095 --bind 0.0.0.0 --directory "$LT_TMP/www"
pid_ind=$lt_last_pid
lt_wait_tcp "$LT_NS_PEER" "$dip" 8094 30 || lt_fail "nginx does not accept on $dip:8094: $(tail -3 "$LT_TMP/rs_dir.err")"
lt_wait_tcp "$LT_NS_PEER" "$shared" 8095 30 || lt_fail "http.server does not accept on $shared:8095: $(tail -3 "$LT_TMP/rs_ind.err")"
[ -s "$state" ] || lt_fail "librettod wrote no state record at $state"
netd0=$(lt_status_get netd_pid)
lt_log "nginx direct on $dip, http.server indirect on $shared, netd pid $netd0; ${secs}s of load, $kills kills of librettod"

# The loads, bounded by the deadline.
end=$((SECONDS + secs))
have_tcpdump=0
if command -v tcpdump >/dev/null 2>&1; then
	have_tcpdump=1
	# Resets sent by the servers (wrk itself ends its connections with
	# resets when its time is up: those are not the servers' doing).
	lt_bg tcpdump peer timeout $((secs + 60)) tcpdump -i wire0 -nn -l -U \
		"tcp[tcpflags] & tcp-rst != 0 and (src host $dip or src host $shared)"
	pid_tcpdump=$lt_last_pid
	sleep 1
fi
timeout $((secs + 30)) ip netns exec "$LT_NS_PEER" wrk -t 1 -c 4 -d "${secs}s" \
	"http://$dip:8094/k1.bin" >"$LT_TMP/wrk.out" 2>&1 &
p_wrk=$!
lt_fetch_loop cd "http://$dip:8094/m1.bin" "$want" "$end" &
p_cd=$!
lt_fetch_loop ci "http://$shared:8095/m1.bin" "$want" "$end" &
p_ci=$!

# The kills, spread over the load.
gap=$((secs / (kills + 1)))
[ "$gap" -ge 2 ] || gap=2
for ((k = 1; k <= kills; k++)); do
	sleep "$gap"
	dpid=$(lt_status_get pid)
	[ -n "$dpid" ] || lt_fail "no librettod before kill $k"
	nlog=$(wc -l <"$log")
	kill -KILL "$dpid"
	for ((i = 0; i < 50; i++)); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$dpid" 2>/dev/null && lt_fail "librettod pid $dpid survived SIGKILL"
	# Half a second without a supervisor: the data paths must not care.
	sleep 0.5
	kill -0 "$netd0" 2>/dev/null || lt_fail "netd pid $netd0 died with librettod (kill $k)"
	timeout 30 "$LIBRETTO" up >"$LT_TMP/up.out" 2>&1 || lt_fail "libretto up after kill $k: $(cat "$LT_TMP/up.out")"
	grep -q 'state record of a librettod that died' "$LT_TMP/up.out" ||
		lt_fail "libretto up did not say it recovers: $(cat "$LT_TMP/up.out")"
	for ((i = 0; i < 50; i++)); do
		[ "$(tail -n +$((nlog + 1)) "$log" | grep -c 'reattach app=.*the lease is back')" -ge 2 ] && break
		sleep 0.1
	done
	tail -n +$((nlog + 1)) "$log" | grep -q "recover: adopted netd pid=$netd0" ||
		lt_fail "the new librettod did not adopt netd $netd0: $(tail -n +$((nlog + 1)) "$log")"
	[ "$(tail -n +$((nlog + 1)) "$log" | grep -c 'reattach app=.*the lease is back')" -ge 2 ] ||
		lt_fail "both runtimes did not re-attach within 5 s of kill $k: $(tail -n +$((nlog + 1)) "$log")"
	[ "$(lt_status_get netd_pid)" = "$netd0" ] || lt_fail "netd is not $netd0 any more after kill $k"
	lt_log "kill $k: librettod $dpid killed, a new one adopted netd $netd0 and both leases"
done

wait "$p_wrk" || lt_fail "wrk failed: $(cat "$LT_TMP/wrk.out")"
wait "$p_cd" || lt_fail "curl from nginx (direct) failed: $(cat "$LT_TMP/cd.fail" 2>/dev/null)"
wait "$p_ci" || lt_fail "curl from http.server (indirect) failed: $(cat "$LT_TMP/ci.fail" 2>/dev/null)"
grep -qE 'Socket errors|Non-2xx' "$LT_TMP/wrk.out" && lt_fail "wrk saw errors: $(cat "$LT_TMP/wrk.out")"
grep -q 'requests in' "$LT_TMP/wrk.out" || lt_fail "wrk gave no result: $(cat "$LT_TMP/wrk.out")"
if [ "$have_tcpdump" = 1 ]; then
	sleep 0.5
	lt_stop_pid "$pid_tcpdump" 3
	rsts=$(grep -c ' \[R' "$LT_TMP/tcpdump.out")
	[ "$rsts" -eq 0 ] || lt_fail "$rsts TCP resets seen by the peer: $(head -5 "$LT_TMP/tcpdump.out")"
fi
lt_log "clients: wrk $(awk '/requests in/ { print $1 }' "$LT_TMP/wrk.out") requests, no error;" \
	"$(cat "$LT_TMP/cd.runs") + $(cat "$LT_TMP/ci.runs") MiB files intact; resets: ${rsts:-not counted}"

# ps shows both again, in their modes, alive.
[ "$(rs_ps rs_dir mode)" = direct ] || lt_fail "ps: rs_dir is not listed in direct mode: $(lt_ps_json)"
[ "$(rs_ps rs_ind mode)" = indirect ] || lt_fail "ps: rs_ind is not listed in indirect mode: $(lt_ps_json)"
[ "$(rs_ps rs_dir alive)" = True ] && [ "$(rs_ps rs_ind alive)" = True ] ||
	lt_fail "ps: not both alive: $(lt_ps_json)"

# Switching still works on the recovered lease.
timeout 10 "$LIBRETTO" switch rs_dir indirect >"$LT_TMP/sw.out" 2>&1 || lt_fail "switch to indirect: $(cat "$LT_TMP/sw.out")"
rs_wait_ps rs_dir mode indirect 10 || lt_fail "rs_dir did not reach indirect mode: $(lt_ps_json)"
fetch_ok "http://$dip:8094/m1.bin" || lt_fail "nginx after the switch to indirect: $(cat "$LT_TMP/one.err")"
rs_wait_ps rs_dir switching - 10 || lt_fail "the switch to indirect did not drain"
timeout 10 "$LIBRETTO" switch rs_dir direct >"$LT_TMP/sw.out" 2>&1 || lt_fail "switch to direct: $(cat "$LT_TMP/sw.out")"
rs_wait_ps rs_dir mode direct 10 || lt_fail "rs_dir did not come back to direct mode: $(lt_ps_json)"
fetch_ok "http://$dip:8094/m1.bin" || lt_fail "nginx after the switch back to direct: $(cat "$LT_TMP/one.err")"
lt_log "rs_dir switched to indirect and back after the restarts"

# A new registration, and its release at exit.
lt_bg rs_new "$LIBRETTO" run --name rs_new -- "$py" -m http.server 8096 --bind 0.0.0.0 --directory "$LT_TMP/www"
pid_new=$lt_last_pid
rs_wait_ps rs_new alive True 20 || lt_fail "rs_new did not register: $(cat "$LT_TMP/rs_new.err")"
nip=$(rs_ps rs_new ip)
lt_wait_tcp "$LT_NS_PEER" "$nip" 8096 20 || lt_fail "rs_new does not accept on $nip:8096"
fetch_ok "http://$nip:8096/m1.bin" || lt_fail "rs_new: $(cat "$LT_TMP/one.err")"
lt_stop_pid "$pid_new" 5
rs_wait_ps rs_new name "" 10 || lt_fail "rs_new's lease was not released at its exit: $(lt_ps_json)"

# An application that exits while librettod is down is released by the next one.
nlog=$(wc -l <"$log")
dpid=$(lt_status_get pid)
kill -KILL "$dpid"
for ((i = 0; i < 50; i++)); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.1; done
lt_stop_pid "$pid_ind" 5
timeout 30 "$LIBRETTO" up >"$LT_TMP/up.out" 2>&1 || lt_fail "libretto up: $(cat "$LT_TMP/up.out")"
rs_wait_ps rs_ind name "" 5 || lt_fail "rs_ind (exited while librettod was down) is still listed: $(lt_ps_json)"
tail -n +$((nlog + 1)) "$log" | grep -q 'release app=.*name=rs_ind.*its process is gone' ||
	lt_fail "no release of rs_ind logged: $(tail -n +$((nlog + 1)) "$log")"
rs_wait_ps rs_dir alive True 5 || lt_fail "rs_dir lost: $(lt_ps_json)"
fetch_ok "http://$dip:8094/m1.bin" || lt_fail "nginx after the third restart: $(cat "$LT_TMP/one.err")"
lt_log "an application gone while librettod was down was released by the next one"

# Stopping a server releases its (recovered) lease.
lt_stop_pid "$pid_dir" 5
rs_wait_ps rs_dir name "" 10 || lt_fail "rs_dir's recovered lease was not released at its exit: $(lt_ps_json)"

# An orderly stop leaves nothing to recover.
timeout 30 "$LIBRETTO" down >"$LT_TMP/down.out" 2>&1 || lt_fail "libretto down: $(cat "$LT_TMP/down.out")"
[ -e "$state" ] && lt_fail "the state record $state survived libretto down"
for ((i = 0; i < 30; i++)); do kill -0 "$netd0" 2>/dev/null || break; sleep 0.1; done
kill -0 "$netd0" 2>/dev/null && lt_fail "netd $netd0 survived libretto down"
lt_daemon_up
[ "$(lt_ps_json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["apps"]))')" = 0 ] ||
	lt_fail "a librettod started after libretto down lists applications"
lt_log "PASS"
exit 0
