#!/bin/bash
# lwIP inside a process answers ARP and ping over AF_PACKET and AF_XDP, driven
# by fake-lease (no librettod): the stack, the netif, both NIC backends and the
# counters region, before any socket exists; then TCP both ways through lwIP's
# raw API (lwip-tcp-probe) against the kernel's TCP.  Exit 0 pass, 1 fail, 77 skip.
#
# Namespaces (tag "s"): s-pa holds the kernel side s-pv0 10.77.0.1/24; s-pb
# holds s-pv1, no kernel address, handed to lwIP as 10.77.0.2/24.
set -u

fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
step() { echo "-- $*"; }

[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces, raw sockets, XDP)"
build=${LIBRETTO_BUILD:-}
FL=${FAKE_LEASE:-$build/tests/tools/fake-lease}
PROBE=${LWIP_TCP_PROBE:-$build/tests/tools/lwip-tcp-probe}
SO=${LIBRETTO_PRELOAD:-$build/src/runtime/libretto.so}
[ -x "$FL" ] || fail "$FL is not built"
[ -f "$SO" ] || fail "$SO is not built"
[ -x "$PROBE" ] || fail "$PROBE is not built"
for t in ip ethtool ping sysctl python3; do
	command -v "$t" >/dev/null || skip "$t is not installed"
done

A=s-pa B=s-pb
out=$(mktemp -d)
app=
cleanup() {
	[ -n "$app" ] && kill "$app" 2>/dev/null && wait "$app" 2>/dev/null
	ip netns del $A 2>/dev/null
	ip netns del $B 2>/dev/null
	rm -rf "$out"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ip netns del $A 2>/dev/null; ip netns del $B 2>/dev/null
ip netns add $A && ip netns add $B || fail "cannot create namespaces"
ip link add s-pv0 netns $A type veth peer name s-pv1 netns $B || fail "cannot create the veth pair"
ip -n $A addr add 10.77.0.1/24 dev s-pv0
ip -n $A link set lo up
ip -n $A link set s-pv0 up
ip netns exec $B sysctl -qw net.ipv6.conf.all.disable_ipv6=1
ip -n $B link set lo up
ip -n $B link set s-pv1 up
# Frames reaching XDP must carry complete checksums.
ip netns exec $A ethtool -K s-pv0 tx off tso off gso off gro off >/dev/null 2>&1
ip netns exec $B ethtool -K s-pv1 tx off tso off gso off gro off >/dev/null 2>&1
mac=$(cat /sys/class/net/s-pv1/address 2>/dev/null || ip netns exec $B cat /sys/class/net/s-pv1/address)

for backend in afpacket afxdp; do
	step "$backend: ping 10.77.0.2 (lwIP) from the kernel side"
	ip -n $A neigh flush dev s-pv0
	LIBRETTO_PRELOAD="$SO" ip netns exec $B "$FL" --ifname s-pv1 --ip 10.77.0.2 --prefix 24 \
		--backend $backend -- \
		sh -c 'echo "preload=[$LD_PRELOAD] lease=[$LIBRETTO_LEASE]" > "$0"; exec python3 -c "
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # starts the stack (it starts lazily)
time.sleep(8)"' \
		"$out/env.$backend" 2> "$out/app.$backend" &
	app=$!
	# The app (this sh, then the python it execs with the lease: its first
	# socket starts lwIP) is up once it has written its environment.
	for _ in $(seq 50); do
		[ -s "$out/env.$backend" ] && break
		sleep 0.1
	done
	[ -s "$out/env.$backend" ] || { cat "$out/app.$backend"; fail "$backend: the app did not start"; }
	grep -qx 'preload=\[\] lease=\[\]' "$out/env.$backend" ||
		fail "$backend: the runtime left itself in the environment: $(cat "$out/env.$backend")"

	ip netns exec $A ping -c 3 -i 0.2 -W 2 -w 10 10.77.0.2 > "$out/ping.$backend" ||
		{ cat "$out/ping.$backend" "$out/app.$backend"; fail "$backend: no answer to ping"; }
	# lwIP answers with TTL 255 (Linux would say 64): the reply is lwIP's.
	grep -q 'ttl=255' "$out/ping.$backend" || fail "$backend: the replies are not lwIP's"
	ip -n $A neigh show 10.77.0.2 dev s-pv0 | grep -qi "lladdr $mac" ||
		fail "$backend: ARP did not resolve 10.77.0.2 to $mac: $(ip -n $A neigh show 10.77.0.2)"

	step "$backend: a burst of 2000 large pings, none lost"
	ip netns exec $A ping -f -c 2000 -s 1400 -W 2 -w 20 10.77.0.2 > "$out/flood.$backend" 2>&1 ||
		{ cat "$out/flood.$backend"; kill "$app"; wait "$app"; app=; cat "$out/app.$backend"; fail "$backend: flood ping lost packets"; }

	kill "$app"; wait "$app"; app=
	stats=$(grep '^fake-lease: rx_packets=' "$out/app.$backend") ||
		{ cat "$out/app.$backend"; fail "$backend: no counters"; }
	echo "   $stats"
	rx=$(sed -n 's/.* rx_packets=\([0-9]*\).*/\1/p' <<<"$stats")
	tx=$(sed -n 's/.* tx_packets=\([0-9]*\).*/\1/p' <<<"$stats")
	[ "${rx:-0}" -ge 2003 ] && [ "${tx:-0}" -ge 2003 ] ||
		fail "$backend: the region counted rx=$rx tx=$tx packets, want >= 2003 each (3 + 2000 echoes)"
	if grep -v '^fake-lease: rx_packets=' "$out/app.$backend" | grep -q .; then
		cat "$out/app.$backend"
		fail "$backend: the runtime printed something"
	fi

	step "$backend: TCP through lwIP's raw API, 20 MiB each way"
	LIBRETTO_PRELOAD="$SO" ip netns exec $B "$FL" --ifname s-pv1 --ip 10.77.0.2 --prefix 24 \
		--backend $backend -- "$PROBE" 8 20971520 > "$out/probe.$backend" 2> "$out/probe-err.$backend" &
	app=$!
	ip netns exec $A timeout 20 python3 - > "$out/tcp.$backend" 2>&1 <<'PY'
import socket, sys, time
N = 20 << 20
def connect(port):
    for _ in range(50):
        try:
            return socket.create_connection(("10.77.0.2", port), timeout=5)
        except OSError:
            time.sleep(0.1)
    sys.exit("cannot connect to port %d" % port)
s = connect(5001)
buf, n, t = b"y" * 65536, 0, time.time()
while n < N:
    s.sendall(buf); n += len(buf)
s.shutdown(socket.SHUT_WR)
if s.recv(1) != b"":
    sys.exit("discard server sent data")
print("to lwIP: %.0f MB/s" % (N / (time.time() - t) / 1e6))
s = connect(5002)
n, t = 0, time.time()
while True:
    d = s.recv(1 << 20)
    if not d:
        break
    n += len(d)
if n != N:
    sys.exit("source server sent %d bytes, want %d" % (n, N))
print("from lwIP: %.0f MB/s" % (N / (time.time() - t) / 1e6))
PY
	rc=$?
	cat "$out/tcp.$backend" | sed 's/^/   /'
	[ $rc -eq 0 ] || { kill "$app"; wait "$app"; app=; cat "$out/probe-err.$backend"; fail "$backend: TCP transfer failed"; }
	wait "$app"; rc=$?; app=
	[ $rc -eq 0 ] || { cat "$out/probe-err.$backend"; fail "$backend: the probe exited with $rc"; }
	grep -qx 'discarded=20971520' "$out/probe.$backend" ||
		fail "$backend: lwIP received $(cat "$out/probe.$backend"), want discarded=20971520"
done
echo "PASS"
exit 0
