/* Descriptor bookkeeping: runtime files, close, dup, dup2, dup3, fcntl. */
/* Our fcntl/sendfile must keep their own names: with 64-bit file offsets
 * requested, glibc's headers would rename the definitions to *64. */
#undef _FILE_OFFSET_BITS
#include <fcntl.h>
#include <limits.h>
#include <sys/resource.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/close_range.h>

#include "libretto/ctl.h"

#include "ipx/ipx.h"
#include "ipx/ipx_relay.h"
#include "stack/stack.h"

pthread_mutex_t ipx_lock = PTHREAD_MUTEX_INITIALIZER;
/* A forked child of the stack's owner (ipx_relay.h). */
bool ipx_relay_child;
/* The slot value of runtime-private descriptors; never freed. */
struct ipx_file ipx_private = { .kind = IPX_PRIV, .refs = 1 << 30, .priv_kfd = -1 };

/*
 * The stack's private descriptors (lease, NIC, region; stack.h).  Weak, so
 * the interposition layer also links without the stack (unit tests).
 */
extern bool stack_fd_is_private(int fd) __attribute__((weak));
extern int stack_private_fds(int *fds, int max) __attribute__((weak));

/* See ipx_rt_enter() in ipx.h. */
__thread unsigned ipx_rt_depth __attribute__((tls_model("initial-exec")));

/* The process whose memory the fd table describes (see close_range()):
 * set with the fork handlers, updated in a forked child. */
static atomic_int ipx_pid;

void ipx_pin(void *obj)
{
	struct ipx_file *f = obj;

	atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

void ipx_put(struct ipx_file *f)
{
	/* acq_rel: the last putter sees every other user's writes. */
	if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (f->kind == IPX_SOCK)
		lsock_drop(f->sock);
	else if (f->kind == IPX_EPOLL)
		ipx_epoll_free(f->ep);
	else if (f->kind == IPX_RELAY)
		ipx_relay_info_free(f);
	else if (f->kind == IPX_VFILE && ipx_vfile_free != NULL)
		ipx_vfile_free(f);
	free(f);
}

/*
 * fork() from a thread while another holds ipx_lock would leave the child
 * a locked copy.  The handlers are registered at the first runtime file,
 * i.e. after the stack registered its own: prepare handlers run in reverse
 * order, so ipx_lock is taken before the stack lock, as everywhere else.
 */
static void ipx_fork_prepare(void)
{
	pthread_mutex_lock(&ipx_lock);
}

static void ipx_fork_done(void)
{
	pthread_mutex_unlock(&ipx_lock);
}

static void ipx_fork_child(void)
{
	atomic_store_explicit(&ipx_pid, (int)getpid(), memory_order_relaxed);
	pthread_mutex_unlock(&ipx_lock);
}

static void ipx_fork_register(void)
{
	atomic_store_explicit(&ipx_pid, (int)getpid(), memory_order_relaxed);
	pthread_atfork(ipx_fork_prepare, ipx_fork_done, ipx_fork_child);
}

struct ipx_file *ipx_file_new(enum ipx_kind kind)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct ipx_file *f;

	pthread_once(&once, ipx_fork_register);
	f = calloc(1, sizeof(*f));

	if (f == NULL)
		return NULL;
	f->kind = kind;
	atomic_init(&f->refs, 1);
	f->priv_kfd = -1;
	LIST_INIT(&f->members);
	return f;
}

struct ipx_file *ipx_get_sock(int fd)
{
	struct ipx_file *f = ipx_get(fd);

	if (f != NULL && f->kind != IPX_SOCK) {
		ipx_put(f);
		return NULL;
	}
	return f;
}

bool ipx_fd_private(int fd)
{
	if (fdtab_peek(fd) == &ipx_private)
		return true;
	return stack_fd_is_private != NULL && stack_fd_is_private(fd);
}

int ipx_private_add(int fd)
{
	void *old;

	return fdtab_swap(fd, &ipx_private, &old);
}

void ipx_private_del(int fd)
{
	void *old;

	fdtab_swap(fd, NULL, &old);
}

int ipx_attach(struct ipx_file *f, int fd)
{
	void *old;
	int err;

	ipx_pin(f);
	pthread_mutex_lock(&ipx_lock);
	f->nfd++;
	pthread_mutex_unlock(&ipx_lock);
	if (f->kind == IPX_SOCK)
		lsock_fd_get(f->sock);
	err = fdtab_swap(fd, f, &old);
	if (err < 0) {
		ipx_detach(f);
		return err;
	}
	/* The kernel just gave us this number, so a stale object there means
	 * somebody closed it behind our back (a raw syscall): forget it. */
	if (old != NULL && old != &ipx_private)
		ipx_detach(old);
	return 0;
}

void ipx_detach(struct ipx_file *f)
{
	bool last;
	int priv = -1;
	void *old;

	if (f == &ipx_private)
		return;
	/* Any close of a file drops the process's POSIX locks on it. */
	if (f->kind == IPX_VFILE && ipx_vfile_close != NULL)
		ipx_vfile_close(f);
	pthread_mutex_lock(&ipx_lock);
	last = --f->nfd == 0;
	if (last) {
		priv = f->priv_kfd;
		f->priv_kfd = -1;
	}
	pthread_mutex_unlock(&ipx_lock);
	if (last) {
		/* Linux drops epoll registrations with the description. */
		if (f->kind == IPX_SOCK)
			ipx_member_remove_all(f);
		else if (f->kind == IPX_EPOLL)
			ipx_epoll_destroy(f->ep);
	}
	if (f->kind == IPX_SOCK) {
		if (last && ipx_relay_child)
			ipx_relay_release(f);
		/* Children still hold the socket: it keeps its kernel fd. */
		if (last && priv >= 0 && !ipx_relay_child && lsock_fd_put_kfd(f->sock, priv))
			priv = -1;
		else
			lsock_fd_put(f->sock);
	}
	if (priv >= 0) {
		fdtab_swap(priv, NULL, &old);
		real.close(priv);
	}
	ipx_put(f);
}

/*
 * A close-on-exec copy of fd at a high number (out of the way of the
 * program's own numbering), marked private; -1 if none could be made.
 */
long ipx_private_base(void)
{
	struct rlimit rl;
	long base = 0;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		base = (long)(rl.rlim_cur / 4 * 3);
	return base > INT_MAX ? 0 : base;
}

static int ipx_private_dup_cmd(int fd, int cmd)
{
	int (*rf)(int, int, ...) = (int (*)(int, int, ...))real.fcntl;
	int nk;

	nk = rf(fd, cmd, ipx_private_base());
	if (nk < 0)
		nk = rf(fd, cmd, 0L);
	if (nk >= 0 && ipx_private_add(nk) < 0) {
		real.close(nk);
		nk = -1;
	}
	return nk;
}

int ipx_private_dup(int fd)
{
	return ipx_private_dup_cmd(fd, F_DUPFD_CLOEXEC);
}

int ipx_private_move(int fd, bool cloexec)
{
	int nk = ipx_private_dup_cmd(fd, cloexec ? F_DUPFD_CLOEXEC : F_DUPFD);

	if (nk < 0) {
		(void)ipx_private_add(fd);
		return fd;
	}
	real.close(fd);
	return nk;
}

/*
 * close(): the slot is cleared before the kernel fd is closed, so a racing
 * socket() that gets the number back cannot have its new slot cleared by us.
 *
 * The socket layer keeps using its kfd (the socket's first number).  When
 * the program closes that number while dup'ed descriptors live on, the
 * socket layer is moved to a private copy of the kernel socket (same
 * description), closed with the last descriptor, and the program's number
 * is really closed.  Only if no copy can be made does the number stay open,
 * hidden (EBADF to the program, not reused) until the last descriptor goes.
 */
static int ipx_close_fd(int fd)
{
	struct ipx_file *f;
	void *old;
	int r, nk;

	if (fdtab_peek(fd) == NULL)
		return real.close(fd);
	f = ipx_get_raw(fd);
	if (f == NULL)
		return real.close(fd);
	if (f->kind == IPX_SOCK && fd == lsock_kfd(f->sock)) {
		/* Forked children holding the socket count as descriptors. */
		bool shared = !ipx_relay_child && lsock_remote_refs(f->sock) > 0;

		pthread_mutex_lock(&ipx_lock);
		if ((f->nfd > 1 || shared) && fdtab_peek(fd) == f && f->priv_kfd < 0) {
			nk = ipx_private_dup(fd);
			if (nk < 0) {
				f->priv_kfd = fd;
				fdtab_swap(fd, &ipx_private, &old);
				pthread_mutex_unlock(&ipx_lock);
				ipx_put(f);
				ipx_detach(old);
				return 0;
			}
			lsock_set_kfd(f->sock, nk);
			f->priv_kfd = nk;
		}
		pthread_mutex_unlock(&ipx_lock);
	}
	ipx_put(f);
	fdtab_swap(fd, NULL, &old);
	r = real.close(fd);
	if (old != NULL)
		ipx_detach(old);
	return r;
}

IPX_EXPORT int close(int fd)
{
	real_init();
	if (ipx_fd_private(fd)) {
		errno = EBADF;
		return -1;
	}
	return ipx_close_fd(fd);
}

static int ipx_sys_close_range(unsigned int lo, unsigned int hi, int flags)
{
	if (real.close_range != NULL)
		return real.close_range(lo, hi, flags);
	return (int)syscall(SYS_close_range, lo, hi, flags);
}

/* The lowest runtime-private descriptor >= from (INT_MAX: none): the
 * stack's (a handful) and the interposition's (fd table slots). */
static unsigned int ipx_next_private(unsigned int from, const int *sfds, int nsfds, int limit)
{
	unsigned int best = INT_MAX;

	for (int i = 0; i < nsfds; i++)
		if (sfds[i] >= 0 && (unsigned int)sfds[i] >= from && (unsigned int)sfds[i] < best)
			best = (unsigned int)sfds[i];
	for (unsigned int fd = from; fd < best && fd < (unsigned int)limit; fd++)
		if (fdtab_peek((int)fd) == &ipx_private)
			return fd;
	return best;
}

/*
 * close_range(2) and closefrom(3) (daemons close everything they inherited)
 * must neither close the runtime's private descriptors nor make libOS
 * sockets vanish behind the socket layer's back.  So: libOS descriptors in
 * the range go through close() one by one (their close semantics run), then
 * the kernel closes the rest in sub-ranges that skip the private ones.
 * CLOSE_RANGE_CLOEXEC closes nothing and the private descriptors are
 * close-on-exec anyway: it goes to the kernel as it is; CLOSE_RANGE_UNSHARE
 * unshares the table first, as the kernel would.
 *
 * In a vfork() child (it shares our memory but has its own descriptor
 * table) the fd table is the parent's: the bookkeeping is left alone and the
 * kernel closes the child's copies only.  Nothing here allocates.
 */
static int ipx_close_range(unsigned int lo, unsigned int hi, int flags)
{
	int sfds[CTL_MAX_FDS], nsfds = 0, limit, pid, r = 0;
	unsigned int cur, p;

	real_init();
	if (lo > hi || (flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC)) ||
	    (flags & CLOSE_RANGE_CLOEXEC))
		return ipx_sys_close_range(lo, hi, flags);
	if ((flags & CLOSE_RANGE_UNSHARE) && unshare(CLONE_FILES) < 0)
		return -1;
	if (stack_private_fds != NULL)
		nsfds = stack_private_fds(sfds, CTL_MAX_FDS);
	if (lo > INT_MAX)
		return 0;	/* no descriptor has such a number */
	if (hi > INT_MAX)
		hi = INT_MAX;

	limit = fdtab_limit();
	pid = atomic_load_explicit(&ipx_pid, memory_order_relaxed);
	if (pid == 0 || pid == (int)getpid()) {
		for (unsigned int fd = lo; fd <= hi && fd < (unsigned int)limit; fd++) {
			void *o = fdtab_peek((int)fd);

			if (o != NULL && o != &ipx_private)
				ipx_close_fd((int)fd);
		}
		limit = fdtab_limit();	/* closing may have made private copies */
	}
	for (cur = lo; cur <= hi; cur = p + 1) {
		p = ipx_next_private(cur, sfds, nsfds, limit);
		if (p > cur && ipx_sys_close_range(cur, p - 1 < hi ? p - 1 : hi, 0) < 0 && r == 0)
			r = -1;
		if (p >= hi)
			break;
	}
	return r;
}

IPX_EXPORT int close_range(unsigned int lo, unsigned int hi, int flags)
{
	return ipx_close_range(lo, hi, flags);
}

/*
 * closefrom() cannot fail.  Without close_range(2) (kernels before 5.9)
 * close one by one up to the descriptor limit, as glibc's fallback does
 * with /proc (bounded, so an unlimited limit does not loop for ever).
 */
IPX_EXPORT void closefrom(int lo)
{
	struct rlimit rl;
	long max = 1L << 20;

	if (lo < 0)
		lo = 0;
	if (ipx_close_range((unsigned int)lo, ~0U, 0) == 0)
		return;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)max)
		max = (long)rl.rlim_cur;
	for (long fd = lo; fd < max; fd++)
		if (!ipx_fd_private((int)fd))
			ipx_close_fd((int)fd);
}

/* After the kernel made newfd a copy of fd: make our slot agree. */
static int ipx_dup_finish(int fd, int newfd)
{
	struct ipx_file *f;
	void *old;
	int err;

	f = ipx_get_raw(fd);
	if (f == &ipx_private) {
		ipx_put(f);
		f = NULL;
	}
	if (f == NULL) {
		/* newfd is a kernel fd now; it may have named one of ours. */
		fdtab_swap(newfd, NULL, &old);
		if (old != NULL)
			ipx_detach(old);
		return newfd;
	}
	err = ipx_attach(f, newfd);
	ipx_put(f);
	if (err < 0) {
		real.close(newfd);
		errno = -err;
		return -1;
	}
	return newfd;
}

/* A private descriptor as the source of a copy: the program must not reach it. */
static bool ipx_dup_denied(int fd)
{
	return ipx_fd_private(fd) && !ipx_priv_ok();
}

IPX_EXPORT int dup(int fd)
{
	int nfd;

	real_init();
	if (ipx_dup_denied(fd)) {
		errno = EBADF;
		return -1;
	}
	ipx_relay_pre_dup(fd);
	nfd = real.dup(fd);
	if (nfd < 0 || fdtab_peek(fd) == NULL)
		return nfd;
	return ipx_dup_finish(fd, nfd);
}

static int ipx_dup3(int fd, int fd2, int flags, bool is_dup2)
{
	int r;

	real_init();
	if ((fd != fd2 && ipx_fd_private(fd2)) || ipx_dup_denied(fd)) {
		errno = EBADF;
		return -1;
	}
	ipx_relay_pre_dup(fd);
	r = is_dup2 ? real.dup2(fd, fd2) : real.dup3(fd, fd2, flags);
	if (r < 0 || fd == fd2)
		return r;
	if (fdtab_peek(fd) == NULL && fdtab_peek(fd2) == NULL)
		return r;
	return ipx_dup_finish(fd, fd2);
}

IPX_EXPORT int dup2(int fd, int fd2)
{
	return ipx_dup3(fd, fd2, 0, true);
}

IPX_EXPORT int dup3(int fd, int fd2, int flags)
{
	return ipx_dup3(fd, fd2, flags, false);
}

/*
 * fcntl on a libOS socket: O_NONBLOCK belongs to the lsock (and is mirrored
 * on the kernel fd, which shares the description); the dup commands make a
 * new slot; everything else is the kernel fd's business.
 */
static int ipx_fcntl(int fd, int cmd, long arg, bool is64)
{
	struct ipx_file *f;
	int r;
	int (*rf)(int, int, ...) = (int (*)(int, int, ...))real.fcntl;

	real_init();
	if (is64 && real.fcntl64 != NULL)
		rf = (int (*)(int, int, ...))real.fcntl64;
	if (fdtab_peek(fd) == NULL) {
		/* The stack's private descriptors are invisible to the app. */
		if (stack_fd_is_private != NULL && stack_fd_is_private(fd)) {
			errno = EBADF;
			return -1;
		}
		return rf(fd, cmd, arg);
	}
	if (fdtab_peek(fd) == &ipx_private) {
		if (!ipx_priv_ok()) {
			errno = EBADF;
			return -1;
		}
		/* The runtime's own copies (the volume's of the image) go
		 * up among the private numbers too. */
		if ((cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && arg < ipx_private_base())
			arg = ipx_private_base();
		return rf(fd, cmd, arg);
	}
	switch (cmd) {
	case F_DUPFD:
	case F_DUPFD_CLOEXEC:
		ipx_relay_pre_dup(fd);
		r = rf(fd, cmd, arg);
		if (r < 0)
			return r;
		return ipx_dup_finish(fd, r);
	case F_GETFL:
	case F_SETFL:
		break;
	default:
		if (ipx_vfile_fcntl == NULL)
			return rf(fd, cmd, arg);
		break;
	}
	f = ipx_get_raw(fd);
	if (f != NULL && f->kind == IPX_VFILE) {
		bool done = false;

		r = ipx_vfile_fcntl(f, cmd, arg, &done);
		ipx_put(f);
		return done ? (int)ipx_ret(r) : rf(fd, cmd, arg);
	}
	if (f != NULL)
		ipx_put(f);
	if (cmd != F_GETFL && cmd != F_SETFL)
		return rf(fd, cmd, arg);
	f = ipx_get_sock(fd);
	if (f == NULL)
		return rf(fd, cmd, arg);
	if (cmd == F_GETFL) {
		r = rf(fd, F_GETFL, 0L);
		if (r >= 0)
			r = (r & ~O_NONBLOCK) | (lsock_nonblock(f->sock) ? O_NONBLOCK : 0);
	} else {
		/*
		 * O_NONBLOCK is the socket's.  It is set on the kernel fd too
		 * but never cleared there: the socket layer may need its kfd
		 * non-blocking (a listener accepts loopback clients from it),
		 * and F_GETFL answers from the socket anyway.  The other
		 * flags (O_ASYNC...) are the kernel fd's.
		 */
		r = rf(fd, F_GETFL, 0L);
		if (r >= 0)
			r = rf(fd, F_SETFL, (arg & ~(long)O_NONBLOCK) | (r & O_NONBLOCK) |
					     (arg & O_NONBLOCK));
		if (r >= 0)
			lsock_set_nonblock(f->sock, (arg & O_NONBLOCK) != 0);
	}
	ipx_put(f);
	return r;
}

IPX_EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	long arg;

	va_start(ap, cmd);
	arg = va_arg(ap, long);
	va_end(ap);
	return ipx_fcntl(fd, cmd, arg, false);
}

IPX_EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	long arg;

	va_start(ap, cmd);
	arg = va_arg(ap, long);
	va_end(ap);
	return ipx_fcntl(fd, cmd, arg, true);
}
