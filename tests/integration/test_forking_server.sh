#!/bin/bash
# Integration: python3's forking servers (socketserver.ForkingTCPServer echo, http.server with ForkingMixIn) under the library OS, each first on the Linux stack as the reference.
#
# Both servers fork one child per connection, which serves the accepted
# socket it inherited while the parent goes back to accept().  From the
# peer, a client makes 20 requests, 4 at a time:
#   * echo: each request sends a different payload (1 to ~60 kB), shuts
#     its write side and reads until EOF; the server's child first answers
#     "pid N" and then echoes; the echo must be exact and end in EOF (not a
#     reset), and the 20 requests must be served by 20 different children,
#     none of them the listening process;
#   * http: GETs of a small and a 1 MiB file (sha256), plus one 404.
# Exit 0 pass, 1 fail, 77 skip.  Bounded: well under a minute, 90 s at most.
set -uo pipefail
lt_name=test_forking_server
. "$(dirname "$0")/lib.sh"

ip=${FORKING_IP:-10.42.0.26}
port=8090
lt_init
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3) || lt_skip "python3 is not installed"
lt_testbed_up
lt_daemon_up

www=$LT_TMP/www
mkdir -p "$www"
printf 'hello from a forked child\n' >"$www/small.txt"
head -c $((1024 * 1024 + 7)) /dev/urandom >"$www/m1.bin"

cat >"$LT_TMP/server.py" <<'EOF'
# The servers under test; they print only on stderr.
import http.server, os, socketserver, sys

mode, port, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]

class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(b"pid %d\n" % os.getpid())
        while True:
            data = self.request.recv(65536)
            if not data:
                break
            self.request.sendall(data)

class Server(socketserver.ForkingTCPServer):
    allow_reuse_address = True

class ForkingHTTPServer(socketserver.ForkingMixIn, http.server.HTTPServer):
    allow_reuse_address = True

class Quiet(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **kw):
        super().__init__(*a, directory=root, **kw)
    def log_message(self, *a):
        pass

if mode == "echo":
    srv = Server(("0.0.0.0", port), Echo)
else:
    srv = ForkingHTTPServer(("0.0.0.0", port), Quiet)
print("serving %s on %d as pid %d" % (mode, port, os.getpid()), file=sys.stderr, flush=True)
srv.serve_forever()
EOF

cat >"$LT_TMP/client.py" <<'EOF'
# The peer's client: 20 requests, 4 concurrent; one line per failure, then a summary.
import concurrent.futures, hashlib, os, socket, sys, urllib.error, urllib.request

mode, host, port, server_pid, www = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
N, CONC = 20, 4

def payload(i):
    return bytes((i * 7 + k * 131 + (k >> 9)) & 0xff for k in range(1 + i * 3001))

def echo(i):
    want = payload(i)
    s = socket.create_connection((host, port), timeout=10)
    try:
        s.sendall(want)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                return None, "request %d: reset after %d bytes" % (i, len(got))
            if not d:
                break
            got += d
    except socket.timeout:
        return None, "request %d: nothing more within 10 s after %d bytes" % (i, len(got))
    finally:
        s.close()
    head, _, body = got.partition(b"\n")
    if not head.startswith(b"pid "):
        return None, "request %d: no pid line (got %r...)" % (i, got[:40])
    if body != want:
        return None, "request %d: echo differs: %d bytes back of %d" % (i, len(body), len(want))
    return int(head[4:]), None

def fetch(i):
    name = "m1.bin" if i % 2 else "small.txt"
    want = hashlib.sha256(open(www + "/" + name, "rb").read()).hexdigest()
    try:
        with urllib.request.urlopen("http://%s:%d/%s" % (host, port, name), timeout=10) as r:
            body, status = r.read(), r.status
    except Exception as e:
        return None, "request %d (%s): %s" % (i, name, e)
    if status != 200:
        return None, "request %d (%s): status %d" % (i, name, status)
    if hashlib.sha256(body).hexdigest() != want:
        return None, "request %d (%s): %d bytes, sha256 differs" % (i, name, len(body))
    return 0, None

fn = echo if mode == "echo" else fetch
errors, pids = [], []
ex = concurrent.futures.ThreadPoolExecutor(CONC)
futs = [ex.submit(fn, i) for i in range(N)]
try:
    # One bound for the whole run, so a stuck request is reported, not waited for.
    for f in concurrent.futures.as_completed(futs, timeout=45):
        pid, err = f.result()
        if err:
            errors.append(err)
            print(err, flush=True)
        else:
            pids.append(pid)
except concurrent.futures.TimeoutError:
    print("%d of %d requests still unanswered after 45 s (%d ok so far)"
          % (sum(not f.done() for f in futs), N, len(pids)), flush=True)
    os._exit(1)
ex.shutdown()
printed = len(errors)
if mode == "http":
    try:
        urllib.request.urlopen("http://%s:%d/missing" % (host, port), timeout=10)
        errors.append("a missing file did not give 404")
    except urllib.error.HTTPError as e:
        if e.code != 404:
            errors.append("a missing file gave status %d, not 404" % e.code)
    except Exception as e:
        errors.append("request for a missing file: %s" % e)
elif not errors:
    if len(set(pids)) != N:
        errors.append("%d distinct serving pids for %d requests" % (len(set(pids)), N))
    if server_pid in pids:
        errors.append("the listening process %d served a request itself" % server_pid)
for e in errors[printed:]:
    print(e)
print("%d of %d requests ok" % (len(pids), N))
sys.exit(1 if errors else 0)
EOF

# trial STACK MODE: start the server MODE on STACK, run the client, stop it.
trial() {
	local stack=$1 mode=$2 name=fork-$2-$1 addr rc
	case $stack in
	linux)
		addr=$LT_LINUX_IP
		lt_bg "$name" ip netns exec "$LT_NS_LINUX" "$py" "$LT_TMP/server.py" "$mode" "$port" "$www" ;;
	libos)
		addr=$ip
		lt_run_libos "$name" "$ip" "$py" "$LT_TMP/server.py" "$mode" "$port" "$www" ;;
	esac
	server=$lt_last_pid
	if ! lt_wait_tcp "$LT_NS_PEER" "$addr" "$port" 20; then
		tail -n 10 "$LT_TMP/$name.err" >&2
		lt_fail "$name: the server did not accept connections on $addr:$port within 20 s"
	fi
	timeout 60 ip netns exec "$LT_NS_PEER" "$py" "$LT_TMP/client.py" "$mode" "$addr" "$port" "$server" "$www" \
		>"$LT_TMP/$name.client" 2>&1
	rc=$?
	if [ "$rc" -ne 0 ]; then
		sed 's/^/    /' "$LT_TMP/$name.client" | head -n 25 >&2
		tail -n 10 "$LT_TMP/$name.err" | sed 's/^/    server: /' >&2
		[ "$stack" = linux ] && lt_fail "$name: the Linux reference failed (client status $rc): the test itself is wrong"
		lt_fail "$name: client status $rc"
	fi
	kill -0 "$server" 2>/dev/null || lt_fail "$name: the server exited: $(tail -n 3 "$LT_TMP/$name.err")"
	lt_log "$name: $(tail -n 1 "$LT_TMP/$name.client")"
	stop_server
}

# The server and any child of it still running (a stuck one), by pid.
stop_server() {
	local p kids
	[ -n "${server:-}" ] || return 0
	kids=$(ps -o pid= --ppid "$server" 2>/dev/null)
	lt_stop_pid "$server" 5
	# The children are not ours to wait for: TERM, a bounded look, KILL.
	for p in $kids; do kill -TERM "$p" 2>/dev/null; done
	for _ in $(seq 20); do
		local alive=
		for p in $kids; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ -z "$alive" ] && break
		sleep 0.1
	done
	for p in $kids; do kill -KILL "$p" 2>/dev/null; done
	server=
}
lt_on_exit stop_server

for mode in echo http; do
	trial linux "$mode"
	trial libos "$mode"
done
lt_log "PASS"
exit 0
