#!/bin/bash
# Integration: an unmodified `python3 -m http.server` in direct mode serves a 10 MiB file to curl in the peer netns.
#
# Checks: the file arrives intact (sha256), `libretto ps` counts nonzero rx
# and tx packets for the server, and the kernel has no IPv4 address on the
# server's VF.  Exit 0 pass, 1 fail, 77 skip.  Bounded: about 2 minutes at most.
set -uo pipefail
lt_name=test_app_http
. "$(dirname "$0")/lib.sh"

ip=${HTTP_IP:-10.42.0.21}
port=8080
lt_init
lt_need curl sha256sum
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3) || lt_skip "python3 is not installed"
lt_testbed_up
lt_daemon_up

mkdir -p "$LT_TMP/www"
head -c $((10 * 1024 * 1024)) /dev/urandom >"$LT_TMP/www/file.bin"
want=$(sha256sum <"$LT_TMP/www/file.bin" | cut -d' ' -f1)

lt_run_libos http "$ip" "$py" -m http.server "$port" --bind 0.0.0.0 --directory "$LT_TMP/www"
server=$lt_last_pid
if ! lt_wait_tcp "$LT_NS_PEER" "$ip" "$port" 30; then
	tail -20 "$LT_TMP/http.err" >&2
	lt_fail "the server did not accept connections on $ip:$port within 30 s"
fi
kill -0 "$server" 2>/dev/null || lt_fail "the server exited: $(tail -3 "$LT_TMP/http.err")"

t0=$(date +%s%N)
if ! timeout 90 ip netns exec "$LT_NS_PEER" curl -sS --max-time 80 -o "$LT_TMP/got.bin" \
	"http://$ip:$port/file.bin" 2>"$LT_TMP/curl.err"; then
	cat "$LT_TMP/curl.err" >&2
	tail -20 "$LT_TMP/http.err" >&2
	lt_fail "curl from the peer failed"
fi
ms=$((($(date +%s%N) - t0) / 1000000))
got=$(sha256sum <"$LT_TMP/got.bin" | cut -d' ' -f1)
[ "$got" = "$want" ] || lt_fail "sha256 differs: sent $want, received $got ($(stat -c %s "$LT_TMP/got.bin") bytes)"
lt_log "10 MiB fetched intact in $ms ms"

read -r rxp txp rxb txb < <(lt_ps_counters http)
lt_log "libretto ps: rx_packets=${rxp:-?} tx_packets=${txp:-?} rx_bytes=${rxb:-?} tx_bytes=${txb:-?}"
[[ "${rxp:-0}" =~ ^[0-9]+$ && "${txp:-0}" =~ ^[0-9]+$ ]] || lt_fail "libretto ps shows no counters for the server"
[ "$rxp" -gt 0 ] && [ "$txp" -gt 0 ] || lt_fail "libretto ps counts no traffic for the server"
[ "$txb" -ge $((10 * 1024 * 1024)) ] 2>/dev/null || lt_log "note: tx_bytes below the file size"

vf=$(lt_ps_json | python3 -c '
import json, sys
apps = [a for a in json.load(sys.stdin)["apps"] if a.get("name") == "http" and a.get("alive")]
print(apps[-1].get("vf", "") if apps else "")')
if [ -n "$vf" ] && [ "$vf" != "-" ]; then
	addrs=$(ip -n "$LT_NS_HOST" -4 -o addr show dev "$vf" 2>/dev/null)
	[ -z "$addrs" ] || lt_fail "the kernel has an IPv4 address on $vf: $addrs"
	lt_log "no kernel IPv4 address on $vf"
fi
lt_log "PASS"
exit 0
