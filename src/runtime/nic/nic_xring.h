/* Accessors for the AF_XDP rings the kernel shares with us (no libxdp in the runtime). */
#ifndef LIBRETTO_NIC_XRING_H
#define LIBRETTO_NIC_XRING_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/if_xdp.h>

/*
 * Invariants (as the kernel's xsk_queue.h): producer and consumer are
 * free-running 32-bit indices, masked only on access; size is a power of
 * two; entries in [consumer, producer) belong to the consumer, the rest to
 * the producer.  Each side keeps cached copies of both indices and touches
 * the shared ones only when the cache runs dry (reserve/peek) or to publish
 * a whole batch (submit/release).
 *
 * We produce on the fill and TX rings and consume the RX and completion
 * rings.  The kernel's side of every pairing named below is in
 * net/xdp/xsk_queue.h.
 */
struct xring {
	uint32_t *producer;
	uint32_t *consumer;
	uint32_t *flags;
	void *ring;
	uint32_t size;
	uint32_t mask;
	uint32_t cached_prod;
	uint32_t cached_cons;
};

static inline void xring_init(struct xring *r, void *map, const struct xdp_ring_offset *off,
			      uint32_t size)
{
	r->producer = (uint32_t *)((char *)map + off->producer);
	r->consumer = (uint32_t *)((char *)map + off->consumer);
	r->flags = (uint32_t *)((char *)map + off->flags);
	r->ring = (char *)map + off->desc;
	r->size = size;
	r->mask = size - 1;
	r->cached_prod = __atomic_load_n(r->producer, __ATOMIC_ACQUIRE);
	r->cached_cons = __atomic_load_n(r->consumer, __ATOMIC_ACQUIRE);
}

static inline uint64_t *xring_addr(struct xring *r, uint32_t idx)
{
	return &((uint64_t *)r->ring)[idx & r->mask];
}

static inline struct xdp_desc *xring_desc(struct xring *r, uint32_t idx)
{
	return &((struct xdp_desc *)r->ring)[idx & r->mask];
}

/* Producer side: how many entries we may write, refreshing the consumer
 * index only when the cached view is short of want. */
static inline uint32_t xring_prod_free(struct xring *r, uint32_t want)
{
	uint32_t avail = r->size - (r->cached_prod - r->cached_cons);

	if (avail >= want)
		return avail;
	/* Acquire: pairs with the kernel consumer's release of ->consumer
	 * (xskq_cons_release, after it finished reading the entries), so we
	 * never overwrite an entry the kernel is still reading. */
	r->cached_cons = __atomic_load_n(r->consumer, __ATOMIC_ACQUIRE);
	return r->size - (r->cached_prod - r->cached_cons);
}

/* Reserve n entries (all or none); *idx is the first.  Returns n or 0. */
static inline uint32_t xring_reserve(struct xring *r, uint32_t n, uint32_t *idx)
{
	if (xring_prod_free(r, n) < n)
		return 0;
	*idx = r->cached_prod;
	r->cached_prod += n;
	return n;
}

/* Publish every reserved entry. */
static inline void xring_submit(struct xring *r)
{
	/* Release: the entries' contents are written before the kernel can
	 * see the new producer; pairs with the kernel consumer's acquire of
	 * ->producer (xskq_cons_peek / __xskq_cons_peek). */
	__atomic_store_n(r->producer, r->cached_prod, __ATOMIC_RELEASE);
}

/* Consumer side: up to max entries ready for us; *idx is the first.  The
 * entries stay ours to read until xring_release(). */
static inline uint32_t xring_peek(struct xring *r, uint32_t max, uint32_t *idx)
{
	uint32_t avail = r->cached_prod - r->cached_cons;

	if (avail == 0) {
		/* Acquire: pairs with the kernel producer's release of
		 * ->producer (xskq_prod_submit*), so the entries' contents
		 * are visible before we read them. */
		r->cached_prod = __atomic_load_n(r->producer, __ATOMIC_ACQUIRE);
		avail = r->cached_prod - r->cached_cons;
	}
	if (avail > max)
		avail = max;
	*idx = r->cached_cons;
	r->cached_cons += avail;
	return avail;
}

/* Give every peeked entry back to the kernel. */
static inline void xring_release(struct xring *r)
{
	/* Release: our reads of the entries complete before the kernel may
	 * reuse them; pairs with the kernel producer's acquire-ordered read
	 * of ->consumer (xskq_prod_is_full / xskq_prod_nb_free, followed by
	 * its smp_mb before writing entries). */
	__atomic_store_n(r->consumer, r->cached_cons, __ATOMIC_RELEASE);
}

/*
 * Does the kernel want a syscall to look at this ring?  Called after a
 * submit.  The full fence orders our producer store before the flag load:
 * without it the load could pass the store, and we could miss a flag the
 * kernel set after it last saw the ring empty (it sets the flag, then
 * re-reads the ring: the other half of this store-load pairing).
 */
static inline bool xring_needs_wakeup(struct xring *r)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return __atomic_load_n(r->flags, __ATOMIC_RELAXED) & XDP_RING_NEED_WAKEUP;
}

/* Entries the kernel has not consumed yet, from the shared indices only
 * (safe from a thread that does not own the ring's cached state). */
static inline uint32_t xring_outstanding(const struct xring *r)
{
	uint32_t prod = __atomic_load_n(r->producer, __ATOMIC_RELAXED);

	/* Acquire: pairs with the kernel's release of ->consumer. */
	return prod - __atomic_load_n(r->consumer, __ATOMIC_ACQUIRE);
}

#endif
