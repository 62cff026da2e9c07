/* Unit test: netd's data path (path.c) over simulated XSK rings and in-memory app regions. */
/*
 * No NIC and no root: the four XSK rings are plain memory and this program
 * plays the kernel (it takes fill frames to "receive", and moves sent frames
 * to the completion ring), and the applications.  It checks the replies netd
 * builds (ARP, echo, RST, port unreachable) byte by byte with their
 * checksums, steering into the right application's rx ring, TX through the
 * validator, per-round fairness between applications, and finally hammers
 * netd_poll() with random frames and random writes over a whole region (run
 * it under ASan: the `b_sanitize` build) to show that nothing an
 * application writes can make netd touch memory outside its mappings.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "netd/server.h"
#include "netd_frames.h"

#include "check.h"


#define FRAME 2048u
#define NFRAMES 256u
#define XRING 128u
#define APP_FRAMES 256u
#define APP_RING 128u

static const uint8_t MAC_NETD[6] = { 0x02, 0x4c, 0, 0, 1, 0 };
static const uint8_t MAC_PEER[6] = { 0x02, 0x4c, 0, 0, 0, 1 };
static const uint32_t SHARED = FB_IP(10, 42, 0, 2);
static const uint32_t PEER = FB_IP(10, 42, 0, 1);

static struct netd N;

/* ---- the simulated kernel side of the XSK ---- */

struct fake_ring {
	uint32_t producer, consumer, flags, pad;
	uint64_t descs[XRING * 2]; /* room for XRING struct xdp_desc */
};

static struct fake_ring r_fill, r_comp, r_rx, r_tx;

static void q_setup(struct xsk_q *q, struct fake_ring *r)
{
	memset(r, 0, sizeof(*r));
	q->producer = &r->producer;
	q->consumer = &r->consumer;
	q->flags = &r->flags;
	q->descs = r->descs;
	q->size = XRING;
	q->mask = XRING - 1;
	q->cached_prod = q->cached_cons = 0;
}

/* The "wire" receives f: into a fill frame, onto the rx ring.  false if no fill frame. */
static int kernel_rx(const uint8_t *f, size_t len)
{
	uint64_t addr;
	struct xdp_desc *d;

	if (r_fill.consumer == r_fill.producer || r_rx.producer - r_rx.consumer == XRING)
		return 0;
	addr = ((uint64_t *)r_fill.descs)[r_fill.consumer++ & (XRING - 1)];
	memcpy(N.nic.umem + addr, f, len);
	d = &((struct xdp_desc *)r_rx.descs)[r_rx.producer & (XRING - 1)];
	d->addr = addr;
	d->len = (uint32_t)len;
	d->options = 0;
	r_rx.producer++;
	return 1;
}

/* Frames netd put on the wire since the last call. */
static uint8_t sent[XRING][FRAME];
static uint32_t sent_len[XRING];

static unsigned kernel_tx(void)
{
	unsigned k = 0;

	while (r_tx.consumer != r_tx.producer) {
		struct xdp_desc *d = &((struct xdp_desc *)r_tx.descs)[r_tx.consumer & (XRING - 1)];

		CHECK(d->addr < N.nic.umem_size && d->len <= FRAME);
		if (k < XRING) {
			memcpy(sent[k], N.nic.umem + d->addr, d->len);
			sent_len[k] = d->len;
		}
		k++;
		((uint64_t *)r_comp.descs)[r_comp.producer++ & (XRING - 1)] = d->addr;
		r_tx.consumer++;
	}
	return k;
}

static void nic_setup(void)
{
	struct netd_nic *x = &N.nic;
	uint32_t i, idx;

	x->up = true;
	x->xsk_fd = -1;
	memcpy(x->mac, MAC_NETD, 6);
	x->frame_size = FRAME;
	x->nframes = NFRAMES;
	x->umem_size = (size_t)FRAME * NFRAMES;
	x->umem = aligned_alloc(4096, x->umem_size);
	x->free_frames = calloc(NFRAMES, sizeof(uint64_t));
	q_setup(&x->fill, &r_fill);
	q_setup(&x->comp, &r_comp);
	q_setup(&x->rx, &r_rx);
	q_setup(&x->tx, &r_tx);
	xsk_q_reserve(&x->fill, XRING, &idx);
	for (i = 0; i < XRING; i++)
		*xsk_q_addr(&x->fill, idx + i) = (uint64_t)i * FRAME;
	xsk_q_submit(&x->fill);
	for (i = XRING; i < NFRAMES; i++)
		x->free_frames[x->nfree++] = (uint64_t)i * FRAME;
}

/* ---- applications ---- */

struct tapp {
	struct netd_app *a;
	void *mem;
	size_t size;
	struct ring_region_hdr hdr;
	struct ring_prod fill, tx;
	struct ring_cons rx, comp;
	uint32_t next_tx;
};

static struct tapp A, B;
static void *pt_mem;

static void app_setup(struct tapp *t, unsigned slot, uint32_t id, uint32_t ip)
{
	struct netd_app *a = &N.apps[slot];
	uint32_t i, idx;

	t->size = ring_region_size(APP_FRAMES, FRAME, APP_RING);
	t->mem = aligned_alloc(4096, t->size);
	CHECK(ring_region_init(t->mem, t->size, APP_FRAMES, FRAME, APP_RING) == 0);
	CHECK(ring_region_check(t->mem, t->size, &t->hdr) == 0);
	ring_prod_attach(&t->fill, t->mem, &t->hdr, RING_FILL);
	ring_cons_attach(&t->rx, t->mem, &t->hdr, RING_RX);
	ring_prod_attach(&t->tx, t->mem, &t->hdr, RING_TX);
	ring_cons_attach(&t->comp, t->mem, &t->hdr, RING_COMP);
	ring_prod_reserve(&t->fill, APP_RING, &idx);
	for (i = 0; i < APP_RING; i++) {
		ring_prod_desc(&t->fill, idx + i)->offset = (uint64_t)i * FRAME;
		ring_prod_desc(&t->fill, idx + i)->len = FRAME;
	}
	ring_prod_submit(&t->fill, APP_RING);

	/* What cmd_app_add() does, minus the descriptors' checks. */
	memset(a, 0, sizeof(*a));
	a->used = true;
	a->id = id;
	a->mem = t->mem;
	a->maplen = t->size;
	CHECK(ring_region_check(a->mem, a->maplen, &a->hdr) == 0);
	ring_cons_attach(&a->fill, a->mem, &a->hdr, RING_FILL);
	ring_prod_attach(&a->rx, a->mem, &a->hdr, RING_RX);
	ring_cons_attach(&a->tx, a->mem, &a->hdr, RING_TX);
	ring_prod_attach(&a->comp, a->mem, &a->hdr, RING_COMP);
	a->frames = ring_frames(a->mem, &a->hdr);
	a->efd_app = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	a->efd_netd = -1;
	a->region_fd = -1;
	a->va.id = id;
	memcpy(a->va.mac, MAC_NETD, 6);
	a->va.ips[0] = ip;
	a->va.n_ips = 1;
	a->va.owns_port = netd_owns_port;
	a->va.owns_port_ctx = &N;
	a->va.frags = &N.tx_frags;
	t->a = a;
	t->next_tx = APP_RING;
}

/* Frames in t's rx ring: copy the first into out (if any); lend them all back. */
static unsigned app_rx(struct tapp *t, uint8_t *out, uint32_t *out_len)
{
	uint32_t n, idx, i, fidx;

	n = ring_cons_peek(&t->rx, APP_RING, &idx);
	for (i = 0; i < n; i++) {
		struct ring_desc d;

		ring_cons_read(&t->rx, idx + i, &d);
		if (i == 0 && out) {
			memcpy(out, (uint8_t *)ring_frames(t->mem, &t->hdr) + d.offset, d.len);
			*out_len = d.len;
		}
		if (ring_prod_reserve(&t->fill, 1, &fidx) == 1) {
			ring_prod_desc(&t->fill, fidx)->offset = d.offset;
			ring_prod_desc(&t->fill, fidx)->len = FRAME;
			ring_prod_submit(&t->fill, 1);
		}
	}
	ring_cons_release(&t->rx, n);
	return n;
}

static int app_tx(struct tapp *t, const uint8_t *f, uint32_t len)
{
	uint32_t idx;
	uint64_t off;

	if (ring_prod_reserve(&t->tx, 1, &idx) != 1)
		return 0;
	off = (uint64_t)(t->next_tx++ % (APP_FRAMES - APP_RING) + APP_RING) * FRAME;
	memcpy((uint8_t *)ring_frames(t->mem, &t->hdr) + off, f, len);
	ring_prod_desc(&t->tx, idx)->offset = off;
	ring_prod_desc(&t->tx, idx)->len = len;
	ring_prod_submit(&t->tx, 1);
	return 1;
}

static unsigned app_comp(struct tapp *t)
{
	uint32_t idx, n = ring_cons_peek(&t->comp, APP_RING, &idx);

	ring_cons_release(&t->comp, n);
	return n;
}

/* ---- helpers ---- */

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Does the TCP/UDP/ICMP checksum of the IPv4 frame f verify? */
static int l4_csum_ok(const uint8_t *f)
{
	const uint8_t *ip = f + 14;
	unsigned hl = (ip[0] & 0xfu) * 4u, tot = rd16(ip + 2), l4len = tot - hl;
	uint8_t pseudo[12];
	uint32_t s;

	if (ip[9] == 1)
		return classify_csum_fold(ip + hl, l4len) == 0xffff;
	memcpy(pseudo, ip + 12, 8);
	pseudo[8] = 0;
	pseudo[9] = ip[9];
	pseudo[10] = (uint8_t)(l4len >> 8);
	pseudo[11] = (uint8_t)l4len;
	s = (uint32_t)classify_csum_fold(pseudo, 12) + classify_csum_fold(ip + hl, l4len);
	s = (s & 0xffff) + (s >> 16);
	return s == 0xffff;
}

static unsigned poll_and_send(void)
{
	netd_poll(&N);
	return kernel_tx();
}

/* ---- the checks ---- */

static void test_arp(void)
{
	uint8_t f[FB_MAX], got[FRAME];
	uint32_t glen = 0;
	size_t len = fb_arp(f, fb_mac_bcast, MAC_PEER, 1, MAC_PEER, PEER, SHARED);

	CHECK(kernel_rx(f, len));
	CHECK(poll_and_send() == 1);
	CHECK(sent_len[0] == 60);
	CHECK(!memcmp(sent[0], MAC_PEER, 6) && !memcmp(sent[0] + 6, MAC_NETD, 6));
	CHECK(rd16(sent[0] + 12) == 0x0806 && rd16(sent[0] + 20) == 2);
	CHECK(!memcmp(sent[0] + 22, MAC_NETD, 6) && rd32(sent[0] + 28) == SHARED);
	CHECK(!memcmp(sent[0] + 32, MAC_PEER, 6) && rd32(sent[0] + 38) == PEER);
	/* Both applications on the shared address get the request. */
	CHECK(app_rx(&A, got, &glen) == 1 && glen == len && !memcmp(got, f, len));
	CHECK(app_rx(&B, NULL, NULL) == 1);
	/* An ARP request for someone else: no reply, nobody gets it. */
	len = fb_arp(f, fb_mac_bcast, MAC_PEER, 1, MAC_PEER, PEER, FB_IP(10, 42, 0, 77));
	CHECK(kernel_rx(f, len));
	CHECK(poll_and_send() == 0);
	CHECK(app_rx(&A, NULL, NULL) == 0 && N.st.rx_not_ours == 1);
}

static void test_echo(void)
{
	uint8_t f[FB_MAX], l4[256];
	size_t n = fb_icmp_hdr(l4, 8, 0, 56);
	size_t len = fb_ip(f, MAC_NETD, MAC_PEER, 5, 1, PEER, SHARED, 7, 0, l4, n);

	CHECK(kernel_rx(f, len));
	CHECK(poll_and_send() == 1);
	CHECK(sent_len[0] == len && !memcmp(sent[0], MAC_PEER, 6));
	CHECK(rd32(sent[0] + 26) == SHARED && rd32(sent[0] + 30) == PEER);
	CHECK(sent[0][34] == 0 && classify_csum_fold(sent[0] + 14, 20) == 0xffff);
	CHECK(l4_csum_ok(sent[0]));
	CHECK(!memcmp(sent[0] + 38, f + 38, len - 38)); /* id, seq and data echoed */
	CHECK(N.st.echo_replies == 1);
}

static void test_rst_unreach(void)
{
	uint8_t f[FB_MAX], l4[256];
	size_t n = fb_tcp_hdr(l4, 40000, 9, CLASSIFY_TCP_SYN, 0);
	size_t len;

	fb_w32(l4 + 4, 1000);
	len = fb_ip(f, MAC_NETD, MAC_PEER, 5, 6, PEER, SHARED, 8, 0x4000, l4, n);
	CHECK(kernel_rx(f, len));
	CHECK(poll_and_send() == 1);
	CHECK(rd32(sent[0] + 26) == SHARED && rd32(sent[0] + 30) == PEER);
	CHECK(rd16(sent[0] + 34) == 9 && rd16(sent[0] + 36) == 40000);
	CHECK(rd32(sent[0] + 38) == 0 && rd32(sent[0] + 42) == 1001);
	CHECK(sent[0][47] == (CLASSIFY_TCP_RST | CLASSIFY_TCP_ACK));
	CHECK(classify_csum_fold(sent[0] + 14, 20) == 0xffff && l4_csum_ok(sent[0]));
	/* A segment with ACK: the reset takes its sequence from the ack. */
	n = fb_tcp_hdr(l4, 40000, 9, CLASSIFY_TCP_ACK, 10);
	fb_w32(l4 + 8, 5555);
	len = fb_ip(f, MAC_NETD, MAC_PEER, 5, 6, PEER, SHARED, 9, 0x4000, l4, n);
	CHECK(kernel_rx(f, len));
	CHECK(poll_and_send() == 1);
	CHECK(rd32(sent[0] + 38) == 5555 && sent[0][47] == CLASSIFY_TCP_RST);
	/* No reset for a reset. */
	n = fb_tcp_hdr(l4, 40000, 9, CLASSIFY_TCP_RST, 0);
	len = fb_ip(f, MAC_NETD, MAC_PEER, 5, 6, PEER, SHARED, 10, 0x4000, l4, n);
	CHECK(kernel_rx(f, len));
	CHECK(poll_and_send() == 0);
	CHECK(N.st.rst_sent == 2 && N.st.rx_no_port == 3);

	/* UDP to nobody: port unreachable quoting the datagram. */
	len = fb_ip(f, MAC_NETD, MAC_PEER, 5, 17, PEER, SHARED, 11, 0, l4,
		    fb_udp_hdr(l4, 5000, 9, 20));
	CHECK(kernel_rx(f, len));
	CHECK(poll_and_send() == 1);
	CHECK(sent[0][23] == 1 && sent[0][34] == 3 && sent[0][35] == 3);
	CHECK(rd32(sent[0] + 26) == SHARED && rd32(sent[0] + 30) == PEER);
	CHECK(!memcmp(sent[0] + 42, f + 14, len - 14));
	CHECK(classify_csum_fold(sent[0] + 14, 20) == 0xffff && l4_csum_ok(sent[0]));
	CHECK(N.st.unreach_sent == 1);
}

static void test_steer_and_tx(void)
{
	uint8_t f[FB_MAX], l4[256], got[FRAME];
	uint32_t glen = 0;
	size_t len = fb_ip(f, MAC_NETD, MAC_PEER, 5, 17, PEER, SHARED, 12, 0, l4,
			   fb_udp_hdr(l4, 5000, 7001, 30));

	CHECK(kernel_rx(f, len));
	CHECK(poll_and_send() == 0);
	CHECK(app_rx(&A, got, &glen) == 1 && glen == len && !memcmp(got, f, len));
	CHECK(app_rx(&B, NULL, NULL) == 0);
	CHECK(A.a->st.rx_frames == 2 && A.a->st.rx_bytes == 42 + len);

	/* A answers from its port: sent as is, completed. */
	len = fb_ip(f, MAC_PEER, MAC_NETD, 5, 17, SHARED, PEER, 13, 0, l4,
		    fb_udp_hdr(l4, 7001, 5000, 30));
	CHECK(app_tx(&A, f, (uint32_t)len));
	CHECK(poll_and_send() == 1 && sent_len[0] == len && !memcmp(sent[0], f, len));
	CHECK(app_comp(&A) == 1 && A.a->st.tx_frames == 1);
	/* From B's port: refused, still completed. */
	len = fb_ip(f, MAC_PEER, MAC_NETD, 5, 17, SHARED, PEER, 14, 0, l4,
		    fb_udp_hdr(l4, 7002, 5000, 30));
	CHECK(app_tx(&A, f, (uint32_t)len));
	CHECK(poll_and_send() == 0);
	CHECK(app_comp(&A) == 1 && A.a->st.tx_drop[VALIDATE_SRC_PORT] == 1);
}

static void test_fairness(void)
{
	uint8_t f[FB_MAX], l4[256];
	size_t la = fb_ip(f, MAC_PEER, MAC_NETD, 5, 17, SHARED, PEER, 15, 0, l4,
			  fb_udp_hdr(l4, 7001, 5000, 10));
	unsigned i, k;
	uint8_t fb[FB_MAX];
	size_t lb = fb_ip(fb, MAC_PEER, MAC_NETD, 5, 17, SHARED, PEER, 16, 0, l4,
			  fb_udp_hdr(l4, 7002, 5000, 10));

	for (i = 0; i < 100; i++)
		CHECK(app_tx(&A, f, (uint32_t)la));
	CHECK(app_tx(&B, fb, (uint32_t)lb));
	/* One round: A gets at most NETD_BATCH, B's one frame goes too. */
	k = poll_and_send();
	CHECK(k == NETD_BATCH + 1);
	CHECK(B.a->st.tx_frames == 1);
	k = poll_and_send();
	CHECK(k == 100 - NETD_BATCH);
	app_comp(&A);
	app_comp(&B);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)rng;
}

/*
 * Random frames from the wire (valid ones mutated, and noise) and random
 * writes all over B's region, interleaved with polls.  Under ASan any
 * access outside the UMEM or a region fails the run.
 */
static void test_garbage(void)
{
	uint8_t f[FB_MAX], l4[512];
	uint8_t *reg = B.mem;
	unsigned it, j;

	for (it = 0; it < 20000; it++) {
		size_t len;

		switch (rnd() % 4) {
		case 0:
			len = fb_ip(f, MAC_NETD, MAC_PEER, 5, 17, PEER, SHARED, (uint16_t)it, 0, l4,
				    fb_udp_hdr(l4, 5000, rnd() % 2 ? 7001 : 7002, rnd() % 200));
			break;
		case 1:
			len = fb_arp(f, fb_mac_bcast, MAC_PEER, 1, MAC_PEER, PEER, SHARED);
			break;
		case 2:
			len = fb_ip(f, MAC_NETD, MAC_PEER, 5, 6, PEER, SHARED, (uint16_t)it,
				    0x4000, l4, fb_tcp_hdr(l4, 1, rnd() % 3 ? 7002 : 80,
							   (uint8_t)rnd(), rnd() % 100));
			break;
		default:
			len = 14 + rnd() % 1500;
			for (j = 0; j < len; j++)
				f[j] = (uint8_t)rnd();
			memcpy(f, MAC_NETD, 6);
		}
		for (j = rnd() % 4; j > 0; j--)
			f[rnd() % len] ^= (uint8_t)rnd();
		kernel_rx(f, len);
		/* B lends and sends descriptors with random offsets and
		 * lengths, rewrites published ones, and now and then writes
		 * anywhere in its region, indices and header included. */
		if (rnd() % 2) {
			uint32_t idx;

			if (ring_prod_reserve(&B.fill, 1, &idx) == 1) {
				ring_prod_desc(&B.fill, idx)->offset = rnd() % 3 ? rnd() % (APP_FRAMES * FRAME) :
								       ((uint64_t)rnd() << 32 | rnd());
				ring_prod_desc(&B.fill, idx)->len = rnd() % 3 ? FRAME : rnd();
				ring_prod_submit(&B.fill, 1);
			}
			if (ring_prod_reserve(&B.tx, 1, &idx) == 1) {
				ring_prod_desc(&B.tx, idx)->offset = rnd() % 3 ? rnd() % (APP_FRAMES * FRAME) :
								     ((uint64_t)rnd() << 32 | rnd());
				ring_prod_desc(&B.tx, idx)->len = rnd() % 3 ? rnd() % FRAME : rnd();
				ring_prod_submit(&B.tx, 1);
			}
		}
		for (j = rnd() % 4; j > 0; j--) {
			struct ring_desc *d = B.tx.descs + rnd() % APP_RING;

			d->offset = (uint64_t)rnd() << (rnd() % 40);
			d->len = rnd() % 4 ? rnd() % 4096 : rnd();
		}
		if (rnd() % 50 == 0) {
			size_t at = rnd() % B.size;

			if (rnd() % 2)
				reg[at] = (uint8_t)rnd();
			else
				memcpy(reg + (at & ~(size_t)3), &(uint32_t){ rnd() }, 4);
		}
		if (it >= 15000) {
			/* The last quarter: every index B shares is random. */
			__atomic_store_n(B.tx.producer, rnd(), __ATOMIC_RELEASE);
			__atomic_store_n(B.fill.producer, rnd(), __ATOMIC_RELEASE);
			__atomic_store_n(B.rx.consumer, rnd(), __ATOMIC_RELEASE);
			__atomic_store_n(B.comp.consumer, rnd(), __ATOMIC_RELEASE);
		}
		if (rnd() % 3 == 0)
			app_rx(&B, NULL, NULL);
		app_comp(&B);
		if (rnd() % 2)
			app_tx(&A, f, (uint32_t)len);
		netd_poll(&N);
		kernel_tx();
		app_rx(&A, NULL, NULL);
		app_comp(&A);
	}
	/* netd is still whole: A's traffic still flows. */
	{
		uint8_t got[FRAME];
		uint32_t glen = 0;
		size_t len;

		while (app_rx(&A, NULL, NULL))
			;
		len = fb_ip(f, MAC_NETD, MAC_PEER, 5, 17, PEER, SHARED, 1, 0, l4,
			    fb_udp_hdr(l4, 5000, 7001, 8));
		CHECK(kernel_rx(f, len));
		netd_poll(&N);
		kernel_tx();
		CHECK(app_rx(&A, got, &glen) == 1 && glen == len && !memcmp(got, f, len));
	}
	CHECK(A.a->fill.errors + A.a->tx.errors + A.a->rx.errors + A.a->comp.errors == 0);
	CHECK(B.a->fill.errors + B.a->tx.errors + B.a->rx.errors + B.a->comp.errors > 0);
	fprintf(stderr, "garbage: B ring_errors %u rx_frames %llu rx_bad_fill %llu tx_frames %llu "
		"tx_drops %llu; netd rx_malformed(ip_checksum) %llu\n",
		B.a->fill.errors + B.a->tx.errors + B.a->rx.errors + B.a->comp.errors,
		(unsigned long long)B.a->st.rx_frames, (unsigned long long)B.a->st.rx_bad_fill,
		(unsigned long long)B.a->st.tx_frames, (unsigned long long)B.a->st.tx_drops,
		(unsigned long long)N.st.rx_malformed[CLASSIFY_R_IP_CHECKSUM]);
}

int main(void)
{
	size_t ptsz = porttab_size(64);

	pt_mem = aligned_alloc(64, ptsz);
	CHECK(porttab_init(pt_mem, ptsz) == 0);
	CHECK(porttab_attach(&N.pt, pt_mem, ptsz) == 0);
	CHECK(porttab_insert(&N.pt, SHARED, 17, 7001, 1) == 0);
	CHECK(porttab_insert(&N.pt, SHARED, 17, 7002, 2) == 0);
	CHECK(porttab_insert(&N.pt, SHARED, 6, 7002, 2) == 0);
	N.have_porttab = true;
	N.ips[N.n_ips++] = SHARED;
	frag_init(&N.rx_frags, 30000);
	frag_init(&N.tx_frags, 30000);
	nic_setup();
	app_setup(&A, 0, 1, SHARED);
	app_setup(&B, 5, 2, SHARED);

	test_arp();
	test_echo();
	test_rst_unreach();
	test_steer_and_tx();
	test_fairness();
	test_garbage();
	if (failures)
		fprintf(stderr, "test_netd_path: %d failure(s)\n", failures);
	return failures ? 1 : 0;
}
