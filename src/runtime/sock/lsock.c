/* The socket layer's common part: lifetime, options, readiness, helpers. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
/* lwIP's options define their own TCP_MSS (the segment size it uses). */
#undef TCP_MSS
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>

#include <lwip/ip.h>
#include <lwip/tcp.h>
#include <lwip/priv/tcp_priv.h>
#include <lwip/udp.h>

#include <unistd.h>

#include "libretto/region.h"
#include "ipx/real.h"
#include "sock/lsock_impl.h"
#include "stack/stack.h"

/* Linux's defaults and limits for SO_RCVBUF/SO_SNDBUF (net.core.*mem_*). */
#define LS_TCP_RCVBUF_DEFAULT 131072
#define LS_TCP_SNDBUF_DEFAULT 16384
#define LS_UDP_BUF_DEFAULT 212992
#define LS_BUF_MAX 212992
#define LS_MIN_RCVBUF 2304
#define LS_MIN_SNDBUF 4608

/* The one mapping of lwIP's err_t to -errno. */
int ls_err(err_t err)
{
	switch (err) {
	case ERR_OK: return 0;
	case ERR_MEM: return -ENOMEM;
	case ERR_BUF: return -ENOBUFS;
	case ERR_TIMEOUT: return -ETIMEDOUT;
	case ERR_RTE: return -EHOSTUNREACH;
	case ERR_INPROGRESS: return -EINPROGRESS;
	case ERR_VAL: return -EINVAL;
	case ERR_WOULDBLOCK: return -EAGAIN;
	case ERR_USE: return -EADDRINUSE;
	case ERR_ALREADY: return -EALREADY;
	case ERR_ISCONN: return -EISCONN;
	case ERR_CONN: return -ENOTCONN;
	case ERR_IF: return -ENETDOWN;
	case ERR_ABRT: return -ECONNABORTED;
	case ERR_RST: return -ECONNRESET;
	case ERR_CLSD: return -ENOTCONN;
	case ERR_ARG: return -EINVAL;
	default: return -EIO;
	}
}

void ls_log_once(const char *msg, int err)
{
	static atomic_bool said;

	if (!atomic_exchange(&said, true))
		fprintf(stderr, "libretto: %s: %s (further such messages suppressed)\n",
			msg, strerror(err));
}

int64_t ls_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A deadline for a SO_*TIMEO value: 0 (forever) stays -1. */
int64_t ls_deadline(int64_t timeo_ms)
{
	return timeo_ms > 0 ? ls_now_ms() + timeo_ms : -1;
}

bool ls_is_loopback(uint32_t be_addr)
{
	return (ntohl(be_addr) >> 24) == 127;
}

void ls_ipaddr(ip_addr_t *a, uint32_t be_addr)
{
	memset(a, 0, sizeof(*a));
	ip_2_ip4(a)->addr = be_addr;
	IP_SET_TYPE(a, IPADDR_TYPE_V4);
}

void ls_sockaddr(struct sockaddr_in *sin, const ip_addr_t *a, uint16_t port)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	sin->sin_addr.s_addr = a ? ip_2_ip4(a)->addr : 0;
}

int ls_parse_addr(const struct lsock *s, const struct sockaddr *sa, socklen_t len,
		  struct sockaddr_in *out)
{
	struct sockaddr_in6 s6;

	if (sa == NULL)
		return -EINVAL;
	if (s->domain == AF_INET) {
		if (len < (socklen_t)sizeof(struct sockaddr_in))
			return -EINVAL;
		memcpy(out, sa, sizeof(*out));
		return out->sin_family == AF_INET ? LS_ADDR_V4 : -EAFNOSUPPORT;
	}
	/* AF_INET6: Linux takes the RFC 2133 size (no scope id) too. */
	if (len < 24)
		return -EINVAL;
	memset(&s6, 0, sizeof(s6));
	memcpy(&s6, sa, len < sizeof(s6) ? len : sizeof(s6));
	if (s6.sin6_family != AF_INET6)
		return -EAFNOSUPPORT;
	memset(out, 0, sizeof(*out));
	out->sin_family = AF_INET;
	out->sin_port = s6.sin6_port;
	if (IN6_IS_ADDR_UNSPECIFIED(&s6.sin6_addr) && !s->v6only)
		return LS_ADDR_V4;	/* :: serves IPv4 as 0.0.0.0 */
	if (IN6_IS_ADDR_V4MAPPED(&s6.sin6_addr) && !s->v6only) {
		memcpy(&out->sin_addr, &s6.sin6_addr.s6_addr[12], 4);
		return LS_ADDR_V4;
	}
	return LS_ADDR_V6;
}

/* Copy an address out with the truncation rules of accept/getsockname;
 * an AF_INET6 socket shows IPv4 addresses mapped (0.0.0.0 as ::). */
void ls_fill_addr(const struct lsock *s, const struct sockaddr_in *sin,
		  struct sockaddr *sa, socklen_t *len)
{
	struct sockaddr_storage ss;
	socklen_t sl = ls_kaddr(s, sin, &ss);

	if (sa == NULL || len == NULL)
		return;
	size_t n = *len < sl ? *len : sl;
	memcpy(sa, &ss, n);
	*len = sl;
}

/* The socket's own family's form of an IPv4 address. */
socklen_t ls_kaddr(const struct lsock *s, const struct sockaddr_in *sin,
		   struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (s->domain == AF_INET) {
		memcpy(ss, sin, sizeof(*sin));
		return sizeof(*sin);
	}
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	s6->sin6_family = AF_INET6;
	s6->sin6_port = sin->sin_port;
	if (sin->sin_addr.s_addr != htonl(INADDR_ANY)) {
		s6->sin6_addr.s6_addr[10] = 0xff;
		s6->sin6_addr.s6_addr[11] = 0xff;
		memcpy(&s6->sin6_addr.s6_addr[12], &sin->sin_addr, 4);
	}
	return sizeof(*s6);
}

/*
 * Ports: stack_port_add/del are reference counted per (proto, port) and show
 * the highest state added, so each socket adds its port once and deletes it
 * once; a state change (bound -> listening) adds the new state before
 * deleting the old reference.
 */
static uint8_t ls_proto(const struct lsock *s)
{
	return s->type == SOCK_STREAM ? REGION_PROTO_TCP : REGION_PROTO_UDP;
}

/*
 * A child after fork() shares the counters region with its parent (it is
 * mapped shared) but owns copies of the sockets: when it closes them (redis
 * and nginx children close the inherited listeners) it must not withdraw
 * the parent's ports, nor publish ports of its own, which no NIC serves.
 */
static atomic_bool ls_forked;
static pthread_once_t ls_fork_once = PTHREAD_ONCE_INIT;

static void ls_atfork_child(void)
{
	atomic_store(&ls_forked, true);
}

static void ls_fork_init(void)
{
	(void)pthread_atfork(NULL, NULL, ls_atfork_child);
}

void ls_port_publish(struct lsock *s, uint16_t port, uint8_t state)
{
	if (port == 0 || (s->port_pub == port && s->port_state == state))
		return;
	if (atomic_load(&ls_forked))
		return;
	if (s->port_pub != 0 && s->port_pub != port)
		ls_port_withdraw(s);
	stack_port_add(ls_proto(s), port, state);
	if (s->port_pub == port)
		stack_port_del(ls_proto(s), port);
	s->port_pub = port;
	s->port_state = state;
}

int ls_claim(struct lsock *s, uint16_t *port)
{
	int err;

	if (s->claimed_port != 0 || !stack_indirect())
		return 0;
	err = stack_port_claim(ls_proto(s), port);
	if (err == 0)
		s->claimed_port = *port;
	return err;
}

void ls_unclaim(struct lsock *s)
{
	if (s->claimed_port != 0) {
		stack_port_unclaim(ls_proto(s), s->claimed_port);
		s->claimed_port = 0;
	}
}

void ls_port_withdraw(struct lsock *s)
{
	if (s->port_pub == 0)
		return;
	if (!atomic_load(&ls_forked))
		stack_port_del(ls_proto(s), s->port_pub);
	s->port_pub = 0;
	s->port_state = 0;
}

/*
 * The region's connection table (region.h).  The free list is private to
 * the process that runs the stack and, like the table, changes only under
 * the stack lock; a slot never used yet is taken from conn_hwm.
 */
static uint16_t ls_conn_next[REGION_MAX_CONNS];	/* 1 + next free slot, 0: end */
static uint16_t ls_conn_free;			/* 1 + first free slot, 0: none */

/*
 * Only the process whose stack serves the NIC lists connections: a forked
 * child that never started the stack (ls_forked) must leave the parent's
 * entries alone, but a child that did start it (daemon()) owns the table.
 */
static struct libretto_region *ls_conn_region(void)
{
	struct libretto_region *r = stack_region();

	if (r == NULL)
		return NULL;
	if (atomic_load(&ls_forked) &&
	    __atomic_load_n(&r->owner_pid, __ATOMIC_RELAXED) != (uint32_t)getpid())
		return NULL;
	return r;
}

void ls_conn_publish(struct lsock *s)
{
	struct libretto_region *r;
	struct region_conn *c;
	unsigned i;

	if (s->conn_slot != 0 || s->type != SOCK_STREAM || (r = ls_conn_region()) == NULL)
		return;
	if (ls_conn_free != 0) {
		i = ls_conn_free - 1u;
		ls_conn_free = ls_conn_next[i];
	} else if (r->conn_hwm < REGION_MAX_CONNS) {
		i = r->conn_hwm;
		__atomic_store_n(&r->conn_hwm, i + 1, __ATOMIC_RELEASE);
	} else {
		__atomic_store_n(&r->conn_overflow, r->conn_overflow + 1, __ATOMIC_RELAXED);
		return;
	}
	c = &r->conns[i];
	__atomic_store_n(&c->local_ip, s->local.sin_addr.s_addr, __ATOMIC_RELAXED);
	__atomic_store_n(&c->remote_ip, s->remote.sin_addr.s_addr, __ATOMIC_RELAXED);
	__atomic_store_n(&c->local_port, ntohs(s->local.sin_port), __ATOMIC_RELAXED);
	__atomic_store_n(&c->remote_port, ntohs(s->remote.sin_port), __ATOMIC_RELAXED);
	/* Release: a valid entry is complete even if we die right after. */
	__atomic_store_n(&c->valid, REGION_CONN_VALID, __ATOMIC_RELEASE);
	s->conn_slot = (uint16_t)(i + 1);
}

void ls_conn_withdraw(struct lsock *s)
{
	struct libretto_region *r;
	unsigned i;

	if (s->conn_slot == 0)
		return;
	i = s->conn_slot - 1u;
	s->conn_slot = 0;
	if ((r = ls_conn_region()) == NULL || i >= REGION_MAX_CONNS)
		return;
	__atomic_store_n(&r->conns[i].valid, 0, __ATOMIC_RELEASE);
	ls_conn_next[i] = ls_conn_free;
	ls_conn_free = (uint16_t)(i + 1);
}

/* Receive queue. */
void ls_rxq_push(struct lsock *s, struct ls_buf *b)
{
	b->next = NULL;
	if (s->rxq_tail)
		s->rxq_tail->next = b;
	else
		s->rxq_head = b;
	s->rxq_tail = b;
	s->rx_bytes += b->p ? b->p->tot_len - b->off : 0;
	s->rx_count++;
}

void ls_rxq_flush(struct lsock *s)
{
	struct ls_buf *b, *n;

	for (b = s->rxq_head; b; b = n) {
		n = b->next;
		if (b->p)
			pbuf_free(b->p);
		free(b);
	}
	s->rxq_head = s->rxq_tail = NULL;
	s->rx_bytes = 0;
	s->rx_count = 0;
}

/* Lifetime. */
int lsock_create(int kfd, int type, struct lsock **out)
{
	return lsock_create_domain(kfd, AF_INET, type, out);
}

int lsock_create_domain(int kfd, int domain, int type, struct lsock **out)
{
	if (domain != AF_INET && domain != AF_INET6)
		return -EAFNOSUPPORT;
	if (type != SOCK_STREAM && type != SOCK_DGRAM)
		return -EPROTONOSUPPORT;
	(void)pthread_once(&ls_fork_once, ls_fork_init);
	struct lsock *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	atomic_init(&s->refs, 1);
	atomic_init(&s->nonblock, false);
	atomic_init(&s->busy, 0);
	atomic_init(&s->close_pending, false);
	s->kfd = kfd;
	s->type = type;
	s->domain = domain;
	s->local.sin_family = AF_INET;
	s->remote.sin_family = AF_INET;
	s->backlog = 0;
	s->keepidle = 7200;
	s->keepintvl = 75;
	s->keepcnt = 9;
	LIST_INIT(&s->watches);
	*out = s;
	return 0;
}

void lsock_hold(struct lsock *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void lsock_drop(struct lsock *s)
{
	/* acq_rel: the freeing thread must see every other holder's writes. */
	if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	/* The queue is flushed at close; this only runs for descriptions
	 * that never were closed (e.g. accepted, then dropped), under no lock:
	 * pbuf_free is safe without the core lock with malloc-backed pools. */
	ls_rxq_flush(s);
	free(s);
}

/* The pcb's callbacks carry a pointer to s: that pins the memory. */
void ls_attach_ref(struct lsock *s)
{
	if (!s->attached) {
		s->attached = true;
		lsock_hold(s);
	}
}

void ls_detach_ref(struct lsock *s)
{
	if (s->attached) {
		s->attached = false;
		lsock_drop(s);
	}
}

/*
 * Descriptions that have descriptors, so that process exit can close them
 * as the kernel closes a dying process's sockets.  Under the stack lock; a
 * description is on it from its first descriptor until its last one goes,
 * and the descriptors' holder keeps its memory alive meanwhile.
 */
static LIST_HEAD(, lsock) ls_open_list = LIST_HEAD_INITIALIZER(ls_open_list);

void lsock_fd_get(struct lsock *s)
{
	stack_lock();
	s->fd_refs++;
	if (!s->on_open_list && !s->closed) {
		LIST_INSERT_HEAD(&ls_open_list, s, open_link);
		s->on_open_list = true;
	}
	stack_unlock();
}

static void ls_open_unlink(struct lsock *s)
{
	if (s->on_open_list) {
		LIST_REMOVE(s, open_link);
		s->on_open_list = false;
	}
}

/* The close semantics of the last reference (under the lock). */
static void ls_close_locked(struct lsock *s)
{
	s->closed = true;
	ls_unclaim(s);
	ls_open_unlink(s);
	if (s->type == SOCK_STREAM)
		ls_tcp_close(s);	/* may unlock and relock to linger */
	else
		ls_udp_close(s);
	ls_rxq_flush(s);
	ls_port_withdraw(s);
	s->klisten = false;
	s->kudp = false;
	ls_notify(s);
}

/*
 * The close marked by the last fd_put while calls were in flight, once the
 * last of them left (under the lock).  close_pending and busy pair as in
 * Dekker's protocol (seq_cst): lsock_fd_put stores close_pending, then
 * loads busy; lsock_busy_put decrements busy, then loads close_pending, so
 * at least one of them sees the other and comes here; the first one closes.
 */
static void ls_close_pending_locked(struct lsock *s)
{
	if (!atomic_load(&s->close_pending) || atomic_load(&s->busy) > 0)
		return;
	atomic_store(&s->close_pending, false);
	if (!s->closed && s->fd_refs == 0 && s->remote_refs == 0)
		ls_close_locked(s);
}

void lsock_busy_get(struct lsock *s)
{
	atomic_fetch_add(&s->busy, 1);
}

void lsock_busy_put(struct lsock *s)
{
	if (atomic_fetch_sub(&s->busy, 1) != 1 || !atomic_load(&s->close_pending))
		return;
	lsock_hold(s);
	stack_lock();
	ls_close_pending_locked(s);
	stack_unlock();
	lsock_drop(s);
}

void lsock_fd_put(struct lsock *s)
{
	lsock_hold(s);
	stack_lock();
	if (--s->fd_refs > 0 || s->closed || s->remote_refs > 0) {
		stack_unlock();
		lsock_drop(s);
		return;
	}
	atomic_store(&s->close_pending, true);
	if (atomic_load(&s->busy) > 0) {
		/* A call in another thread still holds the description: it
		 * closes when that call returns (lsock_busy_put).  The kernel
		 * fd is closed by our caller now: stop watching it. */
		s->klisten = false;
		s->kudp = false;
		stack_unlock();
		lsock_drop(s);
		return;
	}
	atomic_store(&s->close_pending, false);
	ls_close_locked(s);
	stack_unlock();
	lsock_drop(s);
}

bool lsock_fd_put_kfd(struct lsock *s, int kfd)
{
	stack_lock();
	if (s->fd_refs == 1 && s->remote_refs > 0 && !s->closed) {
		s->fd_refs = 0;
		s->kfd = kfd;
		s->kfd_owned = true;
		stack_unlock();
		return true;
	}
	stack_unlock();
	lsock_fd_put(s);
	return false;
}

void (*lsock_relay_flush)(struct lsock *s);

void lsock_set_relayed(struct lsock *s, bool on)
{
	atomic_store_explicit(&s->relayed, on, memory_order_release);
}

void lsock_remote_get(struct lsock *s)
{
	lsock_hold(s);
	stack_lock();
	s->remote_refs++;
	if (!s->on_open_list && !s->closed) {
		LIST_INSERT_HEAD(&ls_open_list, s, open_link);
		s->on_open_list = true;
	}
	stack_unlock();
}

int lsock_remote_put(struct lsock *s)
{
	int kfd = -1;

	stack_lock();
	if (--s->remote_refs == 0 && s->fd_refs == 0 && !s->closed) {
		ls_close_locked(s);
		if (s->kfd_owned) {
			kfd = s->kfd;
			s->kfd_owned = false;
		}
	}
	stack_unlock();
	lsock_drop(s);
	return kfd;
}

int lsock_remote_refs(struct lsock *s)
{
	stack_lock();
	int n = s->remote_refs;
	stack_unlock();
	return n;
}

void lsock_own_kfd(struct lsock *s, int kfd)
{
	stack_lock();
	s->kfd = kfd;
	s->kfd_owned = true;
	stack_unlock();
}

bool lsock_is_listener(struct lsock *s)
{
	stack_lock();
	bool l = s->state == LS_LISTEN && !s->closed;
	stack_unlock();
	return l;
}

/* How long exit waits for data and FINs it queued to be acknowledged. */
#define LS_EXIT_FLUSH_MS 200

/* True while lwIP still has data or a FIN of ours not acknowledged. */
static bool ls_tcp_unacked_locked(void)
{
	for (struct tcp_pcb *pcb = tcp_active_pcbs; pcb; pcb = pcb->next)
		if (pcb->unsent || pcb->unacked)
			return true;
	return false;
}

/*
 * Process exit: the kernel closes a dying process's sockets, so its peers
 * get a FIN (or a RST when unread data was pending) at once.  Our stack
 * dies with the process, so close every libOS socket now, then run the stack
 * briefly (bounded) so that queued data and FINs get acknowledged.  Not in
 * a forked child: its sockets are copies of the parent's, whose peers must
 * not hear about the child's exit.  A linger time does not delay exit.
 * Signals are deferred while a thread holds the stack lock, so a handler
 * calling exit() never finds the lock held by its own thread.
 */
void lsock_close_all(void)
{
	struct lsock *s;
	bool pending;

	stack_lock();
	while ((s = LIST_FIRST(&ls_open_list)) != NULL) {
		ls_open_unlink(s);
		if (s->closed)
			continue;
		s->closed = true;
		if (s->linger_on && s->linger_sec > 0)
			s->linger_on = false;
		if (s->type == SOCK_STREAM)
			ls_tcp_close(s);
		else
			ls_udp_close(s);
		ls_rxq_flush(s);
		ls_port_withdraw(s);
		s->klisten = false;
		s->kudp = false;
		ls_notify(s);
	}
	pending = ls_tcp_unacked_locked();
	stack_unlock();
	for (int64_t end = ls_now_ms() + LS_EXIT_FLUSH_MS; pending && ls_now_ms() < end;) {
		if (stack_poll(64) == 0) {
			struct timespec ts = { 0, 200000 };
			nanosleep(&ts, NULL);
		}
		stack_lock();
		pending = ls_tcp_unacked_locked();
		stack_unlock();
	}
}

/* Weak: the unit tests link the socket layer without the relay. */
extern bool ipx_relay_exit_hook(void) __attribute__((weak));

__attribute__((destructor)) static void ls_exit_close(void)
{
	if (!stack_active() || atomic_load(&ls_forked))
		return;
	/* Forked children still use our sockets: a keeper takes them over. */
	if (ipx_relay_exit_hook != NULL && ipx_relay_exit_hook())
		return;
	lsock_close_all();
}

void lsock_fork_owner(void)
{
	atomic_store(&ls_forked, false);
}

int lsock_kfd(const struct lsock *s)
{
	return s->kfd;
}

void lsock_set_kfd(struct lsock *s, int kfd)
{
	s->kfd = kfd;
}

bool lsock_is_stream(const struct lsock *s)
{
	return s->type == SOCK_STREAM;
}

void lsock_set_nonblock(struct lsock *s, bool on)
{
	atomic_store(&s->nonblock, on);
}

bool lsock_nonblock(const struct lsock *s)
{
	return atomic_load(&((struct lsock *)s)->nonblock);
}

/* Readiness. */
uint32_t ls_events_locked(struct lsock *s)
{
	if (s->closed)
		return EPOLLHUP;
	return s->type == SOCK_STREAM ? ls_tcp_events(s) : ls_udp_events(s);
}

uint32_t lsock_events(struct lsock *s)
{
	stack_lock();
	uint32_t ev = ls_events_locked(s);
	stack_unlock();
	return ev;
}

uint32_t lsock_kernel_events(struct lsock *s)
{
	stack_lock();
	uint32_t ev = (s->klisten || s->kudp) && !s->closed ? EPOLLIN : 0;
	stack_unlock();
	return ev;
}

void ls_notify(struct lsock *s)
{
	struct lsock_watch *w;

	if (LIST_EMPTY(&s->watches))
		return;
	uint32_t ev = ls_events_locked(s);
	LIST_FOREACH(w, &s->watches, link)
		w->notify(w, ev);
}

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

/* Blocking helpers (see lsock_impl.h). */
static void ls_wait_notify(struct lsock_watch *w, uint32_t events)
{
	lsock_waiter_wake(w->arg);
}

int ls_wait_arm(struct ls_wait *wt)
{
	if (wt->w == NULL) {
		wt->w = lsock_waiter_self();
		if (wt->w == NULL)
			return -ENOMEM;
	}
	lsock_waiter_arm(wt->w);
	return 0;
}

void ls_wait_watch(struct lsock *s, struct ls_wait *wt)
{
	if (wt->watching)
		return;
	wt->watch.notify = ls_wait_notify;
	wt->watch.arg = wt->w;
	LIST_INSERT_HEAD(&s->watches, &wt->watch, link);
	wt->watching = true;
}

/* Sleep until notified, kfd shows kev, the deadline (-1: none) passes
 * (-EAGAIN) or a signal handler ran (-EINTR). */
int ls_wait_sleep(struct lsock *s, struct ls_wait *wt, int64_t deadline_ms, uint32_t kev)
{
	struct pollfd pfd = { .fd = s->kfd, .events = 0 };
	int timeout = -1;

	if (deadline_ms >= 0) {
		int64_t left = deadline_ms - ls_now_ms();
		if (left <= 0)
			return -EAGAIN;
		timeout = left > 1000000000 ? 1000000000 : (int)left;
	}
	if (kev & EPOLLIN)
		pfd.events |= POLLIN;
	if (kev & EPOLLOUT)
		pfd.events |= POLLOUT;
	int r = lsock_waiter_sleep(wt->w, &pfd, pfd.events && s->kfd >= 0 ? 1 : 0, timeout, NULL);
	if (r == -ETIMEDOUT)
		return -EAGAIN;
	/* Linux restarts socket calls after SA_RESTART handlers unless the
	 * socket has a timeout: the caller then just checks again. */
	if (r == -EINTR && deadline_ms < 0 && lsock_waiter_restartable(wt->w))
		return 0;
	return r;
}

void ls_wait_done(struct lsock *s, struct ls_wait *wt)
{
	if (!wt->watching)
		return;
	lsock_watch_del(s, &wt->watch);
	wt->watching = false;
}

/* Dispatch. */
/* Bind to an IPv6 address (or :: with IPV6_V6ONLY): the libOS has no IPv6,
 * so the socket lives on kfd alone from now on. */
static int ls_bind_kernel_only(struct lsock *s, const struct sockaddr *sa, socklen_t len)
{
	if (s->kfd < 0)
		return -EADDRNOTAVAIL;
	if (real.bind(s->kfd, sa, len) < 0)
		return -errno;
	s->bound = true;
	s->kernel_only = true;
	if (s->type == SOCK_DGRAM)
		s->kudp = true;
	return 0;
}

int lsock_bind(struct lsock *s, const struct sockaddr *sa, socklen_t len)
{
	struct sockaddr_in sin;
	int r = ls_parse_addr(s, sa, len, &sin);

	if (r < 0)
		return r;
	uint32_t a = sin.sin_addr.s_addr;
	if (r == LS_ADDR_V4 && a != htonl(INADDR_ANY) && !ls_is_loopback(a) &&
	    a != stack_ip().s_addr)
		return -EADDRNOTAVAIL;
	stack_lock();
	if (s->closed)
		r = -EBADF;
	else if (s->bound || s->state != LS_CLOSED)
		r = -EINVAL;
	else if (r == LS_ADDR_V6)
		r = ls_bind_kernel_only(s, sa, len);
	else if (s->type == SOCK_STREAM)
		r = ls_tcp_bind(s, &sin);
	else
		r = ls_udp_bind(s, &sin);
	stack_unlock();
	return r;
}

int lsock_listen(struct lsock *s, int backlog)
{
	if (s->type != SOCK_STREAM)
		return -EOPNOTSUPP;
	if (backlog < 0 || backlog > 4096)
		backlog = 4096;
	stack_lock();
	int r = s->closed ? -EBADF : ls_tcp_listen(s, backlog);
	stack_unlock();
	return r;
}

int lsock_accept(struct lsock *s, struct lsock **new_s, int *new_kfd,
		 struct sockaddr *sa, socklen_t *len, int flags)
{
	int r;

	if (s->type != SOCK_STREAM)
		return -EOPNOTSUPP;
	*new_s = NULL;
	*new_kfd = -1;
	lsock_busy_get(s);
	r = ls_tcp_accept(s, new_s, new_kfd, sa, len, flags);
	lsock_busy_put(s);
	return r;
}

int lsock_connect(struct lsock *s, const struct sockaddr *sa, socklen_t len)
{
	struct sockaddr_in sin;
	int r;

	if (s->type == SOCK_DGRAM)
		return ls_udp_connect(s, sa, len);
	if ((r = ls_parse_addr(s, sa, len, &sin)) < 0)
		return r;
	if (r == LS_ADDR_V6 || s->kernel_only) {
		stack_lock();
		r = s->state == LS_LISTEN ? -EISCONN : -EXDEV;
		stack_unlock();
		return r;
	}
	lsock_busy_get(s);
	r = ls_tcp_connect(s, &sin);
	lsock_busy_put(s);
	return r;
}

int lsock_shutdown(struct lsock *s, int how)
{
	if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
		return -EINVAL;
	stack_lock();
	int r;
	if (s->closed)
		r = -EBADF;
	else if (s->type == SOCK_STREAM)
		r = ls_tcp_shutdown(s, how);
	else
		r = ls_udp_shutdown(s, how);
	if (r == 0)
		ls_notify(s);
	stack_unlock();
	return r;
}

ssize_t lsock_sendmsg(struct lsock *s, const struct msghdr *msg, int flags)
{
	if (msg == NULL || (msg->msg_iovlen > 0 && msg->msg_iov == NULL))
		return -EFAULT;
	if (msg->msg_iovlen > 1024)
		return -EMSGSIZE;
	if (ls_iov_total(msg) == SSIZE_MAX)
		return -EINVAL;
	/* What a forked child wrote before us goes first (lsock.h). */
	if (atomic_load_explicit(&s->relayed, memory_order_acquire) && lsock_relay_flush != NULL)
		lsock_relay_flush(s);
	lsock_busy_get(s);
	ssize_t r = s->type == SOCK_STREAM ? ls_tcp_sendmsg(s, msg, flags) : ls_udp_sendmsg(s, msg, flags);
	lsock_busy_put(s);
	return r;
}

ssize_t lsock_recvmsg(struct lsock *s, struct msghdr *msg, int flags)
{
	if (msg == NULL || (msg->msg_iovlen > 0 && msg->msg_iov == NULL))
		return -EFAULT;
	if (msg->msg_iovlen > 1024)
		return -EMSGSIZE;
	if (flags & MSG_OOB)
		return -EINVAL;
	if (ls_iov_total(msg) == SSIZE_MAX)
		return -EINVAL;
	msg->msg_flags = 0;
	msg->msg_controllen = 0;
	lsock_busy_get(s);
	ssize_t r = s->type == SOCK_STREAM ? ls_tcp_recvmsg(s, msg, flags) : ls_udp_recvmsg(s, msg, flags);
	lsock_busy_put(s);
	return r;
}

int lsock_getsockname(struct lsock *s, struct sockaddr *sa, socklen_t *len)
{
	struct sockaddr_in sin;

	if (len == NULL)
		return -EFAULT;
	if (s->kernel_only)
		return real.getsockname(s->kfd, sa, len) < 0 ? -errno : 0;
	stack_lock();
	sin = s->local;
	/* A connected UDP socket has an implicit source address on Linux. */
	if (s->type == SOCK_DGRAM && sin.sin_addr.s_addr == 0 && s->remote.sin_port != 0)
		sin.sin_addr = stack_ip();
	stack_unlock();
	ls_fill_addr(s, &sin, sa, len);
	return 0;
}

int lsock_getpeername(struct lsock *s, struct sockaddr *sa, socklen_t *len)
{
	struct sockaddr_in sin;
	int r = 0;

	if (len == NULL)
		return -EFAULT;
	if (s->kernel_only)
		return real.getpeername(s->kfd, sa, len) < 0 ? -errno : 0;
	stack_lock();
	sin = s->remote;
	if (s->type == SOCK_STREAM && s->state != LS_CONNECTED)
		r = -ENOTCONN;
	if (s->type == SOCK_DGRAM && s->remote.sin_port == 0)
		r = -ENOTCONN;
	stack_unlock();
	if (r == 0)
		ls_fill_addr(s, &sin, sa, len);
	return r;
}

int lsock_ioctl(struct lsock *s, unsigned long req, void *arg)
{
	int r = 0, v = 0;

	if (arg == NULL)
		return -EFAULT;
	switch (req) {
	case FIONBIO:
		lsock_set_nonblock(s, *(int *)arg != 0);
		return 0;
	case FIONREAD:	/* == SIOCINQ */
		stack_lock();
		if (s->type == SOCK_STREAM) {
			if (s->state == LS_LISTEN)
				r = -EINVAL;
			v = s->rx_bytes > INT32_MAX ? INT32_MAX : (int)s->rx_bytes;
		} else {
			/* UDP reports the next datagram's size, as Linux. */
			v = s->rxq_head ? s->rxq_head->p->tot_len : 0;
		}
		bool kside = s->type == SOCK_DGRAM && s->rxq_head == NULL && s->kudp;
		stack_unlock();
		if (kside && s->kfd >= 0 && real.ioctl(s->kfd, FIONREAD, &v) < 0)
			v = 0;
		break;
	case SIOCOUTQ:
		stack_lock();
		if (s->type == SOCK_STREAM) {
			if (s->state == LS_LISTEN)
				r = -EINVAL;
			v = ls_tcp_outq(s);
		}
		stack_unlock();
		break;
	default:
		return -ENOTTY;
	}
	if (r == 0)
		*(int *)arg = v;
	return r;
}

/* Options. */
static int ls_opt_int(const void *val, socklen_t len, int *out)
{
	if (val == NULL || len < (socklen_t)sizeof(int))
		return -EINVAL;
	memcpy(out, val, sizeof(int));
	return 0;
}

static int ls_opt_timeo(const void *val, socklen_t len, int64_t *out)
{
	struct timeval tv;

	if (val == NULL || len < (socklen_t)sizeof(tv))
		return -EINVAL;
	memcpy(&tv, val, sizeof(tv));
	if (tv.tv_usec < 0 || tv.tv_usec >= 1000000)
		return -EDOM;
	if (tv.tv_sec < 0) {
		*out = 1;	/* Linux: a negative timeout times out at once */
		return 0;
	}
	int64_t ms = (int64_t)tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000;
	*out = ms;
	return 0;
}

static int ls_buf_size(int v, int min)
{
	if (v < 0)
		v = 0;
	if (v > LS_BUF_MAX)
		v = LS_BUF_MAX;
	v *= 2;
	return v < min ? min : v;
}

static void ls_set_sof(struct lsock *s, u8_t flag, bool on)
{
	u8_t *opts = NULL;

	if (s->type == SOCK_STREAM && s->pcb.tcp)
		opts = &s->pcb.tcp->so_options;
	else if (s->type == SOCK_DGRAM && s->pcb.udp)
		opts = &s->pcb.udp->so_options;
	if (opts)
		*opts = on ? (*opts | flag) : (*opts & ~flag);
}

int lsock_setsockopt(struct lsock *s, int level, int name, const void *val, socklen_t len)
{
	int v = 0, r = 0;
	int64_t t;
	bool known = true, was_corked = false;

	if (val == NULL && len > 0)
		return -EFAULT;
	/* Mirror every option on the kernel fd (best effort): kernel-side
	 * listeners and a descriptor handed back to the kernel (-EXDEV) then
	 * behave as the application asked. */
	if (s->kfd >= 0)
		(void)real.setsockopt(s->kfd, level, name, val, len);

	stack_lock();
	if (level == SOL_SOCKET) {
		switch (name) {
		case SO_REUSEADDR:
			if ((r = ls_opt_int(val, len, &v)) == 0) {
				s->opt_reuseaddr = v != 0;
				ls_set_sof(s, SOF_REUSEADDR, v != 0);
			}
			break;
		case SO_REUSEPORT:
			if ((r = ls_opt_int(val, len, &v)) == 0)
				s->opt_reuseport = v != 0;
			break;
		case SO_KEEPALIVE:
			if ((r = ls_opt_int(val, len, &v)) == 0) {
				s->opt_keepalive = v != 0;
				ls_set_sof(s, SOF_KEEPALIVE, v != 0);
			}
			break;
		case SO_BROADCAST:
			if ((r = ls_opt_int(val, len, &v)) == 0) {
				s->opt_broadcast = v != 0;
				ls_set_sof(s, SOF_BROADCAST, v != 0);
			}
			break;
		case SO_RCVBUF:
		case SO_RCVBUFFORCE:
			if ((r = ls_opt_int(val, len, &v)) == 0)
				s->rcvbuf = ls_buf_size(v, LS_MIN_RCVBUF);
			break;
		case SO_SNDBUF:
		case SO_SNDBUFFORCE:
			if ((r = ls_opt_int(val, len, &v)) == 0)
				s->sndbuf = ls_buf_size(v, LS_MIN_SNDBUF);
			break;
		case SO_RCVTIMEO:
			if ((r = ls_opt_timeo(val, len, &t)) == 0)
				s->rcvtimeo_ms = t;
			break;
		case SO_SNDTIMEO:
			if ((r = ls_opt_timeo(val, len, &t)) == 0)
				s->sndtimeo_ms = t;
			break;
		case SO_LINGER: {
			struct linger l;
			if (len < (socklen_t)sizeof(l)) {
				r = -EINVAL;
				break;
			}
			memcpy(&l, val, sizeof(l));
			s->linger_on = l.l_onoff != 0;
			s->linger_sec = l.l_linger < 0 ? 0 : l.l_linger;
			break;
		}
		default:
			known = false;
		}
	} else if (level == IPPROTO_TCP && s->type == SOCK_STREAM) {
		switch (name) {
		case TCP_NODELAY:
			if ((r = ls_opt_int(val, len, &v)) == 0)
				s->opt_nodelay = v != 0;
			break;
		case TCP_CORK:
			was_corked = s->opt_cork;
			if ((r = ls_opt_int(val, len, &v)) == 0)
				s->opt_cork = v != 0;
			break;
		case TCP_KEEPIDLE:
		case TCP_KEEPINTVL:
			if ((r = ls_opt_int(val, len, &v)) == 0 && (v < 1 || v > 32767))
				r = -EINVAL;
			if (r == 0 && name == TCP_KEEPIDLE)
				s->keepidle = v;
			else if (r == 0)
				s->keepintvl = v;
			break;
		case TCP_KEEPCNT:
			if ((r = ls_opt_int(val, len, &v)) == 0 && (v < 1 || v > 127))
				r = -EINVAL;
			if (r == 0)
				s->keepcnt = v;
			break;
		default:
			known = false;
		}
	} else if (level == IPPROTO_IPV6 && name == IPV6_V6ONLY && s->domain == AF_INET6) {
		if ((r = ls_opt_int(val, len, &v)) == 0 && s->bound)
			r = -EINVAL;	/* Linux: only before bind */
		if (r == 0)
			s->v6only = v != 0;
	} else {
		known = false;
	}
	if (known && r == 0 && s->type == SOCK_STREAM) {
		ls_tcp_apply_opts(s);
		if (level == IPPROTO_TCP && (name == TCP_CORK || (name == TCP_NODELAY && v != 0)))
			ls_tcp_push_opt(s, name, was_corked);
	}
	stack_unlock();
	if (known)
		return r;
	/* Anything else is the kernel fd's business: it validates as Linux. */
	if (s->kfd < 0)
		return -ENOPROTOOPT;
	return real.setsockopt(s->kfd, level, name, val, len) < 0 ? -errno : 0;
}

static int ls_put_int(void *val, socklen_t *len, int v)
{
	if (val == NULL || len == NULL)
		return -EFAULT;
	if ((int)*len < 0)
		return -EINVAL;
	socklen_t n = *len < sizeof(int) ? *len : sizeof(int);
	memcpy(val, &v, n);
	*len = n;
	return 0;
}

static int ls_put_timeo(void *val, socklen_t *len, int64_t ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	if (val == NULL || len == NULL)
		return -EFAULT;
	if (*len < sizeof(tv))
		return -EINVAL;
	memcpy(val, &tv, sizeof(tv));
	*len = sizeof(tv);
	return 0;
}

int lsock_getsockopt(struct lsock *s, int level, int name, void *val, socklen_t *len)
{
	int r = -ENOPROTOOPT;
	bool known = true;

	if (len == NULL)
		return -EFAULT;
	stack_lock();
	if (level == SOL_SOCKET) {
		switch (name) {
		case SO_REUSEADDR: r = ls_put_int(val, len, s->opt_reuseaddr); break;
		case SO_REUSEPORT: r = ls_put_int(val, len, s->opt_reuseport); break;
		case SO_KEEPALIVE: r = ls_put_int(val, len, s->opt_keepalive); break;
		case SO_BROADCAST: r = ls_put_int(val, len, s->opt_broadcast); break;
		case SO_RCVBUF:
			r = ls_put_int(val, len, s->rcvbuf ? s->rcvbuf :
				       s->type == SOCK_STREAM ? LS_TCP_RCVBUF_DEFAULT : LS_UDP_BUF_DEFAULT);
			break;
		case SO_SNDBUF:
			r = ls_put_int(val, len, s->sndbuf ? s->sndbuf :
				       s->type == SOCK_STREAM ? LS_TCP_SNDBUF_DEFAULT : LS_UDP_BUF_DEFAULT);
			break;
		case SO_RCVTIMEO: r = ls_put_timeo(val, len, s->rcvtimeo_ms); break;
		case SO_SNDTIMEO: r = ls_put_timeo(val, len, s->sndtimeo_ms); break;
		case SO_LINGER: {
			struct linger l = { .l_onoff = s->linger_on, .l_linger = s->linger_sec };
			if (val == NULL) {
				r = -EFAULT;
				break;
			}
			socklen_t n = *len < sizeof(l) ? *len : sizeof(l);
			memcpy(val, &l, n);
			*len = n;
			r = 0;
			break;
		}
		case SO_ERROR:
			r = ls_put_int(val, len, s->so_error);
			if (r == 0)
				s->so_error = 0;
			break;
		case SO_TYPE: r = ls_put_int(val, len, s->type); break;
		case SO_DOMAIN: r = ls_put_int(val, len, s->domain); break;
		case SO_PROTOCOL:
			r = ls_put_int(val, len, s->type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP);
			break;
		case SO_ACCEPTCONN: r = ls_put_int(val, len, s->state == LS_LISTEN); break;
		default: known = false;
		}
	} else if (level == IPPROTO_TCP && s->type == SOCK_STREAM) {
		switch (name) {
		case TCP_NODELAY: r = ls_put_int(val, len, s->opt_nodelay); break;
		case TCP_CORK: r = ls_put_int(val, len, s->opt_cork); break;
		case TCP_KEEPIDLE: r = ls_put_int(val, len, s->keepidle); break;
		case TCP_KEEPINTVL: r = ls_put_int(val, len, s->keepintvl); break;
		case TCP_KEEPCNT: r = ls_put_int(val, len, s->keepcnt); break;
		case TCP_MAXSEG: r = ls_put_int(val, len, s->pcb.tcp ? s->pcb.tcp->mss : TCP_MSS); break;
		case TCP_INFO:
			if (val == NULL) {
				r = -EFAULT;
				break;
			}
			ls_tcp_fill_info(s, val, len);
			r = 0;
			break;
		default: known = false;
		}
	} else if (level == IPPROTO_IPV6 && name == IPV6_V6ONLY && s->domain == AF_INET6) {
		r = ls_put_int(val, len, s->v6only);
	} else {
		known = false;
	}
	stack_unlock();
	if (known)
		return r;
	if (s->kfd < 0)
		return -ENOPROTOOPT;
	return real.getsockopt(s->kfd, level, name, val, len) < 0 ? -errno : 0;
}

/* Iovec helpers. */
size_t ls_iov_total(const struct msghdr *msg)
{
	size_t t = 0;

	for (size_t i = 0; i < (size_t)msg->msg_iovlen; i++) {
		if (msg->msg_iov[i].iov_len > SSIZE_MAX - t)
			return SSIZE_MAX;
		t += msg->msg_iov[i].iov_len;
	}
	return t;
}

/* Copy n bytes of p starting at off into msg's iovecs from byte skip on;
 * returns how many were copied (n unless the iovecs are shorter). */
size_t ls_pbuf_to_iov(const struct pbuf *p, uint32_t off, size_t n,
		      const struct msghdr *msg, size_t skip)
{
	size_t done = 0;

	for (size_t i = 0; i < (size_t)msg->msg_iovlen && done < n; i++) {
		const struct iovec *v = &msg->msg_iov[i];
		if (skip >= v->iov_len) {
			skip -= v->iov_len;
			continue;
		}
		size_t room = v->iov_len - skip;
		size_t k = n - done < room ? n - done : room;
		pbuf_copy_partial(p, (char *)v->iov_base + skip, (u16_t)k, (u16_t)(off + done));
		done += k;
		skip = 0;
	}
	return done;
}
