/* poll, ppoll, select, pselect over mixed kernel and libOS descriptors. */
#undef _FORTIFY_SOURCE
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>

#include "ipx/ipx.h"
#include "stack/stack.h"

int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen);
extern void __chk_fail(void) __attribute__((noreturn));

/* A libOS socket in one poll call. */
struct ipx_pent {
	struct ipx_file *f;
	int idx;		/* in the caller's array */
	uint32_t ke;		/* its kernel fd's events, 0: not polled */
	struct lsock_watch w;
};

/* With the stack lock held: wake the polling thread. */
static void ipx_poll_notify(struct lsock_watch *w, uint32_t events)
{
	lsock_waiter_wake(w->arg);
}

/* The POLL* bits a requested mask may report; POLL* and EPOLL* values are
 * the same on Linux, the *NORM variants follow their plain bits. */
static short ipx_poll_revents(uint32_t ready, short events)
{
	uint32_t r = ready;

	if (r & POLLIN)
		r |= POLLRDNORM;
	if (r & POLLOUT)
		r |= POLLWRNORM;
	return (short)(r & ((uint32_t)(unsigned short)events | POLLERR | POLLHUP));
}

static void ipx_deadline(struct timespec *d, const struct timespec *t)
{
	clock_gettime(CLOCK_MONOTONIC, d);
	d->tv_sec += t->tv_sec;
	d->tv_nsec += t->tv_nsec;
	if (d->tv_nsec >= 1000000000) {
		d->tv_sec++;
		d->tv_nsec -= 1000000000;
	}
}

/* Time left until d (zero when passed). */
static struct timespec ipx_left(const struct timespec *d)
{
	struct timespec now, l;

	clock_gettime(CLOCK_MONOTONIC, &now);
	l.tv_sec = d->tv_sec - now.tv_sec;
	l.tv_nsec = d->tv_nsec - now.tv_nsec;
	if (l.tv_nsec < 0) {
		l.tv_sec--;
		l.tv_nsec += 1000000000;
	}
	if (l.tv_sec < 0)
		l.tv_sec = l.tv_nsec = 0;
	return l;
}

/*
 * The mixed case.  ents[] are the libOS sockets (pinned); the kernel fds
 * and the libOS sockets' kernel sides go into one pollfd array that is
 * checked without waiting at each turn and slept on by the waiter.
 *
 * As Linux's poll, the call holds the sockets while it waits (a close in
 * another thread neither wakes it nor closes the socket, see
 * lsock_busy_get) and looks each number up again at every turn: a number
 * closed meanwhile reports POLLNVAL to poll, and to select (sel) Linux's
 * DEFAULT_POLLMASK, i.e. readable and writable as requested.
 */
static int ipx_poll_mixed(struct pollfd *fds, nfds_t n, struct ipx_pent *ents, int nents,
			  const struct timespec *t, const sigset_t *mask, struct timespec *left,
			  bool sel)
{
	struct timespec deadline, zero = { 0, 0 }, l;
	struct pollfd *kp;
	int *kmap;		/* kp index -> fds index; -1 - i for ents[i]'s kfd */
	struct lsock_waiter *w;
	int kn = 0, i, j, cnt, r, ms;
	long lms;
	uint32_t ev;

	kp = calloc(n + (nfds_t)nents + 1, sizeof(*kp));
	kmap = calloc(n + (nfds_t)nents + 1, sizeof(*kmap));
	w = lsock_waiter_self();
	if (kp == NULL || kmap == NULL || w == NULL) {
		free(kp);
		free(kmap);
		return -ENOMEM;
	}
	for (i = 0, j = 0; i < (int)n; i++) {
		if (j < nents && ents[j].idx == i) {
			j++;
			continue;
		}
		kp[kn].fd = fds[i].fd;
		kp[kn].events = fds[i].events;
		kmap[kn++] = i;
	}
	for (j = 0; j < nents; j++) {
		ents[j].w.notify = ipx_poll_notify;
		ents[j].w.arg = w;
		lsock_busy_get(ents[j].f->sock);
		lsock_watch_add(ents[j].f->sock, &ents[j].w);
		ents[j].ke = lsock_kernel_events(ents[j].f->sock);
		if (ents[j].ke != 0) {
			int kfd = lsock_kfd(ents[j].f->sock);

			kp[kn].fd = kfd >= 0 ? kfd : fds[ents[j].idx].fd;
			kp[kn].events = (short)ents[j].ke;
			kmap[kn++] = -1 - j;
		}
	}
	if (t != NULL)
		ipx_deadline(&deadline, t);

	for (;;) {
		lsock_waiter_arm(w);
		for (i = 0; i < (int)n; i++)
			fds[i].revents = 0;
		for (j = 0; j < nents; j++) {
			if (fdtab_peek(fds[ents[j].idx].fd) != ents[j].f) {
				fds[ents[j].idx].revents = sel ? (short)(fds[ents[j].idx].events &
									 (POLLIN | POLLOUT)) : POLLNVAL;
				/* Its kernel side went with the number: stop
				 * polling it (negative fds are ignored). */
				ents[j].ke = 0;
				for (i = 0; i < kn; i++)
					if (kmap[i] == -1 - j)
						kp[i].fd = -1;
				continue;
			}
			ev = lsock_events(ents[j].f->sock);
			fds[ents[j].idx].revents = ipx_poll_revents(ev, fds[ents[j].idx].events);
		}
		if (kn > 0) {
			r = real.ppoll(kp, (nfds_t)kn, &zero, NULL);
			if (r < 0) {
				r = -errno;
				break;
			}
			for (i = 0; i < kn; i++) {
				if (kmap[i] >= 0) {
					fds[kmap[i]].revents = kp[i].revents;
				} else {
					j = -1 - kmap[i];
					/* ke is 0 once the number was closed. */
					ev = (uint32_t)kp[i].revents & ents[j].ke;
					fds[ents[j].idx].revents |=
						ipx_poll_revents(ev, fds[ents[j].idx].events);
				}
			}
		}
		for (i = 0, cnt = 0; i < (int)n; i++)
			if (fds[i].revents != 0)
				cnt++;
		if (cnt > 0) {
			r = cnt;
			break;
		}
		if (t != NULL) {
			l = ipx_left(&deadline);
			if (l.tv_sec == 0 && l.tv_nsec == 0) {
				r = 0;
				break;
			}
			lms = l.tv_sec * 1000 + (l.tv_nsec + 999999) / 1000000;
			ms = lms > INT_MAX ? INT_MAX : (int)lms;
		} else {
			ms = -1;
		}
		r = lsock_waiter_sleep(w, kp, kn, ms, mask);
		if (r == -EINTR)
			break;
	}
	for (j = 0; j < nents; j++) {
		lsock_watch_del(ents[j].f->sock, &ents[j].w);
		lsock_busy_put(ents[j].f->sock);
	}
	if (left != NULL && t != NULL)
		*left = ipx_left(&deadline);
	free(kp);
	free(kmap);
	return r;
}

/*
 * The pollfd entry point of every variant.  Returns >= 0, or -1 with errno
 * (the kernel-only path is libc's ppoll and sets errno itself).  *left, when
 * given, receives the time left (select updates its timeval with it).
 */
static int ipx_poll_any(struct pollfd *fds, nfds_t n, const struct timespec *t,
			const sigset_t *mask, struct timespec *left, bool sel);

/*
 * Volume files are always readable and writable, as regular files are on
 * Linux (their O_PATH descriptor would say POLLNVAL): they are taken out of
 * the set (fd -1, which the kernel skips), the rest is polled without
 * waiting when one of them is ready, and they are put back with their
 * answer.  Returns -ENOSYS when the set has none.
 */
#define IPX_FILE_READY (POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM)

/* A runtime-private descriptor in the program's set: POLLNVAL, as a
 * closed number (select: EBADF), never the kernel's readiness. */
static bool ipx_poll_hidden(const struct ipx_file *f)
{
	return f == &ipx_private && !ipx_priv_ok();
}
static int ipx_poll_vfiles(struct pollfd *fds, nfds_t n, const struct timespec *t,
			   const sigset_t *mask, struct timespec *left, bool sel)
{
	static const struct timespec zero;
	int nv = 0, r, i, k = 0;
	bool ready = false;

	for (i = 0; i < (int)n; i++) {
		struct ipx_file *f;

		if (fdtab_peek(fds[i].fd) == NULL || (f = ipx_get_raw(fds[i].fd)) == NULL)
			continue;
		if (f->kind == IPX_VFILE || ipx_poll_hidden(f))
			nv++;
		ipx_put(f);
	}
	if (nv == 0)
		return -ENOSYS;

	int idx[nv], saved[nv];
	bool nval[nv];

	for (i = 0; i < (int)n && k < nv; i++) {
		struct ipx_file *f;

		if (fdtab_peek(fds[i].fd) == NULL || (f = ipx_get_raw(fds[i].fd)) == NULL)
			continue;
		if (f->kind == IPX_VFILE || ipx_poll_hidden(f)) {
			nval[k] = f->kind != IPX_VFILE;
			idx[k] = i;
			saved[k++] = fds[i].fd;
			fds[i].fd = -1;
			if ((fds[i].events & IPX_FILE_READY) || nval[k - 1])
				ready = true;
		}
		ipx_put(f);
	}
	r = ipx_poll_any(fds, n, ready ? &zero : t, mask, left, sel);
	for (i = 0; i < k; i++) {
		struct pollfd *p = &fds[idx[i]];

		p->fd = saved[i];
		p->revents = nval[i] ? POLLNVAL : (short)(p->events & IPX_FILE_READY);
		if (r >= 0 && p->revents != 0)
			r++;
	}
	return r;
}

static int ipx_poll_any(struct pollfd *fds, nfds_t n, const struct timespec *t,
			const sigset_t *mask, struct timespec *left, bool sel)
{
	struct ipx_pent *ents = NULL;
	struct ipx_file *f;
	int nents = 0, cap = 0, r, i;
	struct timespec t0;
	void *p;

	real_init();
	if (ipx_vfile_rw != NULL) {
		r = ipx_poll_vfiles(fds, n, t, mask, left, sel);
		if (r != -ENOSYS)
			return r;
	}
	for (i = 0; i < (int)n; i++) {
		if (fdtab_peek(fds[i].fd) == NULL)
			continue;
		f = ipx_get(fds[i].fd);
		if (f == NULL)
			continue;
		if (f->kind == IPX_EPOLL) {
			/* Polled from outside: readable through its doorbell. */
			atomic_store(&f->ep->core.always_ring, true);
			ipx_epoll_sync_doorbell(f->ep);
		}
		if (f->kind != IPX_SOCK) {
			ipx_put(f);
			continue;
		}
		if (nents == cap) {
			cap = cap ? 2 * cap : 8;
			p = realloc(ents, (size_t)cap * sizeof(*ents));
			if (p == NULL) {
				ipx_put(f);
				r = -ENOMEM;
				goto out;
			}
			ents = p;
		}
		memset(&ents[nents], 0, sizeof(ents[nents]));
		ents[nents].f = f;
		ents[nents].idx = i;
		nents++;
	}
	if (nents == 0) {
		free(ents);
		if (left == NULL || t == NULL)
			return real.ppoll(fds, n, t, mask);
		ipx_deadline(&t0, t);
		r = real.ppoll(fds, n, t, mask);
		i = errno;
		*left = ipx_left(&t0);
		errno = i;
		return r;
	}
	r = ipx_poll_mixed(fds, n, ents, nents, t, mask, left, sel);
out:
	for (i = 0; i < nents; i++)
		ipx_put(ents[i].f);
	free(ents);
	return (int)ipx_ret(r);
}

IPX_EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	struct timespec t;

	if (timeout < 0)
		return ipx_poll_any(fds, n, NULL, NULL, NULL, false);
	t.tv_sec = timeout / 1000;
	t.tv_nsec = (long)(timeout % 1000) * 1000000;
	return ipx_poll_any(fds, n, &t, NULL, NULL, false);
}

IPX_EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *t,
		     const sigset_t *mask)
{
	if (t != NULL && (t->tv_sec < 0 || t->tv_nsec < 0 || t->tv_nsec >= 1000000000)) {
		errno = EINVAL;
		return -1;
	}
	return ipx_poll_any(fds, n, t, mask, NULL, false);
}

IPX_EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen)
{
	if (fdslen / sizeof(*fds) < n)
		__chk_fail();
	return poll(fds, n, timeout);
}

/*
 * select on top of poll.  The sets are read as bit arrays of the caller's
 * nfds bits, not through FD_ISSET (whose fortified form rejects
 * fd >= FD_SETSIZE): glibc and Linux accept larger sets the caller
 * allocated, and so do we.  The result counts set bits, as Linux does.
 */
#define IPX_NFDBITS (8 * (int)sizeof(unsigned long))
#define IPX_IN_SET (POLLIN | POLLRDNORM | POLLRDBAND | POLLHUP | POLLERR)
#define IPX_OUT_SET (POLLOUT | POLLWRNORM | POLLWRBAND | POLLERR)
#define IPX_EX_SET (POLLPRI)

static bool ipx_bit(const fd_set *s, int fd)
{
	const unsigned long *b = (const unsigned long *)s;

	return s != NULL && (b[fd / IPX_NFDBITS] >> (fd % IPX_NFDBITS)) & 1;
}

static void ipx_bit_set(fd_set *s, int fd)
{
	((unsigned long *)s)[fd / IPX_NFDBITS] |= 1UL << (fd % IPX_NFDBITS);
}

static void ipx_set_clear(fd_set *s, int nfds)
{
	if (s != NULL)
		memset(s, 0, (size_t)((nfds + IPX_NFDBITS - 1) / IPX_NFDBITS) * sizeof(unsigned long));
}

static int ipx_select(int nfds, fd_set *rs, fd_set *ws, fd_set *es, const struct timespec *t,
		      const sigset_t *mask, struct timespec *left)
{
	struct pollfd *p;
	int fd, np = 0, r, cnt = 0, i;
	bool ours = false;

	for (fd = 0; fd < nfds; fd++)
		if ((ipx_bit(rs, fd) || ipx_bit(ws, fd) || ipx_bit(es, fd)) &&
		    fdtab_peek(fd) != NULL)
			ours = true;
	if (!ours)
		return -ENOSYS;		/* the caller uses libc's */
	p = calloc((size_t)nfds, sizeof(*p));
	if (p == NULL)
		return (int)ipx_ret(-ENOMEM);
	for (fd = 0; fd < nfds; fd++) {
		short ev = (short)((ipx_bit(rs, fd) ? POLLIN : 0) | (ipx_bit(ws, fd) ? POLLOUT : 0) |
				   (ipx_bit(es, fd) ? POLLPRI : 0));
		if (ev == 0)
			continue;
		p[np].fd = fd;
		p[np].events = ev;
		np++;
	}
	r = ipx_poll_any(p, (nfds_t)np, t, mask, left, true);
	if (r < 0) {
		free(p);
		return -1;
	}
	for (i = 0; i < np; i++)
		if (p[i].revents & POLLNVAL) {
			free(p);
			errno = EBADF;
			return -1;
		}
	ipx_set_clear(rs, nfds);
	ipx_set_clear(ws, nfds);
	ipx_set_clear(es, nfds);
	for (i = 0; i < np && r > 0; i++) {
		if ((p[i].events & POLLIN) && (p[i].revents & IPX_IN_SET)) {
			ipx_bit_set(rs, p[i].fd);
			cnt++;
		}
		if ((p[i].events & POLLOUT) && (p[i].revents & IPX_OUT_SET)) {
			ipx_bit_set(ws, p[i].fd);
			cnt++;
		}
		if ((p[i].events & POLLPRI) && (p[i].revents & IPX_EX_SET)) {
			ipx_bit_set(es, p[i].fd);
			cnt++;
		}
	}
	free(p);
	return cnt;
}

IPX_EXPORT int select(int nfds, fd_set *rs, fd_set *ws, fd_set *es, struct timeval *tv)
{
	struct timespec t, left;
	int r, saved;

	real_init();
	if (nfds < 0 || (tv != NULL && (tv->tv_sec < 0 || tv->tv_usec < 0))) {
		errno = EINVAL;
		return -1;
	}
	if (tv != NULL) {
		t.tv_sec = tv->tv_sec + tv->tv_usec / 1000000;
		t.tv_nsec = (tv->tv_usec % 1000000) * 1000;
		left = t;
	}
	r = ipx_select(nfds, rs, ws, es, tv ? &t : NULL, NULL, &left);
	if (r == -ENOSYS)
		return real.select(nfds, rs, ws, es, tv);
	saved = errno;
	/* Linux reports the time left in the caller's timeval. */
	if (tv != NULL) {
		tv->tv_sec = left.tv_sec;
		tv->tv_usec = left.tv_nsec / 1000;
	}
	errno = saved;
	return r;
}

IPX_EXPORT int pselect(int nfds, fd_set *rs, fd_set *ws, fd_set *es,
		       const struct timespec *t, const sigset_t *mask)
{
	int r;

	real_init();
	if (nfds < 0 || (t != NULL && (t->tv_sec < 0 || t->tv_nsec < 0 ||
				       t->tv_nsec >= 1000000000))) {
		errno = EINVAL;
		return -1;
	}
	r = ipx_select(nfds, rs, ws, es, t, mask, NULL);
	if (r == -ENOSYS)
		return real.pselect(nfds, rs, ws, es, t, mask);
	return r;
}
