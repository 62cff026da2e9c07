#!/bin/bash
# The socket behaviour suite's runner: each program once on the Linux stack and once under libretto, outputs compared.
#
# Usage: run.sh [PROG...]      (PROG: bt_connect or connect; default: all)
#
# For each program: the Linux run executes it in netns libretto-linux
# (10.42.0.254), the libOS run under `libretto run --mode direct --ip
# 10.42.0.10` (netns libretto-host); both talk to peer_agent in netns
# libretto-peer (10.42.0.1).  The two stdouts, plus a last line "exit: N",
# must be identical.  One result line per program; on a difference the
# unified diff (linux first) and the tails of both stderrs follow.
# Outputs are kept in $LIBRETTO_BUILD/tests/behaviour/out/.
# Exit 0 all identical, 1 any difference or error, 77 not root.
#
# Environment: LIBRETTO_BUILD (set by meson test), BT_LIBOS_IP (10.42.0.10),
# BT_MODES ("linux libos"; "linux linux" checks the programs' own
# determinism without the library OS), BT_TIMEOUT (seconds per run, 90),
# and lib.sh's LT_NS_* / LT_*_IP to point at other namespaces.
set -uo pipefail
lt_name=behaviour
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../integration/lib.sh"

modes=${BT_MODES:-linux libos}
libos_ip=${BT_LIBOS_IP:-10.42.0.10}
run_timeout=${BT_TIMEOUT:-90}
all="connect accept echo halfclose reset timeout epoll poll dup fcntl iov names udp many threads signal cork fork_prefork fork_perconn fork_bgsave fork_exec fork_shared fork_newsock thread_close thread_epoll"

[ "$(id -u)" -eq 0 ] || lt_skip "needs root (network namespaces, XDP)"
case " $modes " in
*" libos "*) lt_init ;;
*)	# Linux-only runs need neither the CLI nor the daemon.
	lt_init_local ;;
esac
bin=$LIBRETTO_BUILD/tests/behaviour
out=$bin/out
mkdir -p "$out"
[ -x "$bin/peer_agent" ] || lt_fail "no $bin/peer_agent: build first"

progs=()
for p in "${@:-$all}"; do
	for q in $p; do
		q=${q#bt_}
		[ -x "$bin/bt_$q" ] || lt_fail "no program $bin/bt_$q"
		progs+=("$q")
	done
done

case " $modes " in
*" libos "*)
	lt_testbed_up
	lt_daemon_up ;;
esac
lt_ns_exists "$LT_NS_PEER" || lt_fail "no namespace $LT_NS_PEER"

# The peer agent: bounded lifetime, and killed at exit.  A previous agent
# that still holds the ports (a killed runner) ends within its lifetime;
# we wait a little for the ports rather than fight over them.
start_agent() {
	local i
	for i in 1 2 3 4 5; do
		lt_bg agent ip netns exec "$LT_NS_PEER" "$bin/peer_agent" 600
		agent_pid=$lt_last_pid
		for _ in $(seq 50); do
			grep -q ready "$LT_TMP/agent.out" 2>/dev/null && return 0
			kill -0 "$agent_pid" 2>/dev/null || break
			sleep 0.1
		done
		lt_log "peer agent did not start: $(tail -1 "$LT_TMP/agent.err")"
		sleep 1
	done
	return 1
}
start_agent || lt_fail "cannot start the peer agent in $LT_NS_PEER"

# run_one MODE PROG OUTFILE: one run; stdout to OUTFILE plus "exit: N".
run_one() {
	local mode=$1 prog=$2 file=$3 rc try
	case $mode in
	linux)
		# The outer redirection catches bash's own "Aborted" notice.
		{
			timeout -k 5 "$run_timeout" ip netns exec "$LT_NS_LINUX" \
				"$bin/bt_$prog" "$LT_LINUX_IP" "$LT_PEER_IP" >"$file" 2>"$file.err"
			rc=$?
		} 2>>"$file.err" ;;
	libos)
		for try in 1 2 3; do
			ip -n "$LT_NS_PEER" neigh del "$libos_ip" dev wire0 2>/dev/null
			{
				timeout -k 5 "$run_timeout" "$LIBRETTO" run --mode direct --name "bt_$prog" \
					--ip "$libos_ip" -- "$bin/bt_$prog" "$libos_ip" "$LT_PEER_IP" \
					>"$file" 2>"$file.err"
				rc=$?
			} 2>>"$file.err"
			# The lease of the previous run may still be in release:
			# only then (nothing printed yet) is a retry fair.
			if [ "$rc" -ne 0 ] && [ ! -s "$file" ] && grep -qiE "in use|busy|taken" "$file.err"; then
				sleep 1
				continue
			fi
			break
		done ;;
	esac
	echo "exit: $rc" >>"$file"
}

failed=0
for prog in "${progs[@]}"; do
	set -- $modes
	a=$out/bt_$prog.$1
	b=$out/bt_$prog.$2
	[ "$1" = "$2" ] && b=$b.2
	t0=$(date +%s%N)
	run_one "$1" "$prog" "$a"
	run_one "$2" "$prog" "$b"
	ms=$((($(date +%s%N) - t0) / 1000000))
	secs=$((ms / 1000)).$((ms % 1000 / 100))
	if [ "$(tail -1 "$a")" != "exit: 0" ]; then
		echo "FAIL bt_$prog: the $1 run itself failed ($(tail -1 "$a")) [${secs}s]"
		tail -5 "$a.err" | sed 's/^/    '"$1"' stderr: /'
		failed=1
	elif diff -q "$a" "$b" >/dev/null; then
		echo "PASS bt_$prog: $(($(wc -l <"$a") - 1)) observations identical ($1 vs $2) [${secs}s]"
	else
		echo "FAIL bt_$prog: $1 and $2 differ [${secs}s]"
		diff -u --label "bt_$prog.$1" --label "bt_$prog.$2" "$a" "$b" | sed 's/^/    /'
		tail -5 "$a.err" | sed 's/^/    '"$1"' stderr: /'
		tail -5 "$b.err" | sed 's/^/    '"$2"' stderr: /'
		failed=1
	fi
done
exit $failed
