#!/bin/bash
# The libretto command's help and command-line errors: every help path prints
# the truth, wrong command lines exit 2 with a clear message.  No root needed.
# Exit 0 pass, 1 fail.
set -u

fail() { echo "FAIL: $*"; exit 1; }

build=${LIBRETTO_BUILD:-}
[ -n "$build" ] || fail "LIBRETTO_BUILD is not set (meson sets it)"
L="$build/src/cli/libretto"
[ -x "$L" ] || fail "$L is not built"
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# expect STATUS PATTERN CMD...: CMD exits STATUS and its output matches PATTERN.
expect() {
	local want=$1 pat=$2 rc
	shift 2
	"$@" >"$out" 2>&1
	rc=$?
	[ "$rc" -eq "$want" ] || { cat "$out"; fail "'$*' exited $rc, not $want"; }
	grep -qE -- "$pat" "$out" || { cat "$out"; fail "'$*' does not print /$pat/"; }
}

expect 0 '^usage: libretto COMMAND' "$L" --help
expect 0 '^usage: libretto COMMAND' "$L" help
expect 2 '^usage: libretto COMMAND' "$L"
expect 0 '^libretto [0-9]' "$L" --version
expect 2 "unknown command 'frobnicate'" "$L" frobnicate
expect 2 'unknown option --frob' "$L" --frob

# Every command has help three ways, and they agree.
for c in up down status run ps; do
	expect 0 "^usage: libretto $c" "$L" help "$c"
	expect 0 "^usage: libretto $c" "$L" "$c" --help
	expect 0 "^usage: libretto $c" "$L" "$c" -h
	[ "$("$L" help "$c")" = "$("$L" "$c" --help)" ] || fail "help $c and $c --help differ"
done
for c in up down status exec; do
	expect 0 "^usage: libretto testbed $c" "$L" help testbed "$c"
	expect 0 "^usage: libretto testbed $c" "$L" testbed "$c" --help
done
expect 0 '^usage: libretto testbed' "$L" testbed --help
expect 0 '^usage: libretto testbed' "$L" help testbed

# The options each help names are the ones the command accepts.
expect 0 '--vfs N' "$L" help testbed up
expect 0 '--json' "$L" help testbed status
expect 0 '--nic PF' "$L" help up
expect 0 '--foreground' "$L" help up
for o in --mode --name --ip --vf --backend --print-lease --auto-high --auto-low --auto-dwell; do
	expect 0 "$o" "$L" help run
done
expect 0 'usage: libretto switch' "$L" help switch
expect 0 '--no-wait' "$L" help switch
expect 0 '--json' "$L" help ps
expect 0 '--json' "$L" help status

# The help tells the truth about what is not there yet and what options mean.
expect 0 '--mode indirect' "$L" help run
expect 0 '--mode auto +start indirect on a dedicated IP' "$L" help run
expect 0 'afxdp \(default\)' "$L" help run
expect 0 'default: the lowest' "$L" help run
expect 0 'until the last of them exits' "$L" help run
expect 0 '`libretto switch` moves a running program' "$L" --help
for col in PID ALIVE HOLDERS POLICY SWITCHING WHY PORTS RX-PKTS; do
	expect 0 "^  $col" "$L" help ps
done
expect 0 'until its process has exited' "$L" help down

# Wrong command lines: exit 2 with a reason and a pointer to the help.
expect 2 "unknown testbed command 'sideways'" "$L" testbed sideways
expect 2 'name a command' "$L" testbed
expect 2 'unknown option --bogus' "$L" run --bogus -- true
expect 2 'unknown option -x' "$L" ps -x
expect 2 'option --vfs needs a value' "$L" testbed up --vfs
expect 2 'from 1 to 64' "$L" testbed up --vfs 0
expect 2 'from 1 to 64' "$L" testbed up --vfs many
expect 2 "unknown namespace 'moon'" "$L" testbed exec moon -- true
expect 2 'name the command' "$L" testbed exec peer --
expect 2 'name the program' "$L" run
expect 2 'name the program' "$L" run --
expect 2 '--auto-high, --auto-low and --auto-dwell need --mode auto' "$L" run --auto-high 5 -- true
expect 2 'want a whole number' "$L" run --mode auto --auto-low x -- true
expect 2 "unknown mode 'sideways'" "$L" switch web sideways
expect 2 'name the application and the mode' "$L" switch web
expect 2 "unknown mode 'sideways'" "$L" run --mode sideways -- true
expect 2 "unknown backend 'dpdk'" "$L" run --backend dpdk -- true
expect 2 '--ip wants an IPv4 address' "$L" run --ip 10.42.0 -- true
expect 2 '--name wants' "$L" run --name 'two words' -- true
expect 2 "unexpected argument 'now'" "$L" down now
expect 2 "unexpected argument 'x'" "$L" ps x
expect 2 'Try `libretto help run`' "$L" run --bogus

# A daemon that is not there is reported as such (a socket path nobody uses).
export LIBRETTO_CONTROL=/nonexistent/c-libretto-test/control.sock
expect 1 'librettod is not running: run `libretto up` first' "$L" ps
expect 1 'librettod is not running' "$L" status
expect 0 'librettod is not running: nothing to stop' "$L" down
expect 0 '"running":false' sh -c "\"$L\" status --json; [ \$? -eq 1 ]"
# A missing program is reported like a shell does, before anything is leased.
expect 127 'libretto: nosuchprog-x: command not found' "$L" run -- nosuchprog-x
expect 127 'No such file or directory' "$L" run -- /nonexistent/prog

echo "PASS"
exit 0
