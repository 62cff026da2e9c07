#!/bin/bash
# Integration test of librettod as a new user meets it through the CLI:
# register/release cycles on one VF, two applications at once, the errors
# (pool range, IP in use, no free VF, missing program, no root, testbed gone),
# release on kill -9, `status` and `ps` output, and a `down` that waits for
# the daemon's process.  Runs on its own testbed namespaces (prefix lbd) and
# its own control socket, so the shared testbed and daemon are not touched.
# Exit 0 pass, 1 fail, 77 skip (not root).
set -u

fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
step() { echo "--- $*"; }

[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces, XDP)"
build=${LIBRETTO_BUILD:-}
[ -n "$build" ] || fail "LIBRETTO_BUILD is not set (meson sets it)"
L="$build/src/cli/libretto"
[ -x "$L" ] || fail "$L is not built"

export LIBRETTO_TESTBED_PREFIX=${LIBRETTO_TESTBED_PREFIX:-lbd}
tmp=$(mktemp -d /tmp/lbd-test.XXXXXX)
# Other users reach the socket as they would /run/librettos (the no-root check).
chmod 755 "$tmp"
export LIBRETTO_CONTROL="$tmp/control.sock"
out="$tmp/out"
pids=()

json_get() { # json_get EXPR < json: print a Python expression over the object `j`
	python3 -c "import json,sys; j=json.load(sys.stdin); print($1)"
}

cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	timeout 20 "$L" down >/dev/null 2>&1
	timeout 60 "$L" testbed down >/dev/null 2>&1
	if [ "${keep:-0}" = 1 ]; then
		echo "scratch files kept in $tmp"
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM
keep=1

# expect STATUS PATTERN CMD...: CMD exits STATUS and its output matches PATTERN.
expect() {
	local want=$1 pat=$2 rc
	shift 2
	timeout 30 "$@" >"$out" 2>&1
	rc=$?
	[ "$rc" -eq "$want" ] || { cat "$out"; fail "'$*' exited $rc, not $want"; }
	[ -z "$pat" ] || grep -qE -- "$pat" "$out" || { cat "$out"; fail "'$*' does not print /$pat/"; }
}

# How many applications librettod lists.
napps() { timeout 10 "$L" ps --json | json_get 'len(j["apps"])'; }

# wait_napps N SECONDS: until `ps` lists N applications.
wait_napps() {
	local i
	for ((i = 0; i < $2 * 20; i++)); do
		[ "$(napps)" = "$1" ] && return 0
		sleep 0.05
	done
	return 1
}

# True if process $1 has exited (gone, or a zombie waiting for its parent).
exited() {
	local st
	st=$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 0
	[ -z "$st" ] || [ "$st" = Z ] || [ "$st" = X ]
}

step "a testbed of 2 VFs under prefix $LIBRETTO_TESTBED_PREFIX, librettod on $LIBRETTO_CONTROL"
expect 0 'librettod is not running: nothing to stop' "$L" down
timeout 60 "$L" testbed up --vfs 2 >"$out" 2>&1 || { cat "$out"; fail "testbed up"; }
expect 1 'librettod is not running: run `libretto up` first' "$L" run -- true
expect 0 'librettod is running' "$L" up

step "status: a summary by default, JSON with --json"
expect 0 "^librettod is running \(pid [0-9]+\) in network namespace $LIBRETTO_TESTBED_PREFIX-host" "$L" status
grep -q 'IP pool  *10.42.0.10-10.42.0.99, prefix /24' "$out" || { cat "$out"; fail "status: pool line"; }
grep -qE '^ +vf1 +free' "$out" || { cat "$out"; fail "status: vf1 free"; }
"$L" status --json >"$out" || fail "status --json exited $?"
[ "$(json_get '(j["running"], j["netns"], j["apps"], [v["name"] for v in j["vfs"]], j["vfs"][0]["app"])' <"$out")" = \
  "(True, '$LIBRETTO_TESTBED_PREFIX-host', 0, ['vf1', 'vf2'], None)" ] || { cat "$out"; fail "status --json content"; }
dpid=$(json_get 'j["pid"]' <"$out")
[ -d "/proc/$dpid" ] || fail "status --json pid $dpid is not a process"

step "ps with nothing running: the header and a no-applications line"
expect 0 '^NAME +PID +ALIVE' "$L" ps
grep -q '^(no applications' "$out" || { cat "$out"; fail "ps does not say there is no application"; }

step "register/release: run true 5 times in a row on vf1"
for i in 1 2 3 4 5; do
	expect 0 '' "$L" run --vf vf1 -- true
done
for i in 1 2 3; do
	expect 0 '' "$L" run -- true
done
[ "$(napps)" = 0 ] || fail "leases left after the cycles"
# Informational: how often the kernel still held a released queue.
echo "registers that waited for a just-released VF: $(grep -c 'retrying for up to' "$tmp/librettod.log" 2>/dev/null)"

step "a missing program: the shell's message, 127, nothing leased"
expect 127 'libretto: nosuchprog: command not found' "$L" run -- nosuchprog
expect 127 'No such file or directory' "$L" run -- /nonexistent/prog
echo 'not a program' >"$tmp/noexec"
chmod 644 "$tmp/noexec"
expect 126 'Permission denied' "$L" run -- "$tmp/noexec"
[ "$(napps)" = 0 ] || fail "a missing program left a lease"

step "an IP outside the pool names the pool"
expect 1 'ip=10.42.0.5 is not in librettod.s pool 10.42.0.10-10.42.0.99' "$L" run --ip 10.42.0.5 -- true

step "two applications at once get different VFs and IPs"
"$L" run --name app-a -- sleep 60 >"$tmp/a.err" 2>&1 &
apid=$!
pids+=("$apid")
"$L" run --name app-b -- sleep 60 >"$tmp/b.err" 2>&1 &
bpid=$!
pids+=("$bpid")
wait_napps 2 5 || { cat "$tmp"/*.err; fail "ps does not list both applications"; }
"$L" ps --json >"$out"
read -r avf aip bvf bip < <(json_get '" ".join([a[k] for n in ("app-a", "app-b") for a in j["apps"] if a["name"] == n for k in ("vf", "ip")])' <"$out")
[ -n "$bip" ] && [ "$avf" != "$bvf" ] && [ "$aip" != "$bip" ] || { cat "$out"; fail "the two apps share a VF or an IP"; }
[ "$(json_get '[a["pid"] for a in j["apps"] if a["name"] == "app-a"][0]' <"$out")" = "$apid" ] || \
	{ cat "$out"; fail "ps does not show app-a's pid $apid"; }
expect 0 "app-a +$apid +yes +$apid +direct" "$L" ps
expect 0 "leased by app [0-9]+ \(app-a, pid $apid\)" "$L" status

step "pool exhaustion and conflicts name the holders"
expect 1 "no free VF: all 2 are leased: .*\(app-a, pid $apid\)" "$L" run -- true
grep -q "(app-b, pid $bpid)" "$out" || { cat "$out"; fail "no free VF does not name app-b"; }
expect 1 "vf=$avf is already leased by app=[0-9]+ \(app-a, pid $apid\)" "$L" run --vf "$avf" -- true
expect 1 "ip=$aip is already leased by app=[0-9]+ \(app-a, pid $apid\)" "$L" run --ip "$aip" -- true
expect 1 "vf=vf9 is not one of librettod's VFs \(vf1,vf2\)" "$L" run --vf vf9 -- true

step "kill -9 of an application releases its VF within 1 s"
t0=$(date +%s%N)
kill -KILL "$apid"
{ wait "$apid"; } 2>/dev/null
wait_napps 1 1 || { "$L" ps; fail "app-a's lease is still listed 1 s after kill -9"; }
echo "released after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
expect 0 '' "$L" run --vf "$avf" -- true
kill -KILL "$bpid"
{ wait "$bpid"; } 2>/dev/null
wait_napps 0 1 || fail "app-b's lease is still listed 1 s after kill -9"

step "a program that forks: its child holds the lease, ps shows the holder"
"$L" run --name forker -- sh -c "sleep 60 & echo \$! >'$tmp/child'" >"$out" 2>&1 || { cat "$out"; fail "forker"; }
child=$(cat "$tmp/child")
[ -n "$child" ] || fail "no child pid"
pids+=("$child")
"$L" ps --json >"$out"
[ "$(json_get '[(a["alive"], a["holders"]) for a in j["apps"] if a["name"] == "forker"]' <"$out")" = "[(False, [$child])]" ] || \
	{ cat "$out"; fail "ps does not show forker dead with its child $child holding the lease"; }
expect 0 "forker +[0-9]+ +no +$child " "$L" ps
kill -KILL "$child"
wait_napps 0 1 || { "$L" ps; fail "the child's lease is still listed 1 s after kill -9"; }

step "without root, entering librettod's namespace is refused with what to do"
if su nobody -s /bin/sh -c "'$L' --version" >/dev/null 2>&1; then
	expect 1 'entering it needs root: run `sudo libretto run' su nobody -s /bin/sh -c "'$L' run -- true"
else
	echo "note: nobody cannot run $L; skipped"
fi

step "the testbed changed under librettod: run says what to do"
# `testbed down` refuses while librettod runs, so remove the pieces by hand.
ip -n "$LIBRETTO_TESTBED_PREFIX-host" link del vf2 || fail "cannot delete vf2"
expect 1 'VF vf2 is gone from librettod.s network namespace .*libretto down' "$L" run --vf vf2 -- true
ip netns del "$LIBRETTO_TESTBED_PREFIX-host" || fail "cannot delete the host namespace"
expect 1 "network namespace $LIBRETTO_TESTBED_PREFIX-host, which no longer exists .*libretto down" "$L" run -- true

step "down waits until librettod's process has exited"
expect 0 "librettod \(pid $dpid\) stopped" "$L" down
exited "$dpid" || fail "down returned while librettod (pid $dpid) still runs"
[ ! -e "$LIBRETTO_CONTROL" ] || fail "the control socket is still there"
expect 0 'not running: nothing to stop' "$L" down

step "down gives up after 5 s, with exit 1, on a daemon that does not exit"
# A stand-in that accepts `shutdown` but keeps running.
python3 - "$LIBRETTO_CONTROL" >"$tmp/fake.log" 2>&1 <<'EOF' &
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind(sys.argv[1])
s.listen(4)
end = time.time() + 20
s.settimeout(1)
while time.time() < end:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    req = c.recv(65536).decode()
    if req.startswith("status"):
        c.send(("nic=pf0\npid=%d\nerrno=0\n" % os.getpid()).encode())
    else:
        c.send(b"errno=0\n")
    c.close()
EOF
fpid=$!
pids+=("$fpid")
for _ in $(seq 50); do [ -S "$LIBRETTO_CONTROL" ] && break; sleep 0.1; done
t0=$(date +%s)
expect 1 "librettod \(pid $fpid\) accepted .shutdown. but has not exited within 5 s" "$L" down
t1=$(date +%s)
[ $((t1 - t0)) -ge 4 ] && [ $((t1 - t0)) -le 8 ] || fail "down waited $((t1 - t0)) s, not about 5"
kill "$fpid" 2>/dev/null
wait "$fpid" 2>/dev/null
rm -f "$LIBRETTO_CONTROL"

keep=0
echo "PASS"
exit 0
