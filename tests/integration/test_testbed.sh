#!/bin/bash
# Integration test of `libretto testbed`: up twice, status --json, a ping across
# the bridge, the contract's addresses and MACs, VF resizing, and a down that
# removes exactly what up made.  Exit 0 pass, 1 fail, 77 skip (not root).
#
# LIBRETTO_TESTBED_PREFIX (default "libretto") selects the namespaces, so the
# test can run beside a testbed somebody is using.
set -u

fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
step() { echo "-- $*"; }

[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces)"
build=${LIBRETTO_BUILD:-}
[ -n "$build" ] || fail "LIBRETTO_BUILD is not set (meson sets it)"
L="$build/src/cli/libretto"
[ -x "$L" ] || fail "$L is not built"
for t in ip ethtool sysctl ping python3; do
	command -v "$t" >/dev/null || skip "$t is not installed (scripts/deps.sh check installs it)"
done

prefix=${LIBRETTO_TESTBED_PREFIX:-libretto}
peer=$prefix-peer
host=$prefix-host
lnx=$prefix-linux
keep=c-keep
out=$(mktemp)

json_get() { # json_get EXPR < json: print a Python expression over the object `j`
	python3 -c "import json,sys; j=json.load(sys.stdin); print($1)"
}

# A testbed somebody else made is put back as it was; one under a running
# librettod is left alone.
if st=$("$L" status --json 2>/dev/null); then
	ns=$(echo "$st" | json_get 'j.get("netns","")')
	[ "$ns" = "$host" ] && skip "librettod is running on the testbed $host; not removing it"
fi
before_vfs=0
if [ -e "/run/netns/$host" ]; then
	before_vfs=$("$L" testbed status --json | json_get 'j["vfs"]') || fail "status --json"
	echo "note: a testbed with $before_vfs VFs exists; it is restored at the end"
fi

cleanup() {
	ip netns del "$keep" 2>/dev/null
	if [ "$before_vfs" -gt 0 ]; then
		"$L" testbed up --vfs "$before_vfs" >/dev/null || echo "warning: could not restore the testbed"
	elif [ -e "/run/netns/$host" ] || [ -e "/run/netns/$peer" ] || [ -e "/run/netns/$lnx" ]; then
		"$L" testbed down >/dev/null 2>&1
	fi
	rm -f "$out"
}
trap cleanup EXIT

# Names the testbed makes; none of them may appear outside its namespaces.
ours='^(wire0|pf0|vf[0-9]+|lnx0|sw0)(-sw)?$'
root_links() { ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | sort; }
root_before=$(root_links | grep -E "$ours")

step "a namespace the testbed did not make ($keep, with a link) must survive"
ip netns del "$keep" 2>/dev/null
ip netns add "$keep" || fail "cannot create $keep"
ip -n "$keep" link add c-keep0 type veth peer name c-keep1 || fail "cannot create a link in $keep"

step "testbed down first, so that up starts from nothing"
"$L" testbed down >"$out" 2>&1 || { cat "$out"; fail "initial down"; }

step "testbed up --vfs 3"
"$L" testbed up --vfs 3 >"$out" 2>&1 || { cat "$out"; fail "testbed up exited $?"; }
idx1=$(ip -n "$host" -o link show | awk '{ print $1 $2 }' | sort)

step "a second up with the same count is a no-op"
"$L" testbed up --vfs 3 >"$out" 2>&1 || { cat "$out"; fail "second up exited $?"; }
grep -q "nothing to do" "$out" || { cat "$out"; fail "second up did not say it had nothing to do"; }
"$L" testbed up >"$out" 2>&1 || { cat "$out"; fail "up without --vfs exited $?"; }
grep -q "nothing to do" "$out" || { cat "$out"; fail "up without --vfs changed an existing testbed"; }
idx2=$(ip -n "$host" -o link show | awk '{ print $1 $2 }' | sort)
[ "$idx1" = "$idx2" ] || fail "a second up re-created links"

step "status --json is one valid JSON object and says up with 3 VFs"
"$L" testbed status --json >"$out" || fail "status --json exited $?"
python3 -m json.tool "$out" >/dev/null || { cat "$out"; fail "status --json is not valid JSON"; }
[ "$(json_get 'j["state"], j["vfs"]' <"$out")" = "up 3" ] || { cat "$out"; fail "status --json does not say up, 3 VFs"; }
"$L" testbed status >"$out" || fail "status exited $?"
grep -q "^testbed: up, 3 VFs" "$out" || { cat "$out"; fail "status text"; }

step "the peer reaches lnx0 (10.42.0.254) through the bridge"
"$L" testbed exec peer -- ping -n -q -c 2 -i 0.2 -w 5 10.42.0.254 >"$out" 2>&1 ||
	{ cat "$out"; fail "peer cannot ping 10.42.0.254"; }

step "addresses and MACs are the contract's"
mac() { ip -n "$1" -o link show dev "$2" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2; }
[ "$(mac "$peer" wire0)" = 02:4c:00:00:00:01 ] || fail "wire0 MAC"
[ "$(mac "$lnx" lnx0)" = 02:4c:00:00:02:01 ] || fail "lnx0 MAC"
[ "$(mac "$host" pf0)" = 02:4c:00:00:01:00 ] || fail "pf0 MAC"
[ "$(mac "$host" vf3)" = 02:4c:00:00:01:03 ] || fail "vf3 MAC"
ip -n "$peer" -4 -o addr show dev wire0 | grep -q ' 10.42.0.1/24 ' || fail "wire0 has no 10.42.0.1/24"
ip -n "$lnx" -4 -o addr show dev lnx0 | grep -q ' 10.42.0.254/24 ' || fail "lnx0 has no 10.42.0.254/24"
for d in pf0 vf1 vf2 vf3 sw0; do
	[ -z "$(ip -n "$host" -4 -o addr show dev "$d")" ] || fail "$d has an IPv4 address"
	ip -n "$host" -o link show dev "$d" | grep -q ',UP' || fail "$d is not up"
done
for d in wire0-sw pf0-sw vf1-sw vf2-sw vf3-sw lnx0-sw; do
	ip -n "$host" -o link show dev "$d" | grep -q 'master sw0' || fail "$d is not a port of sw0"
done

step "IPv6 is off on pf0 and the VFs; offloads are off on the wire, lnx0 and the ports"
if [ -d /proc/sys/net/ipv6 ]; then
	for d in pf0 vf1 vf3; do
		v=$("$L" testbed exec host -- cat "/proc/sys/net/ipv6/conf/$d/disable_ipv6")
		[ "$v" = 1 ] || fail "IPv6 is not disabled on $d"
	done
	[ -z "$(ip -n "$host" -6 -o addr show dev pf0)" ] || fail "pf0 has an IPv6 address"
fi
offl() { # offl NS DEV: every one of the four features must read "off"
	"$L" testbed exec "$1" -- ethtool -k "$2" |
		grep -E '^(tx-checksumming|tcp-segmentation-offload|generic-segmentation-offload|generic-receive-offload):' |
		grep -vc ': off'
}
[ "$(offl peer wire0)" = 0 ] || fail "offloads on on wire0"
[ "$(offl linux lnx0)" = 0 ] || fail "offloads on on lnx0"
for d in wire0-sw pf0-sw vf2-sw lnx0-sw; do
	[ "$(offl host "$d")" = 0 ] || fail "offloads on on $d"
done

step "testbed up --vfs 2 removes vf3, --vfs 4 adds vf3 and vf4"
"$L" testbed up --vfs 2 >"$out" 2>&1 || { cat "$out"; fail "up --vfs 2"; }
ip -n "$host" link show dev vf3 >/dev/null 2>&1 && fail "vf3 is still there"
ip -n "$host" link show dev vf3-sw >/dev/null 2>&1 && fail "vf3-sw is still there"
"$L" testbed up --vfs 4 >"$out" 2>&1 || { cat "$out"; fail "up --vfs 4"; }
ip -n "$host" link show dev vf4 >/dev/null 2>&1 || fail "vf4 was not added"

step "testbed exec reports a missing program with status 127"
"$L" testbed exec peer -- /nonexistent/c-prog >/dev/null 2>&1
[ $? -eq 127 ] || fail "exec of a missing program did not exit 127"

step "testbed down removes the namespaces and their links, and nothing else"
"$L" testbed down >"$out" 2>&1 || { cat "$out"; fail "testbed down exited $?"; }
for n in "$peer" "$host" "$lnx"; do
	[ -e "/run/netns/$n" ] && fail "namespace $n is still there"
	ip netns list | grep -qE "^$n( |$)" && fail "ip netns lists $n"
done
[ "$(root_links | grep -E "$ours")" = "$root_before" ] || fail "a testbed link is left in the root namespace"
[ -e "/run/netns/$keep" ] || fail "down removed $keep, which it did not make"
ip -n "$keep" link show dev c-keep0 >/dev/null 2>&1 || fail "down removed a link in $keep"

step "down when nothing exists is fine"
"$L" testbed down >"$out" 2>&1 || { cat "$out"; fail "second down exited $?"; }
grep -q "not up" "$out" || { cat "$out"; fail "second down did not say the testbed is not up"; }
"$L" testbed status --json | json_get 'j["state"]' | grep -qx down || fail "status after down"

echo "PASS"
exit 0
