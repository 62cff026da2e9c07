#!/bin/bash
# Integration: an unmodified client (curl) under libretto fetches a file from a kernel-stack server in the peer netns.
#
# Checks: curl succeeds and the file's sha256 matches.  Exit 0 pass, 1 fail,
# 77 skip.  Bounded: about 1.5 minutes at most.
set -uo pipefail
lt_name=test_app_curl_client
. "$(dirname "$0")/lib.sh"

ip=${CURL_IP:-10.42.0.23}
port=8081
lt_init
lt_need curl sha256sum
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3) || lt_skip "python3 is not installed"
lt_testbed_up
lt_daemon_up

mkdir -p "$LT_TMP/www"
head -c $((10 * 1024 * 1024)) /dev/urandom >"$LT_TMP/www/file.bin"
want=$(sha256sum <"$LT_TMP/www/file.bin" | cut -d' ' -f1)

lt_bg peer-http ip netns exec "$LT_NS_PEER" "$py" -m http.server "$port" --bind "$LT_PEER_IP" \
	--directory "$LT_TMP/www"
lt_wait_tcp "$LT_NS_PEER" "$LT_PEER_IP" "$port" 20 || lt_fail "the peer's http.server did not start"

curl_bin=$(command -v curl)
ip -n "$LT_NS_PEER" neigh del "$ip" dev wire0 2>/dev/null
t0=$(date +%s%N)
{
	timeout -k 5 90 "$LIBRETTO" run --mode direct --name curlc --ip "$ip" -- \
		"$curl_bin" -sS --max-time 80 -o "$LT_TMP/got.bin" "http://$LT_PEER_IP:$port/file.bin" \
		>"$LT_TMP/curl.out" 2>"$LT_TMP/curl.err"
	rc=$?
} 2>>"$LT_TMP/curl.err"
ms=$((($(date +%s%N) - t0) / 1000000))
if [ "$rc" -ne 0 ]; then
	cat "$LT_TMP/curl.err" >&2
	lt_fail "curl under libretto exited $rc"
fi
got=$(sha256sum <"$LT_TMP/got.bin" | cut -d' ' -f1)
[ "$got" = "$want" ] || lt_fail "sha256 differs: sent $want, received $got"
lt_log "10 MiB fetched intact in $ms ms"
# The peer's server saw the request from the library OS's address.
grep -q "^$ip .*GET /file.bin" "$LT_TMP/peer-http.err" ||
	lt_fail "the peer's server log shows no request from $ip"
read -r rxp txp rxb txb < <(lt_ps_counters curlc)
[ -n "${rxp:-}" ] && lt_log "libretto ps (after exit): rx_packets=$rxp tx_packets=$txp"
lt_log "PASS"
exit 0
