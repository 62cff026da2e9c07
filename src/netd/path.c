/* libretto-netd's data path: wire -> classifier -> application rings, and back through the validator. */
#include "netd/server.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ETH_HLEN 14
#define ETH_MIN_FRAME 60
#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_ARP 0x0806
#define IPPROTO_ICMP_ 1
#define IPPROTO_TCP_ 6

/*
 * Nothing here allocates: every buffer is a UMEM frame, an application's
 * frame, or a descriptor on the stack.  Every frame handled here is netd's
 * own copy (an RX frame of the UMEM, which only the kernel and netd touch,
 * or a UMEM frame netd copied an application's frame into), so it is parsed
 * once and cannot change underneath.
 */

static inline uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t rd32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void wr32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* One's complement sum of two folded sums. */
static inline uint16_t csum_add(uint16_t a, uint16_t b)
{
	uint32_t s = (uint32_t)a + b;

	return (uint16_t)((s & 0xffff) + (s >> 16));
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

bool netd_fronts(const struct netd *n, uint32_t ip)
{
	unsigned i;

	for (i = 0; i < n->n_ips; i++)
		if (n->ips[i] == ip)
			return true;
	return false;
}

static bool app_has_ip(const struct netd_app *a, uint32_t ip)
{
	unsigned i;

	for (i = 0; i < a->va.n_ips; i++)
		if (a->va.ips[i] == ip)
			return true;
	return false;
}

/* The next application at or after index *i that has ip, or NULL. */
static struct netd_app *app_with_ip(struct netd *n, uint32_t ip, unsigned *i)
{
	for (; *i < NETD_MAX_APPS; (*i)++) {
		struct netd_app *a = &n->apps[*i];

		if (a->used && app_has_ip(a, ip)) {
			(*i)++;
			return a;
		}
	}
	return NULL;
}

static struct netd_app *app_by_id(struct netd *n, uint32_t id)
{
	unsigned i;

	if (id == 0)
		return NULL;
	for (i = 0; i < NETD_MAX_APPS; i++)
		if (n->apps[i].used && n->apps[i].id == id)
			return &n->apps[i];
	return NULL;
}

/* Does netd answer ARP for ip: fronted, or some application's own? */
static bool serves_ip(struct netd *n, uint32_t ip)
{
	unsigned i = 0;

	return netd_fronts(n, ip) || app_with_ip(n, ip, &i) != NULL;
}

bool netd_owns_port(void *ctx, uint32_t app, uint32_t ip, uint8_t proto, uint16_t port)
{
	struct netd *n = ctx;

	return n->have_porttab && app != 0 && porttab_lookup(&n->pt, ip, proto, port) == app;
}

/* ---- netd's own transmissions (ARP, echo replies, RSTs) and the XSK tx ring ---- */

/* A free UMEM frame to build a reply in, or NULL. */
static uint8_t *umem_take(struct netd *n, uint64_t *addr)
{
	struct netd_nic *x = &n->nic;

	if (x->nfree == 0)
		return NULL;
	*addr = x->free_frames[--x->nfree];
	return x->umem + *addr;
}

static void umem_put(struct netd *n, uint64_t addr)
{
	struct netd_nic *x = &n->nic;

	/* Cannot overflow: every frame is either free, on a ring or in hand. */
	if (x->nfree < x->nframes)
		x->free_frames[x->nfree++] = addr;
	netd_frame_mark(x, addr, NETD_FRAME_FREE);
}

/* Queue UMEM frame addr (len bytes) on the XSK tx ring; false (and the frame freed) if full. */
static bool xsk_send(struct netd *n, uint64_t addr, uint32_t len)
{
	struct netd_nic *x = &n->nic;
	struct xdp_desc *d;
	uint32_t idx;

	if (xsk_q_reserve(&x->tx, 1, &idx) != 1) {
		umem_put(n, addr);
		return false;
	}
	/* Queued, not yet visible: a successor takes it back if the
	 * producer never covered it (xsk_flush_tx() makes it TX). */
	netd_frame_mark(x, addr, NETD_FRAME_TXQ);
	d = xsk_q_desc(&x->tx, idx);
	d->addr = addr;
	d->len = len;
	d->options = 0;
	x->tx_kick = true;
	n->st.tx_frames++;
	n->st.tx_bytes += len;
	return true;
}

/* Publish the tx ring and make the kernel look at it if it asked to. */
static void xsk_flush_tx(struct netd *n)
{
	struct netd_nic *x = &n->nic;

	if (x->tx_kick) {
		/* Our own last store: nobody else writes the tx producer. */
		uint32_t from = __atomic_load_n(x->tx.producer, __ATOMIC_RELAXED), i;

		x->tx_kick = false;
		xsk_q_submit(&x->tx);
		/*
		 * Published: from now on a frame may be the kernel's until its
		 * completion.  Marked before the kick below; in copy mode the
		 * kernel takes tx frames only from a kick, so none can be taken
		 * and completed while still marked TXQ.
		 */
		if (x->sh != NULL)
			for (i = from; i != x->tx.cached_prod; i++)
				netd_frame_mark(x, xsk_q_desc(&x->tx, i)->addr, NETD_FRAME_TX);
	}
	/* Kick while the kernel has not taken everything: EAGAIN, EBUSY and
	 * ENOBUFS mean it is busy and the frames stay queued for the next
	 * kick; nothing else is actionable here. */
	if (__atomic_load_n(x->tx.consumer, __ATOMIC_ACQUIRE) != x->tx.cached_prod &&
	    xsk_q_needs_wakeup(&x->tx))
		(void)sendto(x->xsk_fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
}

/* Take sent frames back from the completion ring. */
static uint32_t xsk_reap(struct netd *n)
{
	struct netd_nic *x = &n->nic;
	uint32_t idx, got, i;

	got = xsk_q_peek(&x->comp, NETD_BATCH * 4, &idx);
	for (i = 0; i < got; i++) {
		uint64_t a = *xsk_q_addr(&x->comp, idx + i);

		a -= a % x->frame_size;
		/* After adopting the rings of a netd that died, a frame found on no
		 * ring was taken back; its completion may still come: take it once. */
		if (x->sh != NULL && netd_frame_state(x, a) != NETD_FRAME_TX)
			continue;
		umem_put(n, a);
	}
	if (got)
		xsk_q_release(&x->comp);
	return got;
}

static void reply_arp(struct netd *n, const struct classify_verdict *v)
{
	uint64_t addr;
	uint8_t *o = umem_take(n, &addr);

	if (o == NULL) {
		n->st.reply_no_frame++;
		return;
	}
	memset(o, 0, ETH_MIN_FRAME);
	memcpy(o, v->arp_sha, 6);
	memcpy(o + 6, n->nic.mac, 6);
	wr16(o + 12, ETHERTYPE_ARP);
	wr16(o + 14, 1);
	wr16(o + 16, ETHERTYPE_IPV4);
	o[18] = 6;
	o[19] = 4;
	wr16(o + 20, 2);
	memcpy(o + 22, n->nic.mac, 6);
	wr32(o + 28, v->arp_tpa);
	memcpy(o + 32, v->arp_sha, 6);
	wr32(o + 38, v->arp_spa);
	if (xsk_send(n, addr, ETH_MIN_FRAME))
		n->st.arp_replies++;
	else
		n->st.reply_no_frame++;
}

static void reply_echo(struct netd *n, const uint8_t *f, const struct classify_verdict *v)
{
	uint32_t len = ETH_HLEN + v->ip_total_len;
	uint64_t addr;
	uint8_t *o, *ip, *icmp;
	uint16_t c;

	if (len > n->nic.frame_size || (o = umem_take(n, &addr)) == NULL) {
		n->st.reply_no_frame++;
		return;
	}
	memcpy(o, f, len);
	memcpy(o, f + 6, 6);
	memcpy(o + 6, n->nic.mac, 6);
	ip = o + ETH_HLEN;
	wr32(ip + 12, v->dst_ip);
	wr32(ip + 16, v->src_ip);
	ip[8] = 64;
	wr16(ip + 10, 0);
	wr16(ip + 10, (uint16_t)~classify_csum_fold(ip, v->ip_hlen));
	icmp = o + v->l4_off;
	icmp[0] = 0;
	wr16(icmp + 2, 0);
	c = classify_csum_fold(icmp, v->l4_len);
	wr16(icmp + 2, (uint16_t)~c);
	if (len < ETH_MIN_FRAME) {
		memset(o + len, 0, ETH_MIN_FRAME - len);
		len = ETH_MIN_FRAME;
	}
	if (xsk_send(n, addr, len))
		n->st.echo_replies++;
	else
		n->st.reply_no_frame++;
}

/* RFC 793's reset for a segment that reached no connection. */
static void reply_rst(struct netd *n, const uint8_t *f, const struct classify_verdict *v)
{
	const uint8_t *th = f + v->l4_off;
	uint32_t seq = rd32(th + 4), ack = rd32(th + 8);
	uint32_t doff = (uint32_t)(th[12] >> 4) * 4u;
	uint32_t seglen = v->l4_len > doff ? v->l4_len - doff : 0;
	uint8_t pseudo[12], *o, *ip, *tcp;
	uint64_t addr;
	uint16_t c;

	if ((o = umem_take(n, &addr)) == NULL) {
		n->st.reply_no_frame++;
		return;
	}
	memset(o, 0, ETH_MIN_FRAME);
	memcpy(o, f + 6, 6);
	memcpy(o + 6, n->nic.mac, 6);
	wr16(o + 12, ETHERTYPE_IPV4);
	ip = o + ETH_HLEN;
	ip[0] = 0x45;
	wr16(ip + 2, 40);
	wr16(ip + 6, 0x4000);
	ip[8] = 64;
	ip[9] = IPPROTO_TCP_;
	wr32(ip + 12, v->dst_ip);
	wr32(ip + 16, v->src_ip);
	wr16(ip + 10, (uint16_t)~classify_csum_fold(ip, 20));
	tcp = ip + 20;
	wr16(tcp, v->dst_port);
	wr16(tcp + 2, v->src_port);
	if (v->tcp_flags & CLASSIFY_TCP_ACK) {
		wr32(tcp + 4, ack);
		tcp[13] = CLASSIFY_TCP_RST;
	} else {
		if (v->tcp_flags & CLASSIFY_TCP_SYN)
			seglen++;
		if (v->tcp_flags & CLASSIFY_TCP_FIN)
			seglen++;
		wr32(tcp + 8, seq + seglen);
		tcp[13] = CLASSIFY_TCP_RST | CLASSIFY_TCP_ACK;
	}
	tcp[12] = 5 << 4;
	wr32(pseudo, v->dst_ip);
	wr32(pseudo + 4, v->src_ip);
	pseudo[8] = 0;
	pseudo[9] = IPPROTO_TCP_;
	wr16(pseudo + 10, 20);
	c = csum_add(classify_csum_fold(pseudo, 12), classify_csum_fold(tcp, 20));
	wr16(tcp + 16, (uint16_t)~c);
	if (xsk_send(n, addr, ETH_MIN_FRAME))
		n->st.rst_sent++;
	else
		n->st.reply_no_frame++;
}

/*
 * ICMP destination unreachable, port unreachable (type 3, code 3), for UDP
 * to a port nobody owns, as Linux sends it: the offending IP header and as
 * much of its payload as keeps the reply within 576 bytes (RFC 1812
 * 4.3.2.3).  Rate-limited like Linux's icmp_msgs_per_sec (a token bucket of
 * ICMP_RATE per second), so a UDP scan cannot turn netd into a reflector.
 */
#define ICMP_RATE 1000u
#define ICMP_QUOTE_MAX (576u - 20u - 8u)

static void reply_port_unreach(struct netd *n, const uint8_t *f, const struct classify_verdict *v)
{
	uint32_t quote = v->ip_total_len, len;
	uint8_t *o, *ip, *icmp;
	uint64_t addr;

	if (n->icmp_tokens_ms != n->now_ms) {
		uint64_t add = (n->now_ms - n->icmp_tokens_ms) * ICMP_RATE / 1000u;

		n->icmp_tokens = add >= ICMP_RATE || n->icmp_tokens + add >= ICMP_RATE ?
				 ICMP_RATE : n->icmp_tokens + (uint32_t)add;
		n->icmp_tokens_ms = n->now_ms;
	}
	if (n->icmp_tokens == 0) {
		n->st.icmp_ratelimited++;
		return;
	}
	if (quote > ICMP_QUOTE_MAX)
		quote = ICMP_QUOTE_MAX;
	len = ETH_HLEN + 20 + 8 + quote;
	if (len > n->nic.frame_size || (o = umem_take(n, &addr)) == NULL) {
		n->st.reply_no_frame++;
		return;
	}
	n->icmp_tokens--;
	memcpy(o, f + 6, 6);
	memcpy(o + 6, n->nic.mac, 6);
	wr16(o + 12, ETHERTYPE_IPV4);
	ip = o + ETH_HLEN;
	memset(ip, 0, 20 + 8);
	ip[0] = 0x45;
	ip[1] = 0xc0; /* internetwork control, as Linux marks its ICMP errors */
	wr16(ip + 2, (uint16_t)(20 + 8 + quote));
	ip[8] = 64;
	ip[9] = IPPROTO_ICMP_;
	wr32(ip + 12, v->dst_ip);
	wr32(ip + 16, v->src_ip);
	wr16(ip + 10, (uint16_t)~classify_csum_fold(ip, 20));
	icmp = ip + 20;
	icmp[0] = 3;
	icmp[1] = 3;
	memcpy(icmp + 8, f + ETH_HLEN, quote);
	wr16(icmp + 2, (uint16_t)~classify_csum_fold(icmp, 8 + quote));
	if (len < ETH_MIN_FRAME) {
		memset(o + len, 0, ETH_MIN_FRAME - len);
		len = ETH_MIN_FRAME;
	}
	if (xsk_send(n, addr, len))
		n->st.unreach_sent++;
	else
		n->st.reply_no_frame++;
}

/* ---- delivery into an application's rx ring ---- */

/*
 * Copy f into a frame the application lent on its fill ring and queue it on
 * its rx ring (published at the end of the RX batch).  A full rx ring or an
 * empty fill ring drops the frame for this application only: netd never
 * waits for one.
 */
static bool deliver(struct netd *n, struct netd_app *a, const uint8_t *f, uint32_t len)
{
	struct ring_desc d;
	uint32_t fidx, ridx;
	struct ring_desc *rd;

	(void)n;
	if (ring_prod_free(&a->rx, 1) < 1 || ring_cons_peek(&a->fill, 1, &fidx) != 1) {
		a->st.rx_ring_full++;
		return false;
	}
	ring_cons_read(&a->fill, fidx, &d);
	/* The descriptor is our private copy now; the slot can go back. */
	ring_cons_release(&a->fill, 1);
	if (!ring_desc_valid(&a->hdr, &d) || d.len < len) {
		a->st.rx_bad_fill++;
		return false;
	}
	memcpy(a->frames + d.offset, f, len);
	ring_prod_reserve(&a->rx, 1, &ridx);
	rd = ring_prod_desc(&a->rx, ridx);
	rd->offset = d.offset;
	rd->len = len;
	rd->flags = 0;
	a->rx_unsubmitted++;
	a->st.rx_frames++;
	a->st.rx_bytes += len;
	return true;
}

/* Publish the rx rings filled in this batch and ring the doorbells asked for. */
/*
 * Ring the application's doorbell.  efd_app is non-blocking (set at app_add)
 * and polled first, so an application that saturates its eventfd counter
 * cannot block netd; only one that also clears O_NONBLOCK on it and races
 * the poll could (docs/netd.md, known gaps).
 */
static void ring_app(struct netd_app *a)
{
	struct pollfd p = { .fd = a->efd_app, .events = POLLOUT };
	uint64_t one = 1;

	if (poll(&p, 1, 0) == 1 && (p.revents & POLLOUT)) {
		/* EAGAIN: the counter is already non-zero, it is awake. */
		(void)write(a->efd_app, &one, sizeof(one));
		a->st.wakeups++;
	}
}

static void publish_rx(struct netd *n)
{
	unsigned i;

	for (i = 0; i < NETD_MAX_APPS; i++) {
		struct netd_app *a = &n->apps[i];

		if (!a->used || a->rx_unsubmitted == 0)
			continue;
		ring_prod_submit(&a->rx, a->rx_unsubmitted);
		a->rx_unsubmitted = 0;
		if (ring_prod_needs_wakeup(&a->rx))
			ring_app(a);
	}
}

/* Every application that has ip gets a copy (ARP); *ok: at least one took it. */
static bool deliver_ip_all(struct netd *n, uint32_t ip, const uint8_t *f, uint32_t len, bool *ok)
{
	struct netd_app *a;
	unsigned i = 0;
	bool any = false;

	*ok = false;
	while ((a = app_with_ip(n, ip, &i)) != NULL) {
		if (deliver(n, a, f, len))
			*ok = true;
		any = true;
	}
	return any;
}

/* An ICMP error or reply: the application whose datagram it quotes, else the address's. */
static struct netd_app *icmp_owner(struct netd *n, const uint8_t *f, const struct classify_verdict *v)
{
	const uint8_t *icmp = f + v->l4_off, *in;
	struct netd_app *a;
	unsigned ihl, i = 0;

	if (!(v->flags & CLASSIFY_F_FRAGMENT) && v->l4_len >= 8 + 20 + 4 &&
	    (v->icmp_type == 3 || v->icmp_type == 11 || v->icmp_type == 12)) {
		in = icmp + 8;
		ihl = (in[0] & 0xfu) * 4u;
		if ((in[0] >> 4) == 4 && ihl >= 20 && v->l4_len >= 8 + ihl + 4 &&
		    (in[9] == 6 || in[9] == 17)) {
			a = app_by_id(n, n->have_porttab ?
				      porttab_lookup(&n->pt, rd32(in + 12), in[9], rd16(in + ihl)) : 0);
			if (a && app_has_ip(a, v->dst_ip))
				return a;
		}
	}
	return app_with_ip(n, v->dst_ip, &i);
}

static bool unicast_to_us(const struct netd *n, const uint8_t *f, const struct classify_verdict *v)
{
	return v->dst_class == CLASSIFY_MAC_UNICAST && memcmp(f, n->nic.mac, 6) == 0;
}

/* Remember which MAC ip sent from (the newest wins). */
static void neigh_learn(struct netd *n, uint32_t ip, const uint8_t *mac)
{
	unsigned i;

	if (ip == 0 || (mac[0] & 1))
		return;
	for (i = 0; i < NETD_MAX_NEIGH; i++) {
		if (n->neigh[i].ip == ip) {
			memcpy(n->neigh[i].mac, mac, 6);
			return;
		}
	}
	i = n->neigh_next++ % NETD_MAX_NEIGH;
	n->neigh[i].ip = ip;
	memcpy(n->neigh[i].mac, mac, 6);
}

bool netd_reap_probe(struct netd *n, uint32_t lip, uint16_t lport, uint32_t rip, uint16_t rport)
{
	const uint8_t *mac = NULL;
	uint8_t pseudo[12], *o, *ip, *tcp;
	uint64_t addr;
	uint16_t c;

	for (unsigned i = 0; i < NETD_MAX_NEIGH; i++)
		if (n->neigh[i].ip == rip)
			mac = n->neigh[i].mac;
	if (mac == NULL) {
		n->st.reap_no_neigh++;
		return false;
	}
	if ((o = umem_take(n, &addr)) == NULL) {
		n->st.reply_no_frame++;
		return false;
	}
	memset(o, 0, ETH_MIN_FRAME);
	memcpy(o, mac, 6);
	memcpy(o + 6, n->nic.mac, 6);
	wr16(o + 12, ETHERTYPE_IPV4);
	ip = o + ETH_HLEN;
	ip[0] = 0x45;
	wr16(ip + 2, 40);
	wr16(ip + 6, 0x4000);
	ip[8] = 64;
	ip[9] = IPPROTO_TCP_;
	wr32(ip + 12, lip);
	wr32(ip + 16, rip);
	wr16(ip + 10, (uint16_t)~classify_csum_fold(ip, 20));
	tcp = ip + 20;
	wr16(tcp, lport);
	wr16(tcp + 2, rport);
	/* Any sequence number: the peer's challenge ACK names its own. */
	wr32(tcp + 4, (uint32_t)(mono_ms() * 2654435761u));
	tcp[12] = 5 << 4;
	tcp[13] = CLASSIFY_TCP_SYN;
	wr16(tcp + 14, 1024);
	wr32(pseudo, lip);
	wr32(pseudo + 4, rip);
	pseudo[8] = 0;
	pseudo[9] = IPPROTO_TCP_;
	wr16(pseudo + 10, 20);
	c = csum_add(classify_csum_fold(pseudo, 12), classify_csum_fold(tcp, 20));
	wr16(tcp + 16, (uint16_t)~c);
	if (!xsk_send(n, addr, ETH_MIN_FRAME)) {
		n->st.reply_no_frame++;
		return false;
	}
	xsk_flush_tx(n);
	n->st.reap_probes++;
	return true;
}

/* What became of a frame from the wire (the counter identity of netd.h). */
enum rx_outcome { RX_DELIVERED, RX_HANDLED, RX_DROPPED };

static enum rx_outcome rx_one(struct netd *n, const uint8_t *f, uint32_t len)
{
	struct classify_verdict v;
	struct netd_app *a;
	struct frag_key key;
	uint32_t id;
	bool ok;

	n->st.rx_frames++;
	n->st.rx_bytes += len;
	classify_frame(f, len, &v);
	if (v.kind == CLASSIFY_ARP_REQUEST || v.kind == CLASSIFY_ARP_REPLY)
		neigh_learn(n, v.arp_spa, v.arp_sha);
	else if (v.kind >= CLASSIFY_IPV4_TCP && v.kind <= CLASSIFY_IPV4_FRAGMENT && len >= 12)
		neigh_learn(n, v.src_ip, f + 6);
	switch (v.kind) {
	case CLASSIFY_MALFORMED:
		n->st.rx_malformed[v.reason < CLASSIFY_REASON_COUNT ? v.reason : 0]++;
		return RX_DROPPED;
	case CLASSIFY_ARP_REQUEST:
		if (v.dst_class == CLASSIFY_MAC_MULTICAST ||
		    (v.dst_class == CLASSIFY_MAC_UNICAST && !unicast_to_us(n, f, &v)) ||
		    !serves_ip(n, v.arp_tpa)) {
			n->st.rx_not_ours++;
			return RX_DROPPED;
		}
		reply_arp(n, &v);
		/* The applications learn the requester's MAC from it. */
		deliver_ip_all(n, v.arp_tpa, f, len, &ok);
		return ok ? RX_DELIVERED : RX_HANDLED;
	case CLASSIFY_ARP_REPLY:
		if (v.dst_class == CLASSIFY_MAC_MULTICAST ||
		    (v.dst_class == CLASSIFY_MAC_UNICAST && !unicast_to_us(n, f, &v)) ||
		    !deliver_ip_all(n, v.arp_tpa, f, len, &ok)) {
			n->st.rx_not_ours++;
			return RX_DROPPED;
		}
		return ok ? RX_DELIVERED : RX_DROPPED;
	default:
		break;
	}

	if (v.kind < CLASSIFY_IPV4_TCP || v.kind > CLASSIFY_IPV4_FRAGMENT ||
	    v.kind == CLASSIFY_IPV4_OTHER) {
		n->st.rx_unsupported++;
		return RX_DROPPED;
	}
	if (!unicast_to_us(n, f, &v) || !serves_ip(n, v.dst_ip)) {
		n->st.rx_not_ours++;
		return RX_DROPPED;
	}
	switch (v.kind) {
	case CLASSIFY_IPV4_ICMP_ECHO:
		if (netd_fronts(n, v.dst_ip)) {
			if (v.flags & CLASSIFY_F_FRAGMENT) {
				n->st.rx_unsupported++;
				return RX_DROPPED;
			}
			reply_echo(n, f, &v);
			return RX_HANDLED;
		}
		/* An application's own address answers itself. */
		__attribute__((fallthrough));
	case CLASSIFY_IPV4_ICMP_OTHER:
		a = icmp_owner(n, f, &v);
		break;
	case CLASSIFY_IPV4_TCP:
	case CLASSIFY_IPV4_UDP:
		id = n->have_porttab ? porttab_lookup(&n->pt, v.dst_ip, v.proto, v.dst_port) : 0;
		a = app_by_id(n, id);
		/* The owner must have the address: a wildcard entry covers
		 * only the addresses netd fronts for that application
		 * (porttab.h), never another application's own. */
		if (a && !app_has_ip(a, v.dst_ip))
			a = NULL;
		if (a == NULL) {
			n->st.rx_no_port++;
			if (v.kind == CLASSIFY_IPV4_TCP && !(v.tcp_flags & CLASSIFY_TCP_RST) &&
			    !(v.flags & CLASSIFY_F_FRAGMENT))
				reply_rst(n, f, &v);
			else if (v.kind == CLASSIFY_IPV4_UDP && v.dst_class == CLASSIFY_MAC_UNICAST)
				reply_port_unreach(n, f, &v);
			return RX_DROPPED;
		}
		break;
	default: /* CLASSIFY_IPV4_FRAGMENT: a later piece */
		key.src_ip = v.src_ip;
		key.dst_ip = v.dst_ip;
		key.ip_id = v.ip_id;
		key.proto = v.proto;
		if (frag_lookup(&n->rx_frags, &key, n->now_ms, &id, NULL) != FRAG_HIT ||
		    (a = app_by_id(n, id)) == NULL) {
			n->st.rx_frag_miss++;
			return RX_DROPPED;
		}
		return deliver(n, a, f, len) ? RX_DELIVERED : RX_DROPPED;
	}
	if (a == NULL) {
		n->st.rx_not_ours++;
		return RX_DROPPED;
	}
	if (v.flags & CLASSIFY_F_FIRST) {
		key.src_ip = v.src_ip;
		key.dst_ip = v.dst_ip;
		key.ip_id = v.ip_id;
		key.proto = v.proto;
		frag_remember(&n->rx_frags, &key, a->id, v.l4_len, n->now_ms);
	}
	return deliver(n, a, f, len) ? RX_DELIVERED : RX_DROPPED;
}

/* One RX batch from the wire; the frames go straight back to the fill ring. */
static uint32_t rx_batch(struct netd *n)
{
	struct netd_nic *x = &n->nic;
	uint64_t addrs[NETD_BATCH];
	uint32_t idx, got, i, fidx, room;

	got = xsk_q_peek(&x->rx, NETD_BATCH, &idx);
	for (i = 0; i < got; i++) {
		const struct xdp_desc *d = xsk_q_desc(&x->rx, idx + i);
		uint64_t addr = d->addr, off = addr % x->frame_size;
		uint32_t len = d->len;

		addrs[i] = addr - off;
		if (addr >= x->umem_size || off + len > x->frame_size) {
			n->st.rx_frames++;
			n->st.rx_bad_desc++;
			n->st.rx_dropped++;
			continue;
		}
		switch (rx_one(n, x->umem + addr, len)) {
		case RX_DELIVERED:
			n->st.rx_delivered++;
			break;
		case RX_HANDLED:
			n->st.rx_handled++;
			break;
		default:
			n->st.rx_dropped++;
			break;
		}
	}
	if (got == 0)
		return 0;
	xsk_q_release(&x->rx);
	publish_rx(n);
	room = xsk_q_reserve(&x->fill, got, &fidx);
	for (i = 0; i < room; i++)
		*xsk_q_addr(&x->fill, fidx + i) = addrs[i];
	for (; i < got; i++)
		umem_put(n, addrs[i]);
	xsk_q_submit(&x->fill);
	return got;
}

/* ---- transmission from the applications ---- */

/*
 * One application's TX batch: every descriptor is copied once, its frame
 * copied once into a UMEM frame, and the copy validated and sent; the
 * application's frame is completed either way (refused frames are counted).
 * Limited by the budget, the room on its completion ring, free UMEM frames
 * and XSK tx slots, so one application can take at most NETD_BATCH frames
 * per round.
 */
static uint32_t tx_app(struct netd *n, struct netd_app *a)
{
	struct netd_nic *x = &n->nic;
	uint32_t lim = NETD_BATCH, idx, cidx, got, i, room;
	bool short_of_nic = false;

	room = ring_prod_free(&a->comp, lim);
	if (room < lim)
		lim = room;
	if (x->nfree < lim) {
		lim = x->nfree;
		short_of_nic = true;
	}
	room = x->tx.size - (x->tx.cached_prod - x->tx.cached_cons);
	if (room < lim) {
		x->tx.cached_cons = __atomic_load_n(x->tx.consumer, __ATOMIC_ACQUIRE);
		room = x->tx.size - (x->tx.cached_prod - x->tx.cached_cons);
		if (room < lim) {
			lim = room;
			short_of_nic = true;
		}
	}
	got = ring_cons_peek(&a->tx, lim, &idx);
	/* Counted only when the application had more than the NIC could take
	 * (ring_cons_avail() counts past the slots just peeked). */
	if (short_of_nic && got == lim && ring_cons_avail(&a->tx, 1) > 0)
		a->st.tx_ring_full++;
	if (got == 0)
		return 0;
	ring_prod_reserve(&a->comp, got, &cidx);
	for (i = 0; i < got; i++) {
		struct ring_desc d;
		enum validate_reason r;
		uint64_t addr = 0;
		bool have_frame = false;
		uint8_t *u;

		ring_cons_read(&a->tx, idx + i, &d);
		r = validate_desc(d.offset, d.len, a->hdr.frames_len, x->frame_size);
		if (r == VALIDATE_OK) {
			/* lim <= nfree: a frame is always there. */
			u = umem_take(n, &addr);
			have_frame = true;
			memcpy(u, a->frames + d.offset, d.len);
			r = validate_frame(&a->va, u, d.len, n->now_ms, NULL);
		}
		if (r == VALIDATE_OK) {
			if (xsk_send(n, addr, d.len)) {
				a->st.tx_frames++;
				a->st.tx_bytes += d.len;
			}
		} else {
			if (have_frame)
				umem_put(n, addr);
			a->st.tx_drops++;
			a->st.tx_drop[r < VALIDATE_REASON_COUNT ? r : 0]++;
		}
		*ring_prod_desc(&a->comp, cidx + i) = d;
	}
	ring_cons_release(&a->tx, got);
	ring_prod_submit(&a->comp, got);
	if (ring_prod_needs_wakeup(&a->comp))
		ring_app(a);
	return got;
}

/* ---- adopting the rings of an earlier netd (restart, live upgrade) ---- */

/* Mark the frames between two indices of an XSK ring as on that ring. */
static void adopt_mark(const struct netd_nic *x, struct xsk_q *q, bool descs, uint32_t from,
		       uint32_t to, uint8_t *on)
{
	uint32_t i, cnt = to - from;

	if (cnt > q->size)
		cnt = q->size;
	for (i = 0; i < cnt; i++) {
		uint64_t a = descs ? xsk_q_desc(q, from + i)->addr : *xsk_q_addr(q, from + i);

		if (a < x->umem_size)
			on[a / x->frame_size] = 1;
	}
}

/*
 * Take over rings an earlier netd used (it died, or handed over): the frames
 * on the four rings stay where they are (the kernel's, or work for us), the
 * rest come back from the state array.  FREE and RX frames on no ring are
 * ours: an RX frame the kernel took from the fill ring is on the rx ring
 * before the kernel publishes the fill ring's consumer (it submits rx first
 * at its flush), so reading fill's consumer before rx's producer cannot miss
 * one.  A TX frame on no ring may still be in the kernel, its completion not
 * yet posted: it stays TX and comes back through the completion ring.  A
 * frame marked TXQ was written on the tx ring but never published (the
 * kernel cannot have it): taken back unless the producer covers it.
 * Returns the frames taken back.
 */
uint32_t netd_nic_adopt(struct netd_nic *x)
{
	uint32_t fill_cons, rx_prod, tx_prod, tx_cons, comp_prod, i, reclaimed = 0;
	uint8_t *on = calloc(x->nframes, 1);

	if (on == NULL)
		return 0;
	/* Acquire, in this order (see above). */
	fill_cons = __atomic_load_n(x->fill.consumer, __ATOMIC_ACQUIRE);
	rx_prod = __atomic_load_n(x->rx.producer, __ATOMIC_ACQUIRE);
	tx_cons = __atomic_load_n(x->tx.consumer, __ATOMIC_ACQUIRE);
	comp_prod = __atomic_load_n(x->comp.producer, __ATOMIC_ACQUIRE);
	tx_prod = x->tx.cached_prod;
	adopt_mark(x, &x->fill, false, fill_cons, x->fill.cached_prod, on);
	adopt_mark(x, &x->rx, true, x->rx.cached_cons, rx_prod, on);
	adopt_mark(x, &x->tx, true, tx_cons, tx_prod, on);
	adopt_mark(x, &x->comp, false, x->comp.cached_cons, comp_prod, on);
	for (i = 0; i < x->nframes; i++) {
		uint8_t st = x->sh->frame[i];

		if (on[i]) {
			/* Published before the death, marked TX or not. */
			if (st == NETD_FRAME_TXQ)
				x->sh->frame[i] = NETD_FRAME_TX;
			continue;
		}
		/* Perhaps still in the kernel: its completion will bring it. */
		if (st == NETD_FRAME_TX)
			continue;
		if (st != NETD_FRAME_FREE)
			reclaimed++;
		x->sh->frame[i] = NETD_FRAME_FREE;
		x->free_frames[x->nfree++] = (uint64_t)i * x->frame_size;
	}
	free(on);
	x->rx.cached_prod = rx_prod;
	/*
	 * Frames a dead netd held between the rx and the fill ring came back
	 * as free frames: top the receive side up again to its usual share, so
	 * the fill ring does not shrink with every crash.
	 */
	{
		uint32_t target = x->nframes / 2, rxside, want, idx;

		if (target > x->fill.size)
			target = x->fill.size;
		rxside = (x->fill.cached_prod - fill_cons) + (rx_prod - x->rx.cached_cons);
		want = rxside < target ? target - rxside : 0;
		if (want > x->nfree)
			want = x->nfree;
		want = xsk_q_reserve(&x->fill, want, &idx);
		for (i = 0; i < want; i++) {
			uint64_t a = x->free_frames[--x->nfree];

			netd_frame_mark(x, a, NETD_FRAME_RX);
			*xsk_q_addr(&x->fill, idx + i) = a;
		}
		if (want)
			xsk_q_submit(&x->fill);
	}
	return reclaimed;
}

void netd_flush(struct netd *n)
{
	if (!n->nic.up || n->handed_over)
		return;
	publish_rx(n);
	xsk_flush_tx(n);
}

int netd_poll(struct netd *n)
{
	struct netd_nic *x = &n->nic;
	uint32_t moved = 0;
	unsigned k;

	/* After `handover` the rings belong to the successor. */
	if (!x->up || n->handed_over || n->held)
		return 0;
	n->now_ms = mono_ms();
	xsk_reap(n);
	moved += rx_batch(n);
	for (k = 0; k < NETD_MAX_APPS; k++) {
		struct netd_app *a = &n->apps[(n->rr + k) % NETD_MAX_APPS];

		if (a->used)
			moved += tx_app(n, a);
	}
	n->rr = (n->rr + 1) % NETD_MAX_APPS;
	xsk_flush_tx(n);
	/* In copy mode the kernel refills from the fill ring only when asked. */
	if (xsk_q_needs_wakeup(&x->fill) && moved == 0)
		(void)recvfrom(x->xsk_fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
	return (int)moved;
}

bool netd_prepare_sleep(struct netd *n)
{
	struct netd_nic *x = &n->nic;
	bool can = true;
	unsigned i;

	if (n->handed_over || n->held)
		return true;
	for (i = 0; i < NETD_MAX_APPS; i++) {
		struct netd_app *a = &n->apps[i];

		if (a->used && ring_cons_prepare_sleep(&a->tx) != 0)
			can = false;
	}
	if (x->up) {
		/* Frames on the wire's rx ring, sends the kernel has not taken
		 * yet, and completions not reaped (their frames come back by
		 * polling only) keep netd awake. */
		if (__atomic_load_n(x->rx.producer, __ATOMIC_ACQUIRE) != x->rx.cached_cons ||
		    __atomic_load_n(x->tx.consumer, __ATOMIC_ACQUIRE) != x->tx.cached_prod ||
		    __atomic_load_n(x->comp.producer, __ATOMIC_ACQUIRE) != x->comp.cached_cons)
			can = false;
	}
	return can;
}

void netd_end_sleep(struct netd *n)
{
	unsigned i;

	if (n->handed_over || n->held)
		return;
	for (i = 0; i < NETD_MAX_APPS; i++)
		if (n->apps[i].used)
			ring_cons_end_sleep(&n->apps[i].tx);
}
