/* librettod's reaper: resets the TCP peers of an application that died
 * without closing its connections (kill -9, a crash), as the kernel would. */
#include "librettod/librettod.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <sys/socket.h>

#include "libretto/region.h"

/*
 * How it works (tcpkill's technique, which also works against RFC 5961
 * peers).  A dead application's stack took its sequence numbers with it, and
 * a peer accepts a RST only if its sequence number is exactly the peer's
 * rcv_nxt.  So for each connection listed in the region we send the peer a
 * SYN on the connection's 4-tuple; an established peer answers with a
 * "challenge ACK" whose acknowledgement number is that rcv_nxt, and we answer
 * it with a RST carrying that sequence number.  Any other segment of the
 * connection that carries an ACK (a retransmission of data the peer sent
 * after the death, a SYN-ACK from a peer that reopened the port) serves the
 * same purpose.  Frames leave from the application's IP and the VF's MAC;
 * peers' MACs come from ARP requests we send, and we answer ARP requests for
 * the application's IP during the short window so that a peer whose
 * neighbour entry expired can still reply.
 *
 * The caller has already torn down the XSK and its XDP program, so frames
 * for the application's IP reach the VF's kernel device, where an AF_PACKET
 * socket sees them.  Everything is bounded: at most REGION_MAX_CONNS entries
 * are read, at most REAP_MAX_HOPS next hops resolved, REAP_TOTAL_MS in all,
 * REAP_MAX_FRAMES frames examined.  The daemon's loop waits meanwhile; a
 * typical reap (peers on the link answering within a millisecond) takes a
 * few milliseconds.
 */
#define REAP_TOTAL_MS 450
#define REAP_RETRY_MS 60
#define REAP_MAX_HOPS 32
#define REAP_MAX_FRAMES 20000

enum reap_state {
	RC_WAIT_HOP = 0,	/* the next hop's MAC is not known yet */
	RC_SYN_SENT,
	RC_RESET,		/* we sent the RST */
	RC_GONE,		/* the peer answered with a RST: nothing to do */
};

struct reap_conn {
	uint32_t rip;		/* network byte order */
	uint16_t lport, rport;	/* host byte order */
	int hop;
	enum reap_state state;
	int syns;
};

struct reap_hop {
	uint32_t ip;		/* network byte order */
	bool resolved;
	uint8_t mac[6];
	int arps;
};

struct reaper {
	int fd;
	int ifindex;
	uint8_t mac[6];
	uint32_t lip;		/* network byte order */
	struct reap_conn *c;
	int nc;
	struct reap_hop hop[REAP_MAX_HOPS];
	int nhop;
	uint32_t seq;
};

static uint64_t reap_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint32_t csum_add(uint32_t sum, const void *data, size_t len)
{
	const uint8_t *p = data;

	for (; len > 1; len -= 2, p += 2)
		sum += (uint32_t)p[0] << 8 | p[1];
	if (len)
		sum += (uint32_t)p[0] << 8;
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void reap_send(struct reaper *rp, const uint8_t *frame, size_t len)
{
	/* A lost frame is retried or reported by the caller's accounting. */
	(void)send(rp->fd, frame, len, MSG_DONTWAIT);
}

/* An ARP packet (op 1 request, 2 reply) from the application's address. */
static void reap_arp(struct reaper *rp, int op, const uint8_t dst_mac[6], uint32_t tip,
		     const uint8_t tha[6])
{
	uint8_t f[60] = { 0 };
	uint8_t *a = f + 14;

	memcpy(f, dst_mac, 6);
	memcpy(f + 6, rp->mac, 6);
	put16(f + 12, ETH_P_ARP);
	put16(a, 1);
	put16(a + 2, ETH_P_IP);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, (uint16_t)op);
	memcpy(a + 8, rp->mac, 6);
	memcpy(a + 14, &rp->lip, 4);
	memcpy(a + 18, tha, 6);
	memcpy(a + 24, &tip, 4);
	reap_send(rp, f, sizeof(f));
}

/* A TCP segment without payload from the application's side of c. */
static void reap_tcp(struct reaper *rp, const struct reap_conn *c, uint8_t flags, uint32_t seq)
{
	uint8_t f[60] = { 0 };
	uint8_t *ip = f + 14, *th = ip + 20, pseudo[12];
	uint32_t sum;

	memcpy(f, rp->hop[c->hop].mac, 6);
	memcpy(f + 6, rp->mac, 6);
	put16(f + 12, ETH_P_IP);
	ip[0] = 0x45;
	put16(ip + 2, 40);
	put16(ip + 4, (uint16_t)rp->seq);
	put16(ip + 6, 0x4000);	/* DF */
	ip[8] = 64;
	ip[9] = IPPROTO_TCP;
	memcpy(ip + 12, &rp->lip, 4);
	memcpy(ip + 16, &c->rip, 4);
	put16(ip + 10, csum_fold(csum_add(0, ip, 20)));
	put16(th, c->lport);
	put16(th + 2, c->rport);
	put32(th + 4, seq);
	th[12] = 5 << 4;
	th[13] = flags;
	put16(th + 14, flags & 0x04 ? 0 : 1024);
	memcpy(pseudo, ip + 12, 8);
	pseudo[8] = 0;
	pseudo[9] = IPPROTO_TCP;
	put16(pseudo + 10, 20);
	sum = csum_add(csum_add(0, pseudo, sizeof(pseudo)), th, 20);
	put16(th + 16, csum_fold(sum));
	reap_send(rp, f, sizeof(f));
}

#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_ACK 0x10

static void reap_syn(struct reaper *rp, struct reap_conn *c)
{
	/* Any sequence number does: a SYN on an established connection gets a
	 * challenge ACK whatever it carries (RFC 5961 section 4). */
	rp->seq = rp->seq * 1103515245u + 12345u;
	reap_tcp(rp, c, TH_SYN, rp->seq);
	c->state = RC_SYN_SENT;
	c->syns++;
}

static void reap_hop_resolved(struct reaper *rp, int h, const uint8_t mac[6])
{
	/* A hostile or confused answer must not point us at a group address. */
	if (rp->hop[h].resolved || (mac[0] & 1))
		return;
	memcpy(rp->hop[h].mac, mac, 6);
	rp->hop[h].resolved = true;
	for (int i = 0; i < rp->nc; i++)
		if (rp->c[i].hop == h && rp->c[i].state == RC_WAIT_HOP)
			reap_syn(rp, &rp->c[i]);
}

static void reap_on_arp(struct reaper *rp, const uint8_t *f, size_t len)
{
	const uint8_t *a = f + 14;
	uint32_t spa, tpa;

	if (len < 14 + 28 || get16(a) != 1 || get16(a + 2) != ETH_P_IP || a[4] != 6 || a[5] != 4)
		return;
	memcpy(&spa, a + 14, 4);
	memcpy(&tpa, a + 24, 4);
	/* Requests and replies alike tell us the sender's MAC. */
	for (int h = 0; h < rp->nhop; h++)
		if (rp->hop[h].ip == spa)
			reap_hop_resolved(rp, h, a + 8);
	if (get16(a + 6) == 1 && tpa == rp->lip && !(a[8] & 1))
		reap_arp(rp, 2, a + 8, spa, a + 8);
}

static void reap_on_ip(struct reaper *rp, const uint8_t *f, size_t len, int *rst_seen)
{
	const uint8_t *ip = f + 14, *th;
	size_t ihl, tot;
	uint32_t sip, dip, ack;
	uint16_t sport, dport;
	uint8_t flags;

	if (len < 14 + 20 || (ip[0] >> 4) != 4 || ip[9] != IPPROTO_TCP)
		return;
	ihl = (size_t)(ip[0] & 0x0f) * 4;
	tot = get16(ip + 2);
	if (ihl < 20 || tot < ihl + 20 || 14 + tot > len || (get16(ip + 6) & 0x3fff))
		return;
	memcpy(&sip, ip + 12, 4);
	memcpy(&dip, ip + 16, 4);
	if (dip != rp->lip)
		return;
	th = ip + ihl;
	sport = get16(th);
	dport = get16(th + 2);
	ack = get32(th + 8);
	flags = th[13];
	for (int i = 0; i < rp->nc; i++) {
		struct reap_conn *c = &rp->c[i];

		if (c->rip != sip || c->rport != sport || c->lport != dport)
			continue;
		if (c->state == RC_RESET || c->state == RC_GONE)
			continue;
		if (flags & TH_RST) {
			c->state = RC_GONE;
			(*rst_seen)++;
		} else if ((flags & TH_ACK) && rp->hop[c->hop].resolved) {
			reap_tcp(rp, c, TH_RST, ack);
			c->state = RC_RESET;
		}
	}
}

static int reap_open(struct reaper *rp)
{
	struct sockaddr_ll sll;
	int one = 1, bufsize = 4 << 20;

	rp->fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (rp->fd < 0)
		return -errno;
	if (setsockopt(rp->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)) < 0)
		return -errno;
	/*
	 * Every SYN of a burst draws an answer at once: room for all of them
	 * (REGION_MAX_CONNS frames of a few hundred bytes of truesize each), so
	 * that none is dropped before we read it.  Best effort: without
	 * CAP_NET_ADMIN the *FORCE options fail and the retry covers losses.
	 */
	if (setsockopt(rp->fd, SOL_SOCKET, SO_RCVBUFFORCE, &bufsize, sizeof(bufsize)) < 0)
		(void)setsockopt(rp->fd, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof(bufsize));
	if (setsockopt(rp->fd, SOL_SOCKET, SO_SNDBUFFORCE, &bufsize, sizeof(bufsize)) < 0)
		(void)setsockopt(rp->fd, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof(bufsize));
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = rp->ifindex;
	if (bind(rp->fd, (struct sockaddr *)&sll, sizeof(sll)) < 0)
		return -errno;
	return 0;
}

/*
 * Copy the valid entries of the region's table into rp->c, checking each:
 * the local address must be the lease's (so a hostile application cannot
 * make us reset other hosts' connections), ports non-zero, the peer a
 * unicast address we can reach on the link or through the gateway.
 */
static void reap_collect(struct reaper *rp, const struct libretto_region *r, uint32_t mask,
			 bool has_gw, uint32_t gw, int *skipped)
{
	uint32_t hwm = __atomic_load_n(&r->conn_hwm, __ATOMIC_RELAXED);
	uint32_t lip = ntohl(rp->lip);

	if (hwm > REGION_MAX_CONNS)
		hwm = REGION_MAX_CONNS;
	for (uint32_t i = 0; i < hwm; i++) {
		const struct region_conn *e = &r->conns[i];
		uint32_t rip_be, rip, nh;
		struct reap_conn c;
		int h;

		if (__atomic_load_n(&e->valid, __ATOMIC_ACQUIRE) != REGION_CONN_VALID)
			continue;
		rip_be = __atomic_load_n(&e->remote_ip, __ATOMIC_RELAXED);
		rip = ntohl(rip_be);
		c.lport = __atomic_load_n(&e->local_port, __ATOMIC_RELAXED);
		c.rport = __atomic_load_n(&e->remote_port, __ATOMIC_RELAXED);
		if (__atomic_load_n(&e->local_ip, __ATOMIC_RELAXED) != rp->lip || c.lport == 0 ||
		    c.rport == 0 || rip == 0 || rip == lip || (rip >> 24) == 127 ||
		    (rip >> 28) >= 14) {
			(*skipped)++;
			continue;
		}
		if ((rip & mask) == (lip & mask)) {
			if (mask != 0xffffffffu && mask != 0xfffffffeu &&
			    ((rip & ~mask) == 0 || (rip & ~mask) == ~mask)) {
				(*skipped)++;
				continue;
			}
			nh = rip;
		} else if (has_gw) {
			nh = gw;
		} else {
			(*skipped)++;
			continue;
		}
		for (h = 0; h < rp->nhop && rp->hop[h].ip != htonl(nh); h++)
			;
		if (h == rp->nhop) {
			if (rp->nhop == REAP_MAX_HOPS) {
				(*skipped)++;
				continue;
			}
			memset(&rp->hop[h], 0, sizeof(rp->hop[h]));
			rp->hop[h].ip = htonl(nh);
			rp->nhop++;
		}
		c.rip = rip_be;
		c.hop = h;
		c.state = RC_WAIT_HOP;
		c.syns = 0;
		rp->c[rp->nc++] = c;
	}
}

int reaper_reset_peers(const struct libretto_region *r, const char *ifname, int ifindex,
		       const uint8_t mac[6], uint32_t ip, int prefix, bool has_gw, uint32_t gw,
		       const char *who)
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t zero[6];
	struct reaper rp;
	uint32_t mask = prefix <= 0 ? 0 : prefix >= 32 ? 0xffffffffu : ~0u << (32 - prefix);
	uint64_t t0 = reap_now_ms(), deadline = t0 + REAP_TOTAL_MS, next_retry;
	int skipped = 0, rst_seen = 0, frames = 0, reset = 0, unresolved = 0, silent = 0, nc;
	uint64_t overflow;
	uint8_t buf[2048];
	int err;

	if (!r || __atomic_load_n(&r->magic, __ATOMIC_RELAXED) != LIBRETTO_REGION_MAGIC)
		return 0;
	overflow = __atomic_load_n(&r->conn_overflow, __ATOMIC_RELAXED);
	memset(&rp, 0, sizeof(rp));
	rp.fd = -1;
	rp.ifindex = ifindex;
	memcpy(rp.mac, mac, 6);
	rp.lip = htonl(ip);
	rp.seq = (uint32_t)t0 ^ (uint32_t)getpid() << 16;
	rp.c = calloc(REGION_MAX_CONNS, sizeof(*rp.c));
	if (!rp.c)
		return -ENOMEM;
	reap_collect(&rp, r, mask, has_gw, gw, &skipped);
	if (rp.nc == 0) {
		if (skipped || overflow)
			ld_log("reaper %s: no connection to reset (%d invalid entries skipped, "
			       "%llu not listed: table full)", who, skipped,
			       (unsigned long long)overflow);
		free(rp.c);
		return 0;
	}
	err = reap_open(&rp);
	if (err) {
		ld_log("error: reaper %s: cannot open an AF_PACKET socket on %s: %s; %d peers "
		       "are not reset", who, ifname, strerror(-err), rp.nc);
		nc = rp.nc;
		if (rp.fd >= 0)
			close(rp.fd);
		free(rp.c);
		return nc;
	}
	for (int h = 0; h < rp.nhop; h++) {
		reap_arp(&rp, 1, bcast, rp.hop[h].ip, zero);
		rp.hop[h].arps++;
	}
	next_retry = t0 + REAP_RETRY_MS;
	for (;;) {
		uint64_t now = reap_now_ms();
		int pending = 0;
		struct pollfd p = { .fd = rp.fd, .events = POLLIN };

		for (int i = 0; i < rp.nc; i++)
			if (rp.c[i].state == RC_WAIT_HOP || rp.c[i].state == RC_SYN_SENT)
				pending++;
		if (!pending || now >= deadline || frames >= REAP_MAX_FRAMES)
			break;
		if (now >= next_retry) {
			/* One more try for frames lost on the way, in either direction. */
			for (int h = 0; h < rp.nhop; h++)
				if (!rp.hop[h].resolved && rp.hop[h].arps < 3) {
					reap_arp(&rp, 1, bcast, rp.hop[h].ip, zero);
					rp.hop[h].arps++;
				}
			for (int i = 0; i < rp.nc; i++)
				if (rp.c[i].state == RC_SYN_SENT && rp.c[i].syns < 2)
					reap_syn(&rp, &rp.c[i]);
			next_retry = now + REAP_RETRY_MS;
		}
		if (poll(&p, 1, (int)((next_retry < deadline ? next_retry : deadline) - now)) <= 0)
			continue;
		for (int k = 0; k < 256 && frames < REAP_MAX_FRAMES; k++) {
			ssize_t n = recv(rp.fd, buf, sizeof(buf), MSG_DONTWAIT);

			if (n < 0)
				break;
			frames++;
			if (n < 14)
				continue;
			if (get16(buf + 12) == ETH_P_ARP)
				reap_on_arp(&rp, buf, (size_t)n);
			else if (get16(buf + 12) == ETH_P_IP && !memcmp(buf, rp.mac, 6))
				reap_on_ip(&rp, buf, (size_t)n, &rst_seen);
		}
	}
	for (int i = 0; i < rp.nc; i++) {
		if (rp.c[i].state == RC_RESET)
			reset++;
		else if (rp.c[i].state == RC_WAIT_HOP)
			unresolved++;
		else if (rp.c[i].state == RC_SYN_SENT)
			silent++;
	}
	nc = rp.nc;
	ld_log("reaper %s: reset %d of %d peers in %llu ms (%d had closed already, %d did not "
	       "answer, %d unreachable: no ARP reply, %d invalid entries skipped, %llu not "
	       "listed: table full)", who, reset, rp.nc,
	       (unsigned long long)(reap_now_ms() - t0), rst_seen, silent, unresolved, skipped,
	       (unsigned long long)overflow);
	close(rp.fd);
	free(rp.c);
	return nc;
}
