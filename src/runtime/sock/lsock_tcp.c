/* TCP sockets on lwIP's raw tcp_* API, with Linux's semantics. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/tcp.h>
/* lwIP's options define their own TCP_MSS (the segment size it uses). */
#undef TCP_MSS
#include <sys/epoll.h>

#include <lwip/tcp.h>
#include <lwip/timeouts.h>
#include <lwip/priv/tcp_priv.h>

#include "ipx/real.h"
#include "sock/lsock_impl.h"
#include "stack/stack.h"

/* Largest tcp_write() (its length is 16 bits). */
#define LS_TCP_CHUNK 0xffffu

/* Linux's ceiling on how long TCP_CORK (or MSG_MORE) holds a partial segment. */
#define LS_CORK_MS 200

/*
 * The send buffer of a connection.  Debian's lwIP is built with TCP_SND_BUF
 * 64 KiB - 1, less than one 64 KiB response with its header, so a server
 * writing one got EAGAIN for the tail and waited a round trip for ACKs
 * (docs/performance.md, finding 7) where Linux's autotuned buffer (up to
 * 4 MiB) takes it all.  lwIP keeps the budget per pcb (snd_buf, 32 bits
 * with window scaling), so we give each connection more: as much as its
 * segment queue (TCP_SND_QUEUELEN pbufs, about one per full segment) can
 * hold, less a margin for small writes.  SO_SNDBUF (Linux doubles it)
 * lowers that, never below lwIP's own size, as before.
 *
 * Not in indirect mode: there the ring to the network server is drained by
 * another process, and a burst of several such windows overflowed it; a
 * frame the ring refuses is dropped (stack_linkoutput) and costs a
 * retransmission timeout, which stalled 4 parallel 64 KiB downloads
 * completely.  Indirect connections keep lwIP's 64 KiB.
 */
#define LS_TCP_SNDBUF_MAX ((uint32_t)(TCP_SND_QUEUELEN - 8) * TCP_MSS)

/* The progress thread's hand-over (stack.h); weak so that the socket layer
 * also links against a stack without it (unit tests, older stacks). */
#pragma weak stack_poller_note

static err_t ls_tcp_recv_cb(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err);
static err_t ls_tcp_sent_cb(void *arg, struct tcp_pcb *pcb, u16_t len);
static void ls_tcp_err_cb(void *arg, err_t err);

static void ls_tcp_cache_addrs(struct lsock *s, struct tcp_pcb *pcb)
{
	ls_sockaddr(&s->local, &pcb->local_ip, pcb->local_port);
	if (pcb->state != LISTEN)
		ls_sockaddr(&s->remote, &pcb->remote_ip, pcb->remote_port);
}

/* Point a connection pcb's callbacks at s (which pins s's memory). */
static void ls_tcp_attach(struct lsock *s, struct tcp_pcb *pcb)
{
	s->pcb.tcp = pcb;
	tcp_arg(pcb, s);
	tcp_recv(pcb, ls_tcp_recv_cb);
	tcp_sent(pcb, ls_tcp_sent_cb);
	tcp_err(pcb, ls_tcp_err_cb);
	ls_attach_ref(s);
}

/*
 * Forget the pcb: lwIP keeps it for FIN/TIME_WAIT (after tcp_close) or frees
 * it (tcp_abort), and none of its callbacks reaches s any more.  The caller
 * holds a reference on s.
 */
static struct tcp_pcb *ls_tcp_detach(struct lsock *s)
{
	struct tcp_pcb *pcb = s->pcb.tcp;

	if (pcb == NULL)
		return NULL;
	ls_conn_withdraw(s);
	tcp_arg(pcb, NULL);
	if (pcb->state == LISTEN) {
		tcp_accept(pcb, NULL);
	} else {
		tcp_recv(pcb, NULL);
		tcp_sent(pcb, NULL);
		tcp_err(pcb, NULL);
		tcp_poll(pcb, NULL, 0);
	}
	s->pcb.tcp = NULL;
	ls_detach_ref(s);
	return pcb;
}

/* Graceful close of a pcb we no longer follow; RST if even that fails. */
static void ls_tcp_close_pcb(struct tcp_pcb *pcb)
{
	if (tcp_close(pcb) != ERR_OK)
		tcp_abort(pcb);
}

/*
 * Both FINs are out: the connection needs nothing more from us, and lwIP
 * frees a TIME_WAIT pcb without telling anybody, so let go of it now.
 */
static void ls_tcp_maybe_release(struct lsock *s)
{
	if (s->peer_fin && s->fin_sent && s->pcb.tcp && s->state == LS_CONNECTED) {
		struct tcp_pcb *pcb = ls_tcp_detach(s);
		ls_tcp_close_pcb(pcb);
		/* Linux's socket is TCP_CLOSE once both FINs are through
		 * (TIME-WAIT lives in a separate object): no peer name, and
		 * shutdown() says ENOTCONN. */
		s->state = LS_CLOSED;
		s->shut = LS_SHUT_MASK;
	}
}

/*
 * Grow the pcb's send budget to what s should have.  Only ever grows: a
 * smaller SO_SNDBUF set while data is queued takes effect on the next
 * connection (lwIP adds every ACKed byte back to snd_buf, so taking away
 * more than is free now would be lost bookkeeping).
 */
static void ls_tcp_size_sndbuf(struct lsock *s, struct tcp_pcb *pcb)
{
	uint32_t cap = s->snd_cap ? s->snd_cap : TCP_SND_BUF, want = LS_TCP_SNDBUF_MAX;

	if (stack_indirect())
		return;
	if (s->sndbuf > 0 && (uint64_t)s->sndbuf * 2 < want)
		want = (uint32_t)s->sndbuf * 2 > TCP_SND_BUF ? (uint32_t)s->sndbuf * 2 : TCP_SND_BUF;
	if (want <= cap)
		return;
	pcb->snd_buf += want - cap;
	s->snd_cap = want;
}

void ls_tcp_apply_opts(struct lsock *s)
{
	struct tcp_pcb *pcb = s->pcb.tcp;

	if (pcb == NULL)
		return;
	if (s->opt_reuseaddr)
		ip_set_option(pcb, SOF_REUSEADDR);
	else
		ip_reset_option(pcb, SOF_REUSEADDR);
	if (s->opt_keepalive)
		ip_set_option(pcb, SOF_KEEPALIVE);
	else
		ip_reset_option(pcb, SOF_KEEPALIVE);
	/* A listen pcb is a smaller struct: only so_options exists there. */
	if (s->state == LS_LISTEN)
		return;
	/* While corked, lwIP's own tcp_output calls (after an ACK) must not
	 * send the partial tail either: Nagle on, cork wins over TCP_NODELAY. */
	if (s->opt_nodelay && !s->opt_cork)
		tcp_nagle_disable(pcb);
	else
		tcp_nagle_enable(pcb);
	ls_tcp_size_sndbuf(s, pcb);
	pcb->keep_idle = (u32_t)s->keepidle * 1000;
	pcb->keep_intvl = (u32_t)s->keepintvl * 1000;
	pcb->keep_cnt = (u32_t)s->keepcnt;
}

/* Send everything queued now, a partial last segment included (Nagle off
 * for this one call). */
static void ls_tcp_push(struct tcp_pcb *pcb)
{
	bool nodelay = tcp_nagle_disabled(pcb) != 0;

	tcp_nagle_disable(pcb);
	tcp_output(pcb);
	if (!nodelay)
		tcp_nagle_enable(pcb);
}

/* The cork ceiling expired: send the held tail (under the core lock, in
 * lwIP's tcpip thread). */
static void ls_tcp_cork_expired(void *arg)
{
	struct lsock *s = arg;

	s->cork_timer = false;
	if (s->pcb.tcp && s->state == LS_CONNECTED && s->pcb.tcp->unsent)
		ls_tcp_push(s->pcb.tcp);
	lsock_drop(s);
}

static void ls_tcp_cork_cancel(struct lsock *s)
{
	if (s->cork_timer) {
		sys_untimeout(ls_tcp_cork_expired, s);
		s->cork_timer = false;
		lsock_drop(s);
	}
}

/*
 * Output while corked (TCP_CORK or MSG_MORE): only full segments leave; a
 * partial tail waits for more data, the uncork, or LS_CORK_MS.  lwIP's Nagle
 * already holds a partial segment behind unacknowledged data, so with Nagle
 * on for the call the only case to avoid is a lone partial segment with
 * nothing in flight: then tcp_output is not called at all.
 */
static void ls_tcp_output_held(struct lsock *s, struct tcp_pcb *pcb)
{
	struct tcp_seg *u = pcb->unsent;
	bool nodelay = tcp_nagle_disabled(pcb) != 0;

	if (u && (u->next || u->len >= pcb->mss)) {
		tcp_nagle_enable(pcb);
		tcp_output(pcb);
		if (nodelay)
			tcp_nagle_disable(pcb);
	}
	if (pcb->unsent && !s->cork_timer) {
		lsock_hold(s);
		s->cork_timer = true;
		sys_timeout(LS_CORK_MS, ls_tcp_cork_expired, s);
	}
}

void ls_tcp_push_opt(struct lsock *s, int name, bool was_corked)
{
	struct tcp_pcb *pcb = s->pcb.tcp;

	if (name == TCP_CORK && (s->opt_cork || !was_corked))
		return;
	/* TCP_CORK 0, or TCP_NODELAY 1: Linux pushes the pending frames
	 * past Nagle (its Minshall variant would hold nothing behind the full
	 * segments corking leaves in flight). */
	if (name == TCP_CORK)
		ls_tcp_cork_cancel(s);
	if (pcb && s->state == LS_CONNECTED && pcb->unsent)
		ls_tcp_push(pcb);
}

static int ls_tcp_pcb(struct lsock *s)
{
	if (s->pcb.tcp)
		return 0;
	struct tcp_pcb *pcb = tcp_new_ip_type(IPADDR_TYPE_V4);
	if (pcb == NULL)
		return -ENOMEM;
	s->pcb.tcp = pcb;
	s->snd_cap = 0;	/* a fresh pcb has lwIP's TCP_SND_BUF */
	ls_tcp_apply_opts(s);
	if (s->bound) {
		/* A new pcb after a failed connect keeps the old binding. */
		ip_addr_t ip;
		ls_ipaddr(&ip, s->local.sin_addr.s_addr);
		err_t err = tcp_bind(pcb, &ip, ntohs(s->local.sin_port));
		if (err != ERR_OK) {
			tcp_close(pcb);
			s->pcb.tcp = NULL;
			return ls_err(err);
		}
	}
	return 0;
}

/* Callbacks (under the stack lock, from lwIP). */
static err_t ls_tcp_recv_cb(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
	struct lsock *s = arg;

	if (s == NULL) {
		if (p) {
			tcp_recved(pcb, p->tot_len);
			pbuf_free(p);
		}
		return ERR_OK;
	}
	if (p == NULL) {
		s->peer_fin = true;
		s->shut |= LS_RCV_SHUT;
		ls_tcp_maybe_release(s);
		ls_notify(s);
		return ERR_OK;
	}
	struct ls_buf *b = malloc(sizeof(*b));
	if (b == NULL)
		return ERR_MEM;	/* lwIP keeps it as refused data and retries */
	b->p = p;
	b->off = 0;
	ls_rxq_push(s, b);
	ls_notify(s);
	return ERR_OK;
}

static err_t ls_tcp_sent_cb(void *arg, struct tcp_pcb *pcb, u16_t len)
{
	struct lsock *s = arg;

	if (s)
		ls_notify(s);
	return ERR_OK;
}

static err_t ls_tcp_connected_cb(void *arg, struct tcp_pcb *pcb, err_t err)
{
	struct lsock *s = arg;

	if (s == NULL)
		return ERR_OK;
	s->state = LS_CONNECTED;
	s->was_connected = true;
	ls_tcp_cache_addrs(s, pcb);
	ls_conn_publish(s);
	ls_notify(s);
	return ERR_OK;
}

/* The pcb is already freed by lwIP when this runs. */
static void ls_tcp_err_cb(void *arg, err_t err)
{
	struct lsock *s = arg;
	int e;

	if (s == NULL)
		return;
	s->pcb.tcp = NULL;
	ls_conn_withdraw(s);
	if (s->state == LS_SYN_SENT)
		e = err == ERR_RST ? ECONNREFUSED : err == ERR_ABRT ? ETIMEDOUT : -ls_err(err);
	else if (err == ERR_RST)
		e = ECONNRESET;
	else if (err == ERR_ABRT)
		e = ETIMEDOUT;	/* lwIP aborts on retransmission/keepalive timeout */
	else if (err == ERR_CLSD)
		e = 0;		/* both FINs acknowledged: a normal end */
	else
		e = -ls_err(err);
	if (e)
		s->so_error = e;
	s->shut = LS_SHUT_MASK;
	s->state = LS_CLOSED;
	ls_notify(s);
	ls_detach_ref(s);	/* last: may free s */
}

static err_t ls_tcp_accept_cb(void *arg, struct tcp_pcb *newpcb, err_t err)
{
	struct lsock *ls = arg;

	if (err != ERR_OK || newpcb == NULL)
		return ERR_VAL;
	/* Beyond the backlog (Linux queues backlog + 1) we refuse with RST:
	 * lwIP has already completed the handshake when it calls us. */
	if (ls == NULL || ls->closed || ls->state != LS_LISTEN ||
	    (ls->shut & LS_RCV_SHUT) || ls->acceptq_len > ls->backlog)
		goto refuse;
	struct lsock *ns;
	if (lsock_create_domain(-1, ls->domain, SOCK_STREAM, &ns) < 0)
		goto refuse;
	ns->state = LS_CONNECTED;
	ns->was_connected = true;
	ns->bound = true;
	ns->opt_reuseaddr = ls->opt_reuseaddr;
	ns->opt_reuseport = ls->opt_reuseport;
	ns->opt_keepalive = ls->opt_keepalive;
	ns->opt_nodelay = ls->opt_nodelay;
	ns->opt_cork = ls->opt_cork;
	ns->linger_on = ls->linger_on;
	ns->linger_sec = ls->linger_sec;
	ns->rcvbuf = ls->rcvbuf;
	ns->sndbuf = ls->sndbuf;
	ns->rcvtimeo_ms = ls->rcvtimeo_ms;
	ns->sndtimeo_ms = ls->sndtimeo_ms;
	ns->keepidle = ls->keepidle;
	ns->keepintvl = ls->keepintvl;
	ns->keepcnt = ls->keepcnt;
	ls_tcp_attach(ns, newpcb);
	ls_tcp_apply_opts(ns);
	ls_tcp_cache_addrs(ns, newpcb);
	ls_conn_publish(ns);
	/* The queue owns the creation hold until accept() hands it out. */
	ns->accept_next = NULL;
	if (ls->acceptq_tail)
		ls->acceptq_tail->accept_next = ns;
	else
		ls->acceptq_head = ns;
	ls->acceptq_tail = ns;
	ls->acceptq_len++;
	ls_notify(ls);
	return ERR_OK;
refuse:
	tcp_abort(newpcb);
	return ERR_ABRT;
}

/* Calls. */
int ls_tcp_bind(struct lsock *s, const struct sockaddr_in *sin)
{
	uint32_t a = sin->sin_addr.s_addr;
	uint16_t port = ntohs(sin->sin_port);
	int r;

	if (s->state != LS_CLOSED || s->connecting)
		return -EINVAL;
	if ((r = ls_tcp_pcb(s)) < 0)
		return r;
	if (ls_is_loopback(a)) {
		/* Only the kernel can serve a loopback address. */
		struct sockaddr_in k;
		socklen_t kl = sizeof(k);
		struct sockaddr_storage ks;
		socklen_t ksl = ls_kaddr(s, sin, &ks);
		if (s->kfd < 0)
			return -EADDRNOTAVAIL;
		if (real.bind(s->kfd, (const struct sockaddr *)&ks, ksl) < 0)
			return -errno;
		if (port == 0 && real.getsockname(s->kfd, (struct sockaddr *)&k, &kl) == 0)
			port = ntohs(k.sin_port);
	}
	ip_addr_t ip;
	ls_ipaddr(&ip, a);
	if (!ls_is_loopback(a) && (r = ls_claim(s, &port)) < 0)
		return r;
	err_t err = tcp_bind(s->pcb.tcp, &ip, port);
	if (err != ERR_OK) {
		ls_unclaim(s);
		return ls_err(err);
	}
	s->bound = true;
	ls_tcp_cache_addrs(s, s->pcb.tcp);
	if (!ls_is_loopback(a))
		ls_port_publish(s, s->pcb.tcp->local_port, 1);
	return 0;
}

/* Make kfd listen on the same port, so loopback clients reach us. */
static void ls_tcp_kernel_listen(struct lsock *s, int backlog)
{
	uint32_t a = s->local.sin_addr.s_addr;

	if (s->kfd < 0 || (a != htonl(INADDR_ANY) && !ls_is_loopback(a)))
		return;
	struct sockaddr_storage ks;
	socklen_t ksl = ls_kaddr(s, &s->local, &ks);
	if (a == htonl(INADDR_ANY) && real.bind(s->kfd, (const struct sockaddr *)&ks, ksl) < 0) {
		ls_log_once("kernel-side listener not available, loopback clients are not served", errno);
		return;
	}
	if (real.listen(s->kfd, backlog) < 0) {
		ls_log_once("kernel-side listen failed", errno);
		return;
	}
	/* The lsock accepts from kfd without blocking; blocking accept()
	 * sleeps in the waiter.  F_GETFL must come from lsock_nonblock(). */
	int fl = real.fcntl(s->kfd, F_GETFL, 0);
	if (fl < 0 || real.fcntl(s->kfd, F_SETFL, fl | O_NONBLOCK) < 0)
		return;
	s->klisten = true;
}

int ls_tcp_listen(struct lsock *s, int backlog)
{
	int r;

	if (s->state == LS_LISTEN) {
		s->backlog = backlog;
		if (s->klisten)
			(void)real.listen(s->kfd, backlog);
		return 0;
	}
	if (s->state != LS_CLOSED || s->connecting || s->was_connected)
		return -EINVAL;
	if (s->kernel_only) {
		/* An IPv6 bind: only the kernel listens. */
		if (real.listen(s->kfd, backlog) < 0)
			return -errno;
		int fl = real.fcntl(s->kfd, F_GETFL, 0);
		if (fl >= 0)
			(void)real.fcntl(s->kfd, F_SETFL, fl | O_NONBLOCK);
		s->state = LS_LISTEN;
		s->backlog = backlog;
		s->klisten = true;
		ls_notify(s);
		return 0;
	}
	if ((r = ls_tcp_pcb(s)) < 0)
		return r;
	if (!s->bound) {
		uint16_t port = 0;

		if ((r = ls_claim(s, &port)) < 0)
			return r;
		err_t err = tcp_bind(s->pcb.tcp, IP4_ADDR_ANY, port);
		if (err != ERR_OK) {
			ls_unclaim(s);
			return ls_err(err);
		}
		s->bound = true;
		ls_tcp_cache_addrs(s, s->pcb.tcp);
	}
	err_t err = ERR_OK;
	struct tcp_pcb *lpcb = tcp_listen_with_backlog_and_err(s->pcb.tcp, TCP_DEFAULT_LISTEN_BACKLOG, &err);
	if (lpcb == NULL)
		return ls_err(err);
	/* tcp_listen freed the old pcb and returned a listen pcb. */
	s->pcb.tcp = lpcb;
	s->state = LS_LISTEN;
	s->backlog = backlog;
	tcp_arg(lpcb, s);
	tcp_accept(lpcb, ls_tcp_accept_cb);
	ls_attach_ref(s);
	ls_tcp_apply_opts(s);
	if (!ls_is_loopback(s->local.sin_addr.s_addr))
		ls_port_publish(s, lpcb->local_port, 2);
	ls_tcp_kernel_listen(s, backlog);
	ls_notify(s);
	return 0;
}

int ls_tcp_accept(struct lsock *s, struct lsock **new_s, int *new_kfd,
		  struct sockaddr *sa, socklen_t *len, int flags)
{
	struct ls_wait wt = { 0 };
	int64_t deadline = ls_deadline(s->rcvtimeo_ms);
	bool nb = lsock_nonblock(s) || (flags & LSOCK_ACCEPT_NOWAIT);
	int r;

	flags &= ~LSOCK_ACCEPT_NOWAIT;
	for (int i = 0;; i++) {
		stack_lock();
		if (i > 0 && (r = ls_wait_arm(&wt)) < 0) {
			stack_unlock();
			break;
		}
		if (s->closed) {
			r = -EBADF;
		} else if (s->state != LS_LISTEN || (s->shut & LS_RCV_SHUT)) {
			r = -EINVAL;
		} else if (s->acceptq_head) {
			struct lsock *ns = s->acceptq_head;
			s->acceptq_head = ns->accept_next;
			if (s->acceptq_head == NULL)
				s->acceptq_tail = NULL;
			s->acceptq_len--;
			ns->accept_next = NULL;
			if (flags & SOCK_NONBLOCK)
				lsock_set_nonblock(ns, true);
			struct sockaddr_in peer = ns->remote;
			ls_notify(s);
			stack_unlock();
			ls_fill_addr(s, &peer, sa, len);
			*new_s = ns;
			r = 0;
			break;
		} else {
			r = -EAGAIN;
		}
		bool kside = r == -EAGAIN && s->klisten;
		if (r == -EAGAIN && !nb && i > 0)
			ls_wait_watch(s, &wt);
		stack_unlock();
		if (r != -EAGAIN)
			break;
		/* A kernel connection (loopback client)?  kfd was made
		 * O_NONBLOCK at listen, but F_SETFL on the descriptor reaches
		 * it too: look before accepting so accept4 never blocks. */
		struct pollfd kp = { .fd = s->kfd, .events = POLLIN };
		if (kside && real.poll(&kp, 1, 0) == 1 && (kp.revents & POLLIN)) {
			int fd = real.accept4(s->kfd, sa, len, flags & (SOCK_NONBLOCK | SOCK_CLOEXEC));
			if (fd >= 0) {
				*new_kfd = fd;
				r = 0;
				break;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED &&
			    errno != EINTR) {
				r = -errno;
				break;
			}
		}
		if (nb)
			break;
		if (i == 0)
			continue;
		r = ls_wait_sleep(s, &wt, deadline, kside ? EPOLLIN : 0);
		if (r < 0)
			break;
	}
	ls_wait_done(s, &wt);
	return r;
}

/* The outcome of a connect that left SYN_SENT (under the lock). */
static int ls_tcp_connect_result(struct lsock *s)
{
	int r;

	if (s->state == LS_CONNECTED) {
		s->connecting = false;
		return 0;
	}
	r = s->so_error ? -s->so_error : -ECONNABORTED;
	s->so_error = 0;
	s->connecting = false;
	return r;
}

int ls_tcp_connect(struct lsock *s, const struct sockaddr_in *sin)
{
	struct ls_wait wt = { 0 };
	bool nb = lsock_nonblock(s);
	int r;

	stack_lock();
	if (s->closed) {
		r = -EBADF;
		goto out;
	}
	switch (s->state) {
	case LS_CONNECTED:
		/* The first connect() after a non-blocking one completed
		 * reports success, as Linux; later ones -EISCONN. */
		r = s->connecting ? 0 : -EISCONN;
		s->connecting = false;
		goto out;
	case LS_LISTEN:
		r = -EISCONN;
		goto out;
	case LS_SYN_SENT:
		if (nb) {
			r = -EALREADY;
			goto out;
		}
		goto wait;
	case LS_CLOSED:
		break;
	}
	if (s->connecting) {
		/* An asynchronous connect failed: report it once, as Linux. */
		r = ls_tcp_connect_result(s);
		goto out;
	}
	if (s->was_connected) {
		r = -EISCONN;
		goto out;
	}
	/* Linux connects to 0.0.0.0 as to the loopback: the kernel's job. */
	if (sin->sin_addr.s_addr == htonl(INADDR_ANY) || !stack_routes(sin->sin_addr)) {
		r = -EXDEV;
		goto out;
	}
	if ((r = ls_tcp_pcb(s)) < 0)
		goto out;
	/* Indirect mode: lwIP must not pick the local port itself. */
	if (s->pcb.tcp->local_port == 0 && stack_indirect()) {
		uint16_t port = 0;

		if ((r = ls_claim(s, &port)) < 0)
			goto out;
		if (tcp_bind(s->pcb.tcp, IP4_ADDR_ANY, port) != ERR_OK) {
			ls_unclaim(s);
			r = -EADDRINUSE;
			goto out;
		}
	}
	ip_addr_t ip;
	ls_ipaddr(&ip, sin->sin_addr.s_addr);
	ls_tcp_attach(s, s->pcb.tcp);
	s->shut = 0;
	s->peer_fin = s->fin_sent = false;
	err_t err = tcp_connect(s->pcb.tcp, &ip, ntohs(sin->sin_port), ls_tcp_connected_cb);
	if (err != ERR_OK) {
		struct tcp_pcb *pcb = ls_tcp_detach(s);
		/* Keep an unconnected pcb for a later attempt. */
		s->pcb.tcp = pcb;
		r = ls_err(err);
		goto out;
	}
	s->state = LS_SYN_SENT;
	s->connecting = true;
	s->bound = true;
	ls_tcp_cache_addrs(s, s->pcb.tcp);
	ls_port_publish(s, s->pcb.tcp->local_port, 1);
	ls_notify(s);
	if (nb) {
		r = -EINPROGRESS;
		goto out;
	}
wait:;
	int64_t deadline = ls_deadline(s->sndtimeo_ms);
	for (;;) {
		if ((r = ls_wait_arm(&wt)) < 0)
			break;
		if (s->closed) {
			r = -EBADF;
			break;
		}
		if (s->state != LS_SYN_SENT) {
			r = ls_tcp_connect_result(s);
			break;
		}
		ls_wait_watch(s, &wt);
		stack_unlock();
		r = ls_wait_sleep(s, &wt, deadline, 0);
		stack_lock();
		if (r == -EAGAIN) {
			/* SO_SNDTIMEO expired: the attempt goes on (Linux). */
			r = -EINPROGRESS;
			break;
		}
		if (r < 0)
			break;
	}
out:
	stack_unlock();
	ls_wait_done(s, &wt);
	return r;
}

int ls_tcp_shutdown(struct lsock *s, int how)
{
	unsigned mask = (unsigned)how + 1;	/* SHUT_RD 0 -> 1, SHUT_WR 1 -> 2, RDWR 3 */

	if (s->state == LS_LISTEN) {
		if (mask & LS_RCV_SHUT)
			s->shut |= LS_RCV_SHUT;	/* wakes accept() with EINVAL */
		return 0;
	}
	if (s->state == LS_SYN_SENT) {
		struct tcp_pcb *pcb = ls_tcp_detach(s);
		tcp_abort(pcb);
		s->state = LS_CLOSED;
		s->connecting = false;
		s->shut |= mask;
		return 0;
	}
	if (s->state != LS_CONNECTED) {
		s->shut |= mask;
		return -ENOTCONN;
	}
	if ((mask & LS_SEND_SHUT) && !s->fin_sent && s->pcb.tcp) {
		err_t err = tcp_shutdown(s->pcb.tcp, 0, 1);
		if (err != ERR_OK)
			return ls_err(err);
		tcp_output(s->pcb.tcp);
		s->fin_sent = true;
	}
	s->shut |= mask;
	ls_tcp_maybe_release(s);
	return 0;
}

ssize_t ls_tcp_sendmsg(struct lsock *s, const struct msghdr *msg, int flags)
{
	struct ls_wait wt = { 0 };
	size_t total = ls_iov_total(msg), done = 0;
	size_t vi = 0, voff = 0;	/* position in the iovecs */
	bool nb = lsock_nonblock(s) || (flags & MSG_DONTWAIT);
	int64_t deadline = ls_deadline(s->sndtimeo_ms);
	ssize_t r = 0;
	/* MSG_MORE is TCP_CORK for this call: Linux sends the tail with the
	 * next send without it. */
	bool hold = (flags & MSG_MORE) != 0;

	/*
	 * Take in what arrived first, as Linux runs a socket's backlog when a
	 * send releases it: the ACKs free room and open the window for this
	 * write, and a server that is busy writing (not waiting) handles its
	 * own ACKs, so the progress thread stands aside (stack_poller_note)
	 * instead of fighting this thread for the stack lock.
	 */
	if (stack_active()) {
		stack_poll(64);
		if (stack_poller_note)
			stack_poller_note();
	}
	for (int i = 0;; i++) {
		stack_lock();
		if (i > 0 && (r = ls_wait_arm(&wt)) < 0) {
			stack_unlock();
			break;
		}
		struct tcp_pcb *pcb = s->pcb.tcp;
		if (s->closed) {
			r = -EBADF;
		} else if (s->so_error) {
			r = -s->so_error;
			if (done == 0)
				s->so_error = 0;
		} else if (s->shut & LS_SEND_SHUT) {
			r = -EPIPE;
		} else if (s->state == LS_SYN_SENT) {
			r = -EAGAIN;	/* wait for the connection */
		} else if (s->state != LS_CONNECTED || pcb == NULL) {
			r = -EPIPE;
		} else {
			bool wrote = false;
			r = 0;
			while (done < total) {
				size_t room = tcp_sndbuf(pcb);
				if (room == 0 || tcp_sndqueuelen(pcb) >= TCP_SND_QUEUELEN)
					break;
				while (vi < (size_t)msg->msg_iovlen && voff == msg->msg_iov[vi].iov_len) {
					vi++;
					voff = 0;
				}
				if (vi >= (size_t)msg->msg_iovlen)
					break;
				size_t n = msg->msg_iov[vi].iov_len - voff;
				if (n > room)
					n = room;
				if (n > LS_TCP_CHUNK)
					n = LS_TCP_CHUNK;
				u8_t wf = TCP_WRITE_FLAG_COPY;
				if (done + n < total || hold || s->opt_cork)
					wf |= TCP_WRITE_FLAG_MORE;	/* no PSH yet */
				err_t err = tcp_write(pcb, (const char *)msg->msg_iov[vi].iov_base + voff,
						      (u16_t)n, wf);
				if (err == ERR_MEM)
					break;	/* queue full: wait for ACKs */
				if (err != ERR_OK) {
					r = ls_err(err);
					break;
				}
				wrote = true;
				done += n;
				voff += n;
			}
			if (wrote && (hold || s->opt_cork))
				ls_tcp_output_held(s, pcb);
			else if (wrote)
				tcp_output(pcb);
			if (r == 0 && done < total)
				r = -EAGAIN;
		}
		if (r == -EAGAIN && !nb && i > 0)
			ls_wait_watch(s, &wt);
		stack_unlock();
		if (r != -EAGAIN || done == total || nb)
			break;
		if (i == 0)
			continue;
		r = ls_wait_sleep(s, &wt, deadline, 0);
		if (r < 0)
			break;
	}
	ls_wait_done(s, &wt);
	if (done > 0)
		return (ssize_t)done;
	return r;
}

/* Take up to n bytes from the queue into msg's iovecs at byte skip. */
static size_t ls_tcp_take(struct lsock *s, const struct msghdr *msg, size_t skip,
			  size_t n, bool peek, bool discard)
{
	size_t done = 0;
	struct ls_buf *b = s->rxq_head;
	uint32_t off = b ? b->off : 0;

	while (b && done < n) {
		size_t avail = b->p->tot_len - off;
		size_t k = n - done < avail ? n - done : avail;
		if (!discard)
			k = ls_pbuf_to_iov(b->p, off, k, msg, skip + done);
		done += k;
		off += k;
		if (off < b->p->tot_len)
			break;
		b = b->next;
		off = b ? b->off : 0;
		if (!peek) {
			struct ls_buf *old = s->rxq_head;
			s->rxq_head = b;
			if (b == NULL)
				s->rxq_tail = NULL;
			s->rx_count--;
			pbuf_free(old->p);
			free(old);
		}
	}
	if (!peek) {
		if (b)
			b->off = off;
		s->rx_bytes -= done;
		s->rx_unacked += done;
		/* Open the window by what the application took. */
		while (s->rx_unacked > 0 && s->pcb.tcp && s->state == LS_CONNECTED) {
			u16_t k = s->rx_unacked > 0xffff ? 0xffff : (u16_t)s->rx_unacked;
			tcp_recved(s->pcb.tcp, k);
			s->rx_unacked -= k;
		}
		if (s->pcb.tcp == NULL)
			s->rx_unacked = 0;
	}
	return done;
}

ssize_t ls_tcp_recvmsg(struct lsock *s, struct msghdr *msg, int flags)
{
	struct ls_wait wt = { 0 };
	size_t total = ls_iov_total(msg), done = 0;
	bool peek = flags & MSG_PEEK;
	bool waitall = (flags & MSG_WAITALL) && !peek;
	bool nb = lsock_nonblock(s) || (flags & MSG_DONTWAIT);
	int64_t deadline = ls_deadline(s->rcvtimeo_ms);
	ssize_t r = 0;

	msg->msg_namelen = 0;
	for (int i = 0;; i++) {
		stack_lock();
		if (i > 0 && (r = ls_wait_arm(&wt)) < 0) {
			stack_unlock();
			break;
		}
		r = -EAGAIN;
		if (s->closed) {
			r = -EBADF;
		} else if (s->state == LS_LISTEN) {
			r = -ENOTCONN;
		} else {
			done += ls_tcp_take(s, msg, done, total - done, peek, flags & MSG_TRUNC);
			if (done == total || (done > 0 && !waitall)) {
				r = 0;
			} else if (s->so_error) {
				if (done == 0) {
					r = -s->so_error;
					s->so_error = 0;
				} else {
					r = 0;
				}
			} else if (s->shut & LS_RCV_SHUT) {
				r = 0;	/* end of stream */
			} else if (s->state == LS_CLOSED) {
				r = s->was_connected || done > 0 ? 0 : -ENOTCONN;
			}
		}
		if (r == -EAGAIN && !nb && i > 0)
			ls_wait_watch(s, &wt);
		if (r == -EAGAIN && done > 0 && nb)
			r = 0;
		stack_unlock();
		if (r != -EAGAIN || nb)
			break;
		if (i == 0)
			continue;
		r = ls_wait_sleep(s, &wt, deadline, 0);
		if (r < 0) {
			if (done > 0)
				r = 0;
			break;
		}
	}
	ls_wait_done(s, &wt);
	if (r < 0)
		return r;
	return (ssize_t)done;
}

/* close() semantics; under the lock with s->closed set (may sleep to linger). */
void ls_tcp_close(struct lsock *s)
{
	struct tcp_pcb *pcb;

	if (s->state == LS_LISTEN) {
		pcb = ls_tcp_detach(s);
		if (pcb)
			tcp_close(pcb);	/* a listen pcb always closes */
		/* Connections nobody accepted get a RST, as on Linux. */
		while (s->acceptq_head) {
			struct lsock *ns = s->acceptq_head;
			s->acceptq_head = ns->accept_next;
			ns->closed = true;
			pcb = ls_tcp_detach(ns);
			if (pcb)
				tcp_abort(pcb);
			ls_rxq_flush(ns);
			lsock_drop(ns);
		}
		s->acceptq_tail = NULL;
		s->acceptq_len = 0;
		s->state = LS_CLOSED;
		return;
	}
	if (s->pcb.tcp == NULL)
		return;
	if (s->state != LS_CONNECTED) {
		ls_tcp_close_pcb(ls_tcp_detach(s));
		s->state = LS_CLOSED;
		return;
	}
	if (s->rx_bytes > 0 || (s->linger_on && s->linger_sec == 0)) {
		/* Unread data or SO_LINGER {1, 0}: abortive close (RST). */
		tcp_abort(ls_tcp_detach(s));
		s->state = LS_CLOSED;
		return;
	}
	if (s->linger_on) {
		/* Send the FIN and wait until everything is acknowledged. */
		struct ls_wait wt = { 0 };
		int64_t deadline = ls_now_ms() + (int64_t)s->linger_sec * 1000;
		if (!s->fin_sent && tcp_shutdown(s->pcb.tcp, 0, 1) == ERR_OK) {
			s->fin_sent = true;
			tcp_output(s->pcb.tcp);
		}
		while (s->pcb.tcp && (s->pcb.tcp->unsent || s->pcb.tcp->unacked)) {
			if (ls_wait_arm(&wt) < 0)
				break;
			ls_wait_watch(s, &wt);
			stack_unlock();
			int r = ls_wait_sleep(s, &wt, deadline, 0);
			stack_lock();
			if (r < 0)
				break;
		}
		if (wt.watching) {
			LIST_REMOVE(&wt.watch, link);
			wt.watching = false;
		}
		if (s->pcb.tcp == NULL)
			return;
	}
	ls_tcp_close_pcb(ls_tcp_detach(s));
}

uint32_t ls_tcp_events(struct lsock *s)
{
	uint32_t ev = 0;

	/* A listener shut down for reading is closed on Linux (tcp_disconnect
	 * clears sk_shutdown): writable and hung up, not readable. */
	if (s->state == LS_LISTEN)
		return s->shut & LS_RCV_SHUT ? EPOLLOUT | EPOLLHUP : s->acceptq_head ? EPOLLIN : 0;
	if (s->so_error)
		ev |= EPOLLERR;
	if (s->shut == LS_SHUT_MASK || s->state == LS_CLOSED)
		ev |= EPOLLHUP;
	if (s->shut & LS_RCV_SHUT)
		ev |= EPOLLIN | EPOLLRDHUP;
	if (s->state == LS_SYN_SENT)
		return ev;
	if (s->rx_bytes > 0)
		ev |= EPOLLIN;
	if (s->shut & LS_SEND_SHUT) {
		ev |= EPOLLOUT;
	} else if (s->state == LS_CLOSED) {
		ev |= EPOLLOUT;
	} else if (s->pcb.tcp) {
		struct tcp_pcb *pcb = s->pcb.tcp;
		if (tcp_sndbuf(pcb) >= TCP_SNDLOWAT && tcp_sndqueuelen(pcb) < TCP_SNDQUEUELOWAT)
			ev |= EPOLLOUT;
	}
	return ev;
}

int ls_tcp_outq(struct lsock *s)
{
	struct tcp_pcb *pcb = s->pcb.tcp;

	if (pcb == NULL || s->state != LS_CONNECTED)
		return 0;
	/* tcp_sndbuf() saturates at 64 KiB - 1; snd_buf is the full count. */
	return (int)((s->snd_cap ? s->snd_cap : TCP_SND_BUF) - pcb->snd_buf);
}

/* A minimal TCP_INFO: state and segment sizes. */
void ls_tcp_fill_info(struct lsock *s, void *val, socklen_t *len)
{
	struct tcp_info ti;
	struct tcp_pcb *pcb = s->pcb.tcp;

	memset(&ti, 0, sizeof(ti));
	switch (s->state) {
	case LS_LISTEN: ti.tcpi_state = 10; break;	/* TCP_LISTEN */
	case LS_SYN_SENT: ti.tcpi_state = 2; break;	/* TCP_SYN_SENT */
	case LS_CLOSED: ti.tcpi_state = 7; break;	/* TCP_CLOSE */
	case LS_CONNECTED:
		if (s->peer_fin && s->fin_sent)
			ti.tcpi_state = 6;	/* TCP_TIME_WAIT */
		else if (s->peer_fin)
			ti.tcpi_state = 8;	/* TCP_CLOSE_WAIT */
		else if (s->fin_sent)
			ti.tcpi_state = 4;	/* TCP_FIN_WAIT1 */
		else
			ti.tcpi_state = 1;	/* TCP_ESTABLISHED */
		break;
	}
	if (pcb && s->state != LS_LISTEN) {
		ti.tcpi_snd_mss = pcb->mss;
		ti.tcpi_rcv_mss = pcb->mss;
		ti.tcpi_snd_cwnd = pcb->mss ? pcb->cwnd / pcb->mss : 0;
		ti.tcpi_unacked = 0;
		ti.tcpi_rto = (uint32_t)pcb->rto * TCP_SLOW_INTERVAL * 1000;
		ti.tcpi_rtt = (uint32_t)(pcb->sa >> 3) * TCP_SLOW_INTERVAL * 1000;
	}
	socklen_t n = *len < sizeof(ti) ? *len : sizeof(ti);
	memcpy(val, &ti, n);
	*len = n;
}
