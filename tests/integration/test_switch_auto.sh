#!/bin/bash
# Integration (issue 6): three applications under `libretto run --mode auto` and two VFs: the VFs follow the load, no flapping under steady load, arbitration.
#
# librettod runs with two VFs only (`libretto up --vfs vf1,vf2`, restarted so
# if it ran with others); three python3 http.servers A, B, C start in auto
# mode with --auto-high 3000 --auto-low 500 --auto-dwell 1000 (packets/s,
# received + sent).  The load is ICMP echo from the peer at a paced rate
# (each request and its reply count: 2500 requests/s = 5000 packets/s;
# ping's own -i does not hold a rate that fast), so it can be moved from one
# application to another at will:
#
#   1. A loaded: A goes direct within the allowed time (dwell + 3 s: the
#      rate's smoothing, the policy's 250 ms tick and the switch), B and C
#      stay indirect.
#   2. Steady load on A for AUTO_STEADY_SECONDS (default 6): no switch of
#      anybody (no flapping).
#   3. The load moves from A to B: B goes direct, A gives its VF back
#      (mode_why policy:...), both within the allowed time; steady again.
#   4. Arbitration: C loaded too: C takes the second VF.  B's load drops to
#      750 requests/s (1500 packets/s: between the thresholds, so B keeps
#      its VF on its own), then A gets 2500/s: no VF is free, B is the
#      quietest direct application and A has more than twice its rate, so
#      B gives its VF back (mode_why arbitration:...) and A gets it.  Then
#      steady: nobody switches (B, at 1500 packets/s, stays indirect).
#
# Every state is read from `libretto ps --json` (mode, vf, policy,
# mode_why, switches).  Runs on its own testbed (prefix lbsw unless
# LIBRETTO_TESTBED_PREFIX says otherwise; never on the shared one, whose
# librettod it would restart) and takes its librettod down at the end.
# Exit 0 pass, 1 fail, 77 skip.  Bounded: about 1.5 minutes.
set -uo pipefail
lt_name=test_switch_auto
export LIBRETTO_TESTBED_PREFIX=${LIBRETTO_TESTBED_PREFIX:-lbsw}
. "$(dirname "$0")/lib.sh"

high=3000
low=500
dwell_ms=1000
steady=${AUTO_STEADY_SECONDS:-6}
# The time the policy may take to follow a change of load.
follow_s=$((dwell_ms / 1000 + 3))
ip_a=10.42.0.81
ip_b=10.42.0.82
ip_c=10.42.0.83

lt_init
[ "$LT_PREFIX" != libretto ] || lt_skip "restarts librettod: run it on a private testbed (LIBRETTO_TESTBED_PREFIX)"
lt_need python3
sw_testbed_was_up=0
lt_ns_exists "$LT_NS_HOST" && sw_testbed_was_up=1
lt_testbed_up
[ "$sw_testbed_was_up" = 1 ] || lt_on_exit 'timeout 60 "$LIBRETTO" testbed down >/dev/null 2>&1'
# librettod with exactly two VFs.
if timeout 10 "$LIBRETTO" status >/dev/null 2>&1; then
	lt_log "restarting this testbed's librettod with two VFs"
	timeout 30 "$LIBRETTO" down >/dev/null 2>&1 || lt_fail "libretto down failed"
fi
timeout 30 "$LIBRETTO" up --vfs vf1,vf2 >/dev/null 2>"$LT_TMP/up.err" || lt_fail "libretto up --vfs vf1,vf2: $(cat "$LT_TMP/up.err")"
lt_on_exit 'timeout 30 "$LIBRETTO" down >/dev/null 2>&1'
timeout 10 "$LIBRETTO" status --json | grep -q '"netd": *"running"' ||
	lt_skip "the network server does not run (auto mode starts indirect)"

# The paced ICMP echo load: pace.py IP RATE SECONDS sends RATE echo
# requests a second (in 5 ms batches) for SECONDS, and prints how many it
# sent and how many of its replies came (a few are lost at each switch:
# ICMP is not retransmitted).
cat >"$LT_TMP/pace.py" <<'PY'
import os, select, signal, socket, struct, sys, time
ip, rate, secs = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))

def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF

s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.setblocking(False)
ident = os.getpid() & 0xFFFF
payload = b"libretto-switch-auto" + bytes(36)
t0 = time.monotonic()
sent = got = 0
print("started", flush=True)
while True:
    now = time.monotonic()
    if now - t0 >= secs or stop:
        break
    due = int((now - t0) * rate)
    while sent < due:
        hdr = struct.pack("!BBHHH", 8, 0, 0, ident, sent & 0xFFFF)
        pkt = struct.pack("!BBHHH", 8, 0, csum(hdr + payload), ident, sent & 0xFFFF) + payload
        try:
            s.sendto(pkt, (ip, 0))
        except OSError:
            pass
        sent += 1
    # Replies are drained so the socket never fills; they are only counted.
    r, _, _ = select.select([s], [], [], 0.005)
    while r:
        try:
            d = s.recv(2048)
        except BlockingIOError:
            break
        # The raw socket sees every ICMP message of the namespace: count
        # only the echo replies to this sender.
        h = (d[0] & 15) * 4
        if len(d) >= h + 8 and d[h] == 0 and struct.unpack("!H", d[h + 4:h + 6])[0] == ident:
            got += 1
print("sent=%d replies=%d in %.1f s" % (sent, got, time.monotonic() - t0), flush=True)
PY

# pace_start TAG IP RATE: start (or restart) the load TAG.
declare -A pace_pid
pace_start() {
	local i
	pace_stop "$1"
	lt_bg "pace_$1" ip netns exec "$LT_NS_PEER" timeout 300 python3 "$LT_TMP/pace.py" "$2" "$3" 280
	pace_pid[$1]=$lt_last_pid
	# The policy's time is counted from the first packet (python may take
	# a while to start on a loaded machine).
	for ((i = 0; i < 100; i++)); do
		grep -q '^started' "$LT_TMP/pace_$1.out" 2>/dev/null && return 0
		sleep 0.1
	done
	lt_fail "the load generator for $1 did not start: $(cat "$LT_TMP/pace_$1.err")"
}
pace_stop() {
	[ -n "${pace_pid[$1]:-}" ] && lt_stop_pid "${pace_pid[$1]}" 3
	pace_pid[$1]=""
}

# state: one line "NAME mode vf switches mode_why rate_pps" per application.
state() {
	lt_ps_json | python3 -c '
import json, sys
for a in json.load(sys.stdin)["apps"]:
    if a.get("alive") and a.get("name", "").startswith("auto_"):
        print(a["name"], a.get("mode"), a.get("vf"), a.get("switches"), a.get("mode_why"), a.get("rate_pps"),
              a.get("policy"))'
}
# get NAME FIELD (2 mode, 3 vf, 4 switches, 5 mode_why, 6 rate_pps, 7 policy).
get() { awk -v n="$1" -v f="$2" '$1 == n { print $f }' "$LT_TMP/state"; }
snap() { state >"$LT_TMP/state"; }
show() { snap; while read -r l; do lt_log "  $l"; done <"$LT_TMP/state"; }

# wait_for SECONDS DESCRIPTION CONDITION: poll ps every 100 ms until the
# shell CONDITION (over get) holds; prints the time it took.
wait_for() {
	local secs=$1 what=$2 cond=$3 t0 ms
	t0=$(date +%s%N)
	while :; do
		snap
		ms=$((($(date +%s%N) - t0) / 1000000))
		if eval "$cond"; then
			lt_log "$what: after $ms ms"
			return 0
		fi
		[ "$ms" -lt $((secs * 1000)) ] || break
		sleep 0.1
	done
	show
	lt_fail "$what: not within $secs s"
}

# steady SECONDS: nobody switches for SECONDS (no flapping).
steady() {
	local before after
	snap
	before=$(awk '{ print $1, $4 }' "$LT_TMP/state" | sort)
	sleep "$1"
	snap
	after=$(awk '{ print $1, $4 }' "$LT_TMP/state" | sort)
	[ "$before" = "$after" ] || {
		show
		lt_fail "switches during $1 s of steady load: before: $(echo $before) after: $(echo $after)"
	}
	lt_log "steady load for $1 s: no switch ($(awk '{ printf "%s %s %s pps; ", $1, $2, $6 }' "$LT_TMP/state"))"
}

log=$(dirname "$LIBRETTO_CONTROL")/librettod.log
log_off=$(stat -c %s "$log" 2>/dev/null || echo 0)
for n in a b c; do
	var=ip_$n
	ip=${!var}
	ip -n "$LT_NS_PEER" neigh del "$ip" dev wire0 2>/dev/null
	lt_bg "auto_$n" "$LIBRETTO" run --mode auto --name "auto_$n" --ip "$ip" --auto-high "$high" \
		--auto-low "$low" --auto-dwell "$dwell_ms" -- python3 -m http.server 8000 --bind 0.0.0.0 \
		--directory "$LT_TMP"
done
for n in a b c; do
	lt_wait_ps_port "auto_$n" tcp:8000 30 || lt_fail "auto_$n did not start: $(tail -n 3 "$LT_TMP/auto_$n.err")"
done
snap
for n in a b c; do
	[ "$(get auto_$n 2)" = indirect ] && [ "$(get auto_$n 7)" = auto ] ||
		{ show; lt_fail "auto_$n does not start indirect with policy auto"; }
done
lt_log "three auto applications, indirect; high=$high low=$low dwell=${dwell_ms}ms, two VFs"

lt_log "1. load on A (2500 echo/s)"
pace_start a "$ip_a" 2500
wait_for "$follow_s" "A direct" '[ "$(get auto_a 2)" = direct ] && [ "$(get auto_a 3)" != - ]'
[[ "$(get auto_a 5)" == policy:* ]] || lt_fail "A's mode_why is $(get auto_a 5), not policy:..."
[ "$(get auto_b 2)" = indirect ] && [ "$(get auto_c 2)" = indirect ] || { show; lt_fail "B or C moved without load"; }

lt_log "2. steady load on A"
steady "$steady"

lt_log "3. the load moves from A to B"
pace_stop a
pace_start b "$ip_b" 2500
wait_for "$follow_s" "B direct and A indirect" \
	'[ "$(get auto_b 2)" = direct ] && [ "$(get auto_a 2)" = indirect ] && [ "$(get auto_a 3)" = - ]'
[[ "$(get auto_a 5)" == policy:* ]] || lt_fail "A's mode_why is $(get auto_a 5), not policy:..."
[ "$(get auto_c 2)" = indirect ] || { show; lt_fail "C moved without load"; }
steady "$steady"

lt_log "4. arbitration: C loaded, B down to 750/s, then A loaded again"
pace_start c "$ip_c" 2500
wait_for "$follow_s" "C direct (the second VF)" '[ "$(get auto_c 2)" = direct ]'
pace_start b "$ip_b" 750
# B's rate settles between the thresholds: it keeps its VF.
sleep 2
snap
[ "$(get auto_b 2)" = direct ] || { show; lt_fail "B gave its VF back at 1500 packets/s (low is $low)"; }
pace_start a "$ip_a" 2500
# B's switch to indirect, its drain, and librettod's wait for the VF's
# queue to be free again (REG_RETRY_MAX_MS, 2 s at most) come on top.
wait_for "$((follow_s + 2))" "A direct, B indirect (arbitration)" \
	'[ "$(get auto_a 2)" = direct ] && [ "$(get auto_b 2)" = indirect ] && [ "$(get auto_c 2)" = direct ]'
[[ "$(get auto_b 5)" == arbitration:* ]] || { show; lt_fail "B's mode_why is $(get auto_b 5), not arbitration:..."; }
show
steady "$steady"

for n in a b c; do
	pace_stop "$n"
	grep -h '^sent=' "$LT_TMP/pace_$n.out" 2>/dev/null | while read -r l; do lt_log "load on $n: $l"; done
done
[ -r "$log" ] && tail -c +$((log_off + 1)) "$log" | grep -E 'switch app=.*reason=(policy|arbitration)' | while read -r l; do lt_log "log: $l"; done
lt_log "PASS"
exit 0
