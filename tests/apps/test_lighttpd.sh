#!/bin/bash
# Application: an unmodified lighttpd (a minimal config of ours) under `libretto run --mode direct`, curl (and wrk if installed) from the peer.
#
# Checks: files of 0 bytes to 10 MiB fetched intact (status 200, sha256),
# several files over one keep-alive connection, a 404, and, when wrk is
# installed, a short load with no socket error and no non-2xx answer.
# Exit 0 pass, 1 fail, 77 skip.  Bounded: under a minute.
#
# lighttpd's executable carries a copy relocation of glibc's in6addr_any, a
# name liblwip.so also exports: the runtime's symbol check must accept it
# (docs/compatibility.md).
set -uo pipefail
lt_name=test_lighttpd
. "$(dirname "$0")/../integration/lib.sh"

ip=${LIGHTTPD_IP:-10.42.0.34}
port=8081
lt_init
lt_need lighttpd curl sha256sum
lt_testbed_up
lt_daemon_up

www=$LT_TMP/www
lt_www_make "$www"
cat >"$LT_TMP/lighttpd.conf" <<EOF
server.document-root = "$www"
server.port = $port
server.bind = "0.0.0.0"
server.errorlog = "$LT_TMP/lighttpd-error.log"
EOF
lt_run_libos lighttpd "$ip" lighttpd -D -f "$LT_TMP/lighttpd.conf"
server=$lt_last_pid
if ! lt_wait_tcp "$LT_NS_PEER" "$ip" "$port" 15; then
	tail -n 20 "$LT_TMP/lighttpd.err" "$LT_TMP/lighttpd-error.log" >&2
	lt_fail "lighttpd did not accept connections on $ip:$port within 15 s"
fi

lt_http_check "http://$ip:$port" "$www"
kill -0 "$server" 2>/dev/null || lt_fail "lighttpd exited: $(tail -n 3 "$LT_TMP/lighttpd-error.log")"
lt_log "PASS"
exit 0
