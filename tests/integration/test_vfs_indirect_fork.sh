#!/bin/bash
# Integration: forked children and exec'd images on an INDIRECT volume (libretto-fsd): shells, pipelines, redis's BGSAVE/BGREWRITEAOF children, nginx's workers.
#
# With --storage indirect a forked child shares its parent's fsd session:
# it keeps its inherited volume descriptors (with their offset, shared
# through the runtime's offset table), opens its own files, keeps the
# virtual cwd; descriptors without FD_CLOEXEC go on into exec'd images.
# Checks, each program under `libretto run --storage indirect`:
#   sh -c 'echo x > /data/f; cat /data/f | wc -c'; a shell group mixing
#   builtins and exec'd programs writing one redirection in order; `exec 3<`
#   read by an exec'd head then by the shell; `ls > /data/out`, `2>`, `>>`;
#   tar -C /data -cf - . | tar -C DIR -xf - with equal checksums;
#   a python script: a child writes through an inherited descriptor, a
#   child reads one after the parent closed and unlinked the file, POSIX
#   locks are not inherited, a child's close keeps the parent's lock, the
#   cwd in children and grandchildren; references are given back at _exit,
#   exit and exec (an unlinked file's blocks are freed once the parent
#   closes it);
#   redis-server (dir /data, appendonly yes): BGREWRITEAOF and BGSAVE
#   succeed, the data is intact after a restart;
#   nginx, master_process on, 2 workers, serving files from /data/www
#   (intact from the peer) and logging to /data/logs (the workers write
#   through the master's descriptor);
#   and `libretto volume check` clean at the end.
# Its own testbed and librettod (prefix v2b unless LIBRETTO_TESTBED_PREFIX
# says otherwise), taken down again if it brought them up.
# Exit 0 pass, 1 fail, 77 skip.  Bounded: every program under timeout.
set -u
LIBRETTO_TESTBED_PREFIX=${LIBRETTO_TESTBED_PREFIX:-v2b}
export LIBRETTO_TESTBED_PREFIX
lt_name=test_vfs_indirect_fork
. "$(dirname "$0")/lib.sh"
lt_init
lt_need mke2fs e2fsck python3 tar sha256sum redis-server redis-cli nginx curl

L=$LIBRETTO
redis_ip=${REDIS_IP:-10.42.0.71}
nginx_ip=${NGINX_IP:-10.42.0.72}
rport=6391
nport=8091

lt_testbed_daemon_own
[ "$(lt_status_get fsd)" = running ] || lt_skip "libretto-fsd does not run ($(lt_status_get fsd_error))"

img=$LT_TMP/vol.img
timeout 60 "$L" volume create "$img" --size 512M >/dev/null || lt_fail "volume create failed"
step() { lt_log "--- $*"; }
# v CMD...: CMD on the volume at /data through fsd (no network lease).
v() { timeout 120 "$L" run --storage indirect --volume "$img:/data" -- "$@"; }

# ------------------------------------------------------------ shells --
step "shells: inherited descriptors, exec hand-over, shared offsets"
out=$(v sh -c 'echo x > /data/f; cat /data/f | wc -c' 2>&1)
[ "$out" = 2 ] || lt_fail "echo x > /data/f; cat | wc -c printed: $out"
out=$(v sh -c '{ echo a; /bin/echo b; echo c; } > /data/g; cat /data/g' 2>&1 | tr '\n' ' ')
[ "$out" = "a b c " ] || lt_fail "a redirected group (builtins and an exec'd echo): $out"
out=$(v sh -c 'for i in 1 2 3; do /bin/echo l$i; echo s$i; done > /data/loop; cat /data/loop' 2>&1 | tr '\n' ' ')
[ "$out" = "l1 s1 l2 s2 l3 s3 " ] || lt_fail "a redirected loop: $out"
out=$(v sh -c 'exec 3</data/g; head -c 2 <&3; read y <&3; echo "y=$y"' 2>&1 | tr '\n' ' ')
[ "$out" = "a y=b " ] || lt_fail "exec 3< read by head, then by the shell (shared offset): $out"
out=$(v sh -c 'ls / > /data/out && wc -l < /data/out; ls /nonexistent 2>/data/err; grep -c nonexistent /data/err; echo more >> /data/err; tail -n 1 /data/err' 2>&1 | tr '\n' ' ')
[ "$out" = "$(ls / | wc -l) 1 more " ] || lt_fail "ls >, <, 2>, >> on volume files: $out"

step "tar -C /data -cf - . | tar -C DIR -xf -"
src=/usr/share/doc
tar -C "$src" -cf "$LT_TMP/in.tar" bash coreutils tar python3 2>/dev/null
v sh -c "mkdir /data/tree && tar -C /data/tree -xf $LT_TMP/in.tar" || lt_fail "tar -x into the volume"
mkdir "$LT_TMP/x"
v sh -c "tar -C /data/tree -cf - . | tar -C $LT_TMP/x -xf -" || lt_fail "the tar pipeline failed"
(cd "$src" && find bash coreutils tar python3 -type f | sort | xargs sha256sum) >"$LT_TMP/a.sum"
(cd "$LT_TMP/x" && find bash coreutils tar python3 -type f | sort | xargs sha256sum) >"$LT_TMP/b.sum"
[ -s "$LT_TMP/a.sum" ] && cmp -s "$LT_TMP/a.sum" "$LT_TMP/b.sum" ||
	lt_fail "the tar pipeline's copy differs from the source"
lt_log "tar pipeline: $(wc -l <"$LT_TMP/a.sum") files, checksums equal"

# ------------------------------------------------------------ python --
step "fork semantics (python)"
cat >"$LT_TMP/fork.py" <<'PY'
import fcntl, os, sys

def wait_ok(pid, what):
    _, st = os.waitpid(pid, 0)
    if st != 0:
        sys.exit("FAIL %s: status %d" % (what, st))

# A child writes through an inherited descriptor and closes it; the parent
# goes on with it, at the offset the child left (shared).
fd = os.open("/data/ff", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, b"parent1\n")
pid = os.fork()
if pid == 0:
    os.write(fd, b"child\n")
    os.close(fd)
    os._exit(0)
wait_ok(pid, "child write")
os.write(fd, b"parent2\n")
os.lseek(fd, 0, 0)
d = os.read(fd, 100)
if d != b"parent1\nchild\nparent2\n":
    sys.exit("FAIL inherited descriptor: %r" % d)

# The parent closes and unlinks first; the child still reads.
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(w)
    os.read(r, 1)
    d = os.pread(fd, 100, 0)
    os._exit(0 if d == b"parent1\nchild\nparent2\n" else 3)
os.close(fd)
os.unlink("/data/ff")
os.write(w, b"x")
wait_ok(pid, "child read after the parent's close and unlink")

# POSIX locks are per process: not inherited, and a child's close of its
# copy does not drop the parent's.
fd = os.open("/data/lk", os.O_RDWR | os.O_CREAT, 0o644)
fcntl.lockf(fd, fcntl.LOCK_EX)
pid = os.fork()
if pid == 0:
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os._exit(4)
    except OSError:
        pass
    os.close(fd)
    os._exit(0)
wait_ok(pid, "child sees the parent's lock")
pid = os.fork()
if pid == 0:
    fd2 = os.open("/data/lk", os.O_RDWR)
    try:
        fcntl.lockf(fd2, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os._exit(5)
    except OSError:
        os._exit(0)
wait_ok(pid, "the parent's lock survives a child's close")
os.close(fd)

# The cwd in a child and a grandchild; their own new files.
os.chdir("/data")
pid = os.fork()
if pid == 0:
    with open("c1", "w") as f:
        f.write("c1")
    p2 = os.fork()
    if p2 == 0:
        with open("c2", "w") as f:
            f.write(os.getcwd())
        os._exit(0)
    os.waitpid(p2, 0)
    sys.exit(0)
wait_ok(pid, "cwd in children")
if open("c1").read() != "c1" or open("/data/c2").read() != "/data":
    sys.exit("FAIL cwd in children")

# References go back when a child leaves (_exit, exit, exec): an unlinked
# file's blocks are freed at the parent's close.
def free():
    s = os.statvfs("/data")
    return s.f_bfree * s.f_frsize
for how in ("_exit", "exit", "exec"):
    b0 = free()
    fd = os.open("/data/big", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, b"z" * (16 << 20))
    for i in range(3):
        pid = os.fork()
        if pid == 0:
            if how == "exec":
                os.execv("/bin/true", ["true"])
            if how == "exit":
                sys.exit(0)
            os._exit(0)
        os.waitpid(pid, 0)
    os.close(fd)
    os.unlink("/data/big")
    if b0 - free() > (4 << 20):
        sys.exit("FAIL children leaving by %s kept the file: %d MiB still used" % (how, (b0 - free()) >> 20))
print("fork semantics ok")
PY
out=$(v python3 "$LT_TMP/fork.py" 2>&1)
[ "$out" = "fork semantics ok" ] || lt_fail "python: $out"

# ------------------------------------------------------------- redis --
step "redis: BGREWRITEAOF and BGSAVE children write under /data"
cli() { timeout 20 ip netns exec "$LT_NS_PEER" redis-cli -h "$redis_ip" -p "$rport" "$@"; }
start_redis() {
	ip -n "$LT_NS_PEER" neigh del "$redis_ip" dev wire0 2>/dev/null
	lt_bg "redis$1" "$L" run --name v2b-redis --ip "$redis_ip" --storage indirect --volume "$img:/data" -- \
		redis-server --port "$rport" --bind 0.0.0.0 --protected-mode no --daemonize no \
		--dir /data --appendonly yes --save ''
	redis=$lt_last_pid
	lt_wait_tcp "$LT_NS_PEER" "$redis_ip" "$rport" 30 ||
		lt_fail "redis did not accept connections: $(tail -n 5 "$LT_TMP/redis$1.out" "$LT_TMP/redis$1.err")"
}
# wait_persist FIELD: until INFO persistence says FIELD:0 (10 s at most).
wait_persist() {
	for _ in $(seq 100); do
		cli INFO persistence | tr -d '\r' | grep -qx "$1:0" && return 0
		sleep 0.1
	done
	return 1
}
start_redis 1
for i in $(seq 0 499); do echo "SET key:$i value-$i"; done | cli >/dev/null || lt_fail "SET failed"
[ "$(cli DBSIZE)" = 500 ] || lt_fail "DBSIZE after 500 SETs: $(cli DBSIZE)"
cli BGREWRITEAOF >/dev/null || lt_fail "BGREWRITEAOF refused"
wait_persist aof_rewrite_in_progress || lt_fail "the AOF rewrite did not finish in 10 s"
sleep 0.5
cli INFO persistence | tr -d '\r' | grep -qx 'aof_last_bgrewrite_status:ok' ||
	lt_fail "BGREWRITEAOF failed: $(cli INFO persistence | grep status)"
for i in $(seq 500 599); do echo "SET key:$i value-$i"; done | cli >/dev/null
cli BGSAVE >/dev/null || lt_fail "BGSAVE refused"
wait_persist rdb_bgsave_in_progress || lt_fail "BGSAVE did not finish in 10 s"
cli INFO persistence | tr -d '\r' | grep -qx 'rdb_last_bgsave_status:ok' ||
	lt_fail "BGSAVE failed: $(cli INFO persistence | grep status)"
grep -q 'Background AOF rewrite finished successfully' "$LT_TMP/redis1.out" ||
	lt_fail "redis does not log a successful AOF rewrite: $(tail -n 5 "$LT_TMP/redis1.out")"
grep -q 'Background saving terminated with success' "$LT_TMP/redis1.out" ||
	lt_fail "redis does not log a successful BGSAVE"
cli SHUTDOWN >/dev/null 2>&1
lt_wait_pid "$redis" 20 >/dev/null || lt_fail "redis did not exit on SHUTDOWN"
v ls -l /data /data/appendonlydir >"$LT_TMP/ls.out" 2>&1
grep -q ' dump.rdb$' "$LT_TMP/ls.out" || lt_fail "no dump.rdb on the volume: $(cat "$LT_TMP/ls.out")"
grep -q 'temp-' "$LT_TMP/ls.out" && lt_fail "temporary files left: $(cat "$LT_TMP/ls.out")"
start_redis 2
[ "$(cli DBSIZE)" = 600 ] || lt_fail "DBSIZE after the restart: $(cli DBSIZE)"
for i in 0 250 499 500 599; do
	[ "$(cli GET "key:$i")" = "value-$i" ] || lt_fail "key:$i after the restart: $(cli GET "key:$i")"
done
cli SHUTDOWN >/dev/null 2>&1
lt_wait_pid "$redis" 20 >/dev/null || lt_fail "redis did not exit on SHUTDOWN"
lt_log "redis: AOF rewritten and RDB saved by forked children; 600 keys after a restart"

# ------------------------------------------------------------- nginx --
step "nginx: master and 2 workers serve /data/www, log to /data/logs"
lt_www_make "$LT_TMP/www"
v sh -c "mkdir -p /data/www /data/logs && cp $LT_TMP/www/* /data/www/" || lt_fail "copying the web files"
nd=$LT_TMP/nginx
lt_nginx_conf "$nd" "$nport" /data/www "" 2 /data/logs/access.log
ip -n "$LT_NS_PEER" neigh del "$nginx_ip" dev wire0 2>/dev/null
lt_bg nginx "$L" run --name v2b-nginx --ip "$nginx_ip" --storage indirect --volume "$img:/data" -- \
	nginx -c "$nd/nginx.conf" -p "$nd"
ngx=$lt_last_pid
lt_wait_tcp "$LT_NS_PEER" "$nginx_ip" "$nport" 30 ||
	lt_fail "nginx did not accept connections: $(tail -n 5 "$nd/error.log" "$LT_TMP/nginx.err" 2>/dev/null)"
master=$(cat "$nd/nginx.pid")
workers=$(pgrep -P "$master" | wc -l)
[ "$workers" = 2 ] || lt_fail "nginx has $workers worker processes, not 2"
n=0
for round in 1 2; do
	for f in empty.bin small.txt k1.bin k64.bin m1.bin m10.bin; do
		timeout 40 ip netns exec "$LT_NS_PEER" curl -sS --max-time 30 -o "$LT_TMP/got.$f" \
			"http://$nginx_ip:$nport/$f" 2>"$LT_TMP/curl.err" || lt_fail "curl $f: $(cat "$LT_TMP/curl.err")"
		cmp -s "$LT_TMP/got.$f" "$LT_TMP/www/$f" || lt_fail "$f arrived different (round $round)"
		n=$((n + 1))
	done
done
code=$(timeout 20 ip netns exec "$LT_NS_PEER" curl -s -o /dev/null -w '%{http_code}' "http://$nginx_ip:$nport/nope")
[ "$code" = 404 ] || lt_fail "a missing file gave $code, not 404"
kill -QUIT "$master"
lt_wait_pid "$ngx" 20 >/dev/null || lt_fail "nginx did not stop on SIGQUIT"
lines=$(v wc -l </dev/null /data/logs/access.log 2>&1 | cut -d' ' -f1)
[ "$lines" = $((n + 1)) ] || lt_fail "the access log on the volume has $lines lines, not $((n + 1))"
grep -E '\[(alert|emerg|crit)\]' "$nd/error.log" && lt_fail "nginx logged alerts"
lt_log "nginx: $n files intact from 2 workers, $lines access log lines on the volume"

# ------------------------------------------------------------- image --
step "the image is clean"
for _ in $(seq 50); do
	timeout 10 "$L" volume ls 2>/dev/null | grep -q "$(basename "$img")" || break
	sleep 0.2
done
timeout 60 "$L" volume check "$img" >"$LT_TMP/check.out" 2>&1 ||
	{ cat "$LT_TMP/check.out" >&2; lt_fail "volume check failed"; }
grep -q 'clean' "$LT_TMP/check.out" || { cat "$LT_TMP/check.out" >&2; lt_fail "the image is not clean"; }
lt_log "PASS"
exit 0
