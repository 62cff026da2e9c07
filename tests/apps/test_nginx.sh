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
mkdir -p "$LT_TMP/tmp"
cat >"$LT_TMP/nginx.conf" <<CONF
master_process off;
daemon off;
worker_processes 1;
pid $LT_TMP/nginx.pid;
error_log $LT_TMP/error.log warn;
events { worker_connections 256; }
http {
	access_log off;
	default_type application/octet-stream;
	sendfile on;
	tcp_nopush on;
	client_body_temp_path $LT_TMP/tmp/body;
	proxy_temp_path $LT_TMP/tmp/proxy;
	fastcgi_temp_path $LT_TMP/tmp/fastcgi;
	uwsgi_temp_path $LT_TMP/tmp/uwsgi;
	scgi_temp_path $LT_TMP/tmp/scgi;
	server {
		listen $port;
		root $www;
	}
}
CONF
lt_run_libos nginx "$ip" nginx -c "$LT_TMP/nginx.conf" -p "$LT_TMP"
server=$lt_last_pid
if ! lt_wait_tcp "$LT_NS_PEER" "$ip" "$port" 15; then
	tail -n 20 "$LT_TMP/nginx.err" "$LT_TMP/error.log" >&2
	lt_fail "nginx did not accept connections on $ip:$port within 15 s"
fi

lt_http_check "http://$ip:$port" "$www"
kill -0 "$server" 2>/dev/null || lt_fail "nginx exited: $(tail -n 3 "$LT_TMP/error.log")"
lt_log "PASS"
exit 0
