/* The port table: one writer (librettod), lock-free readers (netd); see porttab.h. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "common/porttab.h"

/* How often a reader re-reads a slot that changes under it before skipping it. */
#define PORTTAB_READ_RETRIES 8

/* A short spin-wait hint while a slot is being written. */
static inline void porttab_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

struct porttab_key {
	uint32_t ip;
	uint16_t port;
	uint8_t proto;
};

size_t porttab_size(uint32_t capacity)
{
	if (capacity < PORTTAB_MIN_CAPACITY || capacity > PORTTAB_MAX_CAPACITY ||
	    (capacity & (capacity - 1)))
		return 0;
	return sizeof(struct porttab_hdr) + (size_t)capacity * sizeof(struct porttab_entry);
}

int porttab_init(void *mem, size_t size)
{
	struct porttab_hdr *h = mem;
	uint32_t cap = PORTTAB_MIN_CAPACITY;

	if (mem == NULL || ((uintptr_t)mem & 7) || porttab_size(cap) > size)
		return -EINVAL;
	while (cap < PORTTAB_MAX_CAPACITY && porttab_size(cap * 2) <= size)
		cap *= 2;
	memset(mem, 0, porttab_size(cap));
	h->version = PORTTAB_VERSION;
	h->capacity = cap;
	h->max_live = cap / 4 * 3;
	/* Pairs with the load-acquire in porttab_attach(): a reader that sees
	 * the magic sees the formatted table. */
	__atomic_store_n(&h->magic, PORTTAB_MAGIC, __ATOMIC_RELEASE);
	return 0;
}

int porttab_attach(struct porttab *t, void *mem, size_t size)
{
	struct porttab_hdr *h = mem;
	uint32_t cap;

	if (mem == NULL || size < sizeof(*h))
		return -EINVAL;
	/* Pairs with the store-release in porttab_init(). */
	if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != PORTTAB_MAGIC ||
	    __atomic_load_n(&h->version, __ATOMIC_RELAXED) != PORTTAB_VERSION)
		return -EPROTO;
	cap = __atomic_load_n(&h->capacity, __ATOMIC_RELAXED);
	if (porttab_size(cap) == 0 || porttab_size(cap) > size)
		return -EINVAL;
	t->hdr = h;
	t->ents = (struct porttab_entry *)(h + 1);
	t->capacity = cap;
	t->mask = cap - 1;
	t->max_live = cap / 4 * 3;
	return 0;
}

/*
 * A 32-bit mix of the key (the finaliser of MurmurHash3's 64-bit variant, an
 * avalanche over all input bits), so that consecutive ports spread.
 */
static uint32_t porttab_hash(const struct porttab_key *k)
{
	uint64_t x = ((uint64_t)k->ip << 32) | ((uint64_t)k->proto << 16) | k->port;

	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return (uint32_t)x;
}

/*
 * Reader's snapshot of slot e: returns the state (PORTTAB_EMPTY, _LIVE,
 * _TOMB) with key and app_id copied out, or -1 if no consistent copy was
 * obtained within the retry budget (the caller skips the slot).
 */
static int porttab_read(const struct porttab_entry *e, struct porttab_key *k,
			uint32_t *app_id)
{
	for (int i = 0; i < PORTTAB_READ_RETRIES; i++) {
		/* Pairs with the writer's final store-release of seq in
		 * porttab_write(): the fields of that update are visible. */
		uint32_t s1 = __atomic_load_n(&e->seq, __ATOMIC_ACQUIRE);
		uint8_t state;

		if (s1 & 1) {
			porttab_relax();
			continue;
		}
		k->ip = __atomic_load_n(&e->ip, __ATOMIC_RELAXED);
		k->port = __atomic_load_n(&e->port, __ATOMIC_RELAXED);
		k->proto = __atomic_load_n(&e->proto, __ATOMIC_RELAXED);
		state = __atomic_load_n(&e->state, __ATOMIC_RELAXED);
		*app_id = __atomic_load_n(&e->app_id, __ATOMIC_RELAXED);
		/* Pairs with the writer's release fence after making seq odd:
		 * if we read any field of a newer update, we see the odd (or
		 * later) seq below and discard the copy. */
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&e->seq, __ATOMIC_RELAXED) == s1)
			return state <= PORTTAB_TOMB ? state : -1;
	}
	return -1;
}

/* Writer: publish a new content for slot e under its sequence counter. */
static void porttab_write(struct porttab_entry *e, uint8_t state,
			  const struct porttab_key *k, uint32_t app_id)
{
	uint32_t s = __atomic_load_n(&e->seq, __ATOMIC_RELAXED);

	__atomic_store_n(&e->seq, s + 1, __ATOMIC_RELAXED);
	/* Pairs with the reader's acquire fence in porttab_read(): the odd seq
	 * is ordered before the field stores that follow. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&e->ip, k->ip, __ATOMIC_RELAXED);
	__atomic_store_n(&e->port, k->port, __ATOMIC_RELAXED);
	__atomic_store_n(&e->proto, k->proto, __ATOMIC_RELAXED);
	__atomic_store_n(&e->state, state, __ATOMIC_RELAXED);
	__atomic_store_n(&e->app_id, app_id, __ATOMIC_RELAXED);
	/* Pairs with the reader's first load-acquire of seq. */
	__atomic_store_n(&e->seq, s + 2, __ATOMIC_RELEASE);
}

static void porttab_bump(struct porttab *t)
{
	/* Readers caching lookups compare generations (load-acquire). */
	__atomic_fetch_add(&t->hdr->generation, 1, __ATOMIC_RELEASE);
}

static bool key_eq(const struct porttab_entry *e, const struct porttab_key *k)
{
	return e->ip == k->ip && e->port == k->port && e->proto == k->proto;
}

/*
 * Writer: the slot holding key k, or -1; *free_slot gets the first tombstone
 * or empty slot of its chain (-1 if the table has none).  The writer reads
 * its own stores, no seqlock needed.
 */
static int64_t porttab_find(struct porttab *t, const struct porttab_key *k,
			    int64_t *free_slot)
{
	uint32_t i = porttab_hash(k) & t->mask;

	*free_slot = -1;
	for (uint32_t n = 0; n < t->capacity; n++, i = (i + 1) & t->mask) {
		struct porttab_entry *e = &t->ents[i];

		if (e->state == PORTTAB_EMPTY) {
			if (*free_slot < 0)
				*free_slot = i;
			return -1;
		}
		if (e->state == PORTTAB_TOMB) {
			if (*free_slot < 0)
				*free_slot = i;
			continue;
		}
		if (key_eq(e, k))
			return i;
	}
	return -1;
}

/*
 * Writer: turn tombstones back into empty slots from slot i backwards while
 * the slot after each is empty.  No present key's chain crosses such a slot:
 * with linear probing a key at slot j needs every slot from its home to j - 1
 * occupied, so one followed by an empty slot ends every chain through it.
 */
static void porttab_reap(struct porttab *t, uint32_t i)
{
	static const struct porttab_key none;

	for (uint32_t n = 0; n < t->capacity; n++, i = (i - 1) & t->mask) {
		struct porttab_entry *e = &t->ents[i];

		if (e->state != PORTTAB_TOMB ||
		    t->ents[(i + 1) & t->mask].state != PORTTAB_EMPTY)
			return;
		porttab_write(e, PORTTAB_EMPTY, &none, 0);
		t->hdr->tombs--;
	}
}

/* Writer: whether another application than app_id owns key k. */
static bool porttab_other_owner(struct porttab *t, const struct porttab_key *k,
				uint32_t app_id)
{
	int64_t slot, free_slot;

	slot = porttab_find(t, k, &free_slot);
	return slot >= 0 && t->ents[slot].app_id != app_id;
}

int porttab_insert(struct porttab *t, uint32_t ip, uint8_t proto, uint16_t port,
		   uint32_t app_id)
{
	struct porttab_key k = { ip, port, proto };
	struct porttab_entry *e;
	int64_t slot, free_slot;

	if (app_id == 0 || proto == 0)
		return -EINVAL;
	slot = porttab_find(t, &k, &free_slot);
	if (slot >= 0) {
		e = &t->ents[slot];
		if (e->app_id != app_id)
			return -EADDRINUSE;
		if (e->refs == UINT32_MAX)
			return -EOVERFLOW;
		/* Readers do not read refs: no seqlock round. */
		e->refs++;
		return 0;
	}
	/* A specific address and the wildcard of the same port must have one
	 * owner, or the exact match would steal the wildcard owner's traffic. */
	if (ip != 0) {
		struct porttab_key w = { 0, port, proto };

		if (porttab_other_owner(t, &w, app_id))
			return -EADDRINUSE;
	} else {
		for (uint32_t i = 0; i < t->capacity; i++) {
			e = &t->ents[i];
			if (e->state == PORTTAB_LIVE && e->port == port &&
			    e->proto == proto && e->app_id != app_id)
				return -EADDRINUSE;
		}
	}
	if (t->hdr->live >= t->max_live || free_slot < 0)
		return -ENOSPC;
	e = &t->ents[free_slot];
	if (e->state == PORTTAB_TOMB)
		t->hdr->tombs--;
	e->refs = 1;
	porttab_write(e, PORTTAB_LIVE, &k, app_id);
	t->hdr->live++;
	porttab_bump(t);
	return 0;
}

/* Writer: make live slot i a tombstone and clean up behind it. */
static void porttab_kill(struct porttab *t, uint32_t i)
{
	struct porttab_entry *e = &t->ents[i];
	struct porttab_key k = { e->ip, e->port, e->proto };

	/* The key stays in the tombstone; only the state matters to readers. */
	porttab_write(e, PORTTAB_TOMB, &k, 0);
	e->refs = 0;
	t->hdr->live--;
	t->hdr->tombs++;
	porttab_reap(t, i);
}

int porttab_remove(struct porttab *t, uint32_t ip, uint8_t proto, uint16_t port,
		   uint32_t app_id)
{
	struct porttab_key k = { ip, port, proto };
	struct porttab_entry *e;
	int64_t slot, free_slot;

	slot = porttab_find(t, &k, &free_slot);
	if (slot < 0)
		return -ENOENT;
	e = &t->ents[slot];
	if (e->app_id != app_id)
		return -EPERM;
	if (e->refs > 1) {
		e->refs--;
		return 0;
	}
	porttab_kill(t, (uint32_t)slot);
	porttab_bump(t);
	return 0;
}

int porttab_remove_all(struct porttab *t, uint32_t app_id)
{
	int n = 0;

	if (app_id == 0)
		return 0;
	for (uint32_t i = 0; i < t->capacity; i++) {
		struct porttab_entry *e = &t->ents[i];

		if (e->state == PORTTAB_LIVE && e->app_id == app_id) {
			porttab_kill(t, i);
			n++;
		}
	}
	/* A tombstone made early in the scan whose successor was emptied
	 * later (a chain wrapping past the end of the array) is reaped here. */
	for (uint32_t i = 0; i < t->capacity; i++)
		if (t->ents[i].state == PORTTAB_TOMB)
			porttab_reap(t, i);
	if (n)
		porttab_bump(t);
	return n;
}

static uint32_t porttab_probe(const struct porttab *t, const struct porttab_key *k)
{
	uint32_t i = porttab_hash(k) & t->mask;

	for (uint32_t n = 0; n < t->capacity; n++, i = (i + 1) & t->mask) {
		struct porttab_key got;
		uint32_t app_id;
		int state = porttab_read(&t->ents[i], &got, &app_id);

		if (state == PORTTAB_EMPTY)
			return 0;
		if (state == PORTTAB_LIVE && got.ip == k->ip && got.port == k->port &&
		    got.proto == k->proto)
			return app_id;
		/* Tombstones, other keys and slots caught mid-update: go on. */
	}
	return 0;
}

uint32_t porttab_lookup(const struct porttab *t, uint32_t ip, uint8_t proto,
			uint16_t port)
{
	struct porttab_key k = { ip, port, proto };
	uint32_t app_id = porttab_probe(t, &k);

	if (app_id == 0 && ip != 0) {
		k.ip = 0;
		app_id = porttab_probe(t, &k);
	}
	return app_id;
}

uint64_t porttab_generation(const struct porttab *t)
{
	/* Pairs with the fetch-add release in porttab_bump(). */
	return __atomic_load_n(&t->hdr->generation, __ATOMIC_ACQUIRE);
}
