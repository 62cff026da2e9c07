/* The port table: (ip, proto, port) -> application, in one shared memory region. */
#ifndef LIBRETTO_PORTTAB_H
#define LIBRETTO_PORTTAB_H

#include <stddef.h>
#include <stdint.h>

/*
 * librettod (the one writer) keeps the table in a memfd it creates, sizes and
 * formats with porttab_init(); libretto-netd maps the memfd read-only and
 * looks up every received frame's destination with porttab_lookup().  The
 * table lives in the memfd alone, so it survives any netd crash.
 *
 * Layout: struct porttab_hdr (64 bytes) then `capacity` (a power of two)
 * struct porttab_entry slots of 32 bytes: an open-addressing hash table with
 * linear probing.  Addresses and ports are in host byte order (as pool.h and
 * region.h use them); netd converts from the wire once per frame.
 *
 * Concurrency.  Each slot carries a sequence counter (a seqlock): the writer
 * makes it odd, changes state/key/app_id, then makes it even again (release).
 * A reader copies the slot between two reads of the counter and uses the
 * copy only if the counter was even and unchanged.  A reader never waits for
 * the writer: a slot that stays odd or keeps changing after a few retries is
 * skipped as "not this key", which is always a correct answer for the lookup
 * in progress (the key in it is being added or removed, and the writer never
 * empties a slot that a present key's probe chain passes through, see
 * below).  So a dead writer in the middle of an update, or a garbage table,
 * costs at most `capacity` probes per lookup and an answer of 0.
 *
 * The reference count (SO_REUSEPORT groups, dup'ed binds) is the writer's
 * bookkeeping: readers never read it, so changing it does not disturb them.
 *
 * Deletion leaves a tombstone so probe chains stay intact; a tombstone is
 * turned back into an empty slot only when the next slot is empty (then no
 * chain can pass through it), which cleans the tail of every cluster.
 * Insertions reuse the first tombstone of their chain.  The load limit counts
 * live entries: inserts beyond 3/4 of capacity fail with -ENOSPC.
 *
 * Wildcards.  An entry with ip 0 (0.0.0.0) matches every destination address
 * netd fronts for that application; porttab_lookup() tries the exact address,
 * then 0.  To keep one application from stealing another's traffic, a
 * specific address and the wildcard of the same (proto, port) cannot belong
 * to different applications (-EADDRINUSE).  librettod should insert an
 * application's own address when applications on different addresses may use
 * the same port.
 *
 * Thread safety: porttab_insert/remove/remove_all/init from one thread (or
 * under one lock) in one process at a time; porttab_lookup from any number
 * of threads and processes concurrently with them.
 */

#define PORTTAB_MAGIC 0x54524f50u /* "PORT" little-endian */
#define PORTTAB_VERSION 1
#define PORTTAB_MIN_CAPACITY 8u
#define PORTTAB_MAX_CAPACITY (1u << 20)

#define PORTTAB_EMPTY 0
#define PORTTAB_LIVE 1
#define PORTTAB_TOMB 2

struct porttab_hdr {
	uint32_t magic;       /* PORTTAB_MAGIC, stored last by init (release) */
	uint32_t version;     /* PORTTAB_VERSION */
	uint32_t capacity;    /* slots, a power of two */
	uint32_t max_live;    /* capacity * 3 / 4 */
	uint64_t generation;  /* +1 after every change (release); atomic */
	uint32_t live;        /* live entries (writer's count, for display) */
	uint32_t tombs;       /* tombstones (writer's count, for display) */
	uint8_t reserved[32];
};

struct porttab_entry {
	uint32_t seq;         /* odd while the writer changes the slot */
	uint32_t ip;          /* host byte order; 0 = wildcard */
	uint16_t port;        /* host byte order */
	uint8_t proto;        /* IPPROTO_TCP, IPPROTO_UDP */
	uint8_t state;        /* PORTTAB_EMPTY, _LIVE, _TOMB */
	uint32_t app_id;      /* owner, never 0 when live */
	uint32_t refs;        /* writer only: binds sharing the entry */
	uint32_t reserved[3];
};

_Static_assert(offsetof(struct porttab_hdr, magic) == 0, "porttab ABI");
_Static_assert(offsetof(struct porttab_hdr, version) == 4, "porttab ABI");
_Static_assert(offsetof(struct porttab_hdr, capacity) == 8, "porttab ABI");
_Static_assert(offsetof(struct porttab_hdr, max_live) == 12, "porttab ABI");
_Static_assert(offsetof(struct porttab_hdr, generation) == 16, "porttab ABI");
_Static_assert(offsetof(struct porttab_hdr, live) == 24, "porttab ABI");
_Static_assert(offsetof(struct porttab_hdr, tombs) == 28, "porttab ABI");
_Static_assert(sizeof(struct porttab_hdr) == 64, "porttab ABI");
_Static_assert(offsetof(struct porttab_entry, seq) == 0, "porttab ABI");
_Static_assert(offsetof(struct porttab_entry, ip) == 4, "porttab ABI");
_Static_assert(offsetof(struct porttab_entry, port) == 8, "porttab ABI");
_Static_assert(offsetof(struct porttab_entry, proto) == 10, "porttab ABI");
_Static_assert(offsetof(struct porttab_entry, state) == 11, "porttab ABI");
_Static_assert(offsetof(struct porttab_entry, app_id) == 12, "porttab ABI");
_Static_assert(offsetof(struct porttab_entry, refs) == 16, "porttab ABI");
_Static_assert(sizeof(struct porttab_entry) == 32, "porttab ABI");

/*
 * A handle on a mapped table.  The geometry is a private copy taken by
 * porttab_attach(), so a reader never follows a header rewritten under it.
 */
struct porttab {
	struct porttab_hdr *hdr;
	struct porttab_entry *ents;
	uint32_t capacity;
	uint32_t mask;
	uint32_t max_live;
};

/* Bytes needed for `capacity` slots (a power of two within the limits), or 0. */
size_t porttab_size(uint32_t capacity);

/*
 * Format size bytes at mem (8-byte aligned) as an empty table with the
 * largest power-of-two capacity that fits.  Returns 0, or -EINVAL if mem is
 * NULL or misaligned, or the size holds fewer than PORTTAB_MIN_CAPACITY slots.
 */
int porttab_init(void *mem, size_t size);

/*
 * Check the table at mem (size bytes mapped) and fill *t.  Returns 0, -EPROTO
 * for a bad magic or version, -EINVAL for a capacity that does not fit.
 * Works on a read-only mapping (lookups only then).
 */
int porttab_attach(struct porttab *t, void *mem, size_t size);

/*
 * Register one bind of (ip, proto, port) by app_id (non-zero).  The same
 * application may insert the same key again: its reference count goes up.
 * Returns 0, -EADDRINUSE if another application owns the key (or the
 * overlapping wildcard/specific key, see above), -ENOSPC above the load
 * limit, -EINVAL for app_id 0 or proto 0, -EOVERFLOW if the reference count
 * would wrap.
 */
int porttab_insert(struct porttab *t, uint32_t ip, uint8_t proto, uint16_t port,
		   uint32_t app_id);

/*
 * Drop one reference of app_id on the key; the entry goes when the last one
 * does.  Returns 0, -ENOENT if the key is absent, -EPERM if another
 * application owns it.
 */
int porttab_remove(struct porttab *t, uint32_t ip, uint8_t proto, uint16_t port,
		   uint32_t app_id);

/* Remove every entry of app_id (the application died); returns how many. */
int porttab_remove_all(struct porttab *t, uint32_t app_id);

/*
 * The application that owns ip:port for proto: the exact address first,
 * then the wildcard.  0 if nobody does (or the answer could not be read,
 * see above).  Lock-free, never blocks, at most 2 * capacity probes.
 */
uint32_t porttab_lookup(const struct porttab *t, uint32_t ip, uint8_t proto,
			uint16_t port);

/* The generation counter: changes after every successful modification. */
uint64_t porttab_generation(const struct porttab *t);

#endif
