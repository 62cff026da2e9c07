#!/bin/bash
# Storage: an unmodified nginx (one process, sendfile on) serving files of 0 bytes to 10 MiB from a volume at /data, fetched intact from the peer.
#
# The files are copied onto the volume by `cp -r` in one run; nginx then
# serves /data/www with sendfile on (from a volume file to a libOS socket)
# under `libretto run --mode $LT_MODE --volume IMG:/data`; curl from the
# peer checks status and sha256 of every file, keep-alive, a 404 and a
# short wrk load (lt_http_check).  Then e2fsck -fn is clean.
# Exit 0 pass, 1 fail, 77 skip.
set -uo pipefail
lt_name=test_vol_nginx
here=$(dirname "$0")
. "$here/../integration/lib.sh"
. "$here/lib_vol.sh"

ip=${NGINX_IP:-10.42.0.41}
port=8090
sv_init net
lt_need nginx curl sha256sum
lt_testbed_up
www=$LT_TMP/www
lt_www_make "$www"
sv_image "$LT_TMP/vol.img"
sv_must copy_in cp -r "$www" "$ST_DATA/www"
sv_must list ls -l "$ST_DATA/www"
lt_log "files on the volume: $(awk 'NR > 1 { printf "%s=%s ", $9, $5 }' "$LT_TMP/list.out")"

lt_nginx_conf "$LT_TMP/ngx" "$port" "$ST_DATA/www" "sendfile on; tcp_nopush on;"
sv_bg_wait_tcp nginx "$ip" "$port" nginx -c "$LT_TMP/ngx/nginx.conf" -p "$LT_TMP/ngx"
server=$ST_PID
lt_http_check "http://$ST_ADDR:$port" "$www"
kill -0 "$server" 2>/dev/null || lt_fail "nginx exited: $(tail -n 3 "$LT_TMP/ngx/error.log")"
# The 404 of lt_http_check logs its failed open(); anything else is a fault.
if grep -E '\[(error|crit|alert|emerg)\]' "$LT_TMP/ngx/error.log" | grep -vq '/www/missing" failed (2: '; then
	tail -n 10 "$LT_TMP/ngx/error.log" >&2
	lt_fail "nginx logged errors"
fi
lt_stop_pid "$server" 10
lt_log "nginx served every file from the volume with sendfile on"
sv_fsck_clean "after nginx"
lt_log "PASS"
exit 0
