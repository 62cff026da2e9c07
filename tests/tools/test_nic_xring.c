/* Unit test of the AF_XDP ring accessors (nic_xring.h) against a thread playing the kernel. */
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nic/nic_xring.h"

/*
 * Two rings of 64 entries in one "shared" area laid out as the kernel lays
 * out a ring (producer, consumer, flags, descriptors).  The test produces
 * 1,000,000 addresses on ring A with reserve/submit in batches of 1..17;
 * the "kernel" thread consumes them with plain acquire/release code written
 * from the kernel's side of the protocol and echoes each one onto ring B,
 * which the test consumes with peek/release.  Every value must arrive once,
 * in order.  Exit 0 pass, 1 fail.
 */

#define RING 64
#define TOTAL 1000000u

struct area {
	uint32_t producer __attribute__((aligned(64)));
	uint32_t consumer __attribute__((aligned(64)));
	uint32_t flags __attribute__((aligned(64)));
	uint64_t desc[RING] __attribute__((aligned(64)));
};

static struct area a_area, b_area;

/* The kernel's side: consume A, produce B, entry by entry. */
static void *kernel_side(void *arg)
{
	uint32_t a_cons = 0, b_prod = 0;

	while (a_cons < TOTAL) {
		uint32_t prod = __atomic_load_n(&a_area.producer, __ATOMIC_ACQUIRE);

		while (a_cons != prod) {
			uint64_t v = a_area.desc[a_cons & (RING - 1)];

			while (b_prod - __atomic_load_n(&b_area.consumer, __ATOMIC_ACQUIRE) == RING)
				;
			b_area.desc[b_prod & (RING - 1)] = v;
			__atomic_store_n(&b_area.producer, ++b_prod, __ATOMIC_RELEASE);
			__atomic_store_n(&a_area.consumer, ++a_cons, __ATOMIC_RELEASE);
		}
	}
	return NULL;
}

static struct xdp_ring_offset offsets(void)
{
	struct xdp_ring_offset off = {
		.producer = offsetof(struct area, producer),
		.consumer = offsetof(struct area, consumer),
		.flags = offsetof(struct area, flags),
		.desc = offsetof(struct area, desc),
	};

	return off;
}

int main(void)
{
	struct xdp_ring_offset off = offsets();
	struct xring a, b;
	pthread_t t;
	uint32_t sent = 0, got = 0, batch = 1, idx, n, last_got = 0;
	unsigned spins = 0;
	time_t last_progress = time(NULL);

	xring_init(&a, &a_area, &off, RING);
	xring_init(&b, &b_area, &off, RING);
	if (xring_prod_free(&a, RING) != RING || xring_peek(&b, RING, &idx) != 0) {
		fprintf(stderr, "FAIL: fresh rings are not empty\n");
		return 1;
	}
	if (xring_reserve(&a, RING + 1, &idx) != 0) {
		fprintf(stderr, "FAIL: reserved more than the ring holds\n");
		return 1;
	}
	a_area.flags = XDP_RING_NEED_WAKEUP;
	if (!xring_needs_wakeup(&a)) {
		fprintf(stderr, "FAIL: need_wakeup not seen\n");
		return 1;
	}
	a_area.flags = 0;
	if (pthread_create(&t, NULL, kernel_side, NULL) != 0)
		return 1;
	while (got < TOTAL) {
		if (sent < TOTAL) {
			n = TOTAL - sent < batch ? TOTAL - sent : batch;
			if (xring_reserve(&a, n, &idx) == n) {
				for (uint32_t i = 0; i < n; i++)
					*xring_addr(&a, idx + i) = (uint64_t)(sent + i) * 3 + 1;
				xring_submit(&a);
				sent += n;
				batch = batch % 17 + 1;
			}
		}
		n = xring_peek(&b, 13, &idx);
		for (uint32_t i = 0; i < n; i++) {
			uint64_t v = *xring_addr(&b, idx + i);

			if (v != (uint64_t)got * 3 + 1) {
				fprintf(stderr, "FAIL: entry %u is %llu, want %llu\n", got,
					(unsigned long long)v, (unsigned long long)got * 3 + 1);
				return 1;
			}
			got++;
		}
		if (n)
			xring_release(&b);
		/* Stuck means no entry arrived for 20 s: a spin count alone would
		 * fail when the other thread gets no CPU on a loaded machine. */
		if (++spins % 1000000u == 0) {
			if (got != last_got) {
				last_got = got;
				last_progress = time(NULL);
			} else if (time(NULL) - last_progress > 20) {
				fprintf(stderr, "FAIL: stuck at sent=%u got=%u\n", sent, got);
				return 1;
			}
		}
	}
	pthread_join(t, NULL);
	if (xring_outstanding(&a) != 0) {
		fprintf(stderr, "FAIL: ring A not drained\n");
		return 1;
	}
	printf("PASS: %u entries through two rings of %d\n", got, RING);
	return 0;
}
