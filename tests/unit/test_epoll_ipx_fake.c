/*
 * A fake socket layer and stack for test_epoll_ipx: implements lsock.h and
 * the stack calls the interposition layer uses, without lwIP.  Only UDP on
 * an in-process "network": a datagram sent to 10.x.x.x:port lands in the
 * queue of the fake socket bound to that port; 127.0.0.0/8 is the kernel's
 * (-EXDEV).  The waiters follow lsock.h's protocol on an eventfd.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "ipx/real.h"
#include "sock/lsock.h"
#include "stack/stack.h"

#define FK_QLEN 16
#define FK_DGRAM 512

struct fk_dgram {
	uint16_t src;
	size_t len;
	char data[FK_DGRAM];
};

struct lsock {
	int kfd, type;
	atomic_int refs;
	int fd_refs;
	bool closed;
	atomic_bool nonblock;
	uint16_t port, peer;
	struct fk_dgram q[FK_QLEN];
	int qhead, qlen;
	LIST_HEAD(, lsock_watch) watches;
};

static pthread_mutex_t fk_lock = PTHREAD_MUTEX_INITIALIZER;
static struct lsock *fk_ports[65536];
int fk_live;	/* lsocks not yet freed */

int stack_init(void) { return 0; }
bool stack_active(void) { return true; }
void stack_lock(void) { pthread_mutex_lock(&fk_lock); }
void stack_unlock(void) { pthread_mutex_unlock(&fk_lock); }
int stack_poll(int budget) { return 0; }
bool stack_fd_is_private(int fd) { return false; }

static uint32_t fk_events_locked(struct lsock *s)
{
	if (s->closed)
		return EPOLLHUP;
	return (s->qlen ? EPOLLIN : 0) | EPOLLOUT;
}

static void fk_notify(struct lsock *s)
{
	struct lsock_watch *w;
	uint32_t ev = fk_events_locked(s);

	LIST_FOREACH(w, &s->watches, link)
		w->notify(w, ev);
}

/* This fake serves AF_INET only: AF_INET6 sockets stay the kernel's. */
int lsock_create(int kfd, int type, struct lsock **out);

int lsock_create_domain(int kfd, int domain, int type, struct lsock **out)
{
	if (domain != AF_INET)
		return -EAFNOSUPPORT;
	return lsock_create(kfd, type, out);
}

int lsock_create(int kfd, int type, struct lsock **out)
{
	struct lsock *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return -ENOMEM;
	s->kfd = kfd;
	s->type = type;
	atomic_init(&s->refs, 1);
	LIST_INIT(&s->watches);
	__atomic_fetch_add(&fk_live, 1, __ATOMIC_SEQ_CST);
	*out = s;
	return 0;
}

void lsock_hold(struct lsock *s) { atomic_fetch_add(&s->refs, 1); }

void lsock_drop(struct lsock *s)
{
	if (atomic_fetch_sub(&s->refs, 1) == 1) {
		__atomic_fetch_sub(&fk_live, 1, __ATOMIC_SEQ_CST);
		free(s);
	}
}

void lsock_fd_get(struct lsock *s)
{
	stack_lock();
	s->fd_refs++;
	stack_unlock();
}

void lsock_fd_put(struct lsock *s)
{
	stack_lock();
	if (--s->fd_refs == 0 && !s->closed) {
		s->closed = true;
		if (s->port && fk_ports[s->port] == s)
			fk_ports[s->port] = NULL;
		fk_notify(s);
	}
	stack_unlock();
}

/* No forked children in these tests: nothing holds remote references. */
int lsock_remote_refs(struct lsock *s) { (void)s; return 0; }
/* poll holds the sockets it waits on; the fake closes at the last fd_put regardless. */
void lsock_busy_get(struct lsock *s) { (void)s; }
void lsock_busy_put(struct lsock *s) { (void)s; }
bool lsock_fd_put_kfd(struct lsock *s, int kfd)
{
	(void)kfd;
	lsock_fd_put(s);
	return false;
}

int lsock_kfd(const struct lsock *s) { return s->kfd; }
void lsock_set_kfd(struct lsock *s, int kfd) { s->kfd = kfd; }
bool lsock_is_stream(const struct lsock *s) { return s->type == SOCK_STREAM; }
void lsock_set_nonblock(struct lsock *s, bool on) { atomic_store(&s->nonblock, on); }
bool lsock_nonblock(const struct lsock *s) { return atomic_load(&((struct lsock *)s)->nonblock); }

int lsock_bind(struct lsock *s, const struct sockaddr *sa, socklen_t len)
{
	const struct sockaddr_in *sin = (const void *)sa;
	uint16_t p;

	if (len < sizeof(*sin) || sin->sin_family != AF_INET)
		return -EINVAL;
	p = ntohs(sin->sin_port);
	stack_lock();
	if (p == 0 || fk_ports[p] != NULL) {
		stack_unlock();
		return p ? -EADDRINUSE : -EINVAL;
	}
	fk_ports[p] = s;
	s->port = p;
	stack_unlock();
	return 0;
}

int lsock_listen(struct lsock *s, int backlog) { return -EOPNOTSUPP; }

int lsock_accept(struct lsock *s, struct lsock **new_s, int *new_kfd,
		 struct sockaddr *sa, socklen_t *len, int flags)
{
	return -EOPNOTSUPP;
}

int lsock_connect(struct lsock *s, const struct sockaddr *sa, socklen_t len)
{
	const struct sockaddr_in *sin = (const void *)sa;

	if (len < sizeof(*sin) || sin->sin_family != AF_INET)
		return -EINVAL;
	if ((ntohl(sin->sin_addr.s_addr) >> 24) == 127)
		return -EXDEV;
	stack_lock();
	s->peer = ntohs(sin->sin_port);
	stack_unlock();
	return 0;
}

int lsock_shutdown(struct lsock *s, int how) { return -ENOTCONN; }

ssize_t lsock_sendmsg(struct lsock *s, const struct msghdr *msg, int flags)
{
	const struct sockaddr_in *sin = msg->msg_name;
	struct lsock *d;
	struct fk_dgram *g;
	size_t n = 0, i, c;
	uint16_t dport;

	stack_lock();
	if (s->closed) {
		stack_unlock();
		return -EBADF;
	}
	dport = sin ? ntohs(sin->sin_port) : s->peer;
	if (dport == 0) {
		stack_unlock();
		return -EDESTADDRREQ;
	}
	d = fk_ports[dport];
	for (i = 0; i < msg->msg_iovlen; i++)
		n += msg->msg_iov[i].iov_len;
	if (d != NULL && d->qlen < FK_QLEN && n <= FK_DGRAM) {
		g = &d->q[(d->qhead + d->qlen++) % FK_QLEN];
		g->src = s->port;
		g->len = 0;
		for (i = 0; i < msg->msg_iovlen; i++) {
			c = msg->msg_iov[i].iov_len;
			memcpy(g->data + g->len, msg->msg_iov[i].iov_base, c);
			g->len += c;
		}
		fk_notify(d);
	}
	stack_unlock();
	return (ssize_t)n;
}

static void fk_wake(struct lsock_watch *w, uint32_t ev)
{
	lsock_waiter_wake(w->arg);
}

ssize_t lsock_recvmsg(struct lsock *s, struct msghdr *msg, int flags)
{
	struct lsock_waiter *w = NULL;
	struct lsock_watch watch = { .notify = fk_wake };
	struct fk_dgram *g;
	size_t off = 0, i, c;
	int r;

	stack_lock();
	while (s->qlen == 0 && !s->closed) {
		if ((flags & MSG_DONTWAIT) || lsock_nonblock(s)) {
			stack_unlock();
			return -EAGAIN;
		}
		if (w == NULL) {
			w = lsock_waiter_self();
			watch.arg = w;
			LIST_INSERT_HEAD(&s->watches, &watch, link);
		}
		lsock_waiter_arm(w);
		stack_unlock();
		r = lsock_waiter_sleep(w, NULL, 0, -1, NULL);
		stack_lock();
		if (r == -EINTR) {
			LIST_REMOVE(&watch, link);
			stack_unlock();
			return -EINTR;
		}
	}
	if (w != NULL)
		LIST_REMOVE(&watch, link);
	if (s->qlen == 0) {
		stack_unlock();
		return 0;
	}
	g = &s->q[s->qhead];
	for (i = 0; i < msg->msg_iovlen && off < g->len; i++) {
		c = msg->msg_iov[i].iov_len < g->len - off ? msg->msg_iov[i].iov_len : g->len - off;
		memcpy(msg->msg_iov[i].iov_base, g->data + off, c);
		off += c;
	}
	if (msg->msg_name != NULL && msg->msg_namelen >= sizeof(struct sockaddr_in)) {
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(g->src),
					   .sin_addr.s_addr = htonl(0x0a000001) };
		memcpy(msg->msg_name, &sin, sizeof(sin));
		msg->msg_namelen = sizeof(sin);
	}
	if (!(flags & MSG_PEEK)) {
		s->qhead = (s->qhead + 1) % FK_QLEN;
		s->qlen--;
	}
	stack_unlock();
	return (ssize_t)off;
}

int lsock_getsockopt(struct lsock *s, int level, int name, void *val, socklen_t *len) { return -ENOPROTOOPT; }
int lsock_setsockopt(struct lsock *s, int level, int name, const void *val, socklen_t len) { return -ENOPROTOOPT; }
int lsock_getsockname(struct lsock *s, struct sockaddr *sa, socklen_t *len) { return -EOPNOTSUPP; }
int lsock_getpeername(struct lsock *s, struct sockaddr *sa, socklen_t *len) { return -ENOTCONN; }

int lsock_ioctl(struct lsock *s, unsigned long req, void *arg)
{
	if (req == FIONBIO) {
		lsock_set_nonblock(s, *(int *)arg != 0);
		return 0;
	}
	if (req == FIONREAD) {
		stack_lock();
		*(int *)arg = s->qlen ? (int)s->q[s->qhead].len : 0;
		stack_unlock();
		return 0;
	}
	return -ENOTTY;
}

uint32_t lsock_events(struct lsock *s)
{
	uint32_t ev;

	stack_lock();
	ev = fk_events_locked(s);
	stack_unlock();
	return ev;
}

uint32_t lsock_kernel_events(struct lsock *s) { return 0; }

void lsock_watch_add(struct lsock *s, struct lsock_watch *w)
{
	stack_lock();
	LIST_INSERT_HEAD(&s->watches, w, link);
	stack_unlock();
}

void lsock_watch_del(struct lsock *s, struct lsock_watch *w)
{
	stack_lock();
	LIST_REMOVE(w, link);
	stack_unlock();
}

struct lsock_waiter {
	int efd;
	atomic_bool woken;
};

static __thread struct lsock_waiter *fk_self;

struct lsock_waiter *lsock_waiter_self(void)
{
	if (fk_self == NULL) {
		fk_self = calloc(1, sizeof(*fk_self));
		fk_self->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	}
	return fk_self;
}

void lsock_waiter_wake(struct lsock_waiter *w)
{
	uint64_t one = 1;

	if (!atomic_exchange(&w->woken, true))
		(void)!real.write(w->efd, &one, sizeof(one));
}

void lsock_waiter_arm(struct lsock_waiter *w)
{
	uint64_t v;

	atomic_store(&w->woken, false);
	(void)!real.read(w->efd, &v, sizeof(v));
}

int lsock_waiter_sleep(struct lsock_waiter *w, struct pollfd *extra, int nextra,
		       int timeout_ms, const sigset_t *mask)
{
	struct pollfd p[64];
	struct timespec ts, *tp = NULL;
	int i, r;

	if (atomic_load(&w->woken))
		return 0;
	p[0].fd = w->efd;
	p[0].events = POLLIN;
	for (i = 0; i < nextra && i < 63; i++)
		p[i + 1] = extra[i];
	if (timeout_ms >= 0) {
		ts.tv_sec = timeout_ms / 1000;
		ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000;
		tp = &ts;
	}
	r = real.ppoll(p, (nfds_t)(i + 1), tp, mask);
	for (int j = 0; j < i; j++)
		extra[j].revents = p[j + 1].revents;
	if (r < 0)
		return errno == EINTR ? -EINTR : -errno;
	return r == 0 ? -ETIMEDOUT : 0;
}
