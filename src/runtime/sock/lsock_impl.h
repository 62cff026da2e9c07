/* Socket layer internals shared by lsock.c, lsock_tcp.c and lsock_udp.c. */
#ifndef LIBRETTO_LSOCK_IMPL_H
#define LIBRETTO_LSOCK_IMPL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>

#include <lwip/err.h>
#include <lwip/ip_addr.h>
#include <lwip/pbuf.h>

#include "sock/lsock.h"

/*
 * Locking: every field below that is not atomic is protected by the stack
 * lock (stack_lock()), which is also the lock lwIP's callbacks run under.
 * kfd and type never change after creation (kfd may be set once by
 * lsock_set_kfd for accepted sockets), so they are read without the lock.
 */

/* Linux's sk_shutdown bits. */
#define LS_RCV_SHUT 1u
#define LS_SEND_SHUT 2u
#define LS_SHUT_MASK (LS_RCV_SHUT | LS_SEND_SHUT)

enum ls_state {
	LS_CLOSED = 0,	/* fresh, bound, failed or reset: no connection */
	LS_LISTEN,
	LS_SYN_SENT,
	LS_CONNECTED,	/* established, including half-closed states */
};

/*
 * One queued piece of received data: a TCP segment's pbuf chain, or one UDP
 * datagram with its source.  off is how much of p the reader consumed.
 */
struct ls_buf {
	struct ls_buf *next;
	struct pbuf *p;
	uint32_t off;
	struct sockaddr_in from;	/* UDP only */
};

struct lsock {
	atomic_int refs;	/* holds: memory; one per pcb attachment too */
	int fd_refs;		/* descriptors naming this description */
	int remote_refs;	/* forked children / relay holding it (lsock.h) */
	bool kfd_owned;		/* kfd was handed over by lsock_own_kfd() */
	atomic_bool relayed;	/* a forked child writes to it through the relay */
	int kfd;
	int type;		/* SOCK_STREAM or SOCK_DGRAM */
	int domain;		/* AF_INET, or AF_INET6 (IPv4 through mapped addresses) */
	bool v6only;		/* IPV6_V6ONLY on an AF_INET6 socket */
	bool kernel_only;	/* bound to an IPv6 address: all on kfd */
	atomic_bool nonblock;

	enum ls_state state;
	unsigned shut;		/* LS_*_SHUT */
	int so_error;		/* pending error (positive errno), 0 if none */
	bool closed;		/* the last descriptor went away */
	/* Calls in flight (lsock_busy_get) and a close that waits for them:
	 * atomic, so that entering and leaving a call costs no lock. */
	atomic_int busy;
	atomic_bool close_pending;
	bool bound;		/* bind() or an implicit bind happened */
	bool was_connected;	/* reached LS_CONNECTED at least once */
	bool connecting;	/* Linux SS_CONNECTING: connect() started */
	bool attached;		/* callbacks point at us (holds a ref) */
	bool peer_fin;		/* TCP: the peer's FIN arrived */
	bool fin_sent;		/* TCP: our FIN is queued (SHUT_WR) */

	union {
		struct tcp_pcb *tcp;
		struct udp_pcb *udp;
	} pcb;

	struct sockaddr_in local;	/* cached: survives the pcb */
	struct sockaddr_in remote;

	/* Receive queue. */
	struct ls_buf *rxq_head, *rxq_tail;
	size_t rx_bytes;	/* unread payload bytes */
	size_t rx_count;	/* queued buffers (datagrams for UDP) */
	size_t rx_unacked;	/* TCP: bytes read but not yet tcp_recved */

	/* Listener: accepted connections not yet taken by accept(). */
	struct lsock *acceptq_head, *acceptq_tail;
	struct lsock *accept_next;
	int acceptq_len;
	int backlog;

	/* Kernel side (see lsock.h): kfd listening / bound for receiving. */
	bool klisten;
	bool kudp;

	/* Indirect mode: the port claimed in librettod's table (0: none). */
	uint16_t claimed_port;

	/* Ports published with stack_port_add. */
	uint16_t port_pub;
	uint8_t port_state;
	/* TCP: 1 + the slot listing this connection in the region's table
	 * (ls_conn_publish), 0 if not listed. */
	uint16_t conn_slot;

	/* Options. */
	bool opt_reuseaddr, opt_reuseport, opt_keepalive, opt_nodelay, opt_broadcast;
	bool opt_cork;		/* TCP_CORK: hold partial segments */
	bool cork_timer;	/* the 200 ms cork ceiling is armed (holds a ref) */
	bool linger_on;
	int linger_sec;
	int rcvbuf, sndbuf;	/* as getsockopt reports them; 0: default */
	/* TCP: the send buffer the pcb was given (ls_tcp_size_sndbuf); 0:
	 * lwIP's own TCP_SND_BUF. */
	uint32_t snd_cap;
	int64_t rcvtimeo_ms, sndtimeo_ms;	/* 0: forever */
	int keepidle, keepintvl, keepcnt;	/* seconds, seconds, count */

	LIST_HEAD(, lsock_watch) watches;

	/* On the list of descriptions with descriptors (lsock.c), which
	 * process exit closes; under the stack lock. */
	LIST_ENTRY(lsock) open_link;
	bool on_open_list;
};

/*
 * Blocking: a call that must wait loops
 *	stack_lock(); ls_wait_arm(&wt); try; if done break;
 *	ls_wait_watch(s, &wt); stack_unlock(); ls_wait_sleep(s, &wt, ...);
 * and calls ls_wait_done(s, &wt) (without the lock) at the end.  Arming and
 * checking under the same lock hold as the notifications makes the wait
 * free of lost wake-ups (lsock.h, waiters).
 */
struct ls_wait {
	struct lsock_waiter *w;
	struct lsock_watch watch;
	bool watching;
};

/* lsock.c */
int ls_wait_arm(struct ls_wait *wt);
void ls_wait_watch(struct lsock *s, struct ls_wait *wt);
int ls_wait_sleep(struct lsock *s, struct ls_wait *wt, int64_t deadline_ms, uint32_t kev);
void ls_wait_done(struct lsock *s, struct ls_wait *wt);
int64_t ls_deadline(int64_t timeo_ms);
int ls_err(err_t err);
void ls_notify(struct lsock *s);
uint32_t ls_events_locked(struct lsock *s);
void ls_attach_ref(struct lsock *s);
void ls_detach_ref(struct lsock *s);
void ls_rxq_push(struct lsock *s, struct ls_buf *b);
void ls_rxq_flush(struct lsock *s);
void ls_port_publish(struct lsock *s, uint16_t port, uint8_t state);
void ls_port_withdraw(struct lsock *s);
/* Indirect mode: claim *port (0: an ephemeral one, returned) for s before
 * lwIP binds it; ls_unclaim() gives it back (close, a failed bind). */
int ls_claim(struct lsock *s, uint16_t *port);
void ls_unclaim(struct lsock *s);
/* List / unlist a TCP connection (s->local, s->remote) in the region so that
 * librettod can reset its peer if the process dies; idempotent. */
void ls_conn_publish(struct lsock *s);
void ls_conn_withdraw(struct lsock *s);
void ls_ipaddr(ip_addr_t *a, uint32_t be_addr);
void ls_sockaddr(struct sockaddr_in *sin, const ip_addr_t *a, uint16_t port);
/* ls_parse_addr: LS_ADDR_V4 (out filled; IPv4 or IPv4-mapped or ::), or
 * LS_ADDR_V6 (an IPv6 address only the kernel can serve), or -errno. */
#define LS_ADDR_V4 0
#define LS_ADDR_V6 1
int ls_parse_addr(const struct lsock *s, const struct sockaddr *sa, socklen_t len,
		  struct sockaddr_in *out);
void ls_fill_addr(const struct lsock *s, const struct sockaddr_in *sin,
		  struct sockaddr *sa, socklen_t *len);
socklen_t ls_kaddr(const struct lsock *s, const struct sockaddr_in *sin,
		   struct sockaddr_storage *ss);
bool ls_is_loopback(uint32_t be_addr);
int64_t ls_now_ms(void);
void ls_log_once(const char *msg, int err);
size_t ls_iov_total(const struct msghdr *msg);
size_t ls_pbuf_to_iov(const struct pbuf *p, uint32_t off, size_t n,
		      const struct msghdr *msg, size_t skip);

/* lsock_tcp.c */
int ls_tcp_bind(struct lsock *s, const struct sockaddr_in *sin);
int ls_tcp_listen(struct lsock *s, int backlog);
int ls_tcp_accept(struct lsock *s, struct lsock **new_s, int *new_kfd,
		  struct sockaddr *sa, socklen_t *len, int flags);
int ls_tcp_connect(struct lsock *s, const struct sockaddr_in *sin);
int ls_tcp_shutdown(struct lsock *s, int how);
ssize_t ls_tcp_sendmsg(struct lsock *s, const struct msghdr *msg, int flags);
ssize_t ls_tcp_recvmsg(struct lsock *s, struct msghdr *msg, int flags);
void ls_tcp_close(struct lsock *s);
void ls_tcp_apply_opts(struct lsock *s);
/* TCP_CORK / TCP_NODELAY were set (under the lock, after ls_tcp_apply_opts):
 * push queued data as Linux does when a socket is uncorked or given
 * TCP_NODELAY 1. */
void ls_tcp_push_opt(struct lsock *s, int name, bool was_corked);
uint32_t ls_tcp_events(struct lsock *s);
int ls_tcp_outq(struct lsock *s);
void ls_tcp_fill_info(struct lsock *s, void *info, socklen_t *len);

/* lsock_udp.c */
int ls_udp_bind(struct lsock *s, const struct sockaddr_in *sin);
int ls_udp_connect(struct lsock *s, const struct sockaddr *sa, socklen_t len);
int ls_udp_shutdown(struct lsock *s, int how);
ssize_t ls_udp_sendmsg(struct lsock *s, const struct msghdr *msg, int flags);
ssize_t ls_udp_recvmsg(struct lsock *s, struct msghdr *msg, int flags);
void ls_udp_close(struct lsock *s);
uint32_t ls_udp_events(struct lsock *s);

#endif
