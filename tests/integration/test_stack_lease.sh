#!/bin/bash
# The runtime's start-up without a NIC: no lease is silent, a bad lease ends
# the program with status 127 and one line on stderr (never a silent fallback
# to the kernel stack), and a program that exports lwIP's generic names is
# refused (DESIGN.md section 7).  Needs no privilege.  Exit 0 pass, 1 fail.
set -u

fail() { echo "FAIL: $*"; exit 1; }
step() { echo "-- $*"; }

build=${LIBRETTO_BUILD:-}
SO=${LIBRETTO_PRELOAD:-$build/src/runtime/libretto.so}
CLASH=${LWIP_CLASH:-$build/tests/tools/lwip-clash}
[ -f "$SO" ] || fail "$SO is not built"
[ -x "$CLASH" ] || fail "$CLASH is not built"
err=$(mktemp)
trap 'rm -f "$err"' EXIT

# run EXPECTED_STATUS LEASE CMD...: run CMD preloaded with LEASE ("-": none).
run() {
	local want=$1 lease=$2 rc
	shift 2
	if [ "$lease" = - ]; then
		env -u LIBRETTO_LEASE LD_PRELOAD="$SO" "$@" 2> "$err"
	else
		env LIBRETTO_LEASE="$lease" LD_PRELOAD="$SO" "$@" 2> "$err"
	fi
	rc=$?
	[ "$rc" -eq "$want" ] || { cat "$err"; fail "'$lease': status $rc, want $want"; }
}

step "no lease: the runtime stays out of the way"
run 0 - /bin/true
[ -s "$err" ] && { cat "$err"; fail "no lease: something was printed"; }

good="ip=10.77.9.2 prefix=24 mac=02:00:00:00:00:01 backend=afpacket"
step "bad leases: status 127 and one line naming the problem"
check_bad() { # LEASE PATTERN
	run 127 "$1" /bin/true
	[ "$(wc -l < "$err")" -eq 1 ] || { cat "$err"; fail "'$1': want exactly one line"; }
	grep -q "^libretto: .*$2" "$err" || { cat "$err"; fail "'$1': message lacks '$2'"; }
}
check_bad "" "ip is missing"
check_bad "ip=10.1 prefix=24" "ip=10.1 is not an IPv4 address"
check_bad "ip=10.77.9.2 prefix=33" "prefix=33"
check_bad "ip=10.77.9.2 prefix=24 mac=01:00:00:00:00:01" "not a unicast MAC"
check_bad "ip=10.77.9.2 prefix=24 mac=02:00:00:00:00:01 backend=tap" "backend=tap"
check_bad "$good gateway=10.1.1.1 region_fd=0 packet_fd=1" "gateway=10.1.1.1 is not on"
check_bad "$good region_fd=5" "packet_fd is missing"
check_bad "$good region_fd=250 packet_fd=251" "region_fd=250: Bad file descriptor"
check_bad "$good region_fd=0 packet_fd=1" "region_fd is not a 65536-byte region"

step "a program exporting lwIP's names is refused, naming the symbol and the program"
run 127 "$good region_fd=250 packet_fd=251" "$CLASH"
grep -q 'lwip-clash defines "\(mem_malloc\|tcp_write\)"' "$err" || { cat "$err"; fail "no clash reported"; }
grep -q 'DESIGN.md section 7' "$err" || { cat "$err"; fail "clash message lacks the reference"; }
echo "PASS"
exit 0
