#!/bin/bash
# make demo: an unmodified python3 http.server runs its TCP/IP in its own process
# (direct mode, AF_XDP on a VF) and a Linux peer downloads a 10 MiB file from it;
# then the same file from an ext4 volume that the server runs in-process too.
# Usage: scripts/demo.sh BUILD_DIR   (as root)
set -euo pipefail

build=${1:-build}
L="$(cd "$build" 2>/dev/null && pwd)/src/cli/libretto"
port=8080
size=$((10 * 1024 * 1024))

say() { printf '\n== %s\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "the demo needs root (it makes network namespaces and attaches XDP programs): run \`sudo make demo\`"
[ -x "$L" ] || die "$L is not built: run \`make build\` first"
# Debian's interpreter itself, not a wrapper script that would exec it
# (pyenv shims): the library OS is preloaded into the program libretto runs.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3) || die "python3 is not installed"
for t in curl sha256sum; do
	command -v "$t" >/dev/null || die "$t is not installed (scripts/deps.sh check installs it)"
done

tmp=$(mktemp -d /tmp/libretto-demo.XXXXXX)
chmod 755 "$tmp"
made_testbed=0
started_daemon=0
server=

# Stop the server: SIGTERM, up to 5 s, then SIGKILL.  It is our child, so a
# dead server stays a zombie until waited for: look at its state, not kill -0.
stop_server() {
	[ -n "$server" ] || return 0
	kill "$server" 2>/dev/null || true
	for _ in $(seq 50); do
		case "$(ps -o stat= -p "$server" 2>/dev/null)" in
		"" | Z*) break ;;
		esac
		sleep 0.1
	done
	kill -9 "$server" 2>/dev/null || true
	wait "$server" 2>/dev/null || true
	server=
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_server
	if [ "$rc" -ne 0 ] && [ -s "$tmp/server.log" ]; then
		echo "--- the server's output:" >&2
		tail -n 20 "$tmp/server.log" >&2
	fi
	[ "$started_daemon" = 1 ] && { "$L" down >/dev/null 2>&1 || true; }
	[ "$made_testbed" = 1 ] && { "$L" testbed down >/dev/null 2>&1 || true; }
	rm -rf "$tmp"
	if [ "$rc" -ne 0 ]; then
		echo "demo: FAILED (what the demo started has been stopped)" >&2
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

json() { # json EXPR: evaluate a Python expression over the JSON object j read from stdin
	"$PY" -c "import json,sys; j=json.load(sys.stdin); print($1)"
}

say "Building the testbed: a peer namespace (the outside world), a bridge playing the NIC's switch, pf0 and VFs."
if [ "$("$L" testbed status --json | json 'j["state"]')" = up ]; then
	echo "The testbed is already up; the demo uses it as it is and leaves it up."
else
	made_testbed=1 # before up: an interrupted up leaves a partial testbed to remove
	"$L" testbed up
fi

say "Starting librettod, the supervisor that hands VFs to applications."
if "$L" status >/dev/null 2>&1; then
	echo "librettod is already running; the demo uses it and leaves it running."
else
	started_daemon=1
	"$L" up
fi

say "Making a 10 MiB file of random bytes to serve."
mkdir "$tmp/www"
head -c "$size" /dev/urandom >"$tmp/www/file.bin"
want=$(sha256sum "$tmp/www/file.bin" | cut -d' ' -f1)
echo "sha256 $want"

# serve NAME DIR [libretto run options...]: start python3's http.server on
# $port in DIR under `libretto run --mode direct`; sets server and ip once the
# peer gets answers.
serve() {
	local name=$1 dir=$2 ready=0
	shift 2
	(cd "$tmp" && exec "$L" run --mode direct --name "$name" "$@" -- \
		"$PY" -m http.server "$port" --bind 0.0.0.0 --directory "$dir") >"$tmp/server.log" 2>&1 &
	server=$!
	ip=
	for _ in $(seq 100); do
		kill -0 "$server" 2>/dev/null || die "the server exited at start-up"
		ip=$("$L" ps --json | json "next((a['ip'] for a in j['apps'] if a['pid'] == $server and a['alive']), '')")
		[ -n "$ip" ] && break
		sleep 0.1
	done
	[ -n "$ip" ] || die "the server did not register with librettod within 10 s"
	echo "librettod leased it IP $ip; it runs as pid $server."
	echo "Waiting until the server answers the peer."
	for _ in $(seq 30); do
		kill -0 "$server" 2>/dev/null || die "the server exited"
		if "$L" testbed exec peer -- curl -s -o /dev/null --max-time 1 "http://$ip:$port/"; then
			ready=1
			break
		fi
		sleep 0.5
	done
	[ "$ready" = 1 ] || die "the server did not answer on $ip:$port within 15 s"
}

# fetch: download file.bin from the server with curl in the peer namespace and compare checksums.
fetch() {
	local got
	"$L" testbed exec peer -- curl -sS --fail --max-time 60 -o "$tmp/got.bin" \
		-w 'Fetched %{size_download} bytes in %{time_total} s.\n' "http://$ip:$port/file.bin"
	got=$(sha256sum "$tmp/got.bin" | cut -d' ' -f1)
	echo "sha256 $got"
	[ "$got" = "$want" ] || die "the checksums differ: the download is corrupt"
	echo "The checksums match."
	rm -f "$tmp/got.bin"
}

say "Starting the unmodified \`python3 -m http.server $port\` under \`libretto run --mode direct\`."
serve http-demo "$tmp/www"

say "Downloading the file with curl from the peer namespace (Linux's own stack, on the other side of the wire)."
fetch

say "What librettod knows about the application (its traffic is counted by the library OS):"
"$L" ps

netns=$("$L" status --json | json 'j.get("netns", "-")')
vf=$("$L" ps --json | json "next((a['vf'] for a in j['apps'] if a['pid'] == $server), '')")
if [ -n "$vf" ] && [ "$netns" != - ]; then
	if [ -z "$(ip -n "$netns" -4 -o addr show dev "$vf")" ]; then
		echo "The kernel has no IPv4 address on $vf: the server's TCP/IP ran in its own process."
	else
		echo "Note: the kernel has an IPv4 address on $vf."
	fi
fi

say "Stopping the server."
stop_server

say "Storage: an ext4 volume image that the program runs inside its own process (docs/storage.md)."
"$L" volume create "$tmp/vol.img" --size 64M
echo "Copying the file onto the volume with an unmodified cp under \`libretto run --volume $tmp/vol.img:/data\`."
"$L" run --name cp-demo --volume "$tmp/vol.img:/data" -- cp "$tmp/www/file.bin" /data/file.bin

say "Serving it from the volume: the same http.server with --directory /data, file calls and TCP/IP both in its own process."
serve http-vol /data --volume "$tmp/vol.img:/data"
fetch
stop_server

say "The image is a valid ext4 after the program's exit (e2fsck -fn):"
"$L" volume check "$tmp/vol.img"

if [ "$started_daemon" = 1 ]; then
	say "Stopping librettod."
	"$L" down
	started_daemon=0
fi
if [ "$made_testbed" = 1 ]; then
	say "Removing the testbed."
	"$L" testbed down
	made_testbed=0
fi
say "Demo passed: python3's http.server served 10 MiB over its own TCP/IP stack in direct mode, from the kernel's file system and from an in-process ext4 volume."
