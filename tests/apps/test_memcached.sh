#!/bin/bash
# Application: an unmodified memcached with 2 and then 4 worker threads under `libretto run --mode direct`, driven from the peer.
#
# memcached accepts on its main thread and hands each connection to a
# worker (libevent in every thread).  Checks, for -t 2 and -t 4: a set/get
# round trip through `nc` with the value checked; memcslap set and get
# loads (16 client threads, bounded count) with no error and, from
# memcached's own stats, every get a hit and no rejected connection.
# Exit 0 pass, 1 fail, 77 skip.  Bounded: under a minute.
set -uo pipefail
lt_name=test_memcached
. "$(dirname "$0")/../integration/lib.sh"

port=11211
count=2000
conc=16
lt_init
lt_need memcached memcslap nc
lt_testbed_up
lt_daemon_up

# mc IP: send stdin to memcached from the peer, print the answer.
mc() { timeout 10 ip netns exec "$LT_NS_PEER" nc -q 2 -w 5 "$1" "$port"; }
# stats IP: memcached's `stats` into $LT_TMP/stats; stat NAME: one value.
stats() { printf 'stats\r\nquit\r\n' | mc "$1" | tr -d '\r' >"$LT_TMP/stats"; }
stat() { awk -v n="$1" '$1 == "STAT" && $2 == n { print $3 }' "$LT_TMP/stats"; }

run_one() {
	local threads=$1 ip=$2 name=mc$1 server got rc t
	lt_run_libos "$name" "$ip" memcached -t "$threads" -u root -l 0.0.0.0 -p "$port" -U 0
	server=$lt_last_pid
	if ! lt_wait_tcp "$LT_NS_PEER" "$ip" "$port" 15; then
		tail -n 20 "$LT_TMP/$name.err" >&2
		lt_fail "memcached -t $threads did not accept connections on $ip:$port within 15 s"
	fi
	stats "$ip"
	[ "$(stat threads)" = "$threads" ] || lt_fail "memcached does not report $threads threads"

	got=$(printf 'set probe 7 0 14\r\nlibrettos here\r\nget probe\r\nquit\r\n' | mc "$ip" | tr -d '\r')
	[ "$got" = "$(printf 'STORED\nVALUE probe 7 14\nlibrettos here\nEND')" ] ||
		lt_fail "-t $threads: set/get through nc returned: $got"

	for t in set get; do
		timeout 40 ip netns exec "$LT_NS_PEER" memcslap -s "$ip:$port" --concurrency "$conc" \
			--execute-number "$count" --test "$t" >"$LT_TMP/$name.$t.out" 2>&1
		rc=$?
		if [ $rc -ne 0 ] || grep -qiE 'fail|error|timeout|reset' "$LT_TMP/$name.$t.out"; then
			cat "$LT_TMP/$name.$t.out" >&2
			lt_fail "-t $threads: memcslap --test $t failed (status $rc)"
		fi
		grep -q "Time to $t .* $((count * conc)) keys by .*$conc threads" "$LT_TMP/$name.$t.out" ||
			lt_fail "-t $threads: memcslap --test $t did not finish: $(cat "$LT_TMP/$name.$t.out")"
	done
	local hits misses rejected sets
	stats "$ip"
	hits=$(stat get_hits)
	misses=$(stat get_misses)
	rejected=$(stat rejected_connections)
	[ "${misses:-x}" = 0 ] || lt_fail "-t $threads: $misses gets missed"
	[ "${rejected:-x}" = 0 ] || lt_fail "-t $threads: $rejected connections rejected"
	[ "${hits:-0}" -ge $((count * conc)) ] 2>/dev/null || lt_fail "-t $threads: only ${hits:-?} get hits"
	# The set test stores count x conc keys, the get test first count.
	sets=$(stat cmd_set)
	[ "${sets:-0}" -ge $((count * conc + count)) ] 2>/dev/null || lt_fail "-t $threads: only ${sets:-?} sets arrived"
	lt_log "-t $threads: nc round trip ok; memcslap set+get, $conc threads x $count: $sets sets, $hits hits, 0 misses, 0 rejected"
	kill -0 "$server" 2>/dev/null || lt_fail "memcached -t $threads died: $(tail -n 5 "$LT_TMP/$name.err")"
	lt_stop_pid "$server" 5
}

run_one 2 "${MEMCACHED_IP2:-10.42.0.32}"
run_one 4 "${MEMCACHED_IP4:-10.42.0.33}"
lt_log "PASS"
exit 0
