/* Interposition internals shared by the wrapper files. */
#ifndef LIBRETTO_IPX_H
#define LIBRETTO_IPX_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/queue.h>

#include "ipx/epcore.h"
#include "ipx/fdtab.h"
#include "ipx/real.h"
#include "sock/lsock.h"

/* The wrappers are the only symbols the library exports. */
#define IPX_EXPORT __attribute__((visibility("default")))

enum ipx_kind {
	IPX_SOCK = 1,	/* a libOS socket (kernel socket behind it) */
	IPX_EPOLL,	/* an emulated epoll instance (kernel epoll behind it) */
	IPX_PRIV,	/* a runtime-private descriptor the app must not close */
	IPX_RELAY,	/* forked child: a kernel socket the stack's owner serves (ipx_relay.h) */
	IPX_VFILE,	/* a file or directory of a volume (ipx_file.h) */
};

struct ipx_member;
struct ipx_epoll;
struct ipx_vfile;

/*
 * One open description the runtime owns, named by every descriptor that
 * was dup'ed from the first.  refs counts the fd table slots naming it, the
 * in-flight calls that pinned it and the epoll members watching it; nfd
 * counts the slots only (changed under ipx_lock).  Memory (and the lsock's
 * hold) goes with the last ref; the close semantics go with the last nfd.
 */
struct ipx_file {
	enum ipx_kind kind;
	atomic_int refs;
	int nfd;
	struct lsock *sock;		/* IPX_SOCK */
	int domain;			/* AF_INET or AF_INET6 */
	struct ipx_epoll *ep;		/* IPX_EPOLL */
	/* A private kernel fd of this description the socket layer uses as
	 * its kfd since the program closed the original number while dups
	 * lived on (see close()); closed with the last descriptor; or -1. */
	int priv_kfd;
	LIST_HEAD(, ipx_member) members;	/* epoll sets holding it */
	struct ipx_relay_info *relay;	/* IPX_RELAY */
	/* Forked child, IPX_SOCK: the owner has been told (attached or
	 * released), or could not be (ipx_relay.c). */
	bool relay_done;
	struct ipx_vfile *vf;		/* IPX_VFILE */
};

/*
 * An emulated epoll instance.  Its number is a real kernel epoll fd, which
 * holds the app's kernel fds (untouched, so their epoll_data comes back as
 * the app set it), the doorbell eventfd, and the kernel fds of libOS members
 * whose kernel side carries events (listeners, UDP on INADDR_ANY).  Those
 * two are registered with data.u64 tags: the doorbell's is the instance's
 * address | 2, a member's its address | 1 (checked against kregs before it
 * is believed, since app data may be any value).
 */
struct ipx_epoll {
	struct epc core;
	int doorbell;		/* eventfd, private; closed with the memory */
	atomic_long spin_ns;	/* epoll_wait's spin budget (0: the maximum) */
	/* Members registered in the kernel set (under core.lock). */
	struct ipx_member **kregs;
	int nkregs, capkregs;
	/* Emulated instances the program added to this one (pinned, under
	 * core.lock): their doorbells are made exact before each wait. */
	struct ipx_file **nested;
	int nnested, capnested;
	/*
	 * On Linux epoll_wait holds the epoll file: close() of its number in
	 * another thread neither ends the wait nor drops the set.  So waits
	 * sleep on kep, a private duplicate of the kernel epoll fd (-1 if
	 * none could be made: then on the number), and the teardown of the
	 * last descriptor (ipx_epoll_destroy) waits for the waits in
	 * progress; the last one to leave performs it.
	 */
	atomic_int kep;
	atomic_int waiters;
	atomic_bool destroy_pending;
	/*
	 * Waits sleep on sleep_ep when they can: a private epoll set holding
	 * kep and the NIC's wait descriptor (sleep_nic), so that a frame wakes
	 * the waiting thread itself (ipx_epoll.c, ipx_epoll_sleep_set).  -1:
	 * not made yet; -2: cannot be made.  Changed under core.lock.
	 */
	atomic_int sleep_ep;
	atomic_int sleep_nic;
};

/* A libOS socket in an emulated epoll set. */
struct ipx_member {
	struct epc_member core;		/* first: the core's pointer casts back */
	struct lsock_watch watch;
	struct ipx_file *file;		/* a ref */
	struct ipx_epoll *ep;
	int epfd;			/* the epoll descriptor used at ADD */
	uint32_t kev;			/* events registered in the kernel set (ipx_lock) */
	bool onlist;			/* in file->members (ipx_lock) */
	LIST_ENTRY(ipx_member) flink;	/* in file->members, under ipx_lock */
};

/*
 * ipx_lock serialises descriptor counting (dup/close), the membership lists
 * and the teardown of members.  Order: ipx_lock -> stack lock -> epc lock.
 */
extern pthread_mutex_t ipx_lock;
extern struct ipx_file ipx_private;

/* Pin/unpin a file (see fdtab_get). */
void ipx_pin(void *obj);
void ipx_put(struct ipx_file *f);

extern bool ipx_relay_child;
struct ipx_file *ipx_relay_adopt(int fd, struct ipx_file *f) __attribute__((weak));

/* The file at fd, pinned, or NULL.  Also makes sure real.* is loaded.  In
 * a forked child, an inherited libOS socket is attached to the owner's
 * relay first (ipx_relay.h): the result is then an IPX_RELAY file, or NULL
 * when fd became a plain kernel descriptor. */
static inline struct ipx_file *ipx_get(int fd)
{
	struct ipx_file *f;

	real_init();
	f = fdtab_get(fd, ipx_pin);
	if (__builtin_expect(ipx_relay_child, 0) && f != NULL && f->kind == IPX_SOCK)
		f = ipx_relay_adopt(fd, f);
	return f;
}

/* ipx_get() without attaching (close, dup bookkeeping). */
static inline struct ipx_file *ipx_get_raw(int fd)
{
	real_init();
	return fdtab_get(fd, ipx_pin);
}

/* Forked child: attach an inherited socket before the kernel duplicates
 * its descriptor (dup, dup2, F_DUPFD), so the copy names the relay. */
static inline void ipx_relay_pre_dup(int fd)
{
	if (__builtin_expect(ipx_relay_child, 0)) {
		struct ipx_file *f = ipx_get(fd);

		if (f != NULL)
			ipx_put(f);
	}
}

/* The libOS socket at fd, pinned, or NULL (anything else is the kernel's). */
struct ipx_file *ipx_get_sock(int fd);

/* Make fd name f (one more descriptor).  The caller still owns its pin. */
int ipx_attach(struct ipx_file *f, int fd);
/* A slot that named f was cleared: one descriptor less (f's slot ref). */
void ipx_detach(struct ipx_file *f);
/* A new file of the given kind with refs 1 and nfd 0, or NULL. */
struct ipx_file *ipx_file_new(enum ipx_kind kind);

/* A close-on-exec duplicate of fd at a high number, marked private, or -1. */
int ipx_private_dup(int fd);
/* The lowest number private descriptors are moved to (see ipx_private_dup). */
long ipx_private_base(void);
/*
 * Move fd to a high private number (close-on-exec only with cloexec: a
 * descriptor an exec'd image needs stays inheritable): the new number, fd
 * closed.  When no copy can be made fd stays where it is, marked private,
 * and is returned.
 */
int ipx_private_move(int fd, bool cloexec);

/*
 * Private descriptors are invisible to the program: every call on one
 * (dup source, read, write, pread, lseek, fstat, mmap, ioctl, fcntl...)
 * fails with EBADF, as if the number were closed.  The runtime itself
 * reaches some of them through the interposed names (the volume's I/O on
 * the image: pread, pwrite, fcntl, fdatasync of libretto.so): it does so
 * between ipx_rt_enter() and ipx_rt_leave() on its thread (vfs_direct.c).
 * The check costs nothing on a kernel descriptor: it is made only where a
 * wrapper found a runtime object in the slot.
 */
extern __thread unsigned ipx_rt_depth __attribute__((tls_model("initial-exec")));

static inline void ipx_rt_enter(void)
{
	ipx_rt_depth++;
}

static inline void ipx_rt_leave(void)
{
	ipx_rt_depth--;
}

/* A lookup found a private descriptor: may this call use it? */
static inline bool ipx_priv_ok(void)
{
	return ipx_rt_depth != 0;
}
/* Whether the app must not close or replace fd. */
bool ipx_fd_private(int fd);
/* Mark/unmark a runtime-private descriptor. */
int ipx_private_add(int fd);
void ipx_private_del(int fd);

/* -errno -> -1 with errno; anything else unchanged. */
static inline long ipx_ret(long r)
{
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

/* epoll internals used by close, bind/listen and poll. */
void ipx_epoll_destroy(struct ipx_epoll *ep);	/* last descriptor closed (deferred past waits) */
void ipx_epoll_free(struct ipx_epoll *ep);	/* last reference gone */
void ipx_member_remove_all(struct ipx_file *f);
/* The instance is watched from outside (nested, polled): make its doorbell
 * say exactly whether a member is ready now. */
void ipx_epoll_sync_doorbell(struct ipx_epoll *ep);
/* The socket is now the kernel's: move its epoll registrations there. */
void ipx_member_convert_all(struct ipx_file *f);
/* The socket's kernel side may carry new events: register them. */
void ipx_members_kcheck(struct ipx_file *f);

/*
 * Volume files (ipx_file*.c, only in libretto.so; weak, so the wrappers
 * link without them in the unit tests).  Their descriptor is an O_PATH
 * descriptor of the image, so the kernel refuses every data call on it:
 * the wrappers that exist for sockets hand an IPX_VFILE to these.
 *   ipx_vfile_rw: read/write/readv/writev at the file offset; returns the
 *     count or -errno; drops the caller's pin.
 *   ipx_vfile_fcntl: *done false: the kernel's command (dup, FD flags).
 *   ipx_vfile_ioctl: the file's ioctls (FICLONE: -EOPNOTSUPP...).
 *   ipx_vfile_sendfile: in is a volume file: *ret is the result (-1/errno
 *     convention), returns false when in is not one.
 *   ipx_vfile_close: one descriptor of the file was closed (POSIX locks).
 *   ipx_vfile_free: the last reference went (the inode's open reference).
 */
ssize_t ipx_vfile_rw(struct ipx_file *f, const struct iovec *iov, int cnt, bool wr) __attribute__((weak));
int ipx_vfile_fcntl(struct ipx_file *f, int cmd, long arg, bool *done) __attribute__((weak));
int ipx_vfile_ioctl(struct ipx_file *f, unsigned long req, void *arg) __attribute__((weak));
bool ipx_vfile_sendfile(int out, int in, off_t *off, size_t n, ssize_t *ret) __attribute__((weak));
void ipx_vfile_close(struct ipx_file *f) __attribute__((weak));
void ipx_vfile_free(struct ipx_file *f) __attribute__((weak));

/* The kernel-side readiness of a libOS socket's kfd (EPOLL* bits within
 * lsock_kernel_events()), polled now. */
uint32_t ipx_kernel_ready(struct ipx_file *f, int fd);

#endif
