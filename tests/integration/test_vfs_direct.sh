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

# --- the runtime's private descriptors are out of the program's reach ---
# The image descriptor (given here at 3, as `libretto run` gives a low
# number) moves to a high private number: a shell's `exec 3<file` works, and
# every call on the image descriptors (the moved one, the lock's, the
# volume's own) fails with EBADF, as if they were closed.
out=$(LIBRETTO_VOLUMES="mount=/data,storage=direct,image=$img,fd=3" LD_PRELOAD=$so timeout 60 \
	bash -c 'exec 3</etc/hostname && read -r l <&3 && echo "fd3:$l"
		n=${LIBRETTO_VOLUMES##*fd=}; echo "n:$n"
		if { head -c 16 <&$n >/dev/null; } 2>/dev/null; then echo "shell read the image"; fi
		if { echo x >&$n; } 2>/dev/null; then echo "shell wrote the image"; fi
		ls /data >/dev/null' 3<>"$img")
[ "$(echo "$out" | head -1)" = "fd3:$(head -1 /etc/hostname)" ] && ok "exec 3<file in a shell on a volume" ||
	fail "exec 3<: $out"
n=$(echo "$out" | sed -n 's/^n://p')
[ -n "$n" ] && [ "$n" -gt 3 ] && ok "image descriptor moved from 3 to $n" || fail "image descriptor not moved: $out"
echo "$out" | grep -q "the image" && fail "shell reached the image: $out" || ok "shell cannot read or write the image through <&N, >&N"
LIBRETTO_VOLUMES="mount=/data,storage=direct,image=$img,fd=3" LD_PRELOAD=$so timeout 60 python3 - "$img" "$imgfd" 3<>"$img" <<'EOF2' &&
import os, sys, mmap, fcntl, errno
open('/data/priv.txt', 'w').write('attach the volume\n')
img = os.stat(sys.argv[1])
priv = []
for p in os.listdir('/proc/self/fd'):
    try:
        st = os.stat('/proc/self/fd/' + p)
    except OSError:
        continue
    # The test shell's own descriptor of the image is the program's.
    if (st.st_dev, st.st_ino) == (img.st_dev, img.st_ino) and int(p) != int(sys.argv[2]):
        priv.append(int(p))
assert len(priv) >= 3, priv    # the moved fd=, the lock's, the volume's
assert 3 not in priv, priv
calls = {
    'read': lambda n: os.read(n, 1), 'write': lambda n: os.write(n, b'x'),
    'pread': lambda n: os.pread(n, 1, 0), 'pwrite': lambda n: os.pwrite(n, b'x', 0),
    'lseek': lambda n: os.lseek(n, 0, 0), 'fstat': lambda n: os.fstat(n),
    'dup': lambda n: os.dup(n), 'dup2': lambda n: os.dup2(n, 40),
    'F_DUPFD': lambda n: fcntl.fcntl(n, fcntl.F_DUPFD, 0),
    'F_GETFL': lambda n: fcntl.fcntl(n, fcntl.F_GETFL),
    'ioctl': lambda n: fcntl.ioctl(n, 0x541B, b'\0' * 8),
    'mmap': lambda n: mmap.mmap(n, 4096), 'fsync': lambda n: os.fsync(n),
    'fdopen': lambda n: os.fdopen(n, 'rb', closefd=False).read(1),
    'sendfile': lambda n: os.sendfile(1, n, 0, 1),
}
for n in priv:
    for name, call in calls.items():
        try:
            call(n)
            sys.exit('%s on private descriptor %d (of %s) was allowed' % (name, n, priv))
        except OSError as e:
            assert e.errno == errno.EBADF, (name, n, e)
assert open('/data/priv.txt').read() == 'attach the volume\n'
EOF2
	ok "read/write/pread/pwrite/lseek/fstat/dup/dup2/fcntl/ioctl/mmap/fsync/fdopen/sendfile on private descriptors: EBADF" ||
	fail "a private descriptor was reachable"

# --- O_SYNC and O_DSYNC: the backend's fsync after each write ---
if command -v strace >/dev/null; then
	syncs() {
		LIBRETTO_VOLUMES=$vols LD_PRELOAD=$so timeout 60 strace -f -qq -e trace=fsync,fdatasync -o "$work/strace.$1" \
			python3 -c "
import os, sys
fd = os.open('/data/sync.$1', os.O_WRONLY | os.O_CREAT | os.O_TRUNC | $2)
for i in range(10):
    os.write(fd, b'x' * 100)
os.close(fd)" || echo "run failed"
		grep -cE '(fsync|fdatasync)\(' "$work/strace.$1"
	}
	base=$(syncs plain 0); dsync=$(syncs dsync os.O_DSYNC); osync=$(syncs osync os.O_SYNC)
	[ "$dsync" -ge $((base + 10)) ] && [ "$osync" -ge $((base + 10)) ] &&
		ok "O_DSYNC/O_SYNC writes sync the image (syncs: plain $base, O_DSYNC $dsync, O_SYNC $osync)" ||
		fail "O_DSYNC/O_SYNC: syncs plain $base, O_DSYNC $dsync, O_SYNC $osync"
	v python3 -c "
import os, fcntl
fd = os.open('/data/sync.osync', os.O_WRONLY | os.O_SYNC)
assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_SYNC == os.O_SYNC
fd = os.open('/data/sync.dsync', os.O_WRONLY | os.O_DSYNC)
fl = fcntl.fcntl(fd, fcntl.F_GETFL)
assert fl & os.O_DSYNC and fl & os.O_SYNC != os.O_SYNC" && ok "F_GETFL reports O_SYNC/O_DSYNC" || fail "F_GETFL sync flags"
else
	echo "skip: strace not installed (O_SYNC check)"
fi

# --- credentials: the filesystem uid, as Linux checks ---
v python3 -c "
import os, ctypes, errno
open('/data/secret', 'w').write('s')
os.chmod('/data/secret', 0o600)
libc = ctypes.CDLL(None, use_errno=True)
libc.setfsuid(65534)
try:
    open('/data/secret').read()
    raise SystemExit('fsuid 65534 read a 0600 root file')
except PermissionError:
    pass
libc.setfsuid(0)
assert open('/data/secret').read() == 's'" && ok "setfsuid: the volume checks the filesystem uid" || fail "fsuid"

# --- a terminating signal commits and unmounts, the exit status stays ---
# SIGTERM/SIGHUP/SIGQUIT without a handler of the program: it ends by that
# signal (128+N from the shell) and the image is clean without a journal
# replay, the file written before there; sigaction() still says SIG_DFL.
# A program with its own handler gets its handler.
sigrun() {	# sig expected-status
	LIBRETTO_VOLUMES=$vols LD_PRELOAD=$so timeout 60 python3 -c "
import ctypes, signal, time, sys
open('/data/sig.$1', 'w').write('before $1\n')
buf = ctypes.create_string_buffer(256)
assert ctypes.CDLL(None).sigaction(signal.SIG$1, None, buf) == 0
assert ctypes.c_void_p.from_buffer(buf).value is None, 'not SIG_DFL'
print('ready', flush=True)
time.sleep(30)" > "$work/sig.$1" 2>&1 &
	local pid=$! st
	for _ in $(seq 100); do grep -q ready "$work/sig.$1" && break; sleep 0.1; done
	kill -"$1" $pid
	{ wait $pid; } 2>/dev/null; st=$?
	if [ $st -ne "$2" ] || ! grep -q ready "$work/sig.$1"; then
		fail "SIG$1: status $st (want $2): $(cat "$work/sig.$1")"
	elif dumpe2fs -h "$img" 2>/dev/null | grep -qi needs_recovery; then
		fail "SIG$1: the image needs a journal replay"
	elif ! e2fsck -fn "$img" > "$work/fsck.sig" 2>&1 || grep -qi recovery "$work/fsck.sig"; then
		fail "SIG$1: e2fsck -fn: $(tail -3 "$work/fsck.sig")"
	else
		ok "SIG$1: status $st, image clean without replay"
	fi
}
sigrun TERM 143
sigrun HUP 129
sigrun QUIT 131
[ "$(v cat /data/sig.TERM /data/sig.HUP /data/sig.QUIT)" = "$(printf 'before TERM\nbefore HUP\nbefore QUIT')" ] &&
	ok "files written before the signals are there" || fail "files written before the signals"
# Without timeout(1) around it: timeout forwards a SIGTERM it gets a second
# time, which can reach the program after Python has put SIG_DFL back
# while it exits, as it would on the kernel alone.
LIBRETTO_VOLUMES=$vols LD_PRELOAD=$so python3 -c "
import signal, time, sys
open('/data/sig.own', 'w').write('x')
signal.signal(signal.SIGTERM, lambda s, f: (print('own handler', flush=True), sys.exit(7)))
print('ready', flush=True)
time.sleep(30)" > "$work/sig.own" 2>&1 &
pid=$!
for _ in $(seq 300); do grep -q ready "$work/sig.own" && break; sleep 0.1; done
kill -TERM $pid
{ wait $pid; } 2>/dev/null
st=$?
out="$(cat "$work/sig.own")
status $st"
[ "$(echo "$out" | tail -2 | tr '\n' ' ')" = "own handler status 7 " ] && ok "the program's own SIGTERM handler replaces ours" ||
	fail "own handler: $out"

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
