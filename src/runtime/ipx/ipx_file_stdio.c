/* Volume files as stdio streams: fopen/fdopen through fopencookie, fileno, the flush at exit. */
#undef _FILE_OFFSET_BITS
#undef _FORTIFY_SOURCE
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ipx/ipx_file.h"

/*
 * glibc's FILE reads and writes through internal calls, so a stream on a
 * volume file is a cookie stream whose functions call our wrappers on the
 * descriptor.  fileno() must still give that descriptor (redis fsyncs
 * fileno(fp)): the streams are kept in a small list, which also lets
 * vfs_exit() flush them before the volume goes (stdio's own flush at exit
 * runs after the libraries' destructors).
 */
struct ipx_stream {
	FILE *fp;
	int fd;
	struct ipx_stream *next;
};

static pthread_mutex_t ipx_streams_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ipx_stream *ipx_streams;
static atomic_int ipx_nstreams;

static void ipx_stream_add(struct ipx_stream *s)
{
	pthread_mutex_lock(&ipx_streams_lock);
	s->next = ipx_streams;
	ipx_streams = s;
	atomic_fetch_add(&ipx_nstreams, 1);
	pthread_mutex_unlock(&ipx_streams_lock);
}

/*
 * fork (ipx_vfile_fork_child): another thread of the parent may have held
 * the list lock; it does not exist in the child.  The list itself is only
 * changed under the lock, so the copy is whole unless that thread was in
 * the middle of a change: a lost entry is only not flushed at exit.
 */
void ipx_vfile_stdio_fork_child(void)
{
	pthread_mutex_init(&ipx_streams_lock, NULL);
}

static void ipx_stream_del(struct ipx_stream *s)
{
	pthread_mutex_lock(&ipx_streams_lock);
	for (struct ipx_stream **p = &ipx_streams; *p != NULL; p = &(*p)->next) {
		if (*p == s) {
			*p = s->next;
			atomic_fetch_sub(&ipx_nstreams, 1);
			break;
		}
	}
	pthread_mutex_unlock(&ipx_streams_lock);
}

static ssize_t ipx_cookie_read(void *c, char *buf, size_t n)
{
	return read(((struct ipx_stream *)c)->fd, buf, n);
}

/* stdio takes a short count as an error: write it all unless one fails. */
static ssize_t ipx_cookie_write(void *c, const char *buf, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = write(((struct ipx_stream *)c)->fd, buf + done, n - done);

		if (r <= 0)
			return done > 0 ? (ssize_t)done : (r < 0 ? -1 : 0);
		done += (size_t)r;
	}
	return (ssize_t)done;
}

static int ipx_cookie_seek(void *c, off64_t *off, int whence)
{
	off_t r = lseek(((struct ipx_stream *)c)->fd, (off_t)*off, whence);

	if (r < 0)
		return -1;
	*off = r;
	return 0;
}

static int ipx_cookie_close(void *c)
{
	struct ipx_stream *s = c;
	int r;

	ipx_stream_del(s);
	r = close(s->fd);
	free(s);
	return r;
}

static const cookie_io_functions_t ipx_cookie_fns = {
	.read = ipx_cookie_read,
	.write = ipx_cookie_write,
	.seek = ipx_cookie_seek,
	.close = ipx_cookie_close,
};

/* fopen's mode string -> open flags; -1 for a bad mode. */
static int ipx_fmode(const char *mode)
{
	int flags;

	switch (mode[0]) {
	case 'r':
		flags = O_RDONLY;
		break;
	case 'w':
		flags = O_WRONLY | O_CREAT | O_TRUNC;
		break;
	case 'a':
		flags = O_WRONLY | O_CREAT | O_APPEND;
		break;
	default:
		return -1;
	}
	for (const char *p = mode + 1; *p != '\0' && *p != ','; p++) {
		if (*p == '+')
			flags = (flags & ~O_ACCMODE) | O_RDWR;
		else if (*p == 'x')
			flags |= O_EXCL;
		else if (*p == 'e')
			flags |= O_CLOEXEC;
	}
	return flags;
}

/* A cookie stream on fd (a volume descriptor it takes over on success). */
static FILE *ipx_stream_open(int fd, const char *mode)
{
	struct ipx_stream *s = calloc(1, sizeof(*s));
	char m[8];
	size_t k = 0;

	if (s == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	/* fopencookie knows r, w, a and +; the rest was for open(). */
	for (const char *p = mode; *p != '\0' && *p != ',' && k < sizeof(m) - 1; p++)
		if (*p == 'r' || *p == 'w' || *p == 'a' || *p == '+')
			m[k++] = *p;
	m[k] = '\0';
	s->fd = fd;
	s->fp = fopencookie(s, m, ipx_cookie_fns);
	if (s->fp == NULL) {
		free(s);
		return NULL;
	}
	ipx_stream_add(s);
	return s->fp;
}

static FILE *ipx_fopen(const char *path, const char *mode, bool is64)
{
	struct ipx_vloc vl;
	FILE *fp;
	int r, flags, fd;

	r = ipx_vlocate(AT_FDCWD, path, &vl, true);
	if (r == 0)
		return is64 ? real.fopen64(vl.loc.kpath, mode) : real.fopen(vl.loc.kpath, mode);
	if (r < 0) {
		errno = -r;
		return NULL;
	}
	flags = ipx_fmode(mode);
	if (flags < 0) {
		errno = EINVAL;
		return NULL;
	}
	fd = ipx_vfile_open(&vl, flags, 0666);
	if (fd < 0) {
		errno = -fd;
		return NULL;
	}
	fp = ipx_stream_open(fd, mode);
	if (fp == NULL) {
		int err = errno;

		close(fd);
		errno = err;
	}
	return fp;
}

IPX_EXPORT FILE *fopen(const char *path, const char *mode)
{
	return ipx_fopen(path, mode, false);
}

IPX_EXPORT FILE *fopen64(const char *path, const char *mode)
{
	return ipx_fopen(path, mode, true);
}

/*
 * freopen onto a volume path would have to turn the caller's FILE into a
 * cookie stream in place, which stdio does not allow: refused with
 * EOPNOTSUPP and a message (docs/storage.md).  Kernel paths are glibc's.
 */
static FILE *ipx_freopen(const char *path, const char *mode, FILE *fp, bool is64)
{
	struct ipx_vloc vl;
	int r;

	real_init();
	if (!vfs_active() || path == NULL)
		return is64 ? real.freopen64(path, mode, fp) : real.freopen(path, mode, fp);
	r = ipx_vpath(AT_FDCWD, path, &vl, false);
	if (r == 0)
		return is64 ? real.freopen64(vl.loc.kpath, mode, fp) : real.freopen(vl.loc.kpath, mode, fp);
	if (r == 1) {
		fprintf(stderr, "libretto: freopen(%s): reopening a stream onto a volume file is not "
			"supported; use fopen\n", path);
		r = -EOPNOTSUPP;
	}
	errno = -r;
	return NULL;
}

IPX_EXPORT FILE *freopen(const char *path, const char *mode, FILE *fp)
{
	return ipx_freopen(path, mode, fp, false);
}

IPX_EXPORT FILE *freopen64(const char *path, const char *mode, FILE *fp)
{
	return ipx_freopen(path, mode, fp, true);
}

/*
 * A standard descriptor (0, 1, 2) that an exec handed over as a volume
 * file: glibc's own stdin/stdout/stderr write with internal calls that
 * bypass the interposition (and would get EBADF from the O_PATH
 * descriptor), so the program's standard stream becomes a cookie stream
 * on it, before the program runs.  stderr stays unbuffered.
 */
void ipx_vfile_std_stream(int fd, int flags)
{
	int acc = flags & O_ACCMODE;
	const char *mode = acc == O_RDWR ? (fd == 0 ? "r+" : "w+") : acc == O_WRONLY ? "w" : "r";
	FILE *fp;

	if (fd < 0 || fd > 2 || (flags & O_PATH))
		return;
	fp = ipx_stream_open(fd, mode);
	if (fp == NULL)
		return;
	if (fd == 0)
		stdin = fp;
	else if (fd == 1)
		stdout = fp;
	else {
		setvbuf(fp, NULL, _IONBF, 0);
		stderr = fp;
	}
}

IPX_EXPORT FILE *fdopen(int fd, const char *mode)
{
	struct ipx_file *f;
	int flags, acc, err;

	real_init();
	f = ipx_vfile_app(fd);
	if (f == IPX_VF_PRIVATE) {
		errno = EBADF;
		return NULL;
	}
	if (f == NULL)
		return real.fdopen(fd, mode);
	flags = ipx_fmode(mode);
	acc = f->vf->flags & O_ACCMODE;
	err = ipx_vfile_check(f->vf);
	if (err == 0 && flags < 0)
		err = -EINVAL;
	/* The mode must be allowed by the descriptor's access mode, as glibc checks. */
	if (err == 0 && (((flags & O_ACCMODE) != O_WRONLY && acc == O_WRONLY) ||
			 ((flags & O_ACCMODE) != O_RDONLY && acc == O_RDONLY) ||
			 (f->vf->flags & O_PATH)))
		err = -EINVAL;
	/* "a" puts the description in append mode, as glibc's fdopen does. */
	if (err == 0 && (flags & O_APPEND)) {
		pthread_mutex_lock(&f->vf->lock);
		f->vf->flags |= O_APPEND;
		pthread_mutex_unlock(&f->vf->lock);
	}
	ipx_put(f);
	if (err < 0) {
		errno = -err;
		return NULL;
	}
	return ipx_stream_open(fd, mode);
}

/* The descriptor of a stream on a volume file, or -1 (a glibc stream); no
 * lock is taken while the program has no volume streams. */
static int ipx_stream_fd(FILE *fp)
{
	int fd = -1;

	if (atomic_load_explicit(&ipx_nstreams, memory_order_relaxed) == 0)
		return -1;
	pthread_mutex_lock(&ipx_streams_lock);
	for (struct ipx_stream *s = ipx_streams; s != NULL; s = s->next) {
		if (s->fp == fp) {
			fd = s->fd;
			break;
		}
	}
	pthread_mutex_unlock(&ipx_streams_lock);
	return fd;
}

IPX_EXPORT int fileno(FILE *fp)
{
	int fd = ipx_stream_fd(fp);

	real_init();
	return fd >= 0 ? fd : real.fileno(fp);
}

IPX_EXPORT int fileno_unlocked(FILE *fp)
{
	int fd = ipx_stream_fd(fp);

	real_init();
	return fd >= 0 ? fd : real.fileno_unlocked(fp);
}

void ipx_vfile_flush_all(void)
{
	FILE *v[256];
	int n = 0;

	/* fflush calls our write under the stream's lock, not ours: collect first. */
	pthread_mutex_lock(&ipx_streams_lock);
	for (struct ipx_stream *s = ipx_streams; s != NULL && n < 256; s = s->next)
		v[n++] = s->fp;
	pthread_mutex_unlock(&ipx_streams_lock);
	for (int i = 0; i < n; i++)
		fflush(v[i]);
}

/*
 * _exit skips the destructors, so a forked child that wrote to a volume
 * and left with _exit (the usual way) would lose what it did: commit and
 * detach first (only the volumes this very process attached: a vfork
 * child leaves its parent's alone).  Streams are not flushed, as _exit
 * does not flush them.
 */
IPX_EXPORT void _exit(int status)
{
	real_init();
	vfs_exit_now();
	real._exit(status);
	__builtin_unreachable();
}

IPX_EXPORT void _Exit(int status)
{
	real_init();
	vfs_exit_now();
	real._Exit(status);
	__builtin_unreachable();
}

/*
 * vfork.  A vfork() child shares our memory but has its own descriptor
 * table and runs no fork handlers, so a volume this process holds can be
 * neither handed over (vfs_mount.c, vfs_fork_release) nor used by the
 * image the child execs: a shell (dash uses vfork) running `ls` in a
 * volume directory would find it busy.  With volumes configured, vfork is
 * therefore fork, which POSIX allows.  Without, it must be libc's very
 * own vfork, reached by a jump (a C wrapper would return twice through one
 * stack frame): ipx_vfork_target is set in the constructor.
 */
static pid_t ipx_vfork_as_fork(void)
{
	return fork();
}

void *ipx_vfork_target = (void *)ipx_vfork_as_fork;

void ipx_vfork_setup(void)
{
	real_init();
	if (vfs_nmounts == 0 && real.vfork != NULL)
		ipx_vfork_target = (void *)real.vfork;
}

#if defined(__x86_64__)
__asm__(".text\n"
	"\t.globl vfork\n"
	"\t.type vfork, @function\n"
	"vfork:\n"
	"\tjmp *ipx_vfork_target(%rip)\n"
	"\t.size vfork, .-vfork\n");
#else
/* Elsewhere vfork is always fork: correct, only slower. */
IPX_EXPORT pid_t vfork(void)
{
	return fork();
}
#endif
