#!/bin/bash
# Volumes through the CLI and librettod (issue 8): `libretto volume create`
# (sizes, sparse files, refusal to overwrite), `volume check` (clean, a
# journal to replay, a damaged image, an image in use), `run --volume` handing
# the program LIBRETTO_VOLUMES and the image's descriptor, a second direct
# owner refused with EBUSY naming the first, `volume ls`, images that are not
# ext4 (or have other block sizes) refused with EINVAL, a loop-mounted image
# refused, a file written and read back through the runtime (direct and
# indirect) and the image clean afterwards, and the volume released with
# the lease.  Its own testbed and librettod (prefix lbvol unless
# LIBRETTO_TESTBED_PREFIX says otherwise), taken down again if it brought
# them up.  Exit 0 pass, 1 fail, 77 skip.
set -u
LIBRETTO_TESTBED_PREFIX=${LIBRETTO_TESTBED_PREFIX:-lbvol}
export LIBRETTO_TESTBED_PREFIX
. "$(dirname "$0")/lib.sh"
lt_init
lt_need mke2fs e2fsck debugfs python3

L=$LIBRETTO
out=$LT_TMP/out
step() { lt_log "--- $*"; }

# ls_wait there|gone PATTERN: wait (up to 10 s) until `volume ls` shows
# PATTERN, or no longer shows it.
ls_wait() {
	local i
	for ((i = 0; i < 50; i++)); do
		if timeout 10 "$L" volume ls 2>/dev/null | grep -q -- "$2"; then
			[ "$1" = there ] && return 0
		else
			[ "$1" = gone ] && return 0
		fi
		sleep 0.2
	done
}

# expect STATUS PATTERN CMD...: CMD exits STATUS and its output (stdout and
# stderr) matches the extended regular expression PATTERN.
expect() {
	local want=$1 pat=$2 rc
	shift 2
	timeout 60 "$@" >"$out" 2>&1
	rc=$?
	[ "$rc" -eq "$want" ] || { cat "$out" >&2; lt_fail "'$*' exited $rc, not $want"; }
	[ -z "$pat" ] || grep -qE -- "$pat" "$out" || { cat "$out" >&2; lt_fail "'$*' does not print /$pat/"; }
}

# ------------------------------------------------------------ no daemon --
step "help"
expect 0 '^usage: libretto volume create' "$L" volume --help
expect 0 '^usage: libretto volume create' "$L" help volume
for c in create check ls; do
	expect 0 "^usage: libretto volume $c" "$L" volume "$c" --help
	expect 0 "^usage: libretto volume $c" "$L" help volume "$c"
done
expect 0 '--volume IMAGE\[:MOUNTPOINT\]' "$L" run --help
expect 0 '--storage direct\|indirect' "$L" run --help
expect 0 'volume' "$L" --help
expect 2 "unknown subcommand 'frob'" "$L" volume frob

step "create: sizes, sparse, refusals"
img=$LT_TMP/v.img
expect 0 'ext4 volume of 64 MiB' "$L" volume create "$img" --size 64M
[ "$(stat -c %s "$img")" -eq $((64 << 20)) ] || lt_fail "64M image is $(stat -c %s "$img") bytes"
used=$(( $(stat -c %b "$img") * $(stat -c %B "$img") ))
[ "$used" -lt $((32 << 20)) ] || lt_fail "the image is not sparse ($used bytes allocated)"
dumpe2fs -h "$img" 2>/dev/null | grep -q '^Block size: *4096' || lt_fail "not 4096-byte blocks"
dumpe2fs -h "$img" 2>/dev/null | grep -q 'has_journal' || lt_fail "no journal"
expect 1 'exists and is not empty.*--force' "$L" volume create "$img" --size 64M
expect 0 'ext4 volume of 1 GiB' "$L" volume create "$img" --size 1G --force
[ "$(stat -c %s "$img")" -eq $((1 << 30)) ] || lt_fail "1G image is $(stat -c %s "$img") bytes"
expect 0 'ext4 volume of 8 MiB' "$L" volume create "$LT_TMP/small.img" --size 8388608
expect 2 'out of range' "$L" volume create "$LT_TMP/x.img" --size 4M
expect 2 'multiple of 4096' "$L" volume create "$LT_TMP/x.img" --size 8389000
expect 2 'wants a number' "$L" volume create "$LT_TMP/x.img" --size 1X
expect 2 '--size is needed' "$L" volume create "$LT_TMP/x.img"
[ ! -e "$LT_TMP/x.img" ] || lt_fail "a refused create left $LT_TMP/x.img behind"
: >"$LT_TMP/empty.img"
expect 0 'ext4 volume' "$L" volume create "$LT_TMP/empty.img" --size 16M

step "check: clean, journal to replay, damaged, not ext4"
expect 0 'clean' "$L" volume check "$img"
cp --sparse=always "$LT_TMP/small.img" "$LT_TMP/dirty.img"
debugfs -w -R "feature needs_recovery" "$LT_TMP/dirty.img" >/dev/null 2>&1
expect 0 'clean \(after replaying the journal\)' "$L" volume check "$LT_TMP/dirty.img"
dumpe2fs -h "$LT_TMP/dirty.img" 2>/dev/null | grep -q needs_recovery &&
	lt_fail "check left needs_recovery set"
cp --sparse=always "$LT_TMP/small.img" "$LT_TMP/bad.img"
debugfs -w -R "set_inode_field <2> links_count 7" "$LT_TMP/bad.img" >/dev/null 2>&1
expect 1 'found problems' "$L" volume check "$LT_TMP/bad.img"
head -c 16M /dev/zero >"$LT_TMP/zero.img"
expect 1 'not an ext4 image' "$L" volume check "$LT_TMP/zero.img"
truncate -s 16M "$LT_TMP/k1.img"
mke2fs -q -F -t ext4 -b 1024 "$LT_TMP/k1.img" >/dev/null 2>&1
expect 1 '1024-byte blocks' "$L" volume check "$LT_TMP/k1.img"

# ---------------------------------------------------------- with daemon --
lt_testbed_daemon_own

step "run --volume: the environment and the descriptor arrive"
expect 0 '' "$L" volume create "$img" --size 64M --force
real=$(realpath "$img")
"$L" run --volume "$img" -- sh -c 'echo "V=$LIBRETTO_VOLUMES"; fd=${LIBRETTO_VOLUMES##*fd=}; readlink /proc/self/fd/$fd' \
	>"$out" 2>&1 || { cat "$out" >&2; lt_fail "run --volume failed"; }
grep -qE "^V=mount=/data,storage=direct,image=$real,fd=[0-9]+\$" "$out" ||
	{ cat "$out" >&2; lt_fail "LIBRETTO_VOLUMES is wrong"; }
grep -qx "$real" "$out" || { cat "$out" >&2; lt_fail "the descriptor is not the image"; }
expect 0 "mount=/srv/a,storage=direct,image=$real,fd=[0-9]+;mount=/srv/b,storage=direct,image=$(realpath "$LT_TMP/small.img"),fd=[0-9]+" \
	"$L" run --volume "$img:/srv/a/" --volume "$LT_TMP/small.img:/srv/b" -- sh -c 'echo "$LIBRETTO_VOLUMES"'
expect 0 '^unset$' env LIBRETTO_VOLUMES=stale "$L" run -- sh -c 'echo "${LIBRETTO_VOLUMES-unset}"'

step "a program writes through the runtime; the image stays clean"
for st in direct indirect; do
	if [ "$st" = indirect ] && [ "$(lt_status_get fsd)" != running ]; then
		lt_log "libretto-fsd does not run here: indirect copy skipped"
		continue
	fi
	expect 0 '' "$L" volume create "$LT_TMP/rt.img" --size 32M --force
	expect 0 '' "$L" run --storage "$st" --volume "$LT_TMP/rt.img:/data" -- cp /etc/services /data/s
	expect 0 '' "$L" run --storage "$st" --volume "$LT_TMP/rt.img:/data" -- cmp /etc/services /data/s
	# The runtime or fsd has let go once the lease has ended.
	for _ in $(seq 25); do
		timeout 10 "$L" volume ls 2>/dev/null | grep -q rt.img || break
		sleep 0.2
	done
	expect 0 ': clean$' "$L" volume check "$LT_TMP/rt.img"
	debugfs -R "cat /s" "$LT_TMP/rt.img" 2>/dev/null | cmp -s - /etc/services ||
		lt_fail "$st: the kernel's ext4 tools do not read back what the program wrote"
done

step "a second direct owner is refused (EBUSY naming the first)"
lt_bg owner "$L" run --name volowner --volume "$img" -- sleep 20
owner=$lt_last_pid
ls_wait there volowner
expect 0 "^$real +direct +volowner\\(id [0-9]+, pid $owner\\) at /data" "$L" volume ls
expect 0 "\"image\":\"$real\",\"storage\":\"direct\",\"apps\":\\[\\{\"id\":[0-9]+,\"name\":\"volowner\",\"pid\":$owner,\"mount\":\"/data\"\\}\\]" \
	"$L" volume ls --json
expect 0 '^  volumes +[1-9]' "$L" status
expect 1 "volume $real is in use by app [0-9]+ \\(volowner, pid $owner\\)" \
	"$L" run --volume "$img:/other" -- true
expect 1 "in use by app [0-9]+ \\(volowner" "$L" volume check "$img"
expect 1 'exists and is not empty' "$L" volume create "$img" --size 64M
expect 1 "in use by app" "$L" volume create "$img" --size 64M --force
expect 1 "already attached to this application" \
	"$L" run --volume "$LT_TMP/small.img:/x" --volume "$LT_TMP/small.img:/y" -- true
kill "$owner" 2>/dev/null
wait "$owner" 2>/dev/null
ls_wait gone volowner
expect 0 '^\(no volumes\)$' "$L" volume ls
expect 0 'clean' "$L" volume check "$img"

step "indirect: two programs share a volume through libretto-fsd"
if [ "$(lt_status_get fsd)" = running ]; then
	simg=$LT_TMP/shared.img
	expect 0 '' "$L" volume create "$simg" --size 32M
	sreal=$(realpath "$simg")
	lt_bg ind1 "$L" run --name volind1 --storage indirect --volume "$simg:/srv" -- \
		sh -c 'echo "$LIBRETTO_VOLUMES"; exec sleep 20'
	ind1=$lt_last_pid
	lt_bg ind2 "$L" run --name volind2 --storage indirect --volume "$simg:/srv" -- \
		sh -c 'echo "$LIBRETTO_VOLUMES"; exec sleep 20'
	ind2=$lt_last_pid
	ls_wait there 'volind1.*volind2\|volind2.*volind1'
	expect 0 "^$sreal +indirect +volind[12]\\(id [0-9]+, pid [0-9]+\\) at /srv, volind[12]" \
		"$L" volume ls
	for f in "$LT_TMP/ind1.out" "$LT_TMP/ind2.out"; do
		grep -qE "^mount=/srv,storage=indirect,image=$sreal,.*fds=[0-9]+(\\.[0-9]+)*\$" "$f" ||
			{ cat "$f" >&2; lt_fail "indirect LIBRETTO_VOLUMES is wrong"; }
	done
	expect 1 "volume $sreal is in use: served by libretto-fsd" "$L" run --volume "$simg" -- true
	expect 1 "served by libretto-fsd" "$L" volume check "$simg"
	kill "$ind1" "$ind2" 2>/dev/null
	wait "$ind1" "$ind2" 2>/dev/null
	ls_wait gone volind
	expect 0 '^\(no volumes\)$' "$L" volume ls
	expect 0 'clean' "$L" volume check "$simg"
else
	lt_log "libretto-fsd does not run here ($(lt_status_get fsd_error)): indirect step skipped"
fi

step "a locked image, a loop-mounted image"
python3 - "$L" "$img" >"$out" 2>&1 <<'EOF' || { cat "$out" >&2; lt_fail "a locked image was not refused"; }
import fcntl, os, struct, subprocess, sys
fd = os.open(sys.argv[2], os.O_RDWR)
# An OFD write lock on byte 1, as a program's runtime holds it.
fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi", fcntl.F_WRLCK, 0, 1, 1, 0))
for args in (["run", "--volume", sys.argv[2], "--", "true"], ["volume", "check", sys.argv[2]]):
    r = subprocess.run([sys.argv[1]] + args, capture_output=True, text=True, timeout=30)
    if r.returncode != 1 or "locked by another process" not in r.stderr:
        sys.exit("%s: exit %d, %s" % (args, r.returncode, r.stderr))
EOF
mkdir -p "$LT_TMP/mnt"
if mount -o loop,ro "$LT_TMP/small.img" "$LT_TMP/mnt" 2>/dev/null; then
	lt_on_exit "umount '$LT_TMP/mnt' 2>/dev/null"
	expect 1 'in use by the kernel: it is attached to /dev/loop' \
		"$L" run --volume "$LT_TMP/small.img" -- true
	expect 1 'in use by the kernel' "$L" volume check "$LT_TMP/small.img"
	umount "$LT_TMP/mnt"
else
	lt_log "no loop devices here: loop check skipped"
fi

step "images that are not volumes: EINVAL with the reason"
expect 1 'not an ext4 image: no ext4 superblock magic at offset 1080' \
	"$L" run --volume "$LT_TMP/zero.img" -- true
expect 1 'has 1024-byte blocks; volumes need 4096-byte blocks' \
	"$L" run --volume "$LT_TMP/k1.img" -- true
expect 1 'neither a regular file nor a block device' "$L" run --volume "$LT_TMP" -- true
expect 1 'No such file or directory' "$L" run --volume "$LT_TMP/none.img" -- true
expect 2 'cannot be /' "$L" run --volume "$img:/" -- true
expect 1 "must be a plain absolute path" "$L" run --volume "$img:/a/../b" -- true
expect 2 '--storage goes with --volume' "$L" run --storage indirect -- true
expect 2 "unknown storage 'x'" "$L" run --volume "$img" --storage x -- true
expect 0 '^\(no volumes\)$' "$L" volume ls
lt_log "PASS"
