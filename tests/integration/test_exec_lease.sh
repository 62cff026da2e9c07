#!/bin/bash
# Integration: the lease survives wrappers that exec the real program, exec after the stack started drops it, close_range spares the runtime.
#
# 1. `libretto run -- /bin/sh -c 'exec python3 -m http.server'`: the shell
#    hands the lease on; curl from the peer gets the file and `libretto ps`
#    counts rx/tx (the kernel has no address on the VF: only the libOS can
#    have served it).
# 2. A pyenv-like bash shim behind `timeout`, `nice` and `env`: the python
#    behind them calls os.closerange(3, 1000) (close_range(2)) after it
#    started the stack with a listener on the port, then listens on the same
#    port again (no SO_REUSEADDR: the first listener must really be gone)
#    and serves the peer.
# 3. A program that execs after it started the stack: the new image has no
#    lease, no runtime and no lease descriptors.
# 4. fork() before the stack started: the first process to open a socket
#    owns the NIC; the other gets ENETDOWN and a message naming the owner.
# Exit 0 pass, 1 fail, 77 skip.  Bounded: about a minute at most.
set -uo pipefail
lt_name=test_exec_lease
. "$(dirname "$0")/lib.sh"

ip1=${EXEC_IP1:-10.42.0.31}
ip2=${EXEC_IP2:-10.42.0.32}
ip3=${EXEC_IP3:-10.42.0.33}
ip4=${EXEC_IP4:-10.42.0.34}
lt_init
lt_need curl timeout nice env
py=/usr/bin/python3
[ -x "$py" ] || lt_skip "python3 is not installed"
lt_testbed_up
lt_daemon_up

# lt_get NAME IP PORT PATH OUT: curl from the peer, bounded.
lt_get() {
	timeout 20 ip netns exec "$LT_NS_PEER" curl -sS --max-time 15 -o "$5" \
		"http://$2:$3$4" 2>"$LT_TMP/$1.curl.err"
}

# ---- 1: sh -c 'exec python3 -m http.server' ----
mkdir -p "$LT_TMP/www"
head -c 200000 /dev/urandom >"$LT_TMP/www/file.bin"
want=$(sha256sum <"$LT_TMP/www/file.bin" | cut -d' ' -f1)
cd "$LT_TMP/www" || lt_fail "no $LT_TMP/www"
lt_run_libos exec-sh "$ip1" /bin/sh -c "exec $py -m http.server 8090 --bind 0.0.0.0"
cd / || true
lt_wait_tcp "$LT_NS_PEER" "$ip1" 8090 30 || {
	tail -5 "$LT_TMP/exec-sh.err" >&2
	lt_fail "sh -c 'exec python3 -m http.server': not reachable on $ip1:8090 (lease not handed on?)"
}
lt_get exec-sh "$ip1" 8090 /file.bin "$LT_TMP/got.bin" || {
	cat "$LT_TMP/exec-sh.curl.err" >&2
	lt_fail "curl from the peer failed"
}
got=$(sha256sum <"$LT_TMP/got.bin" | cut -d' ' -f1)
[ "$got" = "$want" ] || lt_fail "sha256 differs after sh -c exec"
read -r rxp txp _ _ < <(lt_ps_counters exec-sh)
lt_log "sh -c exec: file intact; libretto ps rx_packets=${rxp:-?} tx_packets=${txp:-?}"
[[ "${rxp:-x}" =~ ^[0-9]+$ && "${txp:-x}" =~ ^[0-9]+$ ]] || lt_fail "libretto ps shows no counters"
[ "$rxp" -gt 0 ] && [ "$txp" -gt 0 ] || lt_fail "libretto ps counts no traffic: not served by the libOS"
# Free its VF for the next scenarios.
lt_app_kill() {
	local pid
	pid=$(lt_ps_json | python3 -c '
import json, sys
apps = [a for a in json.load(sys.stdin)["apps"] if a.get("name") == sys.argv[1] and a.get("alive")]
print(apps[-1]["pid"] if apps else "")' "$1")
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
}
lt_app_kill exec-sh

# ---- 2: bash shim behind timeout/nice/env, os.closerange, serve again ----
cat >"$LT_TMP/shim" <<EOF
#!/bin/bash
# Like a pyenv shim: a script that execs the real interpreter.
exec $py "\$@"
EOF
chmod +x "$LT_TMP/shim"
cat >"$LT_TMP/closer.py" <<'EOF'
import os, socket, sys
port = int(sys.argv[1])
s0 = socket.socket()
s0.bind(("0.0.0.0", port))
s0.listen(4)
os.closerange(3, 1000)
try:
    s0.close()
except OSError:
    pass
s = socket.socket()
s.bind(("0.0.0.0", port))
s.listen(8)
print("serving again", flush=True)
for _ in range(50):
    c, _ = s.accept()
    c.recv(1000)
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 11\r\n\r\nstill alive")
    c.close()
EOF
lt_run_libos closer "$ip2" timeout 60 nice -n 1 env LT_X=1 "$LT_TMP/shim" "$LT_TMP/closer.py" 8091
lt_wait_tcp "$LT_NS_PEER" "$ip2" 8091 30 || {
	tail -5 "$LT_TMP/closer.err" >&2
	lt_fail "shim + closerange: not reachable on $ip2:8091"
}
lt_get closer "$ip2" 8091 / "$LT_TMP/closer.body" || {
	cat "$LT_TMP/closer.curl.err" "$LT_TMP/closer.err" >&2
	lt_fail "curl after os.closerange failed"
}
[ "$(cat "$LT_TMP/closer.body")" = "still alive" ] || lt_fail "unexpected reply after closerange"
read -r rxp txp _ _ < <(lt_ps_counters closer)
[ "${rxp:-0}" -gt 0 ] 2>/dev/null && [ "${txp:-0}" -gt 0 ] ||
	lt_fail "shim + closerange: libretto ps counts no traffic"
lt_log "timeout/nice/env/bash shim + os.closerange(3, 1000): served again (rx=$rxp tx=$txp)"
lt_app_kill closer

# ---- 3: exec after the stack started runs on the kernel ----
cat >"$LT_TMP/execer.py" <<'EOF'
import os, socket
s = socket.socket()
s.bind(("0.0.0.0", 8092))
os.execv("/bin/sh", ["sh", "-c",
    'echo "lease=${LIBRETTO_LEASE:-none} preload=${LD_PRELOAD:-none} '
    'runtime=$(grep -c libretto.so /proc/self/maps) memfds=$(ls -l /proc/self/fd | grep -c memfd:libretto)"'])
EOF
timeout 30 "$LIBRETTO" run --name execer --ip "$ip3" -- "$py" "$LT_TMP/execer.py" \
	>"$LT_TMP/execer.out" 2>"$LT_TMP/execer.err" || true
line=$(cat "$LT_TMP/execer.out")
lt_log "exec after start: $line"
[ "$line" = "lease=none preload=none runtime=0 memfds=0" ] ||
	lt_fail "the image exec'd after the stack started still has the libOS: $line $(cat "$LT_TMP/execer.err")"

# ---- 4: fork before start: one owner ----
cat >"$LT_TMP/forker.py" <<'EOF'
import os, socket, time
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    s = socket.socket()
    os.write(w, b"x")
    time.sleep(1)
    os._exit(0)
os.read(r, 1)
try:
    socket.socket()
    print("parent: socket")
except OSError as e:
    print("parent: errno", e.errno)
os.waitpid(pid, 0)
EOF
timeout 30 "$LIBRETTO" run --name forker --ip "$ip4" -- "$py" "$LT_TMP/forker.py" \
	>"$LT_TMP/forker.out" 2>"$LT_TMP/forker.err" || true
grep -qx "parent: errno 100" "$LT_TMP/forker.out" ||
	lt_fail "fork before start: the parent did not get ENETDOWN: $(cat "$LT_TMP/forker.out" "$LT_TMP/forker.err")"
grep -q "owned by pid" "$LT_TMP/forker.err" || lt_fail "fork before start: no message naming the owner"
lt_log "fork before start: the second process gets ENETDOWN ($(head -c 120 "$LT_TMP/forker.err")...)"
lt_log "PASS"
exit 0
