/* The app <-> netd shared-memory ring ABI (DESIGN.md section 4), used by both sides. */
#ifndef LIBRETTO_RING_H
#define LIBRETTO_RING_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/*
 * One region per indirect application, created by librettod (a memfd), mapped
 * read-write by the application's runtime and by libretto-netd.  All positions
 * inside it are byte offsets from the start of the region, never pointers.
 *
 *   offset 0                  struct ring_region_hdr (128 bytes)
 *   RING_HDR_SIZE + i * B     ring i (i = RING_FILL, RING_RX, RING_TX, RING_COMP),
 *                             B = ring_block_size(ring_size): a struct ring_ctl
 *                             (128 bytes) followed by ring_size struct ring_desc
 *   frames_off (page aligned) the frame area: nframes * frame_size bytes
 *
 * The four rings have the AF_XDP shape and direction:
 *   fill  app  -> netd   empty frames the application lends netd for RX
 *   rx    netd -> app    received frames (a fill frame, now holding data)
 *   tx    app  -> netd   frames to send
 *   comp  netd -> app    tx frames netd has finished with (copied out)
 * A descriptor's offset is relative to the start of the frame area, like an
 * AF_XDP UMEM address.
 *
 * Invariants (each ring is single-producer single-consumer):
 *  - ring_size is a power of two; producer and consumer are free-running
 *    32-bit indices that wrap at 2^32 and are masked with ring_size - 1 only
 *    when a slot is accessed, so producer - consumer (mod 2^32) is the number
 *    of filled slots and is always within [0, ring_size].
 *  - Only the producer writes `producer` and the slots between consumer and
 *    producer + free; only the consumer writes `consumer` and `flags`.
 *  - A slot is owned by the producer from release by the consumer (consumer
 *    store-release) until submit (producer store-release), then by the
 *    consumer.  The frame a descriptor names travels with it.
 *  - producer and consumer live on separate 64-byte cache lines so the two
 *    sides do not false-share; flags shares the consumer's line (one writer).
 *
 * Trust: netd treats every byte the application can write as hostile, which
 * is the whole region: the header, the indices of all four rings (its own
 * included) and every descriptor.  So the side that must not trust the other
 * keeps private copies of everything that matters (struct ring_prod and
 * struct ring_cons hold the authoritative indices; the geometry is copied once
 * by ring_region_check()), copies each descriptor once before checking it
 * (ring_cons_read(), then ring_desc_valid()), and rejects impossible index
 * values instead of following them (counted in the handle's `errors`).  An
 * application that lies only stalls or corrupts its own traffic.  netd is
 * trusted by the application for memory safety of the region but the same
 * helpers make the application robust too.
 *
 * Doorbells: two eventfds, passed separately from the region (SCM_RIGHTS at
 * registration):
 *   efd_netd  the application signals netd: new tx or fill entries
 *   efd_app   netd signals the application: new rx or comp entries
 * A producer signals only when the consumer asked for it by setting
 * RING_NEED_WAKEUP in that ring's flags; see ring_cons_prepare_sleep() and
 * ring_prod_needs_wakeup() for the protocol and its fences.
 *
 * Generation: the supervisor writes 1 at creation; each netd that attaches to
 * the region (start, restart, live upgrade) increments it.  The application
 * watches it to notice a new netd and resynchronises (re-posts its fill ring,
 * treats outstanding tx frames as completed).  Exception: a netd that takes
 * over after a clean `handover` (live upgrade, netd.h) leaves it alone, since
 * its predecessor held no frame and every index is exact.
 */

#define RING_MAGIC 0x474e5252u /* "RRNG" little-endian */
#define RING_ABI_VERSION 1
#define RING_CACHELINE 64
#define RING_HDR_SIZE 128
#define RING_PAGE 4096

/* Indices of the four rings in the region. */
#define RING_FILL 0
#define RING_RX 1
#define RING_TX 2
#define RING_COMP 3
#define RING_COUNT 4

/* Limits that ring_region_init() and ring_region_check() enforce. */
#define RING_MIN_SIZE 4u
#define RING_MAX_SIZE 65536u
#define RING_MIN_FRAME 256u
#define RING_MAX_FRAME 65536u
#define RING_MAX_FRAMES_LEN (1ull << 30)

/* struct ring_ctl.flags: the consumer sleeps and wants a doorbell. */
#define RING_NEED_WAKEUP 1u

/* struct ring_region_hdr.flags */
#define RING_REGION_F_NETD_UP 1u /* set by netd after attach, cleared by librettod when netd dies */

/*
 * One descriptor: a frame in the frame area.  offset is relative to the frame
 * area; the frame must lie within one frame_size-aligned frame (see
 * ring_desc_valid()).  len is the data length (rx, tx) or the usable length
 * lent (fill; usually frame_size).  flags is reserved, written 0, ignored by
 * readers in ABI version 1.
 */
struct ring_desc {
	uint64_t offset;
	uint32_t len;
	uint32_t flags;
};

_Static_assert(offsetof(struct ring_desc, offset) == 0, "ring ABI");
_Static_assert(offsetof(struct ring_desc, len) == 8, "ring ABI");
_Static_assert(offsetof(struct ring_desc, flags) == 12, "ring ABI");
_Static_assert(sizeof(struct ring_desc) == 16, "ring ABI");

/* The control block of one ring: producer line, then consumer line. */
struct ring_ctl {
	uint32_t producer;              /* written by the producer only */
	uint8_t pad0[RING_CACHELINE - 4];
	uint32_t consumer;              /* written by the consumer only */
	uint32_t flags;                 /* RING_NEED_WAKEUP; consumer only */
	uint8_t pad1[RING_CACHELINE - 8];
};

_Static_assert(offsetof(struct ring_ctl, producer) == 0, "ring ABI");
_Static_assert(offsetof(struct ring_ctl, pad0) == 4, "ring ABI");
_Static_assert(offsetof(struct ring_ctl, consumer) == 64, "ring ABI");
_Static_assert(offsetof(struct ring_ctl, flags) == 68, "ring ABI");
_Static_assert(offsetof(struct ring_ctl, pad1) == 72, "ring ABI");
_Static_assert(sizeof(struct ring_ctl) == 128, "ring ABI");

/*
 * The region header.  Written by librettod at creation (ring_region_init());
 * afterwards only generation and flags change (netd, librettod).  Readers
 * copy and validate it with ring_region_check() and then use the copy.
 */
struct ring_region_hdr {
	uint32_t magic;         /* RING_MAGIC, stored last at init (release) */
	uint32_t abi_version;   /* RING_ABI_VERSION */
	uint32_t hdr_size;      /* RING_HDR_SIZE */
	uint32_t ring_size;     /* entries per ring, power of two */
	uint32_t frame_size;    /* bytes per frame, power of two */
	uint32_t nframes;       /* frames in the frame area */
	uint64_t region_size;   /* total bytes, a multiple of RING_PAGE */
	uint64_t ring_off[RING_COUNT]; /* offset of each struct ring_ctl */
	uint64_t frames_off;    /* offset of the frame area, page aligned */
	uint64_t frames_len;    /* nframes * frame_size */
	uint32_t generation;    /* see above; atomic */
	uint32_t flags;         /* RING_REGION_F_*; atomic */
	uint8_t reserved[RING_HDR_SIZE - 88];
};

_Static_assert(offsetof(struct ring_region_hdr, magic) == 0, "ring ABI");
_Static_assert(offsetof(struct ring_region_hdr, abi_version) == 4, "ring ABI");
_Static_assert(offsetof(struct ring_region_hdr, hdr_size) == 8, "ring ABI");
_Static_assert(offsetof(struct ring_region_hdr, ring_size) == 12, "ring ABI");
_Static_assert(offsetof(struct ring_region_hdr, frame_size) == 16, "ring ABI");
_Static_assert(offsetof(struct ring_region_hdr, nframes) == 20, "ring ABI");
_Static_assert(offsetof(struct ring_region_hdr, region_size) == 24, "ring ABI");
_Static_assert(offsetof(struct ring_region_hdr, ring_off) == 32, "ring ABI");
_Static_assert(offsetof(struct ring_region_hdr, frames_off) == 64, "ring ABI");
_Static_assert(offsetof(struct ring_region_hdr, frames_len) == 72, "ring ABI");
_Static_assert(offsetof(struct ring_region_hdr, generation) == 80, "ring ABI");
_Static_assert(offsetof(struct ring_region_hdr, flags) == 84, "ring ABI");
_Static_assert(offsetof(struct ring_region_hdr, reserved) == 88, "ring ABI");
_Static_assert(sizeof(struct ring_region_hdr) == RING_HDR_SIZE, "ring ABI");

/* Bytes of one ring: its control block and its descriptors. */
static inline uint64_t ring_block_size(uint32_t ring_size)
{
	return sizeof(struct ring_ctl) + (uint64_t)ring_size * sizeof(struct ring_desc);
}

static inline bool ring_is_pow2(uint64_t v)
{
	return v != 0 && (v & (v - 1)) == 0;
}

/*
 * The size of a region for these parameters, a multiple of RING_PAGE, or 0
 * if a parameter is outside the limits above: ring_size and frame_size powers
 * of two, nframes >= 1, frame area at most RING_MAX_FRAMES_LEN.
 */
static inline size_t ring_region_size(uint32_t nframes, uint32_t frame_size,
				      uint32_t ring_size)
{
	uint64_t frames_off, frames_len;

	if (!ring_is_pow2(ring_size) || ring_size < RING_MIN_SIZE ||
	    ring_size > RING_MAX_SIZE)
		return 0;
	if (!ring_is_pow2(frame_size) || frame_size < RING_MIN_FRAME ||
	    frame_size > RING_MAX_FRAME)
		return 0;
	frames_len = (uint64_t)nframes * frame_size;
	if (nframes == 0 || frames_len > RING_MAX_FRAMES_LEN)
		return 0;
	frames_off = RING_HDR_SIZE + RING_COUNT * ring_block_size(ring_size);
	frames_off = (frames_off + RING_PAGE - 1) & ~(uint64_t)(RING_PAGE - 1);
	/* frames_len may be smaller than a page: round the total up. */
	return (size_t)((frames_off + frames_len + RING_PAGE - 1) &
			~(uint64_t)(RING_PAGE - 1));
}

/*
 * Format a region of len bytes at mem (64-byte aligned): header, four empty
 * rings with all indices 0, generation 1.  The frame area is not touched.
 * Returns 0, -EINVAL for bad parameters or alignment, -ENOSPC if len is below
 * ring_region_size().  Nothing may use the region concurrently.
 */
static inline int ring_region_init(void *mem, size_t len, uint32_t nframes,
				   uint32_t frame_size, uint32_t ring_size)
{
	struct ring_region_hdr *h = (struct ring_region_hdr *)mem;
	size_t need = ring_region_size(nframes, frame_size, ring_size);
	uint64_t off;
	int i;

	if (mem == NULL || ((uintptr_t)mem & (RING_CACHELINE - 1)) || need == 0)
		return -EINVAL;
	if (len < need)
		return -ENOSPC;
	off = RING_HDR_SIZE + RING_COUNT * ring_block_size(ring_size);
	off = (off + RING_PAGE - 1) & ~(uint64_t)(RING_PAGE - 1);
	memset(mem, 0, (size_t)off);
	h->abi_version = RING_ABI_VERSION;
	h->hdr_size = RING_HDR_SIZE;
	h->ring_size = ring_size;
	h->frame_size = frame_size;
	h->nframes = nframes;
	h->region_size = need;
	for (i = 0; i < RING_COUNT; i++)
		h->ring_off[i] = RING_HDR_SIZE + (uint64_t)i * ring_block_size(ring_size);
	h->frames_off = off;
	h->frames_len = (uint64_t)nframes * frame_size;
	h->generation = 1;
	/* Pairs with the load-acquire of magic in ring_region_check(): whoever
	 * sees the magic sees a complete header. */
	__atomic_store_n(&h->magic, RING_MAGIC, __ATOMIC_RELEASE);
	return 0;
}

/*
 * Copy the header of the region mapped at mem (maplen bytes) into *out and
 * check it completely: magic, version, geometry recomputed from the three
 * parameters, region_size <= maplen.  Use *out, never the shared header,
 * afterwards: the other side may rewrite the shared one at any time.
 * Returns 0, -EPROTO (bad magic or version) or -EINVAL (bad geometry).
 */
static inline int ring_region_check(const void *mem, size_t maplen,
				    struct ring_region_hdr *out)
{
	const struct ring_region_hdr *h = (const struct ring_region_hdr *)mem;
	uint64_t off;
	size_t need;
	int i;

	if (mem == NULL || maplen < RING_HDR_SIZE)
		return -EINVAL;
	/* Pairs with the store-release of magic in ring_region_init(). */
	if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != RING_MAGIC)
		return -EPROTO;
	memcpy(out, (const void *)h, sizeof(*out));
	if (out->magic != RING_MAGIC || out->abi_version != RING_ABI_VERSION ||
	    out->hdr_size != RING_HDR_SIZE)
		return -EPROTO;
	need = ring_region_size(out->nframes, out->frame_size, out->ring_size);
	if (need == 0 || out->region_size != need || need > maplen)
		return -EINVAL;
	for (i = 0; i < RING_COUNT; i++)
		if (out->ring_off[i] != RING_HDR_SIZE + (uint64_t)i * ring_block_size(out->ring_size))
			return -EINVAL;
	off = RING_HDR_SIZE + RING_COUNT * ring_block_size(out->ring_size);
	off = (off + RING_PAGE - 1) & ~(uint64_t)(RING_PAGE - 1);
	if (out->frames_off != off ||
	    out->frames_len != (uint64_t)out->nframes * out->frame_size)
		return -EINVAL;
	return 0;
}

/*
 * Whether a descriptor names bytes inside one frame of the frame area.  hdr
 * must be a private copy from ring_region_check() and d a private copy of the
 * descriptor (ring_cons_read()), so that the other side cannot change either
 * between this check and the use.  len 0 is refused.  No sum can overflow:
 * offset is compared with frames_len (at most 2^30) before any arithmetic.
 */
static inline bool ring_desc_valid(const struct ring_region_hdr *hdr,
				   const struct ring_desc *d)
{
	uint64_t in_frame;

	if (d->offset >= hdr->frames_len)
		return false;
	if (d->len == 0 || d->len > hdr->frame_size)
		return false;
	in_frame = d->offset & (uint64_t)(hdr->frame_size - 1);
	return d->len <= hdr->frame_size - in_frame;
}

/*
 * The live generation counter (the copy in a checked header is a snapshot).
 * A new netd calls ring_region_new_generation() after attaching its rings
 * and before setting RING_REGION_F_NETD_UP; the application compares
 * ring_region_generation() with the value it last saw.
 */
static inline uint32_t ring_region_generation(const void *mem)
{
	const struct ring_region_hdr *h = (const struct ring_region_hdr *)mem;

	/* Pairs with the fetch-add release in ring_region_new_generation(). */
	return __atomic_load_n(&h->generation, __ATOMIC_ACQUIRE);
}

static inline uint32_t ring_region_new_generation(void *mem)
{
	struct ring_region_hdr *h = (struct ring_region_hdr *)mem;

	/* Pairs with the load-acquire in ring_region_generation(): the ring
	 * state netd set up before is visible with the new generation. */
	return __atomic_add_fetch(&h->generation, 1, __ATOMIC_RELEASE);
}

/* The frame area of a region, from the private header copy. */
static inline void *ring_frames(void *mem, const struct ring_region_hdr *hdr)
{
	return (char *)mem + hdr->frames_off;
}

/*
 * Private producer state, libxdp style.  prod is the authoritative producer
 * index (the shared one is only ever written from it); cached_prod runs ahead
 * of it by the reserved, not yet submitted, slots; cached_cons is the last
 * consumer index read.  errors counts impossible consumer indices seen.
 */
struct ring_prod {
	uint32_t cached_prod;
	uint32_t prod;
	uint32_t cached_cons;
	uint32_t mask;
	uint32_t size;
	uint32_t errors;
	uint32_t *producer;
	uint32_t *consumer;
	uint32_t *flags;
	struct ring_desc *descs;
};

/*
 * Private consumer state.  cons is the authoritative consumer index (what has
 * been released); cached_cons runs ahead of it by the peeked, not yet
 * released, slots; cached_prod is the last producer index accepted.  errors
 * counts impossible producer indices seen.
 */
struct ring_cons {
	uint32_t cached_cons;
	uint32_t cons;
	uint32_t cached_prod;
	uint32_t mask;
	uint32_t size;
	uint32_t errors;
	uint32_t *producer;
	uint32_t *consumer;
	uint32_t *flags;
	const struct ring_desc *descs;
};

static inline struct ring_ctl *ring_ctl_of(void *mem, const struct ring_region_hdr *hdr,
					   int which)
{
	return (struct ring_ctl *)(void *)((char *)mem + hdr->ring_off[which]);
}

/*
 * Attach a producer handle to ring `which` of the region at mem, whose
 * checked header copy is hdr.  The indices are taken from the region so a
 * restarted side resumes where its predecessor stopped.  Returns 0, -EINVAL
 * for a bad ring number, -EPROTO if the indices are inconsistent.
 */
static inline int ring_prod_attach(struct ring_prod *r, void *mem,
				   const struct ring_region_hdr *hdr, int which)
{
	struct ring_ctl *c;

	if (which < 0 || which >= RING_COUNT)
		return -EINVAL;
	c = ring_ctl_of(mem, hdr, which);
	memset(r, 0, sizeof(*r));
	r->size = hdr->ring_size;
	r->mask = hdr->ring_size - 1;
	r->producer = &c->producer;
	r->consumer = &c->consumer;
	r->flags = &c->flags;
	r->descs = (struct ring_desc *)(void *)(c + 1);
	r->prod = __atomic_load_n(&c->producer, __ATOMIC_RELAXED);
	/* Pairs with the consumer's store-release in ring_cons_release(). */
	r->cached_cons = __atomic_load_n(&c->consumer, __ATOMIC_ACQUIRE);
	r->cached_prod = r->prod;
	if ((uint32_t)(r->prod - r->cached_cons) > r->size)
		return -EPROTO;
	return 0;
}

/* As ring_prod_attach(), for the consuming side. */
static inline int ring_cons_attach(struct ring_cons *r, void *mem,
				   const struct ring_region_hdr *hdr, int which)
{
	struct ring_ctl *c;

	if (which < 0 || which >= RING_COUNT)
		return -EINVAL;
	c = ring_ctl_of(mem, hdr, which);
	memset(r, 0, sizeof(*r));
	r->size = hdr->ring_size;
	r->mask = hdr->ring_size - 1;
	r->producer = &c->producer;
	r->consumer = &c->consumer;
	r->flags = &c->flags;
	r->descs = (const struct ring_desc *)(void *)(c + 1);
	r->cons = __atomic_load_n(&c->consumer, __ATOMIC_RELAXED);
	/* Pairs with the producer's store-release in ring_prod_submit(). */
	r->cached_prod = __atomic_load_n(&c->producer, __ATOMIC_ACQUIRE);
	r->cached_cons = r->cons;
	if ((uint32_t)(r->cached_prod - r->cons) > r->size) {
		r->cached_prod = r->cons;
		return -EPROTO;
	}
	return 0;
}

/*
 * Free slots, at least `want` if possible: the shared consumer index is read
 * only when the cached one does not show enough room.  A consumer index that
 * claims more was consumed than produced is ignored (errors++).
 */
static inline uint32_t ring_prod_free(struct ring_prod *r, uint32_t want)
{
	uint32_t used = r->cached_prod - r->cached_cons;
	uint32_t cons;

	if (r->size - used >= want)
		return r->size - used;
	/* Pairs with the consumer's store-release in ring_cons_release(): the
	 * consumer has finished reading the slots (and frames) it released
	 * before we overwrite them. */
	cons = __atomic_load_n(r->consumer, __ATOMIC_ACQUIRE);
	if ((uint32_t)(r->prod - cons) > r->size ||
	    (uint32_t)(cons - r->cached_cons) > r->size) {
		r->errors++;
		return r->size - used;
	}
	r->cached_cons = cons;
	return r->size - (r->cached_prod - cons);
}

/*
 * Reserve up to n slots; returns how many (possibly 0) and the index of the
 * first in *idx.  Fill them with ring_prod_desc(r, *idx + i), then submit.
 */
static inline uint32_t ring_prod_reserve(struct ring_prod *r, uint32_t n, uint32_t *idx)
{
	uint32_t room = ring_prod_free(r, n);

	if (n > room)
		n = room;
	*idx = r->cached_prod;
	r->cached_prod += n;
	return n;
}

static inline struct ring_desc *ring_prod_desc(struct ring_prod *r, uint32_t idx)
{
	return &r->descs[idx & r->mask];
}

/* Publish the next n reserved slots to the consumer. */
static inline void ring_prod_submit(struct ring_prod *r, uint32_t n)
{
	r->prod += n;
	/* Pairs with the consumer's load-acquire in ring_cons_avail(): the
	 * descriptors and the frame bytes written before are visible to the
	 * consumer once it sees the new index. */
	__atomic_store_n(r->producer, r->prod, __ATOMIC_RELEASE);
}

/*
 * Waker half of the doorbell protocol, called after ring_prod_submit():
 *
 *   producer:  store producer (submit)     consumer:  store flags = NEED_WAKEUP
 *              full fence  (A)                        full fence  (B)
 *              load flags                             load producer (re-check)
 *              if set: write(eventfd)                 if empty: sleep on eventfd
 *
 * Without the two full fences each side's store may still sit in its CPU's
 * store buffer while its load executes (store->load reordering is allowed
 * even on x86), so the producer can read flags == 0 while the consumer reads
 * the old producer index: the consumer then sleeps with work pending and
 * nobody rings (the lost wake-up).  With fence A paired with fence B at
 * least one side sees the other's store: either the producer sees the flag
 * and signals, or the consumer sees the new entries and does not sleep.
 * A stale flag only costs a spurious eventfd write.
 */
static inline bool ring_prod_needs_wakeup(struct ring_prod *r)
{
	/* (A): pairs with fence (B) in ring_cons_prepare_sleep(). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return __atomic_load_n(r->flags, __ATOMIC_RELAXED) & RING_NEED_WAKEUP;
}

/*
 * Filled slots, at least `want` if possible: the shared producer index is
 * read only when the cached one does not show enough.  A producer index more
 * than ring_size ahead of the consumer, or behind it, is impossible from an
 * honest producer and is ignored (errors++).
 */
static inline uint32_t ring_cons_avail(struct ring_cons *r, uint32_t want)
{
	uint32_t have = r->cached_prod - r->cached_cons;
	uint32_t prod;

	if (have >= want)
		return have;
	/* Pairs with the producer's store-release in ring_prod_submit(). */
	prod = __atomic_load_n(r->producer, __ATOMIC_ACQUIRE);
	if ((uint32_t)(prod - r->cons) > r->size ||
	    (uint32_t)(prod - r->cached_prod) > r->size) {
		r->errors++;
		return have;
	}
	r->cached_prod = prod;
	return prod - r->cached_cons;
}

/* Take up to n filled slots; returns how many and the first index in *idx. */
static inline uint32_t ring_cons_peek(struct ring_cons *r, uint32_t n, uint32_t *idx)
{
	uint32_t have = ring_cons_avail(r, n);

	if (n > have)
		n = have;
	*idx = r->cached_cons;
	r->cached_cons += n;
	return n;
}

/*
 * Copy the descriptor at idx into *out, each field read exactly once, so that
 * a producer rewriting the slot cannot change it between check and use.
 */
static inline void ring_cons_read(const struct ring_cons *r, uint32_t idx,
				  struct ring_desc *out)
{
	const struct ring_desc *d = &r->descs[idx & r->mask];

	out->offset = __atomic_load_n(&d->offset, __ATOMIC_RELAXED);
	out->len = __atomic_load_n(&d->len, __ATOMIC_RELAXED);
	out->flags = __atomic_load_n(&d->flags, __ATOMIC_RELAXED);
}

/* Give the next n peeked slots back to the producer. */
static inline void ring_cons_release(struct ring_cons *r, uint32_t n)
{
	r->cons += n;
	/* Pairs with the producer's load-acquire in ring_prod_free(): our reads
	 * of the released slots and their frames happen before the producer
	 * may reuse them. */
	__atomic_store_n(r->consumer, r->cons, __ATOMIC_RELEASE);
}

/*
 * Sleeper half of the doorbell protocol (see ring_prod_needs_wakeup()):
 * set NEED_WAKEUP, full fence (B), re-check.  Returns the entries available;
 * when 0 the caller may block on its eventfd (poll/read), and must call
 * ring_cons_end_sleep() when it wakes or decides not to sleep.  A caller
 * waiting on several rings prepares each of them before blocking.
 */
static inline uint32_t ring_cons_prepare_sleep(struct ring_cons *r)
{
	__atomic_store_n(r->flags, RING_NEED_WAKEUP, __ATOMIC_RELAXED);
	/* (B): pairs with fence (A) in ring_prod_needs_wakeup(). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return ring_cons_avail(r, 1);
}

/*
 * Clear NEED_WAKEUP: the consumer is polling again.  Producers that still
 * see the flag only make a spurious eventfd write.
 */
static inline void ring_cons_end_sleep(struct ring_cons *r)
{
	__atomic_store_n(r->flags, 0, __ATOMIC_RELAXED);
}

#endif
