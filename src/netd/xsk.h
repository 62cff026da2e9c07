/* netd's view of the four AF_XDP rings it maps from an inherited XSK descriptor. */
#ifndef NETD_XSK_H
#define NETD_XSK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/if_xdp.h>

/*
 * The kernel is the other side of every ring and is trusted, so these are
 * plain single-producer single-consumer accessors: free-running 32-bit
 * indices masked on access, a cached copy of the other side's index that is
 * refreshed only when it runs short, batches published with one release
 * store.  netd produces on fill and tx and consumes rx and comp.
 */
struct xsk_q {
	uint32_t *producer;
	uint32_t *consumer;
	uint32_t *flags;
	void *descs;
	uint32_t mask;
	uint32_t size;
	uint32_t cached_prod; /* producer side: next free; consumer side: last seen */
	uint32_t cached_cons; /* consumer side: next to read; producer side: last seen */
};

static inline uint64_t *xsk_q_addr(struct xsk_q *q, uint32_t idx)
{
	return &((uint64_t *)q->descs)[idx & q->mask];
}

static inline struct xdp_desc *xsk_q_desc(struct xsk_q *q, uint32_t idx)
{
	return &((struct xdp_desc *)q->descs)[idx & q->mask];
}

/* Producer: reserve up to n entries, *idx the first; returns how many. */
static inline uint32_t xsk_q_reserve(struct xsk_q *q, uint32_t n, uint32_t *idx)
{
	uint32_t room = q->size - (q->cached_prod - q->cached_cons);

	if (room < n) {
		/* Acquire: the kernel has finished reading what it consumed. */
		q->cached_cons = __atomic_load_n(q->consumer, __ATOMIC_ACQUIRE);
		room = q->size - (q->cached_prod - q->cached_cons);
	}
	if (n > room)
		n = room;
	*idx = q->cached_prod;
	q->cached_prod += n;
	return n;
}

/* Producer: publish everything reserved so far. */
static inline void xsk_q_submit(struct xsk_q *q)
{
	/* Release: the entries are written before the kernel sees them. */
	__atomic_store_n(q->producer, q->cached_prod, __ATOMIC_RELEASE);
}

/* Consumer: up to n filled entries, *idx the first; returns how many. */
static inline uint32_t xsk_q_peek(struct xsk_q *q, uint32_t n, uint32_t *idx)
{
	uint32_t avail = q->cached_prod - q->cached_cons;

	if (avail == 0) {
		/* Acquire: the entries' contents are visible before we read. */
		q->cached_prod = __atomic_load_n(q->producer, __ATOMIC_ACQUIRE);
		avail = q->cached_prod - q->cached_cons;
	}
	if (n > avail)
		n = avail;
	*idx = q->cached_cons;
	q->cached_cons += n;
	return n;
}

/* Consumer: give every peeked entry back. */
static inline void xsk_q_release(struct xsk_q *q)
{
	/* Release: our reads of the entries are done before reuse. */
	__atomic_store_n(q->consumer, q->cached_cons, __ATOMIC_RELEASE);
}

/* After a submit: does the kernel want a syscall to notice the ring? */
static inline bool xsk_q_needs_wakeup(struct xsk_q *q)
{
	/* Orders our producer store before the flag load (the kernel sets
	 * the flag, then re-checks the ring: a store-load pairing). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return __atomic_load_n(q->flags, __ATOMIC_RELAXED) & XDP_RING_NEED_WAKEUP;
}

#endif
