#!/bin/bash
# Integration: unmodified programs on a direct volume (the file layer in libretto.so over vol), no lease, no testbed.
#
# Until `libretto run --volume` does it, the test makes the image with
# mke2fs (the contract's options), opens it O_RDWR itself and runs each
# program with LD_PRELOAD=libretto.so and
# LIBRETTO_VOLUMES=mount=/data,storage=direct,image=IMG,fd=N.  No network
# lease: a volume-only program.  Checks:
#   coreutils mkdir/cp/cat/ls/mv/rm/ln/stat/sha256sum/touch/truncate/du,
#   `cd /data && ...` in a shell (PWD adoption), tar -x into the volume and
#   tar -c out of it with equal checksums, sqlite3 transactions with
#   PRAGMA integrity_check, fopen/fdopen/fileno through python's os and
#   open, flock and fcntl locks, mmap of a volume file, a forked child
#   (EIO on inherited descriptors), paths that leave the volume (.. at the
#   mount point), and at the end `e2fsck -fn` clean.
# Exit 0 pass, 1 fail, 77 skip.  Bounded: every program under timeout.
set -uo pipefail

build=${LIBRETTO_BUILD:-$(cd "$(dirname "$0")/../.." && pwd)/build}
so=$build/src/runtime/libretto.so
[ -f "$so" ] || { echo "SKIP: $so not built"; exit 77; }
for p in mke2fs e2fsck tar sha256sum timeout; do
	command -v $p >/dev/null || { echo "SKIP: $p not installed"; exit 77; }
done

work=$(mktemp -d /tmp/test_vfs_direct.XXXXXX)
img=$work/vol.img
fails=0
trap 'rm -rf "$work"' EXIT

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

truncate -s 256M "$img"
mke2fs -q -F -t ext4 -b 4096 -O ^inline_data,^metadata_csum_seed \
	-E lazy_itable_init=0,lazy_journal_init=0 "$img" || { echo "SKIP: mke2fs failed"; exit 77; }
exec {imgfd}<>"$img"
vols="mount=/data,storage=direct,image=$img,fd=$imgfd"

# Run a command on the volume (stdin/stdout are the caller's).
v() { LIBRETTO_VOLUMES=$vols LD_PRELOAD=$so timeout 60 "$@"; }

# --- coreutils ---
v mkdir -p /data/a/b/c || fail "mkdir -p"
v cp /etc/services /data/a/b/c/services || fail "cp into the volume"
[ "$(v cat /data/a/b/c/services | sha256sum)" = "$(sha256sum < /etc/services)" ] &&
	ok "cp + cat round trip" || fail "cat of the copy differs"
[ "$(v sha256sum /data/a/b/c/services | cut -d' ' -f1)" = "$(sha256sum /etc/services | cut -d' ' -f1)" ] &&
	ok "sha256sum (stdio fopen) on the volume" || fail "sha256sum"
v ls -la /data/a/b/c | grep -q ' services$' && ok "ls -la" || fail "ls -la"
v mv /data/a/b/c/services /data/a/svc || fail "mv"
v test -f /data/a/svc -a ! -e /data/a/b/c/services && ok "mv renamed" || fail "mv result"
v ln -s svc /data/a/link && [ "$(v readlink /data/a/link)" = svc ] && ok "symlink/readlink" || fail "symlink"
v ln /data/a/svc /data/a/hard && [ "$(v stat -c %h /data/a/svc)" = 2 ] && ok "hard link" || fail "link count"
v touch -d '2001-02-03 04:05:06' /data/a/svc && [ "$(v stat -c %Y /data/a/svc)" = "$(date -d '2001-02-03 04:05:06' +%s)" ] &&
	ok "touch -d / utimensat" || fail "touch"
v truncate -s 5G /data/a/big && [ "$(v stat -c %s /data/a/big)" = 5368709120 ] && ok "truncate to 5 GiB (sparse)" || fail "truncate"
v dd if=/etc/hostname of=/data/a/big bs=1 seek=4294967300 conv=notrunc status=none &&
	[ "$(v dd if=/data/a/big bs=1 skip=4294967300 count=$(stat -c %s /etc/hostname) status=none)" = "$(cat /etc/hostname)" ] &&
	ok "write/read past 4 GiB" || fail "offsets past 4 GiB"
v rm /data/a/big /data/a/hard /data/a/link || fail "rm"
v rm -rf /data/a/b || fail "rm -rf"
v test ! -e /data/a/b && ok "rm -rf" || fail "rm -rf left the tree"
v du -s /data >/dev/null && ok "du" || fail "du"
v df /data >/dev/null 2>&1; v stat -f /data >/dev/null && ok "statfs" || fail "stat -f"

# --- the cwd ---
out=$(LIBRETTO_VOLUMES=$vols LD_PRELOAD=$so timeout 60 sh -c 'cd /data/a && pwd && ls && cat svc | wc -l && cd .. && pwd && cd /tmp && pwd')
[ "$out" = "$(printf '/data/a\nsvc\n%s\n/data\n/tmp' "$(wc -l < /etc/services)")" ] && ok "cd into the volume and out" ||
	fail "cwd: got: $out"
v ls /data/.. | grep -q '^tmp$' && ok "/data/.. is the kernel's /" || fail "/data/.."

# --- tar in and out ---
src=/usr/share/doc
tar -C "$src" -cf "$work/in.tar" bash coreutils tar 2>/dev/null
v mkdir /data/tree && v tar -C /data/tree -xf "$work/in.tar" || fail "tar -x into the volume"
(cd "$src" && find bash coreutils tar -type f | sort | xargs sha256sum) > "$work/a.sum"
(LIBRETTO_VOLUMES=$vols LD_PRELOAD=$so timeout 60 sh -c 'cd /data/tree && sha256sum $(find bash coreutils tar -type f | sort)') > "$work/b.sum"
cmp -s "$work/a.sum" "$work/b.sum" && [ -s "$work/a.sum" ] && ok "tar -x: $(wc -l < "$work/a.sum") files, checksums equal" ||
	fail "tar -x checksums differ"
v tar -C /data/tree -cf - . > "$work/out.tar" || fail "tar -c out of the volume"
mkdir "$work/out" && tar -C "$work/out" -xf "$work/out.tar"
(cd "$work/out" && find bash coreutils tar -type f | sort | xargs sha256sum) > "$work/c.sum"
cmp -s "$work/a.sum" "$work/c.sum" && ok "tar -c: checksums equal" || fail "tar -c checksums differ"
v cp -r /data/tree /data/tree2 && (LIBRETTO_VOLUMES=$vols LD_PRELOAD=$so timeout 60 sh -c 'cd /data/tree2 && sha256sum $(find bash coreutils tar -type f | sort)') > "$work/d.sum" &&
	cmp -s "$work/a.sum" "$work/d.sum" && ok "cp -r inside the volume" || fail "cp -r"

# --- sqlite3 ---
if command -v sqlite3 >/dev/null; then
	sql="CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT);"
	for i in $(seq 1 50); do sql="$sql BEGIN; INSERT INTO t(b) VALUES('row $i'); INSERT INTO t(b) SELECT b FROM t LIMIT 3; COMMIT;"; done
	v sqlite3 /data/db.sqlite "$sql" || fail "sqlite3 transactions"
	[ "$(v sqlite3 /data/db.sqlite 'PRAGMA integrity_check;')" = ok ] && ok "sqlite3 integrity_check" || fail "sqlite3 integrity"
	sqlite3 "$work/db.sqlite" "$sql"
	want=$(sqlite3 "$work/db.sqlite" 'SELECT count(*), sum(length(b)) FROM t;')
	[ "$(v sqlite3 /data/db.sqlite 'SELECT count(*), sum(length(b)) FROM t;')" = "$want" ] &&
		ok "sqlite3 rows as on the kernel ($want)" || fail "sqlite3 row count"

else
	echo "skip: sqlite3 not installed"
fi

# --- python: stdio, fileno, locks, mmap, fork ---
if command -v python3 >/dev/null; then
	v python3 - <<'EOF' && ok "python: fopen/fileno/fsync, locks, mmap, fork" || fail "python checks"
import os, fcntl, mmap, sys, errno
with open('/data/p.txt', 'w') as f:
    f.write('hello\n' * 1000)
    f.flush()
    os.fsync(f.fileno())
assert open('/data/p.txt').read() == 'hello\n' * 1000
fd = os.open('/data/p.txt', os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0)
fd2 = os.open('/data/p.txt', os.O_RDWR)
try:
    fcntl.flock(fd2, fcntl.LOCK_EX | fcntl.LOCK_NB)
    sys.exit('flock on a second description did not conflict')
except OSError as e:
    assert e.errno in (errno.EAGAIN, errno.EWOULDBLOCK), e
m = mmap.mmap(fd, 0, mmap.MAP_PRIVATE, mmap.PROT_READ)
assert m[:6] == b'hello\n'
m.close()
os.lseek(fd, 0, os.SEEK_END)
os.write(fd, b'end')
assert os.pread(fd, 3, 6000) == b'end'
assert os.fstat(fd).st_size == 6003
pid = os.fork()
if pid == 0:
    try:
        os.read(fd, 1)
        os._exit(1)
    except OSError as e:
        os._exit(0 if e.errno == errno.EIO else 2)
_, st = os.waitpid(pid, 0)
assert os.WEXITSTATUS(st) == 0, st
os.close(fd2)
os.close(fd)
assert sorted(os.listdir('/data'))[:3] == ['a', 'db.sqlite', 'lost+found']
EOF
fi

# --- the image after it all ---
exec {imgfd}>&-
if e2fsck -fn "$img" > "$work/fsck.log" 2>&1; then
	ok "e2fsck -fn clean"
else
	fail "e2fsck -fn: $(tail -5 "$work/fsck.log")"
fi

[ $fails -eq 0 ] && { echo "PASS"; exit 0; }
echo "$fails check(s) failed"
exit 1
