/* Plays librettod for libretto-fsd (fsd_sup.c itself, with stubs for the rest of librettod): applications writing through fsd while it is SIGKILLed, then a check that every acknowledged write is on the volume. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common/kv.h"
#include "librettod/fsd_sup.h"
#include "libretto/fsd.h"
#include "runtime/vfs/vfs.h"

/*
 * usage:
 *   fsd_harness run IMAGE MOUNT NAPPS SECONDS KILLS LOGDIR
 *       NAPPS writer processes, each with its own fsd session on IMAGE,
 *       write for SECONDS while fsd is SIGKILLed KILLS times (evenly
 *       spread); then the sessions close and fsd stops cleanly.
 *   fsd_harness verify IMAGE MOUNT NAPPS LOGDIR
 *       Reads the volume back through a new fsd and checks every write the
 *       writers logged as acknowledged.
 *   fsd_harness writer ENTRY ID SECONDS LOGFILE   (started by run)
 * Exit 0 pass, 1 fail.
 */

#define REC 4096

/* ---- the librettod pieces fsd_sup.c uses ---- */

void ld_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "harness(librettod): ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

int ld_sealed_map(const char *name, size_t size, int *fd_out, void **mem_out)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	void *mem;

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		close(fd);
		return -errno;
	}
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (mem == MAP_FAILED) {
		close(fd);
		return -errno;
	}
	*fd_out = fd;
	*mem_out = mem;
	return 0;
}

/* ---- helpers ---- */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fill(char *buf, int id, long k)
{
	for (int i = 0; i < REC; i++)
		buf[i] = (char)((id * 131 + k * 31 + i) & 0xff);
	snprintf(buf, 40, "app %d rec %ld", id, k);
}

static pid_t fsd_pid_now(void)
{
	char mem[2048];
	struct kv_buf b;
	const char *p;

	kv_buf_init(&b, mem, sizeof(mem));
	fsd_sup_status(&b);
	mem[b.len < sizeof(mem) ? b.len : sizeof(mem) - 1] = '\0';
	if (!strstr(mem, "fsd=running"))
		return 0;
	p = strstr(mem, "fsd_pid=");
	return p ? (pid_t)atoi(p + 8) : 0;
}

static void pump(int ms)
{
	struct pollfd p = { .fd = fsd_sup_fd(), .events = POLLIN };

	if (poll(&p, 1, ms) == 1)
		fsd_sup_on_event();
}

/* A session for this process; the entry names the descriptors as fd_a.fd_b. */
static int open_session(int image_fd, const char *image, const char *mount, int fds[2],
			uint64_t *sess, char *entry, size_t cap)
{
	char mem[512], err[300];
	struct kv_buf b;
	int nfds = 0, e;

	kv_buf_init(&b, mem, sizeof(mem));
	e = fsd_sup_session_open(image_fd, image, mount, getpid(), &b, fds, &nfds, sess, err,
				 sizeof(err));
	if (e) {
		fprintf(stderr, "harness: session_open: %s (%s)\n", err, strerror(-e));
		return e;
	}
	mem[b.len] = '\0';
	for (char *p = mem; *p; p++)
		if (*p == '\n')
			*p = ',';
	/* Keep the vol=/session= keys; the descriptors get fixed numbers in the writer. */
	snprintf(entry, cap, "mount=%s,storage=indirect,image=%s,%s", mount, image, mem);
	return 0;
}

/* ---- writer ---- */

static int writer(const char *entry_in, int id, double secs, const char *logpath)
{
	const struct vfs_ops *o = &vfs_fsd_ops;
	char entry[1024], *fdsk, rec[REC], line[64], name[64];
	vol_ino_t ino, shared;
	uint64_t end;
	double t0 = now_s();
	void *b;
	long k;
	int log = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);

	/* fds=region,doorbell -> our fixed numbers 10.11 */
	snprintf(entry, sizeof(entry), "%s", entry_in);
	fdsk = strstr(entry, "fds=");
	if (fdsk)
		snprintf(fdsk, sizeof(entry) - (size_t)(fdsk - entry), "fds=10.11");
	if (log < 0 || vfs_fsd_attach(entry, &b)) {
		fprintf(stderr, "writer %d: cannot start\n", id);
		return 1;
	}
	snprintf(name, sizeof(name), "app%d", id);
	if (o->open(b, VOL_ROOT_INO, name, O_CREAT | O_RDWR | O_TRUNC, 0644, NULL, &ino) ||
	    o->open(b, VOL_ROOT_INO, "shared.log", O_CREAT | O_RDWR, 0644, NULL, &shared)) {
		fprintf(stderr, "writer %d: open failed\n", id);
		return 1;
	}
	for (k = 0; now_s() - t0 < secs && k < 200000; k++) {
		ssize_t r;
		int e;

		fill(rec, id, k);
		r = o->pwrite(b, ino, rec, REC, (uint64_t)k * REC, 0, &end);
		if (r != REC) {
			fprintf(stderr, "writer %d: pwrite %ld: %zd\n", id, k, r);
			return 1;
		}
		dprintf(log, "w %ld\n", k);
		if (k % 8 == 0) {
			snprintf(name, sizeof(name), "d%d-%ld", id, k);
			e = o->mkdir(b, VOL_ROOT_INO, name, 0755, NULL);
			if (e) {
				fprintf(stderr, "writer %d: mkdir %s: %s%s\n", id, name, strerror(-e),
					e == -EEXIST ? " (ran twice: exactly-once violated)" : "");
				return 1;
			}
			dprintf(log, "m %ld\n", k);
		}
		if (k % 4 == 0) {
			snprintf(line, sizeof(line), "%4d %12ld .............\n", id, k);
			r = o->pwrite(b, shared, line, 32, 0, VOL_APPEND, &end);
			if (r != 32) {
				fprintf(stderr, "writer %d: append %ld: %zd\n", id, k, r);
				return 1;
			}
			dprintf(log, "a %ld\n", k);
		}
		if (k % 64 == 63 && (e = o->fsync(b, ino, false))) {
			fprintf(stderr, "writer %d: fsync: %s\n", id, strerror(-e));
			return 1;
		}
	}
	o->release(b, ino);
	o->release(b, shared);
	fprintf(stderr, "writer %d: %ld records acknowledged\n", id, k);
	return 0;
}

/* ---- run ---- */

static int run(char **argv)
{
	const char *image = argv[0], *mount = argv[1], *logdir = argv[5];
	int napps = atoi(argv[2]), kills = atoi(argv[4]), killed = 0, failed = 0;
	double secs = atof(argv[3]), t0, next_kill;
	pid_t pids[16];
	uint64_t sess[16];
	int image_fd, alive;

	if (napps < 1 || napps > 16)
		return 1;
	if (fsd_sup_start(NULL)) {
		fprintf(stderr, "harness: fsd did not start\n");
		return 1;
	}
	image_fd = open(image, O_RDWR | O_CLOEXEC);
	if (image_fd < 0) {
		perror(image);
		return 1;
	}
	for (int i = 0; i < napps; i++) {
		char entry[1024], idb[16], secb[32], logp[512];
		int fds[2];

		if (open_session(image_fd, image, mount, fds, &sess[i], entry, sizeof(entry)))
			return 1;
		snprintf(idb, sizeof(idb), "%d", i);
		snprintf(secb, sizeof(secb), "%g", secs);
		snprintf(logp, sizeof(logp), "%s/app%d.log", logdir, i);
		pids[i] = fork();
		if (pids[i] == 0) {
			dup2(fds[0], 10);
			dup2(fds[1], 11);
			execl("/proc/self/exe", "fsd_harness", "writer", entry, idb, secb, logp,
			      (char *)NULL);
			_exit(127);
		}
		close(fds[0]);
		close(fds[1]);
	}
	t0 = now_s();
	next_kill = kills ? secs / (kills + 1) : 1e9;
	do {
		pump(50);
		if (killed < kills && now_s() - t0 >= next_kill * (killed + 1)) {
			pid_t fp = fsd_pid_now();

			if (fp > 0 && getenv("FSD_HARNESS_RESTART")) {
				/* `libretto fsd restart`: a clean stop and a successor that adopts. */
				char msg[300];
				int e = fsd_sup_restart(msg, sizeof(msg));

				fprintf(stderr, "harness: fsd restart at %.2f s: %s\n", now_s() - t0, msg);
				if (e)
					failed++;
				killed++;
			} else if (fp > 0) {
				/* FSD_HARNESS_HANG=1: stop it instead (hang detection must replace it). */
				int sig = getenv("FSD_HARNESS_HANG") ? SIGSTOP : SIGKILL;

				fprintf(stderr, "harness: %s fsd pid %d at %.2f s\n",
					sig == SIGSTOP ? "SIGSTOP" : "SIGKILL", (int)fp, now_s() - t0);
				kill(fp, sig);
				killed++;
			}
		}
		alive = 0;
		for (int i = 0; i < napps; i++) {
			int st;

			if (pids[i] <= 0)
				continue;
			if (waitpid(pids[i], &st, WNOHANG) == pids[i]) {
				if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
					fprintf(stderr, "harness: writer %d failed (status %#x)\n", i, st);
					failed++;
				}
				pids[i] = 0;
			} else {
				alive++;
			}
		}
	} while (alive && now_s() - t0 < secs + 150);
	for (int i = 0; i < napps; i++)
		if (pids[i] > 0) {
			fprintf(stderr, "harness: writer %d hangs: killing it\n", i);
			kill(pids[i], SIGKILL);
			waitpid(pids[i], NULL, 0);
			failed++;
		}
	for (int i = 0; i < napps; i++)
		fsd_sup_session_close(sess[i]);
	fsd_sup_stop();
	close(image_fd);
	if (killed < kills) {
		fprintf(stderr, "harness: only %d of %d kills happened\n", killed, kills);
		failed++;
	}
	fprintf(stderr, "harness: run %s (%d kills)\n", failed ? "FAILED" : "ok", killed);
	return failed ? 1 : 0;
}

/* ---- verify ---- */

static int verify(char **argv)
{
	const struct vfs_ops *o = &vfs_fsd_ops;
	const char *image = argv[0], *mount = argv[1], *logdir = argv[3];
	int napps = atoi(argv[2]), bad = 0, image_fd, fds[2];
	char entry[1024], *fdsk, rec[REC], got[REC], name[64];
	static char shared_buf[8 << 20];
	uint64_t sess;
	vol_ino_t shared;
	ssize_t shared_len;
	void *b;

	if (fsd_sup_start(NULL))
		return 1;
	image_fd = open(image, O_RDWR | O_CLOEXEC);
	if (image_fd < 0 || open_session(image_fd, image, mount, fds, &sess, entry, sizeof(entry)))
		return 1;
	fdsk = strstr(entry, "fds=");
	snprintf(fdsk, sizeof(entry) - (size_t)(fdsk - entry), "fds=%d.%d", fds[0], fds[1]);
	if (vfs_fsd_attach(entry, &b))
		return 1;
	if (o->open(b, VOL_ROOT_INO, "shared.log", O_RDONLY, 0, NULL, &shared)) {
		fprintf(stderr, "verify: no shared.log\n");
		return 1;
	}
	shared_len = o->pread(b, shared, shared_buf, sizeof(shared_buf) - 1, 0);
	if (shared_len < 0)
		return 1;
	shared_buf[shared_len] = '\0';
	for (int id = 0; id < napps; id++) {
		char logp[512], what;
		long k, writes = 0, dirs = 0, appends = 0;
		vol_ino_t ino, d;
		FILE *log;

		snprintf(logp, sizeof(logp), "%s/app%d.log", logdir, id);
		log = fopen(logp, "r");
		snprintf(name, sizeof(name), "app%d", id);
		if (!log || o->open(b, VOL_ROOT_INO, name, O_RDONLY, 0, NULL, &ino)) {
			fprintf(stderr, "verify: app %d: no log or no file\n", id);
			return 1;
		}
		while (fscanf(log, " %c %ld", &what, &k) == 2) {
			if (what == 'w') {
				fill(rec, id, k);
				if (o->pread(b, ino, got, REC, (uint64_t)k * REC) != REC ||
				    memcmp(rec, got, REC)) {
					if (bad++ < 10)
						fprintf(stderr, "verify: app %d record %ld LOST or wrong\n", id, k);
				}
				writes++;
			} else if (what == 'm') {
				snprintf(name, sizeof(name), "d%d-%ld", id, k);
				if (o->lookup(b, VOL_ROOT_INO, name, 0, &d)) {
					if (bad++ < 10)
						fprintf(stderr, "verify: app %d directory %s LOST\n", id, name);
				}
				dirs++;
			} else if (what == 'a') {
				char line[64], *p, *q;
				int n = 0;

				snprintf(line, sizeof(line), "%4d %12ld .............\n", id, k);
				for (p = shared_buf; (q = strstr(p, line)) != NULL; p = q + 32)
					n++;
				if (n != 1 && bad++ < 10)
					fprintf(stderr, "verify: app %d append %ld found %d times%s\n", id, k, n,
						n > 1 ? " (exactly-once violated)" : " (LOST)");
				appends++;
			}
		}
		fclose(log);
		o->release(b, ino);
		fprintf(stderr, "verify: app %d: %ld writes, %ld mkdirs, %ld appends checked\n", id,
			writes, dirs, appends);
	}
	if (shared_len % 32)
		fprintf(stderr, "verify: shared.log length %zd is not a multiple of 32\n", shared_len), bad++;
	o->release(b, shared);
	fsd_sup_session_close(sess);
	fsd_sup_stop();
	fprintf(stderr, "verify: %s\n", bad ? "FAILED" : "ok");
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc == 8 && !strcmp(argv[1], "run"))
		return run(argv + 2);
	if (argc == 6 && !strcmp(argv[1], "verify"))
		return verify(argv + 2);
	if (argc == 6 && !strcmp(argv[1], "writer"))
		return writer(argv[2], atoi(argv[3]), atof(argv[4]), argv[5]);
	fprintf(stderr, "usage: fsd_harness run IMAGE MOUNT NAPPS SECONDS KILLS LOGDIR | "
		"verify IMAGE MOUNT NAPPS LOGDIR\n");
	return 2;
}
