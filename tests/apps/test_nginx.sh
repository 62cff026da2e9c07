#!/bin/bash
# Application: an unmodified nginx as one process (master_process off) with
# Debian's packaged data-path settings (sendfile on, tcp_nopush on) under
# `libretto run --mode direct`, curl and wrk from the peer.
#
# Checks: files of 0 bytes to 10 MiB fetched intact (status 200, sha256),
# several files over one keep-alive connection, a 404, and a short wrk load
# with no socket error and no non-2xx answer.  nginx's default master/worker
# model is not served yet (docs/compatibility.md).
# Exit 0 pass, 1 fail, 77 skip.  Bounded: under a minute.
set -uo pipefail
lt_name=test_nginx
. "$(dirname "$0")/../integration/lib.sh"

ip=${NGINX_IP:-10.42.0.37}
port=8082
lt_init
lt_need nginx curl sha256sum
lt_testbed_up
lt_daemon_up

www=$LT_TMP/www
lt_www_make "$www"
lt_nginx_conf "$LT_TMP/ngx" "$port" "$www" "sendfile on; tcp_nopush on;"
lt_run_libos nginx "$ip" nginx -c "$LT_TMP/ngx/nginx.conf" -p "$LT_TMP/ngx"
server=$lt_last_pid
if ! lt_wait_tcp "$LT_NS_PEER" "$ip" "$port" 15; then
	tail -n 20 "$LT_TMP/nginx.err" "$LT_TMP/ngx/error.log" >&2
	lt_fail "nginx did not accept connections on $ip:$port within 15 s"
fi

lt_http_check "http://$ip:$port" "$www"
kill -0 "$server" 2>/dev/null || lt_fail "nginx exited: $(tail -n 3 "$LT_TMP/ngx/error.log")"
lt_log "PASS"
exit 0
