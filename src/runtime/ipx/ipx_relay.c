/* fork(): the owner's relay thread serves inherited sockets to forked children; the child's side of it. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/proc.h"
#include "ipx/ipx.h"
#include "ipx/ipx_relay.h"
#include "stack/stack.h"

/* Connections handed to one child's listener channel and not yet accepted. */
#define RELAY_UNACKED 4
/* Bytes buffered per direction per relayed connection. */
#define RELAY_BUF (32 * 1024)
/* How long a child waits for the owner's answer. */
#define RELAY_TIMEOUT_S 5

enum rl_type {
	RL_HELLO = 1,	/* child -> owner: seq = the fork's sequence number */
	RL_ATTACH,	/* child -> owner: id = the socket; reply RL_OK + fd or RL_ERR */
	RL_RELEASE,	/* child -> owner: id = the socket, no reply */
	RL_OK,
	RL_ERR,		/* err = errno */
	RL_CONN,	/* owner -> child on a listener channel: id, names, + fd */
	RL_ACK,		/* child -> owner on a listener channel: id accepted */
	RL_FORK,	/* child -> owner: about to fork; reply RL_OK with seq */
	RL_FORK_DONE,	/* child -> owner: seq, id = the new pid (0: failed) */
	RL_SOCKET,	/* child -> owner: a new TCP socket (kind = domain, seq = SO_REUSE* bits) */
	RL_BIND,	/* child -> owner: id, local = the address */
	RL_LISTEN,	/* child -> owner: id, kind = backlog */
	RL_CONNECT,	/* child -> owner: id, peer = the address; reply when it is known */
	RL_UCONNECT,	/* child -> owner: id (an attached UDP socket), peer = the address */
};

enum rl_kind {
	RL_KIND_LISTEN = 1,	/* the fd is a listener channel */
	RL_KIND_CONN,		/* the fd is a relayed connection */
	RL_KIND_KERNEL,		/* the fd is a kernel TCP socket (loopback client) */
	RL_KIND_NEW,		/* child: a socket it made, not listening or connected yet */
	RL_KIND_UDP,		/* the fd is a datagram channel (struct rl_dgram + payload) */
};

/* Each datagram on a UDP channel: this header, then the payload.  From the
 * owner, addr is the source; from the child, the destination (alen 0: the
 * socket's connected peer). */
struct rl_dgram {
	uint32_t alen;
	uint32_t pad;
	struct sockaddr_storage addr;
};
#define RL_DGRAM_MAX 65535

#define RL_REUSEADDR 1
#define RL_REUSEPORT 2

struct rl_msg {
	uint32_t type;
	uint32_t kind;
	uint64_t seq;
	uint64_t req;		/* a request's number, echoed by its reply */
	uint32_t stype;		/* RL_SOCKET: SOCK_STREAM or SOCK_DGRAM */
	uint32_t pad;
	uint64_t id;
	int32_t err;
	uint32_t llen, plen;
	struct sockaddr_storage local, peer;
};

/* What a child knows about a relayed descriptor (ipx_file.relay). */
struct ipx_relay_info {
	int kind;		/* RL_KIND_LISTEN, RL_KIND_CONN, RL_KIND_NEW or RL_KIND_UDP */
	int domain;
	int type;		/* SOCK_STREAM or SOCK_DGRAM */
	uint64_t oid;		/* RL_KIND_NEW: the owner's socket, once made */
	struct sockaddr_storage local, peer;
	socklen_t llen, plen;
	/* Options set by the program that the relay does not act on (the
	 * owner's connection has TCP_NODELAY and the relay coalesces):
	 * remembered so getsockopt returns what was set. */
	struct {
		int level, name, value;
	} opts[12];
	int nopts;
};


/* ---------------------------------------------------------------- owner */

enum rl_tag { RL_T_DOOR = 1, RL_T_LFD, RL_T_CTL, RL_T_PID, RL_T_PUMP, RL_T_SUB, RL_T_KLSN };

struct rl_ev {
	enum rl_tag tag;
	bool dead;		/* freed in this turn of the loop (rl_bury) */
	void *obj;
};

/*
 * Objects freed while the relay loop handles a batch of events may still
 * have events later in that batch: they are buried (their events marked
 * dead) and freed when the batch is done.
 */
static void **rl_grave;
static int rl_ngrave, rl_capgrave;

static void rl_bury(void *obj, struct rl_ev *ev1, struct rl_ev *ev2)
{
	if (ev1 != NULL)
		ev1->dead = true;
	if (ev2 != NULL)
		ev2->dead = true;
	if (rl_ngrave == rl_capgrave) {
		int cap = rl_capgrave ? 2 * rl_capgrave : 64;
		void **q = realloc(rl_grave, (size_t)cap * sizeof(*q));

		if (q == NULL) {
			/* No room to defer: leak it rather than risk a use
			 * after free (rare, and only under memory pressure). */
			return;
		}
		rl_grave = q;
		rl_capgrave = cap;
	}
	rl_grave[rl_ngrave++] = obj;
}

static void rl_grave_empty(void)
{
	for (int i = 0; i < rl_ngrave; i++)
		free(rl_grave[i]);
	rl_ngrave = 0;
}

struct rl_child {
	LIST_ENTRY(rl_child) link;
	uint64_t seq;
	pid_t pid;
	pid_t parent;		/* the process that forked it */
	int pidfd;
	struct rl_ev pid_ev;
	struct lsock **socks;	/* remote refs held for it; NULL: handed on */
	int nsocks;
};

struct rl_ctl {
	LIST_ENTRY(rl_ctl) link;
	int fd;
	struct rl_ev ev;
	struct rl_child *child;	/* after HELLO */
};

struct rl_pump;

/* A child's connect() the owner's stack is still making. */
struct rl_pend {
	LIST_ENTRY(rl_pend) link;
	struct lsock *s;		/* the child's ref, taken from its record */
	struct lsock_watch watch;
	atomic_bool ready;
	struct rl_ctl *ctl;		/* where to answer; NULL once it is gone */
	struct rl_child *child;
	uint64_t req, id;
};

struct rl_listen {
	LIST_ENTRY(rl_listen) link;
	struct lsock *s;		/* pinned by the subscriptions' refs */
	struct lsock_watch watch;
	atomic_bool ready;
	int kfd;			/* kernel side in the epoll set, or -1 */
	struct rl_ev kev;
	bool kev_on;
	LIST_HEAD(, rl_sub) subs;
	LIST_HEAD(, rl_pump) waiting;	/* accepted, no child could take it yet */
	struct rl_sub *next;		/* round robin cursor */
};

struct rl_sub {
	LIST_ENTRY(rl_sub) link;
	struct rl_listen *l;
	int ch;
	struct rl_ev ev;
	int unacked;
	LIST_HEAD(, rl_pump) pending;	/* handed over, not acknowledged */
};

struct rl_pump {
	LIST_ENTRY(rl_pump) link;	/* rl.pumps */
	LIST_ENTRY(rl_pump) plink;	/* a sub's pending or a listener's waiting */
	bool on_plist;
	struct lsock *s;		/* one remote ref */
	struct lsock_watch watch;
	bool watching;
	atomic_bool ready;
	int sp;				/* our end */
	int child_end;			/* not yet handed over: the child's end */
	struct rl_ev ev;
	uint32_t spev;
	uint64_t id;
	struct rl_listen *l;		/* accepted by the relay: its listener */
	struct rl_sub *sub;
	bool delivered, rx_eof, tx_eof, dead;
	size_t roff, rlen, toff, tlen;
	struct sockaddr_storage local, peer;
	socklen_t llen, plen;
	bool udp;			/* datagrams over a SOCK_SEQPACKET pair */
	size_t bufsz;
	char *rbuf, *tbuf;		/* bufsz each, after the struct */
};

static struct {
	pthread_mutex_t lock;
	bool running;
	int epfd, door, lfd;
	struct rl_ev door_ev, lfd_ev;
	struct sockaddr_un addr;
	socklen_t alen;
	uint64_t next_seq, next_id;
	uint64_t pending_seq;	/* set around the wrapper's fork */
	bool keeper_fork;	/* the fork in progress makes the keeper */
	bool keeper;		/* this process is the keeper */
	LIST_HEAD(, rl_child) children;
	LIST_HEAD(, rl_ctl) ctls;
	LIST_HEAD(, rl_listen) listens;
	LIST_HEAD(, rl_pump) pumps;
	LIST_HEAD(, rl_pend) pends;
} rl = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.epfd = -1, .door = -1, .lfd = -1,
};

/* Set in the thread that runs the relay loop (lsock_relay_flush must not
 * re-enter it). */
static __thread bool rl_in_relay;

/* Child side. */
static uint64_t rl_my_seq;
static int rl_ctl_fd = -1;
static pthread_mutex_t rl_child_lock = PTHREAD_MUTEX_INITIALIZER;

static void rl_log(const char *fmt, const char *what, int err)
{
	fprintf(stderr, "libretto: pid %d: ", (int)getpid());
	fprintf(stderr, fmt, what, strerror(err));
	fputc('\n', stderr);
}

static int rl_send(int fd, const struct rl_msg *m, int pass_fd, int flags)
{
	struct iovec iov = { (void *)m, sizeof(*m) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (pass_fd >= 0) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
	}
	ssize_t n = real.sendmsg(fd, &mh, flags | MSG_NOSIGNAL);
	if (n < 0)
		return -errno;
	return n == (ssize_t)sizeof(*m) ? 0 : -EPROTO;
}

/* One message and at most one descriptor (*fd, -1 if none).  Returns the
 * message size, 0 at end of file, or -errno. */
static ssize_t rl_recv(int fd, struct rl_msg *m, int *pfd, int flags)
{
	struct iovec iov = { m, sizeof(*m) };
	union {
		char buf[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = u.buf, .msg_controllen = sizeof(u.buf),
	};
	ssize_t n;

	*pfd = -1;
	n = real.recvmsg(fd, &mh, flags | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int nf = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (int i = 0; i < nf; i++) {
			int x;

			memcpy(&x, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (*pfd < 0)
				*pfd = x;
			else
				real.close(x);
		}
	}
	if (n > 0 && (n != (ssize_t)sizeof(*m) || (mh.msg_flags & MSG_TRUNC))) {
		if (*pfd >= 0)
			real.close(*pfd);
		*pfd = -1;
		return -EPROTO;
	}
	return n;
}

static int rl_fcntl(int fd, int cmd, long arg)
{
	return real.fcntl(fd, cmd, arg);
}

static void rl_ep(int fd, struct rl_ev *ev, uint32_t events, int op)
{
	struct epoll_event e = { .events = events, .data.ptr = ev };

	(void)real.epoll_ctl(rl.epfd, op, fd, op == EPOLL_CTL_DEL ? NULL : &e);
}

static void rl_ring(void)
{
	uint64_t one = 1;

	if (real.write(rl.door, &one, sizeof(one)) < 0) {
		/* The counter is saturated: the thread is awake anyway. */
	}
}

static void rl_watch_notify(struct lsock_watch *w, uint32_t events)
{
	atomic_bool *ready = w->arg;

	(void)events;
	if (!atomic_exchange(ready, true))
		rl_ring();
}

/* The socket's remote reference is gone; close its kernel fd if it was
 * the last holder's (lsock_remote_put). */
static void rl_put_sock(struct lsock *s)
{
	int kfd = lsock_remote_put(s);

	if (kfd >= 0) {
		ipx_private_del(kfd);
		real.close(kfd);
	}
}

static void rl_names(struct lsock *s, struct sockaddr_storage *l, socklen_t *ll,
		     struct sockaddr_storage *p, socklen_t *pl)
{
	*ll = sizeof(*l);
	*pl = sizeof(*p);
	if (lsock_getsockname(s, (struct sockaddr *)l, ll) < 0)
		*ll = 0;
	if (lsock_getpeername(s, (struct sockaddr *)p, pl) < 0)
		*pl = 0;
}

/* ---- pumps */

static void rl_pump_free(struct rl_pump *p)
{
	if (p->watching) {
		lsock_watch_del(p->s, &p->watch);
		lsock_set_relayed(p->s, false);
	}
	if (p->on_plist)
		LIST_REMOVE(p, plink);
	if (p->sub != NULL && !p->delivered)
		p->sub->unacked--;
	LIST_REMOVE(p, link);
	if (p->sp >= 0) {
		rl_ep(p->sp, &p->ev, 0, EPOLL_CTL_DEL);
		real.close(p->sp);
	}
	if (p->child_end >= 0)
		real.close(p->child_end);
	rl_put_sock(p->s);
	rl_bury(p, &p->ev, NULL);
}

static struct rl_pump *rl_pump_new(struct lsock *s)
{
	bool udp = !lsock_is_stream(s);
	size_t bufsz = udp ? sizeof(struct rl_dgram) + RL_DGRAM_MAX : RELAY_BUF;
	struct rl_pump *p = calloc(1, sizeof(*p) + 2 * bufsz);
	int sv[2];

	if (p == NULL)
		return NULL;
	if (real.socketpair(AF_UNIX, (udp ? SOCK_SEQPACKET : SOCK_STREAM) | SOCK_CLOEXEC, 0,
			    sv) < 0) {
		free(p);
		return NULL;
	}
	p->udp = udp;
	p->bufsz = bufsz;
	p->rbuf = (char *)(p + 1);
	p->tbuf = p->rbuf + bufsz;
	(void)rl_fcntl(sv[0], F_SETFL, O_NONBLOCK);
	p->s = s;
	p->sp = sv[0];
	p->child_end = sv[1];
	p->id = ++rl.next_id;
	p->ev.tag = RL_T_PUMP;
	p->ev.obj = p;
	p->watch.notify = rl_watch_notify;
	p->watch.arg = &p->ready;
	rl_names(s, &p->local, &p->llen, &p->peer, &p->plen);
	LIST_INSERT_HEAD(&rl.pumps, p, link);
	return p;
}

/* Start moving bytes: the child has the connection. */
static void rl_pump_start(struct rl_pump *p)
{
	int one = 1;

	p->delivered = true;
	/* The relay coalesces what the child writes; Nagle would only add
	 * delay on top (MSG_MORE still holds partial segments). */
	if (!p->udp)
		(void)lsock_setsockopt(p->s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	p->spev = EPOLLIN | EPOLLRDHUP;
	rl_ep(p->sp, &p->ev, p->spev, EPOLL_CTL_ADD);
	lsock_watch_add(p->s, &p->watch);
	p->watching = true;
	lsock_set_relayed(p->s, true);
	/* Data and a FIN may be queued already: look at once. */
	atomic_store(&p->ready, true);
	rl_ring();
}

static void rl_pump_free(struct rl_pump *p);

/* A UDP socket's pump: whole datagrams with their addresses, at most 64
 * each way per turn; a datagram the other side has no room for waits
 * (only one), one the stack refuses is dropped, as UDP may. */
static void rl_udp_service(struct rl_pump *p, uint32_t spevents)
{
	struct rl_dgram *h;
	uint32_t want = EPOLLIN;
	bool child_gone = false;
	ssize_t n;

	for (int i = 0; i < 64; i++) {
		if (p->rlen > 0) {
			n = real.send(p->sp, p->rbuf, p->rlen, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					want |= EPOLLOUT;
				else if (errno != EINTR)
					child_gone = true;
				break;
			}
			p->rlen = 0;
		}
		h = (struct rl_dgram *)p->rbuf;
		memset(h, 0, sizeof(*h));
		struct iovec iov = { p->rbuf + sizeof(*h), RL_DGRAM_MAX };
		struct msghdr mh = {
			.msg_name = &h->addr, .msg_namelen = sizeof(h->addr),
			.msg_iov = &iov, .msg_iovlen = 1,
		};
		n = lsock_recvmsg(p->s, &mh, MSG_DONTWAIT);
		if (n < 0)
			break;
		h->alen = mh.msg_namelen;
		p->rlen = sizeof(*h) + (size_t)n;
	}
	for (int i = 0; !child_gone && i < 64; i++) {
		n = real.recv(p->sp, p->tbuf, p->bufsz, MSG_DONTWAIT);
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				child_gone = true;
			break;
		}
		if (n == 0) {
			child_gone = true;	/* every message has a header: EOF */
			break;
		}
		if ((size_t)n < sizeof(*h))
			continue;
		h = (struct rl_dgram *)p->tbuf;
		struct iovec iov = { p->tbuf + sizeof(*h), (size_t)n - sizeof(*h) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

		if (h->alen > 0 && h->alen <= sizeof(h->addr)) {
			mh.msg_name = &h->addr;
			mh.msg_namelen = h->alen;
		}
		(void)lsock_sendmsg(p->s, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	}
	if (child_gone || (spevents & EPOLLHUP)) {
		p->dead = true;
		rl_pump_free(p);
		return;
	}
	if (want != p->spev) {
		p->spev = want;
		rl_ep(p->sp, &p->ev, want, EPOLL_CTL_MOD);
	}
}

static void rl_pump_service(struct rl_pump *p, uint32_t spevents)
{
	uint32_t want = EPOLLIN | EPOLLRDHUP;
	bool child_gone = false;
	ssize_t n;

	if (!p->delivered || p->dead)
		return;
	atomic_store(&p->ready, false);
	if (p->udp) {
		rl_udp_service(p, spevents);
		return;
	}
	/* Peer -> child. */
	for (;;) {
		if (p->roff < p->rlen) {
			n = real.send(p->sp, p->rbuf + p->roff, p->rlen - p->roff,
				      MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK) {
					want |= EPOLLOUT;
				} else if (errno != EINTR) {
					child_gone = true;
				} else {
					continue;
				}
				break;
			}
			p->roff += (size_t)n;
			continue;
		}
		if (p->rx_eof)
			break;
		struct iovec iov = { p->rbuf, p->bufsz };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		n = lsock_recvmsg(p->s, &mh, MSG_DONTWAIT);
		if (n == -EAGAIN)
			break;
		if (n <= 0) {
			/* FIN (0) or an error (reset): the child reads EOF. */
			p->rx_eof = true;
			(void)real.shutdown(p->sp, SHUT_WR);
			break;
		}
		p->roff = 0;
		p->rlen = (size_t)n;
	}
	/* Child -> peer. */
	for (;;) {
		if (p->toff < p->tlen) {
			int more = 0;
			int q = 0;

			if (real.ioctl(p->sp, FIONREAD, &q) == 0 && q > 0)
				more = MSG_MORE;
			struct iovec iov = { p->tbuf + p->toff, p->tlen - p->toff };
			struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
			n = lsock_sendmsg(p->s, &mh, MSG_DONTWAIT | MSG_NOSIGNAL | more);
			if (n == -EAGAIN)
				break;
			if (n < 0) {
				/* The connection is gone: what the child
				 * writes is lost, as on a reset socket. */
				p->toff = p->tlen = 0;
				p->tx_eof = true;
				(void)real.shutdown(p->sp, SHUT_RD);
				break;
			}
			p->toff += (size_t)n;
			continue;
		}
		if (p->tx_eof)
			break;
		n = real.read(p->sp, p->tbuf, p->bufsz);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				child_gone = true;
			break;
		}
		if (n == 0) {
			/* EOF: the child closed its end (POLLHUP: both
			 * directions are shut), which only drops its hold on
			 * the connection, or it called shutdown(SHUT_WR),
			 * which ends the connection's sending for every
			 * holder, as on Linux. */
			struct pollfd hp = { .fd = p->sp, .events = POLLIN };

			p->tx_eof = true;
			if (real.poll(&hp, 1, 0) == 1 && (hp.revents & POLLHUP))
				child_gone = true;
			else
				(void)lsock_shutdown(p->s, SHUT_WR);
			break;
		}
		p->toff = 0;
		p->tlen = (size_t)n;
	}
	/* The child closed its end for good (EPOLLHUP, EPIPE), or both sides
	 * are done: the connection is the owner's to close now. */
	if ((spevents & EPOLLHUP) && p->tx_eof)
		child_gone = true;
	if (child_gone || (p->rx_eof && p->tx_eof && p->roff >= p->rlen && p->toff >= p->tlen)) {
		p->dead = true;
		rl_pump_free(p);
		return;
	}
	if (p->tx_eof)
		want &= ~(uint32_t)(EPOLLIN | EPOLLRDHUP);
	if (want != p->spev) {
		p->spev = want;
		rl_ep(p->sp, &p->ev, want, EPOLL_CTL_MOD);
	}
}

/* lsock_relay_flush: the owner's program writes to a connection a child
 * also writes to; what the child wrote first goes first. */
static void rl_flush(struct lsock *s)
{
	struct rl_pump *p;

	if (rl_in_relay)
		return;
	pthread_mutex_lock(&rl.lock);
	LIST_FOREACH(p, &rl.pumps, link)
		if (p->s == s && p->delivered && !p->dead)
			break;
	if (p != NULL) {
		rl_in_relay = true;	/* the pump's own sends come back here */
		rl_pump_service(p, 0);
		rl_in_relay = false;
	}
	pthread_mutex_unlock(&rl.lock);
}

/* ---- listeners */

static void rl_listen_arm_kside(struct rl_listen *l, bool on)
{
	if (l->kfd < 0 || l->kev_on == on)
		return;
	rl_ep(l->kfd, &l->kev, on ? EPOLLIN : 0, EPOLL_CTL_MOD);
	l->kev_on = on;
}

static struct rl_sub *rl_pick(struct rl_listen *l)
{
	struct rl_sub *start = l->next ? l->next : LIST_FIRST(&l->subs), *s = start;

	if (s == NULL)
		return NULL;
	do {
		struct rl_sub *nx = LIST_NEXT(s, link) ? LIST_NEXT(s, link) : LIST_FIRST(&l->subs);

		if (s->unacked < RELAY_UNACKED) {
			l->next = nx;
			return s;
		}
		s = nx;
	} while (s != start);
	return NULL;
}

/* Hand p (accepted, not delivered) to a child; false if none can take it. */
static bool rl_dispatch(struct rl_listen *l, struct rl_pump *p)
{
	struct rl_sub *sub;
	struct rl_msg m;

	while ((sub = rl_pick(l)) != NULL) {
		if (p->child_end < 0) {
			/* The previous child's end went with it: a new pair. */
			int sv[2];

			if (real.socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
				return false;
			(void)rl_fcntl(sv[0], F_SETFL, O_NONBLOCK);
			real.close(p->sp);
			p->sp = sv[0];
			p->child_end = sv[1];
		}
		memset(&m, 0, sizeof(m));
		m.type = RL_CONN;
		m.kind = RL_KIND_CONN;
		m.id = p->id;
		m.llen = p->llen;
		m.plen = p->plen;
		m.local = p->local;
		m.peer = p->peer;
		if (rl_send(sub->ch, &m, p->child_end, MSG_DONTWAIT) < 0) {
			/* Full or gone: that child takes no more for now. */
			sub->unacked = RELAY_UNACKED;
			continue;
		}
		real.close(p->child_end);
		p->child_end = -1;
		if (p->on_plist)
			LIST_REMOVE(p, plink);
		LIST_INSERT_HEAD(&sub->pending, p, plink);
		p->on_plist = true;
		p->sub = sub;
		sub->unacked++;
		return true;
	}
	return false;
}

static void rl_listen_service(struct rl_listen *l)
{
	struct rl_pump *p, *nx;

	atomic_store(&l->ready, false);
	/* First the connections that waited for a free child. */
	for (p = LIST_FIRST(&l->waiting); p; p = nx) {
		nx = LIST_NEXT(p, plink);
		if (!rl_dispatch(l, p))
			break;
	}
	while (LIST_EMPTY(&l->waiting) && rl_pick(l) != NULL) {
		struct lsock *ns = NULL;
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int nkfd = -1;
		int r = lsock_accept(l->s, &ns, &nkfd, (struct sockaddr *)&ss, &sl,
				     SOCK_CLOEXEC | LSOCK_ACCEPT_NOWAIT);

		if (r < 0)
			break;
		if (ns == NULL) {
			/* A kernel connection (loopback client): the child
			 * gets the kernel socket itself. */
			struct rl_sub *sub = rl_pick(l);
			struct rl_msg m = { .type = RL_CONN, .kind = RL_KIND_KERNEL };

			m.id = ++rl.next_id;
			if (sub == NULL || rl_send(sub->ch, &m, nkfd, MSG_DONTWAIT) < 0)
				rl_log("%s: %s", "cannot hand a loopback connection to a child", EAGAIN);
			real.close(nkfd);
			continue;
		}
		lsock_remote_get(ns);
		lsock_drop(ns);		/* lsock_accept's hold: the ref pins it */
		p = rl_pump_new(ns);
		if (p == NULL) {
			rl_put_sock(ns);	/* closes it: the peer sees the close */
			continue;
		}
		p->l = l;
		if (!rl_dispatch(l, p)) {
			LIST_INSERT_HEAD(&l->waiting, p, plink);
			p->on_plist = true;
		}
	}
	rl_listen_arm_kside(l, rl_pick(l) != NULL);
}

static void rl_listen_free(struct rl_listen *l)
{
	struct rl_pump *p;

	lsock_watch_del(l->s, &l->watch);
	if (l->kfd >= 0)
		rl_ep(l->kfd, &l->kev, 0, EPOLL_CTL_DEL);
	/* Nobody listens any more: the waiting connections are closed, as
	 * Linux resets the queue of a listener closed by its last holder. */
	while ((p = LIST_FIRST(&l->waiting)) != NULL)
		rl_pump_free(p);
	LIST_REMOVE(l, link);
	rl_bury(l, &l->kev, NULL);
}

static void rl_sub_free(struct rl_sub *sub)
{
	struct rl_listen *l = sub->l;
	struct rl_pump *p;

	rl_ep(sub->ch, &sub->ev, 0, EPOLL_CTL_DEL);
	real.close(sub->ch);
	LIST_REMOVE(sub, link);
	if (l->next == sub)
		l->next = NULL;
	/* Connections this child never accepted go to another child. */
	while ((p = LIST_FIRST(&sub->pending)) != NULL) {
		LIST_REMOVE(p, plink);
		p->on_plist = false;
		p->sub = NULL;
		LIST_INSERT_HEAD(&l->waiting, p, plink);
		p->on_plist = true;
	}
	rl_put_sock(l->s);
	rl_bury(sub, &sub->ev, NULL);
	if (LIST_EMPTY(&l->subs))
		rl_listen_free(l);
	else
		rl_listen_service(l);
}

static void rl_sub_service(struct rl_sub *sub, uint32_t events)
{
	struct rl_msg m;
	int fd;
	ssize_t n;

	for (;;) {
		n = rl_recv(sub->ch, &m, &fd, MSG_DONTWAIT);
		if (fd >= 0)
			real.close(fd);
		if (n == -EAGAIN || n == -EWOULDBLOCK)
			break;
		if (n <= 0) {
			rl_sub_free(sub);
			return;
		}
		if (m.type != RL_ACK)
			continue;
		struct rl_pump *p;
		LIST_FOREACH(p, &sub->pending, plink)
			if (p->id == m.id)
				break;
		if (p == NULL)
			continue;
		LIST_REMOVE(p, plink);
		p->on_plist = false;
		sub->unacked--;
		rl_pump_start(p);
		rl_pump_service(p, 0);
	}
	if (events & (EPOLLHUP | EPOLLERR)) {
		rl_sub_free(sub);
		return;
	}
	rl_listen_service(sub->l);
}

static struct rl_listen *rl_listen_get(struct lsock *s)
{
	struct rl_listen *l;

	LIST_FOREACH(l, &rl.listens, link)
		if (l->s == s)
			return l;
	l = calloc(1, sizeof(*l));
	if (l == NULL)
		return NULL;
	l->s = s;
	l->watch.notify = rl_watch_notify;
	l->watch.arg = &l->ready;
	LIST_INIT(&l->subs);
	LIST_INIT(&l->waiting);
	l->kfd = -1;
	l->kev.tag = RL_T_KLSN;
	l->kev.obj = l;
	if (lsock_kernel_events(s) & EPOLLIN) {
		l->kfd = lsock_kfd(s);
		l->kev_on = true;
		rl_ep(l->kfd, &l->kev, EPOLLIN, EPOLL_CTL_ADD);
	}
	lsock_watch_add(s, &l->watch);
	LIST_INSERT_HEAD(&rl.listens, l, link);
	return l;
}

/* ---- children and their control connections */

static int rl_child_take(struct rl_child *c, uint64_t id, struct lsock **out)
{
	for (int i = 0; c != NULL && i < c->nsocks; i++) {
		if (c->socks[i] != NULL && (uint64_t)(uintptr_t)c->socks[i] == id) {
			*out = c->socks[i];
			c->socks[i] = NULL;
			return 0;
		}
	}
	return -EBADF;
}

static void rl_child_untake(struct rl_child *c, struct lsock *s)
{
	for (int i = 0; i < c->nsocks; i++) {
		if (c->socks[i] == NULL) {
			c->socks[i] = s;
			return;
		}
	}
	rl_put_sock(s);
}

static void rl_attach(struct rl_ctl *ctl, const struct rl_msg *req)
{
	struct rl_msg m = { .type = RL_ERR };
	struct lsock *s = NULL;
	int fd = -1, err;

	err = rl_child_take(ctl->child, req->id, &s);
	if (err < 0)
		goto reply;
	if (lsock_is_stream(s) && lsock_is_listener(s)) {
		struct rl_listen *l = rl_listen_get(s);
		struct rl_sub *sub = calloc(1, sizeof(*sub));
		int sv[2];

		if (l == NULL || sub == NULL ||
		    real.socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
			err = -ENOMEM;
			free(sub);
			if (l != NULL && LIST_EMPTY(&l->subs))
				rl_listen_free(l);
			rl_child_untake(ctl->child, s);
			goto reply;
		}
		(void)rl_fcntl(sv[0], F_SETFL, O_NONBLOCK);
		sub->l = l;
		sub->ch = sv[0];
		sub->ev.tag = RL_T_SUB;
		sub->ev.obj = sub;
		LIST_INIT(&sub->pending);
		LIST_INSERT_HEAD(&l->subs, sub, link);
		rl_ep(sub->ch, &sub->ev, EPOLLIN, EPOLL_CTL_ADD);
		fd = sv[1];
		m.kind = RL_KIND_LISTEN;
		rl_names(s, &m.local, &m.llen, &m.peer, &m.plen);
		m.plen = 0;
		atomic_store(&l->ready, true);
		rl_ring();
	} else {
		struct rl_pump *p = rl_pump_new(s);

		if (p == NULL) {
			err = -ENOMEM;
			rl_child_untake(ctl->child, s);
			goto reply;
		}
		fd = p->child_end;
		p->child_end = -1;
		m.kind = p->udp ? RL_KIND_UDP : RL_KIND_CONN;
		m.local = p->local;
		m.llen = p->llen;
		m.peer = p->peer;
		m.plen = p->plen;
		rl_pump_start(p);
	}
	m.type = RL_OK;
	err = 0;
reply:
	m.err = -err;
	m.id = req->id;
	m.req = req->req;
	(void)rl_send(ctl->fd, &m, fd, 0);
	if (fd >= 0)
		real.close(fd);
}

static void rl_ctl_free(struct rl_ctl *ctl)
{
	struct rl_pend *pd;

	LIST_FOREACH(pd, &rl.pends, link)
		if (pd->ctl == ctl)
			pd->ctl = NULL;
	rl_ep(ctl->fd, &ctl->ev, 0, EPOLL_CTL_DEL);
	real.close(ctl->fd);
	LIST_REMOVE(ctl, link);
	rl_bury(ctl, &ctl->ev, NULL);
}

static void rl_child_watch(struct rl_child *c)
{
	c->pidfd = (int)syscall(SYS_pidfd_open, c->pid, 0);
	if (c->pidfd >= 0) {
		(void)rl_fcntl(c->pidfd, F_SETFD, FD_CLOEXEC);
		rl_ep(c->pidfd, &c->pid_ev, EPOLLIN, EPOLL_CTL_ADD);
	}
}

/* A child is about to fork: its child inherits what it still holds (the
 * sockets it attached are kernel descriptors, inherited as such). */
static void rl_fork_request(struct rl_ctl *ctl, uint64_t m_req)
{
	struct rl_child *p = ctl->child, *c = calloc(1, sizeof(*c));
	struct rl_msg r = { .type = RL_ERR, .err = ENOMEM };

	if (c != NULL && p->nsocks > 0 &&
	    (c->socks = calloc((size_t)p->nsocks, sizeof(*c->socks))) == NULL) {
		free(c);
		c = NULL;
	}
	if (c != NULL) {
		for (int i = 0; i < p->nsocks; i++) {
			if (p->socks[i] != NULL) {
				c->socks[c->nsocks++] = p->socks[i];
				lsock_remote_get(p->socks[i]);
			}
		}
		c->seq = ++rl.next_seq;
		c->parent = p->pid;
		c->pidfd = -1;
		c->pid_ev.tag = RL_T_PID;
		c->pid_ev.obj = c;
		LIST_INSERT_HEAD(&rl.children, c, link);
		r.type = RL_OK;
		r.err = 0;
		r.seq = c->seq;
	}
	r.req = m_req;
	(void)rl_send(ctl->fd, &r, -1, MSG_DONTWAIT);
}

static void rl_child_free(struct rl_child *c);

static void rl_fork_done(uint64_t seq, pid_t pid)
{
	struct rl_child *c;

	LIST_FOREACH(c, &rl.children, link)
		if (c->seq == seq)
			break;
	if (c == NULL)
		return;
	if (pid <= 0) {
		rl_child_free(c);
		return;
	}
	if (c->pid == 0)
		c->pid = pid;
	if (c->pidfd < 0)
		rl_child_watch(c);
}

/* ---- sockets a child makes after the fork */

static void rl_reply(struct rl_ctl *ctl, const struct rl_msg *req, int err, int fd,
		     struct lsock *names)
{
	struct rl_msg m = { .type = err ? RL_ERR : RL_OK, .err = -err };

	m.req = req->req;
	m.id = req->id;
	if (names != NULL)
		rl_names(names, &m.local, &m.llen, &m.peer, &m.plen);
	if (ctl != NULL)
		(void)rl_send(ctl->fd, &m, fd, 0);
}

/* The socket id in c's record, left there, or NULL. */
static struct lsock *rl_child_find(struct rl_child *c, uint64_t id)
{
	for (int i = 0; c != NULL && i < c->nsocks; i++)
		if (c->socks[i] != NULL && (uint64_t)(uintptr_t)c->socks[i] == id)
			return c->socks[i];
	return NULL;
}

static int rl_child_add(struct rl_child *c, struct lsock *s)
{
	for (int i = 0; i < c->nsocks; i++) {
		if (c->socks[i] == NULL) {
			c->socks[i] = s;
			return 0;
		}
	}
	void *q = realloc(c->socks, (size_t)(c->nsocks + 8) * sizeof(*c->socks));

	if (q == NULL)
		return -ENOMEM;
	c->socks = q;
	memset(c->socks + c->nsocks, 0, 8 * sizeof(*c->socks));
	c->socks[c->nsocks] = s;
	c->nsocks += 8;
	return 0;
}

static void rl_new_socket(struct rl_ctl *ctl, const struct rl_msg *req)
{
	struct rl_msg r = *req;
	struct lsock *s;
	int one = 1, err, kfd;

	int type = req->stype == SOCK_DGRAM ? SOCK_DGRAM : SOCK_STREAM;

	kfd = real.socket((int)req->kind, type | SOCK_CLOEXEC, 0);
	if (kfd < 0) {
		rl_reply(ctl, req, -errno, -1, NULL);
		return;
	}
	err = lsock_create_domain(kfd, (int)req->kind, type, &s);
	if (err < 0) {
		real.close(kfd);
		rl_reply(ctl, req, err, -1, NULL);
		return;
	}
	if (req->seq & RL_REUSEADDR)
		(void)lsock_setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (req->seq & RL_REUSEPORT)
		(void)lsock_setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	(void)ipx_private_add(kfd);
	lsock_remote_get(s);
	lsock_own_kfd(s, kfd);
	lsock_drop(s);			/* lsock_create's hold: the ref pins it */
	if (rl_child_add(ctl->child, s) < 0) {
		rl_put_sock(s);
		rl_reply(ctl, req, -ENOMEM, -1, NULL);
		return;
	}
	r.id = (uint64_t)(uintptr_t)s;
	rl_reply(ctl, &r, 0, -1, NULL);
}

static void rl_bind_listen(struct rl_ctl *ctl, const struct rl_msg *req)
{
	struct lsock *s = rl_child_find(ctl->child, req->id);
	int err;

	if (s == NULL) {
		rl_reply(ctl, req, -EBADF, -1, NULL);
		return;
	}
	if (req->type == RL_BIND)
		err = lsock_bind(s, (const struct sockaddr *)&req->local, req->llen);
	else
		err = lsock_listen(s, (int)req->kind);
	rl_reply(ctl, req, err, -1, s);
}

/* The connection is made (or failed): answer the child. */
static void rl_connect_done(struct rl_ctl *ctl, struct rl_child *c, const struct rl_msg *req,
			    struct lsock *s, int err)
{
	struct rl_pump *p;

	if (err == 0 && ctl != NULL && (p = rl_pump_new(s)) != NULL) {
		int fd = p->child_end;

		p->child_end = -1;
		rl_pump_start(p);
		rl_reply(ctl, req, 0, fd, s);
		real.close(fd);
		return;
	}
	rl_reply(ctl, req, err ? err : -ENOMEM, -1, NULL);
	/* The child keeps its (unconnected) socket. */
	if (c != NULL)
		rl_child_untake(c, s);
	else
		rl_put_sock(s);
}

static void rl_connect_req(struct rl_ctl *ctl, const struct rl_msg *req)
{
	struct lsock *s;
	int err;

	if (rl_child_take(ctl->child, req->id, &s) < 0) {
		rl_reply(ctl, req, -EBADF, -1, NULL);
		return;
	}
	/* The relay never waits: the answer goes when the stack knows. */
	lsock_set_nonblock(s, true);
	err = lsock_connect(s, (const struct sockaddr *)&req->peer, req->plen);
	if (err != -EINPROGRESS) {
		rl_connect_done(ctl, ctl->child, req, s, err);
		return;
	}
	struct rl_pend *pd = calloc(1, sizeof(*pd));

	if (pd == NULL) {
		rl_connect_done(ctl, ctl->child, req, s, -ENOMEM);
		return;
	}
	pd->s = s;
	pd->ctl = ctl;
	pd->child = ctl->child;
	pd->req = req->req;
	pd->id = req->id;
	pd->watch.notify = rl_watch_notify;
	pd->watch.arg = &pd->ready;
	LIST_INSERT_HEAD(&rl.pends, pd, link);
	lsock_watch_add(s, &pd->watch);
	atomic_store(&pd->ready, true);
	rl_ring();
}

/* connect() on a UDP socket a child attached: its pump holds it. */
static void rl_uconnect_req(struct rl_ctl *ctl, const struct rl_msg *req)
{
	struct rl_pump *p;

	LIST_FOREACH(p, &rl.pumps, link)
		if (p->udp && (uint64_t)(uintptr_t)p->s == req->id && !p->dead)
			break;
	if (p == NULL) {
		rl_reply(ctl, req, -EBADF, -1, NULL);
		return;
	}
	rl_reply(ctl, req, lsock_connect(p->s, (const struct sockaddr *)&req->peer, req->plen),
		 -1, p->s);
}

static void rl_pend_service(struct rl_pend *pd)
{
	uint32_t ev;
	int so = 0;
	socklen_t sl = sizeof(so);

	atomic_store(&pd->ready, false);
	ev = lsock_events(pd->s);
	if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
		return;
	(void)lsock_getsockopt(pd->s, SOL_SOCKET, SO_ERROR, &so, &sl);
	if (so == 0 && !(ev & EPOLLOUT))
		so = ECONNREFUSED;
	lsock_watch_del(pd->s, &pd->watch);
	LIST_REMOVE(pd, link);

	struct rl_msg req = { .req = pd->req, .id = pd->id };

	rl_connect_done(pd->ctl, pd->child, &req, pd->s, -so);
	free(pd);
}

static void rl_ctl_service(struct rl_ctl *ctl)
{
	struct rl_msg m;
	int fd;
	ssize_t n;

	for (;;) {
		n = rl_recv(ctl->fd, &m, &fd, MSG_DONTWAIT);
		if (fd >= 0)
			real.close(fd);
		if (n == -EAGAIN || n == -EWOULDBLOCK)
			return;
		if (n <= 0) {
			rl_ctl_free(ctl);
			return;
		}
		if (m.type == RL_HELLO && ctl->child == NULL) {
			struct ucred cr;
			socklen_t cl = sizeof(cr);
			struct rl_child *c;
			struct rl_msg r = { .type = RL_ERR, .err = EPERM };

			if (real.getsockopt(ctl->fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0) {
				LIST_FOREACH(c, &rl.children, link)
					if (c->seq == m.seq && (c->pid == cr.pid ||
								(c->pid == 0 && proc_is_child_of(cr.pid, c->parent))))
						break;
				if (c != NULL) {
					c->pid = cr.pid;
					ctl->child = c;
					r.type = RL_OK;
					r.err = 0;
				}
			}
			(void)rl_send(ctl->fd, &r, -1, MSG_DONTWAIT);
		} else if (m.type == RL_ATTACH && ctl->child != NULL) {
			rl_attach(ctl, &m);
		} else if (m.type == RL_SOCKET && ctl->child != NULL) {
			rl_new_socket(ctl, &m);
		} else if ((m.type == RL_BIND || m.type == RL_LISTEN) && ctl->child != NULL) {
			rl_bind_listen(ctl, &m);
		} else if (m.type == RL_CONNECT && ctl->child != NULL) {
			rl_connect_req(ctl, &m);
		} else if (m.type == RL_UCONNECT && ctl->child != NULL) {
			rl_uconnect_req(ctl, &m);
		} else if (m.type == RL_FORK && ctl->child != NULL) {
			rl_fork_request(ctl, m.req);
		} else if (m.type == RL_FORK_DONE && ctl->child != NULL) {
			rl_fork_done(m.seq, (pid_t)m.id);
		} else if (m.type == RL_RELEASE && ctl->child != NULL) {
			struct lsock *s;

			if (rl_child_take(ctl->child, m.id, &s) == 0)
				rl_put_sock(s);
		}
	}
}

static void rl_child_free(struct rl_child *c)
{
	struct rl_ctl *ctl;
	struct rl_pend *pd;

	LIST_FOREACH(pd, &rl.pends, link)
		if (pd->child == c)
			pd->child = NULL;
	LIST_FOREACH(ctl, &rl.ctls, link)
		if (ctl->child == c)
			ctl->child = NULL;
	for (int i = 0; i < c->nsocks; i++)
		if (c->socks[i] != NULL)
			rl_put_sock(c->socks[i]);
	if (c->pidfd >= 0) {
		rl_ep(c->pidfd, &c->pid_ev, 0, EPOLL_CTL_DEL);
		real.close(c->pidfd);
	}
	LIST_REMOVE(c, link);
	free(c->socks);
	c->socks = NULL;
	rl_bury(c, &c->pid_ev, NULL);
}

static void rl_accept_ctl(void)
{
	for (;;) {
		int fd = real.accept4(rl.lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd < 0)
			return;
		struct ucred cr;
		socklen_t cl = sizeof(cr);
		struct rl_ctl *ctl = calloc(1, sizeof(*ctl));

		/* Who may talk is decided at HELLO: only a child we forked
		 * (nginx's workers drop to another user: no uid check). */
		(void)cr;
		(void)cl;
		if (ctl == NULL) {
			free(ctl);
			real.close(fd);
			continue;
		}
		ctl->fd = fd;
		ctl->ev.tag = RL_T_CTL;
		ctl->ev.obj = ctl;
		LIST_INSERT_HEAD(&rl.ctls, ctl, link);
		rl_ep(fd, &ctl->ev, EPOLLIN, EPOLL_CTL_ADD);
	}
}

/* The keeper's work is done when no child holds anything any more. */
static bool rl_idle(void)
{
	return LIST_EMPTY(&rl.children) && LIST_EMPTY(&rl.pumps) && LIST_EMPTY(&rl.listens) &&
	       LIST_EMPTY(&rl.pends);
}

static void *rl_main(void *arg)
{
	struct epoll_event evs[64];

	(void)arg;
	rl_in_relay = true;
	for (;;) {
		if (rl.keeper) {
			pthread_mutex_lock(&rl.lock);
			bool idle = rl_idle();

			pthread_mutex_unlock(&rl.lock);
			if (idle)
				return NULL;
		}
		int n = real.epoll_wait(rl.epfd, evs, 64, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			rl_log("%s: %s", "the fork relay stopped", errno);
			return NULL;
		}
		pthread_mutex_lock(&rl.lock);
		bool door = false;

		for (int i = 0; i < n; i++) {
			struct rl_ev *ev = evs[i].data.ptr;
			uint32_t e = evs[i].events;

			if (ev->dead)
				continue;
			switch (ev->tag) {
			case RL_T_DOOR:
				door = true;
				break;
			case RL_T_LFD:
				rl_accept_ctl();
				break;
			case RL_T_CTL:
				rl_ctl_service(ev->obj);
				break;
			case RL_T_PID:
				rl_child_free(ev->obj);
				break;
			case RL_T_PUMP:
				rl_pump_service(ev->obj, e);
				break;
			case RL_T_SUB:
				rl_sub_service(ev->obj, e);
				break;
			case RL_T_KLSN:
				rl_listen_service(ev->obj);
				break;
			}
		}
		if (door) {
			uint64_t v;

			if (real.read(rl.door, &v, sizeof(v)) < 0) {
				/* Nothing to drain. */
			}
			struct rl_listen *l, *lnx;
			struct rl_pump *p, *pnx;

			for (l = LIST_FIRST(&rl.listens); l; l = lnx) {
				lnx = LIST_NEXT(l, link);
				if (atomic_load(&l->ready))
					rl_listen_service(l);
			}
			for (p = LIST_FIRST(&rl.pumps); p; p = pnx) {
				pnx = LIST_NEXT(p, link);
				if (atomic_load(&p->ready))
					rl_pump_service(p, 0);
			}
			struct rl_pend *pd, *pdnx;

			for (pd = LIST_FIRST(&rl.pends); pd; pd = pdnx) {
				pdnx = LIST_NEXT(pd, link);
				if (atomic_load(&pd->ready))
					rl_pend_service(pd);
			}
		}
		rl_grave_empty();
		pthread_mutex_unlock(&rl.lock);
	}
	return NULL;
}

static void rl_atfork_prepare(void)
{
	pthread_mutex_lock(&rl.lock);
}

static void rl_atfork_parent(void)
{
	/* After forking the keeper this process keeps the relay locked
	 * until it is gone: its relay thread must not take a child's
	 * request that only the keeper can serve from now on. */
	if (!rl.keeper_fork)
		pthread_mutex_unlock(&rl.lock);
}

/*
 * The child keeps none of the relay's descriptors: a copy of a pump's end
 * would keep the connection open after the child it belongs to closed it.
 */
static void rl_atfork_child(void)
{
	struct rl_ctl *ctl;
	struct rl_child *c;
	struct rl_listen *l;
	struct rl_sub *sub;
	struct rl_pump *p;
	bool was_owner = stack_active() && !ipx_relay_child;

	if (rl.keeper_fork) {
		/* The keeper goes on with everything (rl_keeper_main). */
		pthread_mutex_unlock(&rl.lock);
		return;
	}
	LIST_FOREACH(ctl, &rl.ctls, link)
		real.close(ctl->fd);
	LIST_FOREACH(c, &rl.children, link)
		if (c->pidfd >= 0)
			real.close(c->pidfd);
	LIST_FOREACH(l, &rl.listens, link)
		LIST_FOREACH(sub, &l->subs, link)
			real.close(sub->ch);
	LIST_FOREACH(p, &rl.pumps, link) {
		real.close(p->sp);
		if (p->child_end >= 0)
			real.close(p->child_end);
	}
	LIST_INIT(&rl.ctls);
	LIST_INIT(&rl.children);
	LIST_INIT(&rl.listens);
	LIST_INIT(&rl.pumps);
	LIST_INIT(&rl.pends);
	if (rl.running) {
		real.close(rl.epfd);
		real.close(rl.door);
		ipx_private_del(rl.lfd);
		real.close(rl.lfd);
		rl.epfd = rl.door = rl.lfd = -1;
		rl.running = false;
	}
	if (rl_ctl_fd >= 0) {
		ipx_private_del(rl_ctl_fd);
		real.close(rl_ctl_fd);
		rl_ctl_fd = -1;
	}
	/* Only a fork through our wrapper is known to the owner (the wrapper
	 * set pending_seq; 0 for the C library's own forks). */
	rl_my_seq = rl.pending_seq;
	rl.pending_seq = 0;
	if (was_owner || ipx_relay_child)
		ipx_relay_child = true;
	pthread_mutex_init(&rl_child_lock, NULL);
	pthread_mutex_unlock(&rl.lock);
}

/* Under rl.lock: the listening socket and the thread. */
static int rl_start(void)
{
	uint64_t nonce = 0;
	pthread_t tid;
	sigset_t all, old;
	int err;

	if (rl.running)
		return 0;
	if (getrandom(&nonce, sizeof(nonce), GRND_NONBLOCK) != sizeof(nonce))
		nonce = (uint64_t)getpid() * 2654435761u ^ (uint64_t)time(NULL);
	memset(&rl.addr, 0, sizeof(rl.addr));
	rl.addr.sun_family = AF_UNIX;
	int len = snprintf(rl.addr.sun_path + 1, sizeof(rl.addr.sun_path) - 1,
			   "libretto-relay/%d/%016llx", (int)getpid(), (unsigned long long)nonce);
	rl.alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len);
	rl.lfd = real.socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	rl.epfd = real.epoll_create1(EPOLL_CLOEXEC);
	rl.door = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (rl.lfd < 0 || rl.epfd < 0 || rl.door < 0 ||
	    real.bind(rl.lfd, (struct sockaddr *)&rl.addr, rl.alen) < 0 ||
	    real.listen(rl.lfd, 64) < 0) {
		err = -errno;
		goto fail;
	}
	(void)ipx_private_add(rl.lfd);
	lsock_relay_flush = rl_flush;
	rl.door_ev.tag = RL_T_DOOR;
	rl.lfd_ev.tag = RL_T_LFD;
	rl_ep(rl.door, &rl.door_ev, EPOLLIN, EPOLL_CTL_ADD);
	rl_ep(rl.lfd, &rl.lfd_ev, EPOLLIN, EPOLL_CTL_ADD);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = -pthread_create(&tid, NULL, rl_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err < 0) {
		ipx_private_del(rl.lfd);
		goto fail;
	}
	pthread_detach(tid);
	pthread_setname_np(tid, "libretto-relay");
	rl.running = true;
	return 0;
fail:
	if (rl.lfd >= 0)
		real.close(rl.lfd);
	if (rl.epfd >= 0)
		real.close(rl.epfd);
	if (rl.door >= 0)
		real.close(rl.door);
	rl.lfd = rl.epfd = rl.door = -1;
	return err;
}

static int rl_cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;

	return x < y ? -1 : x > y;
}

/* The libOS sockets the child will inherit (every description in the
 * descriptor table), each with a remote reference for it. */
static struct rl_child *rl_child_prepare(void)
{
	struct rl_child *c = calloc(1, sizeof(*c));
	int cap = 16, n = 0, lim = fdtab_limit();

	if (c == NULL || (c->socks = malloc((size_t)cap * sizeof(*c->socks))) == NULL) {
		free(c);
		return NULL;
	}
	for (int fd = 0; fd < lim; fd++) {
		struct ipx_file *f = fdtab_get(fd, ipx_pin);

		if (f == NULL)
			continue;
		if (f != &ipx_private && f->kind == IPX_SOCK) {
			if (n == cap) {
				void *q = realloc(c->socks, (size_t)cap * 2 * sizeof(*c->socks));

				if (q == NULL) {
					ipx_put(f);
					break;
				}
				c->socks = q;
				cap *= 2;
			}
			c->socks[n++] = f->sock;
			lsock_hold(f->sock);	/* until the ref below */
		}
		ipx_put(f);
	}
	qsort(c->socks, (size_t)n, sizeof(*c->socks), rl_cmp_ptr);
	int u = 0;
	for (int i = 0; i < n; i++) {
		if (u > 0 && c->socks[u - 1] == c->socks[i]) {
			lsock_drop(c->socks[i]);
			continue;
		}
		c->socks[u++] = c->socks[i];
	}
	for (int i = 0; i < u; i++) {
		lsock_remote_get(c->socks[i]);
		lsock_drop(c->socks[i]);
	}
	c->nsocks = u;
	c->pidfd = -1;
	c->pid_ev.tag = RL_T_PID;
	c->pid_ev.obj = c;
	return c;
}

static void rl_child_abort(struct rl_child *c)
{
	for (int i = 0; i < c->nsocks; i++)
		rl_put_sock(c->socks[i]);
	free(c->socks);
	free(c);
}

static pthread_once_t rl_once = PTHREAD_ONCE_INIT;

static void rl_register_atfork(void)
{
	(void)pthread_atfork(rl_atfork_prepare, rl_atfork_parent, rl_atfork_child);
}

static int rl_child_connect(void);
static int rl_child_call(struct rl_msg *m, int *pfd);

/* A child about to fork: the owner makes a record for the grandchild. */
static void rl_fork_prepare_child(void)
{
	struct rl_msg m = { .type = RL_FORK };
	int fd;

	pthread_mutex_lock(&rl_child_lock);
	rl.pending_seq = 0;
	if (rl_child_call(&m, &fd) == 0)
		rl.pending_seq = m.seq;
	if (fd >= 0)
		real.close(fd);
	pthread_mutex_unlock(&rl_child_lock);
}

static void rl_pending_fork_done(pid_t pid)
{
	struct rl_msg m = { .type = RL_FORK_DONE };

	if (rl.pending_seq == 0)
		return;
	m.seq = rl.pending_seq;
	m.id = pid > 0 ? (uint64_t)pid : 0;
	rl.pending_seq = 0;
	pthread_mutex_lock(&rl_child_lock);
	if (rl_ctl_fd >= 0)
		(void)rl_send(rl_ctl_fd, &m, -1, 0);
	pthread_mutex_unlock(&rl_child_lock);
}

IPX_EXPORT pid_t fork(void)
{
	struct rl_child *c = NULL;
	bool as_child;
	pid_t pid;

	real_init();
	pthread_once(&rl_once, rl_register_atfork);
	as_child = ipx_relay_child;
	if (as_child) {
		rl_fork_prepare_child();
	} else if (stack_active()) {
		pthread_mutex_lock(&rl.lock);
		int err = rl_start();

		if (err < 0)
			rl_log("%s: %s", "cannot start the fork relay (forked children "
			       "cannot use inherited sockets)", -err);
		else if ((c = rl_child_prepare()) != NULL) {
			/* Listed before the fork: the child may say HELLO before
			 * fork() returns here. */
			c->seq = rl.pending_seq = ++rl.next_seq;
			c->parent = getpid();
			LIST_INSERT_HEAD(&rl.children, c, link);
		}
		pthread_mutex_unlock(&rl.lock);
	}
	pid = real.fork();
	if (pid == 0)
		return 0;
	if (as_child) {
		rl_pending_fork_done(pid);
		return pid;
	}
	pthread_mutex_lock(&rl.lock);
	rl.pending_seq = 0;
	if (c != NULL && pid < 0) {
		LIST_REMOVE(c, link);
		rl_child_abort(c);
	} else if (c != NULL) {
		c->pid = pid;
		rl_child_watch(c);
	}
	pthread_mutex_unlock(&rl.lock);
	return pid;
}

/* Whether fd is one the keeper must keep: the runtime's own. */
static bool rl_keeper_keeps(int fd)
{
	struct rl_ctl *ctl;
	struct rl_child *c;
	struct rl_listen *l;
	struct rl_sub *sub;
	struct rl_pump *p;

	if (fd == rl.epfd || fd == rl.door || ipx_fd_private(fd))
		return true;
	LIST_FOREACH(ctl, &rl.ctls, link)
		if (ctl->fd == fd)
			return true;
	LIST_FOREACH(c, &rl.children, link)
		if (c->pidfd == fd)
			return true;
	LIST_FOREACH(l, &rl.listens, link) {
		if (l->kfd == fd)
			return true;
		LIST_FOREACH(sub, &l->subs, link)
			if (sub->ch == fd)
				return true;
	}
	LIST_FOREACH(p, &rl.pumps, link)
		if (p->sp == fd || p->child_end == fd)
			return true;
	return false;
}

/*
 * The keeper: the exiting owner's copy, made at its exit, that runs the
 * stack for the children still using it and ends when they are done.  It
 * holds nothing of the program's: its descriptors other than the
 * runtime's are closed (the program's sockets as the program's exit would
 * close them: those the children hold stay open), stdin/out/err are
 * /dev/null, signals are back to their defaults, and it has its own
 * session.
 */
static void __attribute__((noreturn)) rl_keeper_main(void)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	sigset_t none;
	char path[64];
	DIR *d;

	rl.keeper = true;
	(void)setsid();
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			(void)real.sigaction(sig, &dfl, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&none);
	pthread_sigmask(SIG_SETMASK, &none, NULL);
	/* The program's sockets and epoll sets: closed as by its exit. */
	for (int fd = 0, lim = fdtab_limit(); fd < lim; fd++) {
		struct ipx_file *f = fdtab_peek(fd);

		if (f != NULL && f != &ipx_private && (f->kind == IPX_SOCK || f->kind == IPX_EPOLL))
			(void)close(fd);
	}
	snprintf(path, sizeof(path), "/proc/self/fd");
	d = opendir(path);
	if (d != NULL) {
		int dfd = dirfd(d), fds[1024], n = 0;
		struct dirent *e;

		while ((e = readdir(d)) != NULL && n < 1024) {
			int fd = atoi(e->d_name);

			if (e->d_name[0] != '.' && fd != dfd && fd > 2)
				fds[n++] = fd;
		}
		closedir(d);
		pthread_mutex_lock(&rl.lock);
		for (int i = 0; i < n; i++)
			if (fdtab_peek(fds[i]) == NULL && !rl_keeper_keeps(fds[i]))
				real.close(fds[i]);
		pthread_mutex_unlock(&rl.lock);
	}
	int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	for (int fd = 0; nul >= 0 && fd < 3; fd++)
		if (fdtab_peek(fd) == NULL)
			(void)real.dup2(nul, fd);
	if (nul > 2)
		real.close(nul);
	lsock_fork_owner();
	if (stack_keeper_child() < 0)
		_exit(1);
	rl_main(NULL);
	lsock_close_all();
	_exit(0);
}

/*
 * Process exit in the owner (lsock.c's exit handler asks): if forked
 * children still use sockets this process serves, fork the keeper and
 * return true (this process then leaves the sockets alone); false if there
 * is nothing to keep or the keeper could not be made.
 */
bool ipx_relay_exit_hook(void)
{
	bool need;
	pid_t pid;

	if (!stack_active() || ipx_relay_child)
		return false;
	pthread_mutex_lock(&rl.lock);
	need = rl.running && !rl_idle();
	pthread_mutex_unlock(&rl.lock);
	if (!need)
		return false;
	stack_keeper_prepare();
	rl.keeper_fork = true;
	pid = real.fork();
	if (pid == 0)
		rl_keeper_main();
	if (pid < 0) {
		int err = errno;

		rl.keeper_fork = false;
		pthread_mutex_unlock(&rl.lock);	/* rl_atfork_parent kept it */
		rl_log("%s: %s", "cannot fork a keeper for the sockets forked children still use",
		       err);
		stack_keeper_abort();
		return false;
	}
	stack_keeper_parent(pid);
	return true;
}

/* daemon(3) forks inside the C library, past our wrapper: do it here. */
IPX_EXPORT int daemon(int nochdir, int noclose)
{
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid > 0) {
		/* _exit runs no exit handlers: the keeper is made here. */
		(void)ipx_relay_exit_hook();
		_exit(0);
	}
	if (setsid() < 0)
		return -1;
	if (!nochdir && chdir("/") < 0) {
		/* As glibc: a failed chdir is not an error of daemon(). */
	}
	if (!noclose) {
		int fd = open("/dev/null", O_RDWR);

		if (fd < 0)
			return -1;
		(void)dup2(fd, 0);
		(void)dup2(fd, 1);
		(void)dup2(fd, 2);
		if (fd > 2)
			(void)close(fd);
	}
	return 0;
}

/* ---------------------------------------------------------------- child */

/* Under rl_child_lock: the control connection to the owner. */
static int rl_child_connect(void)
{
	struct timeval tv = { RELAY_TIMEOUT_S, 0 };
	struct rl_msg m = { .type = RL_HELLO };
	int fd, pfd;
	ssize_t n;

	if (rl_ctl_fd >= 0)
		return 0;
	if (rl_my_seq == 0)
		return -ENOTSUP;
	fd = real.socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	(void)real.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)real.setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (real.connect(fd, (struct sockaddr *)&rl.addr, rl.alen) < 0) {
		int err = -errno;

		real.close(fd);
		return err;
	}
	m.seq = rl_my_seq;
	if (rl_send(fd, &m, -1, 0) < 0 || (n = rl_recv(fd, &m, &pfd, 0)) <= 0 ||
	    m.type != RL_OK) {
		real.close(fd);
		return -ECONNREFUSED;
	}
	/* Above the program's numbers and invisible to it. */
	int hi = rl_fcntl(fd, F_DUPFD_CLOEXEC, 800);
	if (hi >= 0) {
		real.close(fd);
		fd = hi;
	}
	(void)ipx_private_add(fd);
	rl_ctl_fd = fd;
	return 0;
}

static void rl_child_log(int err)
{
	static atomic_bool once;

	if (atomic_exchange(&once, true))
		return;
	fprintf(stderr, "libretto: pid %d (forked from the process that runs the TCP/IP "
		"stack) cannot use an inherited socket: %s; it is a plain kernel socket "
		"in this process\n", (int)getpid(),
		err == -ENOTSUP ? "this process was not forked by the stack's owner" :
		err == -EOPNOTSUPP ? "only TCP sockets are relayed to children" :
		strerror(-err));
}

/* Re-point every descriptor naming f at nfd (a relay's kernel socket), or
 * make them plain kernel descriptors when nf is NULL. */
static void rl_repoint(struct ipx_file *f, struct ipx_file *nf, int nfd)
{
	int (*rf)(int, int, ...) = (int (*)(int, int, ...))real.fcntl;
	int lim = fdtab_limit();
	void *old;

	f->relay_done = true;
	for (int fd = 0; fd < lim; fd++) {
		if (fdtab_peek(fd) != f)
			continue;
		if (nf != NULL) {
			int fl = rf(fd, F_GETFD, 0L);

			if (real.dup3(nfd, fd, fl >= 0 && (fl & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0)
				continue;
			if (ipx_attach(nf, fd) == 0)
				continue;
		}
		if (fdtab_swap(fd, NULL, &old) == 0 && old != NULL)
			ipx_detach(old);
	}
}

/* Under rl_child_lock: one request and its reply (matched by number: a
 * late reply to a request that timed out is dropped).  *pfd gets the
 * descriptor that came with it, or -1.  0, or -errno (the owner's error,
 * or the transport's). */
static int rl_child_call(struct rl_msg *m, int *pfd)
{
	static uint64_t next_req;
	uint64_t want;
	ssize_t n;
	int err;

	*pfd = -1;
	err = rl_child_connect();
	if (err < 0)
		return err;
	m->req = want = ++next_req;
	err = rl_send(rl_ctl_fd, m, -1, 0);
	if (err < 0)
		return err;
	for (;;) {
		n = rl_recv(rl_ctl_fd, m, pfd, 0);
		if (n < 0)
			return n == -EAGAIN ? -ETIMEDOUT : (int)n;
		if (n == 0)
			return -ECONNRESET;
		if (m->req == want)
			break;
		if (*pfd >= 0)
			real.close(*pfd);
		*pfd = -1;
	}
	if (m->type != RL_OK) {
		if (*pfd >= 0)
			real.close(*pfd);
		*pfd = -1;
		return -(m->err > 0 ? m->err : EPROTO);
	}
	return 0;
}

struct ipx_file *ipx_relay_adopt(int fd, struct ipx_file *f)
{
	struct rl_msg m = { .type = RL_ATTACH };
	struct ipx_file *nf = NULL;
	int nfd = -1, err;

	pthread_mutex_lock(&rl_child_lock);
	if (f->relay_done || fdtab_peek(fd) != f) {
		/* Another thread adopted it meanwhile. */
		pthread_mutex_unlock(&rl_child_lock);
		ipx_put(f);
		f = fdtab_get(fd, ipx_pin);
		if (f != NULL && f->kind == IPX_SOCK) {
			ipx_put(f);
			return NULL;
		}
		return f;
	}
	m.id = (uint64_t)(uintptr_t)f->sock;
	err = rl_child_call(&m, &nfd);
	if (err == 0 && nfd < 0)
		err = -EPROTO;
	if (err == 0) {
		struct ipx_relay_info *ri = calloc(1, sizeof(*ri));

		nf = ri ? ipx_file_new(IPX_RELAY) : NULL;
		if (nf == NULL) {
			free(ri);
			err = -ENOMEM;
		} else {
			ri->kind = (int)m.kind;
			ri->domain = f->domain;
			ri->type = m.kind == RL_KIND_UDP ? SOCK_DGRAM : SOCK_STREAM;
			ri->oid = m.kind == RL_KIND_UDP ? m.id : 0;
			ri->local = m.local;
			ri->llen = m.llen;
			ri->peer = m.peer;
			ri->plen = m.plen;
			nf->relay = ri;
			nf->domain = f->domain;
			if (lsock_nonblock(f->sock))
				(void)rl_fcntl(nfd, F_SETFL, O_NONBLOCK);
		}
	}
	if (err < 0)
		rl_child_log(err);
	rl_repoint(f, nf, nfd);
	if (nfd >= 0)
		real.close(nfd);
	pthread_mutex_unlock(&rl_child_lock);
	ipx_put(f);
	if (nf != NULL && fdtab_peek(fd) != nf) {
		ipx_put(nf);
		return NULL;
	}
	return nf;
}

void ipx_relay_release(struct ipx_file *f)
{
	struct rl_msg m = { .type = RL_RELEASE };

	if (f->relay_done)
		return;
	f->relay_done = true;
	pthread_mutex_lock(&rl_child_lock);
	if (rl_child_connect() == 0) {
		m.id = (uint64_t)(uintptr_t)f->sock;
		(void)rl_send(rl_ctl_fd, &m, -1, 0);
	}
	pthread_mutex_unlock(&rl_child_lock);
}

void ipx_relay_info_free(struct ipx_file *f)
{
	free(f->relay);
	f->relay = NULL;
}

/*
 * The process that served this listener is gone (killed: its exit path
 * would have made a keeper).  Say so once and put a listener that never
 * becomes ready in its place, so that an event loop does not spin on the
 * channel's end of file.
 */
static void rl_listener_dead(int fd)
{
	static atomic_bool said;
	struct sockaddr_in lo = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int (*rf)(int, int, ...) = (int (*)(int, int, ...))real.fcntl;
	int k, fdfl, flfl;
	void *old;

	if (!atomic_exchange(&said, true))
		fprintf(stderr, "libretto: pid %d: the process that ran the TCP/IP stack is gone; "
			"inherited listeners accept nothing more\n", (int)getpid());
	k = real.socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (k < 0)
		return;
	fdfl = rf(fd, F_GETFD, 0L);
	flfl = rf(fd, F_GETFL, 0L);
	if (real.bind(k, (struct sockaddr *)&lo, sizeof(lo)) == 0 && real.listen(k, 1) == 0 &&
	    real.dup3(k, fd, fdfl >= 0 && (fdfl & FD_CLOEXEC) ? O_CLOEXEC : 0) >= 0) {
		if (flfl >= 0)
			(void)rf(fd, F_SETFL, (long)(flfl & O_NONBLOCK));
		if (fdtab_swap(fd, NULL, &old) == 0 && old != NULL)
			ipx_detach(old);
	}
	real.close(k);
}

int ipx_relay_accept(struct ipx_file *f, int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
	struct ipx_relay_info *ri = f->relay;
	struct rl_msg m;
	int cfd;
	ssize_t n;

	if (ri->kind != RL_KIND_LISTEN)
		return -EINVAL;
	if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC))
		return -EINVAL;
	for (;;) {
		n = rl_recv(fd, &m, &cfd, 0);
		if (n < 0)
			return (int)n;
		if (n == 0) {
			rl_listener_dead(fd);
			return -ENETDOWN;
		}
		if (m.type == RL_CONN && cfd >= 0)
			break;
		if (cfd >= 0)
			real.close(cfd);
	}
	struct rl_msg ack = { .type = RL_ACK, .id = m.id };
	(void)rl_send(fd, &ack, -1, MSG_DONTWAIT);
	/* MSG_CMSG_CLOEXEC made it close-on-exec; accept4 decides. */
	if (!(flags & SOCK_CLOEXEC))
		(void)rl_fcntl(cfd, F_SETFD, 0);
	if (flags & SOCK_NONBLOCK)
		(void)rl_fcntl(cfd, F_SETFL, O_NONBLOCK);
	if (m.kind == RL_KIND_CONN) {
		struct ipx_relay_info *ci = calloc(1, sizeof(*ci));
		struct ipx_file *nf = ci ? ipx_file_new(IPX_RELAY) : NULL;

		if (nf == NULL) {
			free(ci);
			real.close(cfd);
			return -ENOMEM;
		}
		ci->kind = RL_KIND_CONN;
		ci->domain = ri->domain;
		ci->type = SOCK_STREAM;
		ci->local = m.local;
		ci->llen = m.llen;
		ci->peer = m.peer;
		ci->plen = m.plen;
		nf->relay = ci;
		nf->domain = ri->domain;
		int err = ipx_attach(nf, cfd);

		ipx_put(nf);
		if (err < 0) {
			real.close(cfd);
			return err;
		}
	}
	if (sa != NULL && len != NULL) {
		if (m.kind == RL_KIND_KERNEL) {
			if (real.getpeername(cfd, sa, len) < 0)
				*len = 0;
		} else {
			memcpy(sa, &m.peer, *len < m.plen ? *len : m.plen);
			*len = m.plen;
		}
	}
	return cfd;
}

int ipx_relay_getname(struct ipx_file *f, bool peer, struct sockaddr *sa, socklen_t *len)
{
	struct ipx_relay_info *ri = f->relay;
	socklen_t n = peer ? ri->plen : ri->llen;

	if (len == NULL || sa == NULL)
		return -EFAULT;
	if (peer && (ri->kind != RL_KIND_CONN || n == 0))
		return -ENOTCONN;
	memcpy(sa, peer ? &ri->peer : &ri->local, *len < n ? *len : n);
	*len = n;
	return 0;
}

static int rl_put_int(void *val, socklen_t *len, int v)
{
	if (val == NULL || len == NULL || *len < (socklen_t)sizeof(int))
		return -EINVAL;
	memcpy(val, &v, sizeof(int));
	*len = sizeof(int);
	return 0;
}

int ipx_relay_getsockopt(struct ipx_file *f, int fd, int level, int name, void *val,
			 socklen_t *len)
{
	struct ipx_relay_info *ri = f->relay;

	if (level == SOL_SOCKET) {
		switch (name) {
		case SO_TYPE:
			return rl_put_int(val, len, ri->type ? ri->type : SOCK_STREAM);
		case SO_DOMAIN:
			return rl_put_int(val, len, ri->domain);
		case SO_PROTOCOL:
			return rl_put_int(val, len, ri->type == SOCK_DGRAM ? IPPROTO_UDP : IPPROTO_TCP);
		case SO_ACCEPTCONN:
			return rl_put_int(val, len, ri->kind == RL_KIND_LISTEN);
		default:
			break;
		}
	}
	for (int i = 0; i < ri->nopts; i++)
		if (ri->opts[i].level == level && ri->opts[i].name == name)
			return rl_put_int(val, len, ri->opts[i].value);
	if (level == SOL_SOCKET)
		return real.getsockopt(fd, level, name, val, len) < 0 ? -errno : 0;
	if (level == IPPROTO_TCP && name == TCP_INFO)
		return -ENOPROTOOPT;
	/* The protocols' options default to 0 (off) as on a new socket. */
	return rl_put_int(val, len, 0);
}

int ipx_relay_setsockopt(struct ipx_file *f, int fd, int level, int name, const void *val,
			 socklen_t len)
{
	struct ipx_relay_info *ri = f->relay;
	int v = 0, i;

	if (level == SOL_SOCKET && name != SO_KEEPALIVE)
		return real.setsockopt(fd, level, name, val, len) < 0 ? -errno : 0;
	if (val == NULL || len < (socklen_t)sizeof(int))
		return -EINVAL;
	memcpy(&v, val, sizeof(int));
	for (i = 0; i < ri->nopts; i++)
		if (ri->opts[i].level == level && ri->opts[i].name == name)
			break;
	if (i == ri->nopts) {
		if (ri->nopts == (int)(sizeof(ri->opts) / sizeof(ri->opts[0])))
			return 0;
		ri->nopts++;
	}
	ri->opts[i].level = level;
	ri->opts[i].name = name;
	ri->opts[i].value = v;
	return 0;
}

/* ---- sockets a child makes */

int ipx_relay_socket(int domain, int type, int kfd)
{
	struct ipx_relay_info *ri = calloc(1, sizeof(*ri));
	struct ipx_file *nf = ri ? ipx_file_new(IPX_RELAY) : NULL;
	int err;

	if (nf == NULL) {
		free(ri);
		return -ENOMEM;
	}
	ri->kind = RL_KIND_NEW;
	ri->domain = domain;
	ri->type = type;
	nf->relay = ri;
	nf->domain = domain;
	err = ipx_attach(nf, kfd);
	ipx_put(nf);
	return err;
}

/* The IPv4 address a sockaddr names (plain or v4-mapped), or false. */
static bool rl_v4(const struct sockaddr *sa, socklen_t len, struct in_addr *out)
{
	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		*out = ((const struct sockaddr_in *)sa)->sin_addr;
		return true;
	}
	if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a)) {
			memcpy(out, &a->s6_addr[12], 4);
			return true;
		}
		if (IN6_IS_ADDR_UNSPECIFIED(a)) {
			out->s_addr = htonl(INADDR_ANY);
			return true;
		}
	}
	return false;
}

/* The descriptor leaves the relay: a plain kernel socket from now on. */
static void rl_to_kernel(int fd)
{
	void *old;

	if (fdtab_swap(fd, NULL, &old) == 0 && old != NULL)
		ipx_detach(old);
}

/* Under rl_child_lock: the owner's socket behind a new one. */
static int rl_new_oid(struct ipx_relay_info *ri, int fd)
{
	struct rl_msg m = { .type = RL_SOCKET };
	int v = 0, pfd, err;
	socklen_t l = sizeof(v);

	if (ri->oid != 0)
		return 0;
	m.kind = (uint32_t)ri->domain;
	m.stype = (uint32_t)ri->type;
	if (real.getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &v, &l) == 0 && v)
		m.seq |= RL_REUSEADDR;
	l = sizeof(v);
	if (real.getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &v, &l) == 0 && v)
		m.seq |= RL_REUSEPORT;
	err = rl_child_call(&m, &pfd);
	if (err == 0)
		ri->oid = m.id;
	return err;
}

static int rl_swap_fd(int fd, int nfd);

/* Under rl_child_lock: a new UDP socket gets the owner's socket and its
 * datagram channel (an unbound one is bound to an ephemeral port there). */
static int rl_udp_attach_locked(struct ipx_relay_info *ri, int fd)
{
	struct rl_msg m = { .type = RL_ATTACH };
	int pfd = -1, err;

	if (ri->kind == RL_KIND_UDP)
		return 0;
	err = rl_new_oid(ri, fd);
	if (err < 0)
		return err;
	m.id = ri->oid;
	err = rl_child_call(&m, &pfd);
	if (err == 0 && pfd < 0)
		err = -EPROTO;
	if (err == 0)
		err = rl_swap_fd(fd, pfd);
	if (err == 0) {
		ri->kind = RL_KIND_UDP;
		if (m.llen > 0) {
			ri->local = m.local;
			ri->llen = m.llen;
		}
	}
	if (pfd >= 0)
		real.close(pfd);
	return err;
}

static int rl_udp_connect(struct ipx_relay_info *ri, int fd, const struct sockaddr *sa,
			  socklen_t len)
{
	struct rl_msg m = { .type = RL_UCONNECT };
	struct in_addr a;
	int pfd, err;

	if (ri->kind == RL_KIND_NEW && sa != NULL && sa->sa_family != AF_UNSPEC &&
	    (!rl_v4(sa, len, &a) || !stack_routes(a))) {
		/* Loopback, another subnet: the kernel socket connects. */
		rl_to_kernel(fd);
		return real.connect(fd, sa, len) < 0 ? -errno : 0;
	}
	if (sa == NULL || (size_t)len > sizeof(m.peer))
		return -EINVAL;
	pthread_mutex_lock(&rl_child_lock);
	err = rl_udp_attach_locked(ri, fd);
	if (err == 0) {
		m.id = ri->oid;
		memcpy(&m.peer, sa, len);
		m.plen = len;
		err = rl_child_call(&m, &pfd);
	}
	if (err == 0) {
		ri->local = m.local;
		ri->llen = m.llen;
		ri->peer = m.peer;
		ri->plen = m.plen;
	}
	pthread_mutex_unlock(&rl_child_lock);
	return err;
}

bool ipx_relay_is_dgram(const struct ipx_file *f)
{
	return f->relay != NULL && f->relay->type == SOCK_DGRAM;
}

ssize_t ipx_relay_udp_recvmsg(struct ipx_file *f, int fd, struct msghdr *msg, int flags)
{
	struct ipx_relay_info *ri = f->relay;
	struct rl_dgram h;
	ssize_t n;
	int err;

	if (msg->msg_iovlen > IOV_MAX)
		return -EMSGSIZE;
	if (ri->kind != RL_KIND_UDP) {
		pthread_mutex_lock(&rl_child_lock);
		err = rl_udp_attach_locked(ri, fd);
		pthread_mutex_unlock(&rl_child_lock);
		if (err < 0)
			return err;
	}
	struct iovec iov[1 + msg->msg_iovlen];
	struct msghdr m2 = { .msg_iov = iov, .msg_iovlen = 1 + msg->msg_iovlen };

	iov[0].iov_base = &h;
	iov[0].iov_len = sizeof(h);
	for (size_t i = 0; i < msg->msg_iovlen; i++)
		iov[1 + i] = msg->msg_iov[i];
	n = real.recvmsg(fd, &m2, flags & (MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC));
	if (n < 0)
		return -errno;
	if (n == 0)
		return -ENETDOWN;	/* the owner is gone */
	if ((size_t)n < sizeof(h))
		return -EPROTO;
	msg->msg_flags = m2.msg_flags & MSG_TRUNC;
	msg->msg_controllen = 0;
	if (msg->msg_name != NULL) {
		socklen_t al = h.alen <= sizeof(h.addr) ? h.alen : 0;

		memcpy(msg->msg_name, &h.addr, msg->msg_namelen < al ? msg->msg_namelen : al);
		msg->msg_namelen = al;
	}
	return n - (ssize_t)sizeof(h);
}

ssize_t ipx_relay_udp_sendmsg(struct ipx_file *f, int fd, const struct msghdr *msg, int flags)
{
	struct ipx_relay_info *ri = f->relay;
	struct rl_dgram h = { 0 };
	size_t total = 0;
	ssize_t n;
	int err;

	if (msg->msg_iovlen > IOV_MAX)
		return -EMSGSIZE;
	for (size_t i = 0; i < msg->msg_iovlen; i++)
		total += msg->msg_iov[i].iov_len;
	if (total > RL_DGRAM_MAX - 28)
		return -EMSGSIZE;
	if (msg->msg_name != NULL && msg->msg_namelen > 0) {
		if (msg->msg_namelen > sizeof(h.addr))
			return -EINVAL;
		memcpy(&h.addr, msg->msg_name, msg->msg_namelen);
		h.alen = msg->msg_namelen;
	} else if (ri->plen == 0) {
		return -EDESTADDRREQ;
	}
	if (ri->kind != RL_KIND_UDP) {
		pthread_mutex_lock(&rl_child_lock);
		err = rl_udp_attach_locked(ri, fd);
		pthread_mutex_unlock(&rl_child_lock);
		if (err < 0)
			return err;
	}
	struct iovec iov[1 + msg->msg_iovlen];
	struct msghdr m2 = { .msg_iov = iov, .msg_iovlen = 1 + msg->msg_iovlen };

	iov[0].iov_base = &h;
	iov[0].iov_len = sizeof(h);
	for (size_t i = 0; i < msg->msg_iovlen; i++)
		iov[1 + i] = msg->msg_iov[i];
	n = real.sendmsg(fd, &m2, (flags & MSG_DONTWAIT) | MSG_NOSIGNAL);
	if (n < 0)
		return errno == EPIPE ? -ENETDOWN : -errno;
	return n < (ssize_t)sizeof(h) ? 0 : n - (ssize_t)sizeof(h);
}

int ipx_relay_bind(struct ipx_file *f, int fd, const struct sockaddr *sa, socklen_t len)
{
	struct ipx_relay_info *ri = f->relay;
	struct rl_msg m = { .type = RL_BIND };
	struct in_addr a;
	int pfd, err;

	if (ri->kind != RL_KIND_NEW)
		return -EINVAL;
	/* Loopback and IPv6 addresses are the kernel's, as in the owner. */
	if (!rl_v4(sa, len, &a) || (a.s_addr != htonl(INADDR_ANY) && !stack_routes(a) &&
				    a.s_addr != stack_ip().s_addr)) {
		if (real.bind(fd, sa, len) < 0)
			return -errno;
		rl_to_kernel(fd);
		return 0;
	}
	if ((size_t)len > sizeof(m.local))
		return -EINVAL;
	pthread_mutex_lock(&rl_child_lock);
	err = rl_new_oid(ri, fd);
	if (err == 0) {
		m.id = ri->oid;
		memcpy(&m.local, sa, len);
		m.llen = len;
		err = rl_child_call(&m, &pfd);
		if (err == 0) {
			ri->local = m.local;
			ri->llen = m.llen;
		}
	}
	/* A bound UDP socket receives from now on: attach it. */
	if (err == 0 && ri->type == SOCK_DGRAM)
		err = rl_udp_attach_locked(ri, fd);
	pthread_mutex_unlock(&rl_child_lock);
	return err;
}

/* Re-point fd at nfd (from the owner), keeping its descriptor flags and
 * O_NONBLOCK. */
static int rl_swap_fd(int fd, int nfd)
{
	int (*rf)(int, int, ...) = (int (*)(int, int, ...))real.fcntl;
	int fdfl = rf(fd, F_GETFD, 0L), flfl = rf(fd, F_GETFL, 0L);

	if (real.dup3(nfd, fd, fdfl >= 0 && (fdfl & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0)
		return -errno;
	if (flfl >= 0 && (flfl & O_NONBLOCK))
		(void)rf(fd, F_SETFL, (long)O_NONBLOCK);
	return 0;
}

int ipx_relay_listen(struct ipx_file *f, int fd, int backlog)
{
	struct ipx_relay_info *ri = f->relay;
	struct rl_msg m = { .type = RL_LISTEN };
	int pfd = -1, err;

	if (ri->kind == RL_KIND_LISTEN)
		return 0;
	if (ri->kind != RL_KIND_NEW)
		return -EINVAL;
	pthread_mutex_lock(&rl_child_lock);
	err = rl_new_oid(ri, fd);
	if (err == 0) {
		m.id = ri->oid;
		m.kind = (uint32_t)(backlog < 0 ? 0 : backlog);
		err = rl_child_call(&m, &pfd);
	}
	if (err == 0) {
		ri->local = m.local;
		ri->llen = m.llen;
		m = (struct rl_msg){ .type = RL_ATTACH, .id = ri->oid };
		err = rl_child_call(&m, &pfd);
		if (err == 0 && pfd < 0)
			err = -EPROTO;
	}
	if (err == 0)
		err = rl_swap_fd(fd, pfd);
	if (err == 0) {
		ri->kind = RL_KIND_LISTEN;
		ri->oid = 0;	/* the listener channel holds it now */
	}
	if (pfd >= 0)
		real.close(pfd);
	pthread_mutex_unlock(&rl_child_lock);
	return err;
}

int ipx_relay_connect(struct ipx_file *f, int fd, const struct sockaddr *sa, socklen_t len)
{
	struct ipx_relay_info *ri = f->relay;
	struct rl_msg m = { .type = RL_CONNECT };
	struct in_addr a;
	int pfd = -1, err;

	if (ri->type == SOCK_DGRAM)
		return rl_udp_connect(ri, fd, sa, len);
	if (ri->kind == RL_KIND_CONN)
		return -EISCONN;
	if (ri->kind != RL_KIND_NEW)
		return -EINVAL;
	if (!rl_v4(sa, len, &a) || !stack_routes(a)) {
		/* Loopback, another subnet: the kernel socket connects. */
		rl_to_kernel(fd);
		return real.connect(fd, sa, len) < 0 ? -errno : 0;
	}
	if ((size_t)len > sizeof(m.peer))
		return -EINVAL;
	pthread_mutex_lock(&rl_child_lock);
	err = rl_new_oid(ri, fd);
	if (err == 0) {
		m.id = ri->oid;
		memcpy(&m.peer, sa, len);
		m.plen = len;
		/* Blocking or not, the child waits for the outcome (a
		 * non-blocking connect then succeeds or fails at once, which
		 * Linux allows too); bounded by the relay's timeout. */
		err = rl_child_call(&m, &pfd);
		if (err == 0 && pfd < 0)
			err = -EPROTO;
	}
	if (err == 0)
		err = rl_swap_fd(fd, pfd);
	if (err == 0) {
		ri->kind = RL_KIND_CONN;
		ri->oid = 0;	/* the pump holds it now */
		ri->local = m.local;
		ri->llen = m.llen;
		ri->peer = m.peer;
		ri->plen = m.plen;
	}
	if (pfd >= 0)
		real.close(pfd);
	pthread_mutex_unlock(&rl_child_lock);
	return err;
}
