/* Direct storage: the volume's ext4 runs in this process (vol.h), on the image the application owns. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/stat.h>

#include "ipx/ipx.h"
#include "vfs/vfs.h"

/*
 * The backend handle: the mounted volume and the descriptor that holds the
 * per-application lock (byte 1 of the image, F_OFD_SETLK).  librettod holds
 * byte 0 for the lease; byte 1 keeps two processes of the same application
 * (which share the lease's descriptor, hence its OFD lock) from mounting the
 * same image at once.
 */
#define VD_MAX_PRIV 4
struct vfs_direct {
	struct vol *v;
	int lock_fd;
	/* The volume's own descriptors of the image, marked private so the
	 * program's closefrom()/close_range() and dup2() cannot take them. */
	int npriv;
	int priv[VD_MAX_PRIV];
	/*
	 * Calls inside the volume now (vd_enter), and closing: a terminating
	 * signal is committing and unmounting it (vfs_direct_quiesce), so
	 * new calls wait for the end of the process instead of entering.
	 * busy and closing are seq_cst: the signal's store of closing then
	 * load of busy, and a caller's increment of busy then load of closing,
	 * cannot both miss each other.
	 */
	atomic_int busy;
	atomic_bool closing;
	/* The 5 s commit timer (vol_tick), ours rather than the volume's so
	 * that its calls are the runtime's (ipx_rt_enter) and it never takes
	 * a signal: stop under tick_mu, tick_cv on CLOCK_MONOTONIC. */
	pthread_t tick;
	bool tick_running, tick_stop;
	pthread_mutex_t tick_mu;
	pthread_cond_t tick_cv;
};

/* This thread is inside the volume (a signal handler that interrupted it
 * must not unmount: the volume's lock may be held right here). */
static __thread unsigned vd_depth __attribute__((tls_model("initial-exec")));

/* The process is ending by a signal that unmounts the volume: wait for the
 * end (bounded, then the call fails with EIO). */
static void vd_park(struct vfs_direct *d)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };

	for (int i = 0; i < 3000 && atomic_load(&d->closing); i++)
		nanosleep(&ts, NULL);
}

/*
 * Around every call into the volume.  The volume reads and writes the
 * image through the interposed pread/pwrite/fcntl/fdatasync on its private
 * descriptors: ipx_rt_enter() lets those through (the program's own calls
 * on them get EBADF).
 */
static int vd_enter(struct vfs_direct *d)
{
	atomic_fetch_add(&d->busy, 1);
	if (atomic_load(&d->closing)) {
		atomic_fetch_sub(&d->busy, 1);
		vd_park(d);
		return -EIO;
	}
	vd_depth++;
	ipx_rt_enter();
	return 0;
}

static void vd_leave(struct vfs_direct *d)
{
	ipx_rt_leave();
	vd_depth--;
	atomic_fetch_sub(&d->busy, 1);
}

/* return expr (a vol.h call) made between vd_enter and vd_leave. */
#define VD_RET(b, expr)                                         \
	do {                                                    \
		struct vfs_direct *d_ = (b);                    \
		__typeof__(expr) r_;                            \
		if (vd_enter(d_) < 0)                           \
			return -EIO;                            \
		r_ = (expr);                                    \
		vd_leave(d_);                                   \
		return r_;                                      \
	} while (0)

/* The descriptors (up to max) that name the file (dev, ino), from /proc/self/fd. */
static int vd_image_fds(dev_t dev, ino_t ino, int *out, int max)
{
	struct dirent *e;
	struct stat st;
	DIR *d;
	int n = 0;

	d = real.opendir("/proc/self/fd");
	if (d == NULL)
		return 0;
	while (n < max && (e = real.readdir(d)) != NULL) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] < '0' || e->d_name[0] > '9' || fd == real.dirfd(d))
			continue;
		if (real.fstat(fd, &st) == 0 && st.st_dev == dev && st.st_ino == ino)
			out[n++] = fd;
	}
	real.closedir(d);
	return n;
}

static bool vd_in(const int *v, int n, int fd)
{
	for (int i = 0; i < n; i++)
		if (v[i] == fd)
			return true;
	return false;
}

#define VD(b) (((struct vfs_direct *)(b))->v)

static int vd_sync(void *b, bool durable)
{
	VD_RET(b, vol_sync(VD(b), durable));
}

static int vd_lookup(void *b, vol_ino_t dir, const char *path, int flags, vol_ino_t *ino)
{
	VD_RET(b, vol_lookup(VD(b), dir, path, flags, ino));
}

static int vd_open(void *b, vol_ino_t dir, const char *path, int oflags, mode_t mode,
		   const struct vol_cred *cred, vol_ino_t *ino)
{
	VD_RET(b, vol_open(VD(b), dir, path, oflags, mode, cred, ino));
}

static int vd_hold(void *b, vol_ino_t ino)
{
	VD_RET(b, vol_hold(VD(b), ino));
}

static int vd_release(void *b, vol_ino_t ino)
{
	VD_RET(b, vol_release(VD(b), ino));
}

static ssize_t vd_pread(void *b, vol_ino_t ino, void *buf, size_t n, uint64_t off)
{
	VD_RET(b, vol_pread(VD(b), ino, buf, n, off));
}

static ssize_t vd_pwrite(void *b, vol_ino_t ino, const void *buf, size_t n, uint64_t off,
			 unsigned flags, uint64_t *end)
{
	VD_RET(b, vol_pwrite(VD(b), ino, buf, n, off, flags, end));
}

static int vd_getattr(void *b, vol_ino_t ino, struct stat *st)
{
	VD_RET(b, vol_getattr(VD(b), ino, st));
}

static int vd_setattr(void *b, vol_ino_t ino, const struct vol_setattr *sa, const struct vol_cred *cred)
{
	VD_RET(b, vol_setattr(VD(b), ino, sa, cred));
}

static int vd_access(void *b, vol_ino_t ino, int mask, const struct vol_cred *cred)
{
	VD_RET(b, vol_access(VD(b), ino, mask, cred));
}

static int vd_fsync(void *b, vol_ino_t ino, bool datasync)
{
	VD_RET(b, vol_fsync(VD(b), ino, datasync));
}

static ssize_t vd_readdir(void *b, vol_ino_t dir, uint64_t *cookie, void *buf, size_t n)
{
	VD_RET(b, vol_readdir(VD(b), dir, cookie, buf, n));
}

static int vd_mkdir(void *b, vol_ino_t dir, const char *path, mode_t mode, const struct vol_cred *cred)
{
	VD_RET(b, vol_mkdir(VD(b), dir, path, mode, cred));
}

static int vd_unlink(void *b, vol_ino_t dir, const char *path, int flags, const struct vol_cred *cred)
{
	VD_RET(b, vol_unlink(VD(b), dir, path, flags, cred));
}

static int vd_rename(void *b, vol_ino_t odir, const char *opath, vol_ino_t ndir, const char *npath,
		     unsigned flags, const struct vol_cred *cred)
{
	VD_RET(b, vol_rename(VD(b), odir, opath, ndir, npath, flags, cred));
}

static int vd_link(void *b, vol_ino_t ino, vol_ino_t ndir, const char *npath, const struct vol_cred *cred)
{
	VD_RET(b, vol_link(VD(b), ino, ndir, npath, cred));
}

static int vd_symlink(void *b, const char *target, vol_ino_t dir, const char *path,
		      const struct vol_cred *cred)
{
	VD_RET(b, vol_symlink(VD(b), target, dir, path, cred));
}

static ssize_t vd_readlink(void *b, vol_ino_t ino, char *buf, size_t n)
{
	VD_RET(b, vol_readlink(VD(b), ino, buf, n));
}

static int vd_statfs(void *b, struct statfs *st)
{
	VD_RET(b, vol_statfs(VD(b), st));
}

static int vd_fallocate(void *b, vol_ino_t ino, int mode, uint64_t off, uint64_t len)
{
	VD_RET(b, vol_fallocate(VD(b), ino, mode, off, len));
}

static int64_t vd_seek_data(void *b, vol_ino_t ino, uint64_t off, int whence)
{
	VD_RET(b, vol_seek_data(VD(b), ino, off, whence));
}

static int vd_lock(void *b, vol_ino_t ino, uint64_t owner, int cmd, struct flock *fl)
{
	VD_RET(b, vol_lock(VD(b), ino, owner, cmd, fl));
}

static int vd_unlock_owner(void *b, vol_ino_t ino, uint64_t owner)
{
	VD_RET(b, vol_unlock_owner(VD(b), ino, owner));
}

/* The commit timer: vol_tick every second (it commits what is 5 s old). */
static void *vd_tick_main(void *arg)
{
	struct vfs_direct *d = arg;
	struct timespec ts;

	pthread_mutex_lock(&d->tick_mu);
	while (!d->tick_stop) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&d->tick_cv, &d->tick_mu, &ts);
		if (d->tick_stop)
			break;
		pthread_mutex_unlock(&d->tick_mu);
		if (vd_enter(d) == 0) {
			(void)vol_tick(d->v);
			vd_leave(d);
		}
		pthread_mutex_lock(&d->tick_mu);
	}
	pthread_mutex_unlock(&d->tick_mu);
	return NULL;
}

/* Start the timer with every signal blocked: a signal meant for the
 * program must never land in the middle of a commit on this thread. */
static void vd_tick_start(struct vfs_direct *d)
{
	pthread_condattr_t ca;
	sigset_t all, old;

	pthread_mutex_init(&d->tick_mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->tick_cv, &ca);
	pthread_condattr_destroy(&ca);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	d->tick_running = pthread_create(&d->tick, NULL, vd_tick_main, d) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!d->tick_running)
		fprintf(stderr, "libretto: volume: no commit timer thread: changes are committed at "
			"fsync and unmount only\n");
}

/* Only the process that started the timer has it (not a forked child). */
static void vd_tick_stop(struct vfs_direct *d)
{
	if (!d->tick_running)
		return;
	pthread_mutex_lock(&d->tick_mu);
	d->tick_stop = true;
	pthread_cond_signal(&d->tick_cv);
	pthread_mutex_unlock(&d->tick_mu);
	pthread_join(d->tick, NULL);
	d->tick_running = false;
}

/* Unmount (commit, checkpoint, clean) and let go of the per-application lock. */
static int vd_detach(void *b)
{
	struct vfs_direct *d = b;
	int err;

	vd_tick_stop(d);
	/* Ours no more: the volume closes them (through close(), which
	 * refuses private descriptors). */
	for (int i = 0; i < d->npriv; i++)
		ipx_private_del(d->priv[i]);
	ipx_rt_enter();
	err = vol_unmount(d->v);
	ipx_rt_leave();

	if (d->lock_fd >= 0) {
		ipx_private_del(d->lock_fd);
		real.close(d->lock_fd);
	}
	free(d);
	return err;
}

const struct vfs_ops vfs_direct_ops = {
	.name = "direct",
	.sync = vd_sync,
	.lookup = vd_lookup,
	.open = vd_open,
	.hold = vd_hold,
	.release = vd_release,
	.pread = vd_pread,
	.pwrite = vd_pwrite,
	.getattr = vd_getattr,
	.setattr = vd_setattr,
	.access = vd_access,
	.fsync = vd_fsync,
	.readdir = vd_readdir,
	.mkdir = vd_mkdir,
	.unlink = vd_unlink,
	.rename = vd_rename,
	.link = vd_link,
	.symlink = vd_symlink,
	.readlink = vd_readlink,
	.statfs = vd_statfs,
	.fallocate = vd_fallocate,
	.seek_data = vd_seek_data,
	.lock = vd_lock,
	.unlock_owner = vd_unlock_owner,
	.detach = vd_detach,
};

/* The image's name for messages: what /proc says the descriptor is. */
static void vd_image_name(int fd, char *buf, size_t n)
{
	char p[64];
	ssize_t r;

	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	r = readlink(p, buf, n - 1);
	if (r < 0)
		snprintf(buf, n, "(descriptor %d)", fd);
	else
		buf[r] = '\0';
}

int vfs_direct_attach(int image_fd, const char *mountpoint, void **b)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 1, .l_len = 1 };
	int (*rf)(int, int, ...) = (int (*)(int, int, ...))real.fcntl;
	char path[64], name[PATH_MAX];
	struct vfs_direct *d;
	int fd, pfd, err, lock_cmd = F_OFD_SETLK;

	real_init();
	vd_image_name(image_fd, name, sizeof(name));
	/*
	 * A new open file description of the image: its OFD lock is this
	 * process's alone (a fork()ed child shares it only through our
	 * descriptor, which the child never uses).
	 */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", image_fd);
	fd = real.openat(AT_FDCWD, path, O_RDWR | O_CLOEXEC, 0);
	if (fd < 0 && (errno == EACCES || errno == EPERM)) {
		/*
		 * A process that dropped its privileges (nginx's workers) may
		 * not open the image again: it uses the descriptor it was
		 * given, and a POSIX lock (the process's own; a fork()ed
		 * child does not inherit it) instead of an OFD lock.
		 */
		fd = rf(image_fd, F_DUPFD_CLOEXEC, 0L);
		if (fd >= 0)
			lock_cmd = F_SETLK;
	}
	if (fd < 0) {
		err = -errno;
		fprintf(stderr, "libretto: volume %s (%s): cannot open the image descriptor %d: %s\n",
			mountpoint, name, image_fd, strerror(-err));
		return err;
	}
	if (rf(fd, lock_cmd, &fl) < 0) {
		err = -errno;
		if (err == -EAGAIN || err == -EACCES) {
			fprintf(stderr, "libretto: volume %s is in use by another process of this "
				"application; direct storage serves one process at a time: use "
				"--storage indirect\n", name);
			err = -EBUSY;
		} else {
			fprintf(stderr, "libretto: volume %s: cannot lock the image: %s\n", name,
				strerror(-err));
		}
		real.close(fd);
		return err;
	}
	/* Out of the program's way: a high private number it cannot close. */
	pfd = ipx_private_dup(fd);
	if (pfd >= 0) {
		real.close(fd);
		fd = pfd;
	}
	d = calloc(1, sizeof(*d));
	if (d == NULL) {
		if (pfd >= 0)
			ipx_private_del(fd);
		real.close(fd);
		return -ENOMEM;
	}
	d->lock_fd = fd;
	{
		struct stat st;
		int before[16], nb = 0, after[16], na;

		if (real.fstat(fd, &st) == 0)
			nb = vd_image_fds(st.st_dev, st.st_ino, before, 16);
		/* The volume's I/O on the private lock descriptor is ours. */
		ipx_rt_enter();
		err = vol_mount(fd, mountpoint, VOL_NO_TICK, &d->v);
		ipx_rt_leave();
		if (err == 0 && nb > 0) {
			na = vd_image_fds(st.st_dev, st.st_ino, after, 16);
			for (int i = 0; i < na && d->npriv < VD_MAX_PRIV; i++)
				if (!vd_in(before, nb, after[i]) && fdtab_peek(after[i]) == NULL &&
				    ipx_private_add(after[i]) == 0)
					d->priv[d->npriv++] = after[i];
		}
	}
	if (err < 0) {
		fprintf(stderr, "libretto: volume %s on %s: cannot mount it: %s\n", name, mountpoint,
			strerror(-err));
		if (pfd >= 0)
			ipx_private_del(fd);
		real.close(fd);
		free(d);
		return err;
	}
	atomic_init(&d->busy, 0);
	atomic_init(&d->closing, false);
	vd_tick_start(d);
	*b = d;
	return 0;
}

int vfs_direct_quiesce(void *b)
{
	struct vfs_direct *d = b;
	struct timespec ts = { 0, 1000 * 1000 };

	atomic_store(&d->closing, true);
	if (vd_depth > 0)
		return -EBUSY;	/* interrupted inside the volume: its lock may be ours */
	for (int i = 0; i < 200 && atomic_load(&d->busy) > 0; i++)
		nanosleep(&ts, NULL);
	return atomic_load(&d->busy) > 0 ? -EBUSY : 0;
}

int vfs_direct_detach_dying(void *b)
{
	struct vfs_direct *d = b;
	int err;

	/*
	 * The timer thread is not joined (it waits for closing to end, or
	 * sleeps) and d is not freed: the process ends right after this.
	 */
	for (int i = 0; i < d->npriv; i++)
		ipx_private_del(d->priv[i]);
	ipx_rt_enter();
	err = vol_unmount(d->v);
	ipx_rt_leave();
	d->v = NULL;
	return err;
}
