/* Unit test: a netd adopting the XSK rings of one that died or handed over (netd_nic_adopt), no frame lost or owned twice. */
/*
 * No NIC and no root: the four XSK rings are plain memory and this program
 * plays the kernel, with a twist that matters here: frames it takes from the
 * tx ring are completed only later (an skb still in flight), in random
 * batches.  The peer sends echo requests, ARP requests and frames netd
 * drops; netd answers from its free UMEM frames.  Every few hundred rounds
 * the netd "dies" (its struct is thrown away) in one of the states a real
 * one can die in: between rounds (as after `handover`), holding frames it
 * took from its free list, holding rx frames it released but did not give
 * back to the fill ring, or with frames written on the tx ring past the
 * published producer.  A new netd adopts the rings with the state region
 * and must own exactly the frames nobody else has: after each adoption,
 * every UMEM frame is in exactly one place (free list, a ring's published
 * range, or in flight in the "kernel"), and at the end, with everything
 * completed, all of them are back and distinct.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netd/server.h"
#include "netd_frames.h"

#include "check.h"


#define FRAME 2048u
#define NFRAMES 256u
#define XRING 64u

static const uint32_t SHARED = FB_IP(10, 42, 0, 2);
static const uint32_t PEER = FB_IP(10, 42, 0, 1);
static const uint8_t MAC_SRC[6] = { 0x02, 0x4c, 0, 0, 0, 7 };

struct fake_ring {
	uint32_t producer, consumer, flags, pad;
	uint64_t descs[XRING * 2]; /* room for XRING struct xdp_desc */
};

static struct fake_ring r_fill, r_comp, r_rx, r_tx;
static uint8_t *umem;
static struct netd_shared *sh;
static struct netd *N;

/* Frames the kernel took from the tx ring and has not completed yet. */
static uint64_t inflight[NFRAMES];
static unsigned ninflight;

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

static void q_map(struct xsk_q *q, struct fake_ring *r)
{
	q->producer = &r->producer;
	q->consumer = &r->consumer;
	q->flags = &r->flags;
	q->descs = r->descs;
	q->size = XRING;
	q->mask = XRING - 1;
	/* As netd's q_init(): the cached indices start from the shared ones. */
	q->cached_prod = r->producer;
	q->cached_cons = r->consumer;
}

/* A netd process: fresh (first start) or adopting what is there. */
static struct netd *netd_new(bool adopt)
{
	struct netd *n = calloc(1, sizeof(*n));
	struct netd_nic *x = &n->nic;
	uint32_t i, idx;

	x->up = true;
	x->xsk_fd = -1;
	memcpy(x->mac, fb_mac_peer, 6);
	x->frame_size = FRAME;
	x->nframes = NFRAMES;
	x->umem_size = (size_t)FRAME * NFRAMES;
	x->umem = umem;
	x->sh = sh;
	x->free_frames = calloc(NFRAMES, sizeof(uint64_t));
	q_map(&x->fill, &r_fill);
	q_map(&x->comp, &r_comp);
	q_map(&x->rx, &r_rx);
	q_map(&x->tx, &r_tx);
	n->ips[n->n_ips++] = SHARED;
	frag_init(&n->rx_frags, 30000);
	frag_init(&n->tx_frags, 30000);
	if (adopt) {
		x->adopted = true;
		netd_nic_adopt(x);
		return n;
	}
	xsk_q_reserve(&x->fill, NFRAMES / 4, &idx);
	for (i = 0; i < NFRAMES / 4; i++) {
		*xsk_q_addr(&x->fill, idx + i) = (uint64_t)i * FRAME;
		netd_frame_mark(x, (uint64_t)i * FRAME, NETD_FRAME_RX);
	}
	xsk_q_submit(&x->fill);
	for (i = NFRAMES; i > NFRAMES / 4; i--) {
		x->free_frames[x->nfree++] = (uint64_t)(i - 1) * FRAME;
		netd_frame_mark(x, (uint64_t)(i - 1) * FRAME, NETD_FRAME_FREE);
	}
	sh->nframes = NFRAMES;
	sh->magic = NETD_SHARED_MAGIC;
	return n;
}

/* Frames sent and received by every netd of the run. */
static uint64_t total_tx, total_rx;

static void netd_free(struct netd *n)
{
	total_tx += n->st.tx_frames;
	total_rx += n->st.rx_frames;
	free(n->nic.free_frames);
	free(n);
}

/* The wire delivers one frame: a fill frame onto the rx ring. */
static void kernel_rx(void)
{
	uint8_t f[FB_MAX];
	size_t len;
	uint64_t addr;
	struct xdp_desc *d;

	switch (rnd() % 3) {
	case 0:
		len = fb_icmp(f, MAC_SRC, PEER, SHARED, 8, 0, 32);
		break;
	case 1:
		len = fb_arp(f, fb_mac_bcast, MAC_SRC, 1, MAC_SRC, PEER, SHARED);
		break;
	default:
		len = fb_udp(f, MAC_SRC, 5, PEER, FB_IP(10, 42, 0, 77), 1000, 2000, 40);
		break;
	}
	if (r_fill.consumer == r_fill.producer || r_rx.producer - r_rx.consumer == XRING)
		return;
	addr = ((uint64_t *)r_fill.descs)[r_fill.consumer & (XRING - 1)];
	CHECK(addr < (uint64_t)FRAME * NFRAMES && addr % FRAME == 0);
	memcpy(umem + addr, f, len < 60 ? 60 : len);
	d = &((struct xdp_desc *)r_rx.descs)[r_rx.producer & (XRING - 1)];
	d->addr = addr;
	d->len = (uint32_t)(len < 60 ? 60 : len);
	d->options = 0;
	/* As the kernel's xsk_flush(): rx submitted before fill is consumed. */
	r_rx.producer++;
	r_fill.consumer++;
}

/* The kernel takes some sent frames (in flight), and completes some. */
static void kernel_tx(void)
{
	unsigned take = rnd() % 8, done = rnd() % 8;

	while (take-- && r_tx.consumer != r_tx.producer && ninflight < NFRAMES) {
		struct xdp_desc *d = &((struct xdp_desc *)r_tx.descs)[r_tx.consumer & (XRING - 1)];

		CHECK(d->addr < (uint64_t)FRAME * NFRAMES);
		inflight[ninflight++] = d->addr;
		r_tx.consumer++;
	}
	while (done-- && ninflight && r_comp.producer - r_comp.consumer < XRING) {
		unsigned i = rnd() % ninflight;

		((uint64_t *)r_comp.descs)[r_comp.producer++ & (XRING - 1)] = inflight[i];
		inflight[i] = inflight[--ninflight];
	}
}

/* Every frame in exactly one place: netd's free list, a ring, or in flight. */
static void check_owners(const struct netd *n, const char *when, bool with_free)
{
	unsigned count[NFRAMES] = { 0 };
	uint32_t i;

	if (with_free)
		for (i = 0; i < n->nic.nfree; i++)
			count[n->nic.free_frames[i] / FRAME]++;
	for (i = r_fill.consumer; i != r_fill.producer; i++)
		count[((uint64_t *)r_fill.descs)[i & (XRING - 1)] / FRAME]++;
	for (i = r_comp.consumer; i != r_comp.producer; i++)
		count[((uint64_t *)r_comp.descs)[i & (XRING - 1)] / FRAME]++;
	for (i = r_rx.consumer; i != r_rx.producer; i++)
		count[((struct xdp_desc *)r_rx.descs)[i & (XRING - 1)].addr / FRAME]++;
	for (i = r_tx.consumer; i != r_tx.producer; i++)
		count[((struct xdp_desc *)r_tx.descs)[i & (XRING - 1)].addr / FRAME]++;
	for (i = 0; i < ninflight; i++)
		count[inflight[i] / FRAME]++;
	for (i = 0; i < NFRAMES; i++)
		if (count[i] != 1) {
			fprintf(stderr, "%s: frame %u is in %u places\n", when, i, count[i]);
			failures++;
			return;
		}
}

/* Die in one of the states a real netd can die in. */
static void die_somewhere(struct netd *n, unsigned how)
{
	struct netd_nic *x = &n->nic;
	uint32_t k, idx;

	switch (how) {
	case 0: /* between rounds (a clean handover looks the same) */
		break;
	case 1: /* holding frames from its free list (building replies) */
		for (k = 0; k < 5 && x->nfree; k++)
			x->nfree--;
		break;
	case 2: /* rx frames released, not yet back on the fill ring */
		for (k = 0; k < 4 && r_rx.consumer != r_rx.producer; k++)
			r_rx.consumer++;
		break;
	default: /* frames written past the tx producer, never published */
		for (k = 0; k < 3 && x->nfree && xsk_q_reserve(&x->tx, 1, &idx) == 1; k++) {
			uint64_t a = x->free_frames[--x->nfree];

			netd_frame_mark(x, a, NETD_FRAME_TXQ);
			xsk_q_desc(&x->tx, idx)->addr = a;
			xsk_q_desc(&x->tx, idx)->len = 60;
		}
		break;
	}
}

int main(void)
{
	unsigned round, deaths = 0;

	umem = aligned_alloc(4096, (size_t)FRAME * NFRAMES);
	sh = calloc(1, netd_shared_size(NFRAMES));
	if (!umem || !sh)
		return 1;
	N = netd_new(false);
	check_owners(N, "fresh", true);
	for (round = 1; round <= 20000; round++) {
		for (unsigned k = rnd() % 6; k; k--)
			kernel_rx();
		netd_poll(N);
		kernel_tx();
		if (round % 250 == 0) {
			unsigned how = deaths % 4;

			die_somewhere(N, how);
			netd_free(N);
			N = netd_new(true);
			deaths++;
			check_owners(N, "after adoption", true);
			/* The fill ring is topped up again, whatever was held. */
			CHECK(r_fill.producer - r_fill.consumer + r_rx.producer - r_rx.consumer >=
			      NFRAMES / 4 || N->nic.nfree == 0);
		}
	}
	/* Quiesce: no more traffic, everything sent and completed. */
	for (round = 0; round < 2000 && (ninflight || r_tx.consumer != r_tx.producer ||
					  r_rx.consumer != r_rx.producer ||
					  r_comp.consumer != r_comp.producer); round++) {
		netd_poll(N);
		kernel_tx();
	}
	check_owners(N, "at the end", true);
	CHECK(ninflight == 0);
	netd_free(N);
	CHECK(total_tx > 1000 && total_rx > 1000);
	printf("test_netd_adopt: %u adoptions (4 kinds of death), %llu frames received, %llu "
	       "sent, every frame accounted for; %s\n", deaths, (unsigned long long)total_rx,
	       (unsigned long long)total_tx, failures ? "FAIL" : "ok");
	free(sh);
	free(umem);
	return failures ? 1 : 0;
}
