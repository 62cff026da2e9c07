/* UDP sockets on lwIP's raw udp_* API, with Linux's semantics. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include <lwip/udp.h>

#include "ipx/real.h"
#include "sock/lsock_impl.h"
#include "stack/stack.h"

/* The largest UDP payload over IPv4. */
#define LS_UDP_MAX 65507
/* Receive queue limit when SO_RCVBUF was not set (Linux's default). */
#define LS_UDP_RCVBUF 212992

static void ls_udp_recv_cb(void *arg, struct udp_pcb *pcb, struct pbuf *p,
			   const ip_addr_t *addr, u16_t port)
{
	struct lsock *s = arg;
	size_t limit;

	if (s == NULL || s->closed || p == NULL) {
		if (p)
			pbuf_free(p);
		return;
	}
	limit = s->rcvbuf ? (size_t)s->rcvbuf : LS_UDP_RCVBUF;
	/* Linux drops a datagram that does not fit in the receive buffer;
	 * an empty queue always takes one. */
	if (s->rx_count > 0 && s->rx_bytes + p->tot_len > limit) {
		pbuf_free(p);
		return;
	}
	struct ls_buf *b = malloc(sizeof(*b));
	if (b == NULL) {
		pbuf_free(p);
		return;
	}
	b->p = p;
	b->off = 0;
	ls_sockaddr(&b->from, addr, port);
	ls_rxq_push(s, b);
	ls_notify(s);
}

static int ls_udp_pcb(struct lsock *s)
{
	if (s->pcb.udp)
		return 0;
	struct udp_pcb *pcb = udp_new_ip_type(IPADDR_TYPE_V4);
	if (pcb == NULL)
		return -ENOMEM;
	s->pcb.udp = pcb;
	if (s->opt_reuseaddr)
		ip_set_option(pcb, SOF_REUSEADDR);
	if (s->opt_broadcast)
		ip_set_option(pcb, SOF_BROADCAST);
	udp_recv(pcb, ls_udp_recv_cb, s);
	ls_attach_ref(s);
	return 0;
}

/* After lwIP bound the pcb by itself (connect, first sendto). */
static void ls_udp_note_bind(struct lsock *s)
{
	struct udp_pcb *pcb = s->pcb.udp;

	if (pcb->local_port == 0 || (s->bound && ntohs(s->local.sin_port) == pcb->local_port))
		return;
	s->bound = true;
	ls_sockaddr(&s->local, &pcb->local_ip, pcb->local_port);
	ls_port_publish(s, pcb->local_port, 1);
}

/* Indirect mode: lwIP must not pick the local port of a first connect or
 * sendto itself; claim one and bind it (under the lock). */
static int ls_udp_implicit_bind(struct lsock *s)
{
	uint16_t port = 0;
	int r;

	if (s->pcb.udp->local_port != 0 || !stack_indirect())
		return 0;
	if ((r = ls_claim(s, &port)) < 0)
		return r;
	if (udp_bind(s->pcb.udp, IP4_ADDR_ANY, port) != ERR_OK) {
		ls_unclaim(s);
		return -EADDRINUSE;
	}
	return 0;
}

int ls_udp_bind(struct lsock *s, const struct sockaddr_in *sin)
{
	uint32_t a = sin->sin_addr.s_addr;
	uint16_t port = ntohs(sin->sin_port);
	int r;

	if ((r = ls_udp_pcb(s)) < 0)
		return r;
	if (ls_is_loopback(a)) {
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
		s->kudp = true;
	}
	ip_addr_t ip;
	ls_ipaddr(&ip, a);
	if (!ls_is_loopback(a) && (r = ls_claim(s, &port)) < 0)
		return r;
	err_t err = udp_bind(s->pcb.udp, &ip, port);
	if (err != ERR_OK) {
		ls_unclaim(s);
		return ls_err(err);
	}
	s->bound = true;
	ls_sockaddr(&s->local, &s->pcb.udp->local_ip, s->pcb.udp->local_port);
	if (ls_is_loopback(a))
		return 0;
	ls_port_publish(s, s->pcb.udp->local_port, 1);
	if (a == htonl(INADDR_ANY) && s->kfd >= 0) {
		/* Local senders reach a wildcard socket through the kernel. */
		struct sockaddr_storage ks;
		socklen_t ksl = ls_kaddr(s, &s->local, &ks);
		if (real.bind(s->kfd, (const struct sockaddr *)&ks, ksl) == 0)
			s->kudp = true;
		else
			ls_log_once("kernel side of a UDP socket not available", errno);
	}
	return 0;
}

int ls_udp_connect(struct lsock *s, const struct sockaddr *sa, socklen_t len)
{
	struct sockaddr_in sin;
	int r;

	if (sa != NULL && len >= (socklen_t)sizeof(sa_family_t) && sa->sa_family == AF_UNSPEC) {
		/* Dissolve the association (Linux). */
		stack_lock();
		if (s->pcb.udp)
			udp_disconnect(s->pcb.udp);
		memset(&s->remote, 0, sizeof(s->remote));
		s->remote.sin_family = AF_INET;
		stack_unlock();
		return 0;
	}
	if ((r = ls_parse_addr(s, sa, len, &sin)) < 0)
		return r;
	if (r == LS_ADDR_V6 || s->kernel_only ||
	    sin.sin_addr.s_addr == htonl(INADDR_ANY) || !stack_routes(sin.sin_addr))
		return -EXDEV;
	stack_lock();
	if (s->closed) {
		r = -EBADF;
	} else if ((r = ls_udp_pcb(s)) == 0 && (r = ls_udp_implicit_bind(s)) == 0) {
		ip_addr_t ip;
		ls_ipaddr(&ip, sin.sin_addr.s_addr);
		r = ls_err(udp_connect(s->pcb.udp, &ip, ntohs(sin.sin_port)));
		if (r == 0) {
			s->remote = sin;
			/* Replies from a libOS peer never come through kfd. */
			s->kudp = false;
			ls_udp_note_bind(s);
			ls_notify(s);
		}
	}
	stack_unlock();
	return r;
}

int ls_udp_shutdown(struct lsock *s, int how)
{
	if (s->remote.sin_port == 0)
		return -ENOTCONN;
	s->shut |= (unsigned)how + 1;
	return 0;
}

ssize_t ls_udp_sendmsg(struct lsock *s, const struct msghdr *msg, int flags)
{
	struct sockaddr_in dst;
	size_t total = ls_iov_total(msg);
	bool has_dst = msg->msg_name != NULL && msg->msg_namelen > 0;
	ssize_t r;

	if (total > LS_UDP_MAX)
		return -EMSGSIZE;
	int cls = LS_ADDR_V4;
	if (has_dst && (cls = ls_parse_addr(s, msg->msg_name, msg->msg_namelen, &dst)) < 0)
		return cls;
	if (s->kernel_only || (has_dst && (cls == LS_ADDR_V6 || dst.sin_addr.s_addr == htonl(INADDR_ANY) ||
					   !stack_routes(dst.sin_addr)))) {
		/* Not ours (loopback, another network): the kernel fd sends it
		 * and will receive the answer. */
		if (s->kfd < 0)
			return -ENETUNREACH;
		stack_lock();
		bool bad = s->closed || (s->shut & LS_SEND_SHUT);
		if (!bad)
			s->kudp = true;
		stack_unlock();
		if (bad)
			return s->closed ? -EBADF : -EPIPE;
		int kf = flags | MSG_NOSIGNAL;
		if (lsock_nonblock(s))
			kf |= MSG_DONTWAIT;
		r = real.sendmsg(s->kfd, msg, kf);
		if (r < 0)
			return -errno;
		stack_lock();
		ls_notify(s);
		stack_unlock();
		return r;
	}
	stack_lock();
	if (s->closed) {
		r = -EBADF;
		goto out;
	}
	if (s->shut & LS_SEND_SHUT) {
		r = -EPIPE;
		goto out;
	}
	if (!has_dst && s->remote.sin_port == 0) {
		r = -EDESTADDRREQ;
		goto out;
	}
	if ((r = ls_udp_pcb(s)) < 0 || (r = ls_udp_implicit_bind(s)) < 0)
		goto out;
	struct pbuf *p = pbuf_alloc(PBUF_TRANSPORT, (u16_t)total, PBUF_RAM);
	if (p == NULL) {
		r = -ENOBUFS;
		goto out;
	}
	size_t off = 0;
	for (size_t i = 0; i < (size_t)msg->msg_iovlen; i++) {
		memcpy((char *)p->payload + off, msg->msg_iov[i].iov_base, msg->msg_iov[i].iov_len);
		off += msg->msg_iov[i].iov_len;
	}
	err_t err;
	if (has_dst) {
		ip_addr_t ip;
		ls_ipaddr(&ip, dst.sin_addr.s_addr);
		err = udp_sendto(s->pcb.udp, p, &ip, ntohs(dst.sin_port));
	} else {
		err = udp_send(s->pcb.udp, p);
	}
	pbuf_free(p);
	ls_udp_note_bind(s);
	r = err == ERR_OK ? (ssize_t)total : ls_err(err);
out:
	stack_unlock();
	return r;
}

ssize_t ls_udp_recvmsg(struct lsock *s, struct msghdr *msg, int flags)
{
	struct ls_wait wt = { 0 };
	size_t total = ls_iov_total(msg);
	bool peek = flags & MSG_PEEK;
	bool nb = lsock_nonblock(s) || (flags & MSG_DONTWAIT);
	int64_t deadline = ls_deadline(s->rcvtimeo_ms);
	ssize_t r;

	for (int i = 0;; i++) {
		stack_lock();
		if (i > 0 && (r = ls_wait_arm(&wt)) < 0) {
			stack_unlock();
			break;
		}
		if (s->closed) {
			stack_unlock();
			r = -EBADF;
			break;
		}
		struct ls_buf *b = s->rxq_head;
		if (b) {
			size_t len = b->p->tot_len;
			size_t n = ls_pbuf_to_iov(b->p, 0, len < total ? len : total, msg, 0);
			if (msg->msg_name)
				ls_fill_addr(s, &b->from, msg->msg_name, &msg->msg_namelen);
			if (n < len)
				msg->msg_flags |= MSG_TRUNC;
			r = (flags & MSG_TRUNC) ? (ssize_t)len : (ssize_t)n;
			if (!peek) {
				s->rxq_head = b->next;
				if (s->rxq_head == NULL)
					s->rxq_tail = NULL;
				s->rx_bytes -= len;
				s->rx_count--;
				pbuf_free(b->p);
				free(b);
			}
			stack_unlock();
			break;
		}
		bool kside = s->kudp && s->kfd >= 0;
		bool eof = (s->shut & LS_RCV_SHUT) != 0;
		if (!nb && !eof && i > 0)
			ls_wait_watch(s, &wt);
		stack_unlock();
		if (kside) {
			r = real.recvmsg(s->kfd, msg, flags | MSG_DONTWAIT);
			if (r >= 0)
				break;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				r = -errno;
				break;
			}
		}
		if (eof) {
			r = 0;
			break;
		}
		if (nb) {
			r = -EAGAIN;
			break;
		}
		if (i == 0)
			continue;
		r = ls_wait_sleep(s, &wt, deadline, kside ? EPOLLIN : 0);
		if (r < 0)
			break;
	}
	ls_wait_done(s, &wt);
	return r;
}

void ls_udp_close(struct lsock *s)
{
	if (s->pcb.udp) {
		udp_recv(s->pcb.udp, NULL, NULL);
		udp_remove(s->pcb.udp);
		s->pcb.udp = NULL;
		ls_detach_ref(s);
	}
}

uint32_t ls_udp_events(struct lsock *s)
{
	uint32_t ev = EPOLLOUT;

	if (s->so_error)
		ev |= EPOLLERR;
	if (s->shut & LS_RCV_SHUT)
		ev |= EPOLLIN | EPOLLRDHUP;
	if (s->shut == LS_SHUT_MASK)
		ev |= EPOLLHUP;
	if (s->rxq_head)
		ev |= EPOLLIN;
	return ev;
}
