#!/bin/bash
# Integration: unmodified programs in indirect mode, through libretto-netd, on the shared IP.
#
# Two `python3 -m http.server` under `libretto run --mode indirect` share
# the shared IP 10.42.0.2 on ports 8081 and 8082: curl in the peer fetches a
# 2 MiB file from each (sha256), each server answers only on its own port,
# a third program cannot bind a port the first holds (EADDRINUSE, as on
# Linux), and `curl` under libretto in indirect mode fetches from a server
# on the peer's kernel stack (an outgoing connection on an ephemeral port
# claimed in the port table).  Exit 0 pass, 1 fail, 77 skip.  Bounded: about
# 2 minutes at most.
set -uo pipefail
lt_name=test_indirect_app
. "$(dirname "$0")/lib.sh"

shared=${INDIRECT_IP:-10.42.0.2}
lt_init
lt_need curl sha256sum
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3) || lt_skip "python3 is not installed"
lt_testbed_up
lt_daemon_up
"$LIBRETTO" status 2>/dev/null | grep -q 'netd.*running' ||
	lt_skip "the network server is not running (libretto status: $("$LIBRETTO" status 2>&1 | grep -i netd))"

mkdir -p "$LT_TMP/www1" "$LT_TMP/www2"
head -c $((2 * 1024 * 1024)) /dev/urandom >"$LT_TMP/www1/file.bin"
head -c $((2 * 1024 * 1024)) /dev/urandom >"$LT_TMP/www2/file.bin"

run_indirect() {
	local name=$1
	shift
	ip -n "$LT_NS_PEER" neigh del "$shared" dev wire0 2>/dev/null
	lt_bg "$name" "$LIBRETTO" run --mode indirect --name "$name" -- "$@"
}

run_indirect web1 "$py" -m http.server 8081 --bind 0.0.0.0 --directory "$LT_TMP/www1"
run_indirect web2 "$py" -m http.server 8082 --bind 0.0.0.0 --directory "$LT_TMP/www2"
for p in 8081 8082; do
	lt_wait_tcp "$LT_NS_PEER" "$shared" "$p" 30 ||
		lt_fail "nothing accepts on $shared:$p within 30 s: $(tail -5 "$LT_TMP"/web*.err)"
done

for i in 1 2; do
	p=$((8080 + i))
	want=$(sha256sum <"$LT_TMP/www$i/file.bin" | cut -d' ' -f1)
	timeout 60 ip netns exec "$LT_NS_PEER" curl -sS --max-time 50 -o "$LT_TMP/got$i.bin" \
		"http://$shared:$p/file.bin" 2>"$LT_TMP/curl$i.err" ||
		lt_fail "curl of $shared:$p failed: $(cat "$LT_TMP/curl$i.err")"
	got=$(sha256sum <"$LT_TMP/got$i.bin" | cut -d' ' -f1)
	[ "$got" = "$want" ] || lt_fail "$shared:$p served a different file"
	lt_log "2 MiB from web$i on $shared:$p intact"
done

# A port nobody holds on the shared IP: refused (netd sends the RST).
got=$(timeout 10 ip netns exec "$LT_NS_PEER" python3 -c '
import errno, socket, sys
s = socket.socket()
s.settimeout(5)
try:
    s.connect((sys.argv[1], 8083))
    print("connected")
except OSError as e:
    print(errno.errorcode.get(e.errno, e))
' "$shared")
[ "$got" = "ECONNREFUSED" ] || lt_fail "$shared:8083 (no holder): expected ECONNREFUSED, got $got"
lt_log "an unheld port is refused"

# A third application cannot take a port the first holds.
out=$(timeout 30 "$LIBRETTO" run --mode indirect --name clash -- "$py" -c '
import errno, socket
s = socket.socket()
try:
    s.bind(("0.0.0.0", 8081))
    print("bound")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
' 2>"$LT_TMP/clash.err")
[ "$out" = "EADDRINUSE" ] || lt_fail "bind of a held port: got '$out' ($(tail -3 "$LT_TMP/clash.err"))"
lt_log "bind of a port another application holds: EADDRINUSE"

# An outgoing connection: curl in indirect mode from the peer's kernel server.
head -c 100000 /dev/urandom >"$LT_TMP/peer.bin"
lt_bg peerhttp ip netns exec "$LT_NS_PEER" "$py" -m http.server 8090 --bind 10.42.0.1 --directory "$LT_TMP"
sleep 1
timeout 60 "$LIBRETTO" run --mode indirect --name client -- curl -sS --max-time 30 \
	-o "$LT_TMP/peer.got" "http://10.42.0.1:8090/peer.bin" 2>"$LT_TMP/client.err" ||
	lt_fail "curl in indirect mode failed: $(tail -3 "$LT_TMP/client.err")"
cmp -s "$LT_TMP/peer.bin" "$LT_TMP/peer.got" || lt_fail "curl in indirect mode got a different file"
lt_log "curl in indirect mode fetched 100 kB from the peer"
lt_log "PASS"
exit 0
