/* Fragment steering table: bounded, oldest-first replacement, caller's clock. */
#include "netd/frag.h"

#include <string.h>

static int key_eq(const struct frag_key *a, const struct frag_key *b)
{
	return a->src_ip == b->src_ip && a->dst_ip == b->dst_ip &&
	       a->ip_id == b->ip_id && a->proto == b->proto;
}

/*
 * A clock that goes backwards (a caller bug, or a restored snapshot) must not
 * keep an entry alive forever: an entry from the "future" counts as expired.
 */
static int expired(const struct frag_table *t, const struct frag_entry *e, uint64_t now_ms)
{
	return now_ms < e->born_ms || now_ms - e->born_ms >= t->timeout_ms;
}

void frag_init(struct frag_table *t, uint64_t timeout_ms)
{
	memset(t, 0, sizeof(*t));
	t->timeout_ms = timeout_ms;
}

void frag_remember(struct frag_table *t, const struct frag_key *key, uint32_t app,
		   uint16_t first_end, uint64_t now_ms)
{
	struct frag_entry *slot = NULL, *oldest = NULL;

	for (unsigned i = 0; i < FRAG_TABLE_SIZE; i++) {
		struct frag_entry *e = &t->e[i];

		if (e->used && key_eq(&e->key, key)) {
			slot = e;
			break;
		}
		if (!e->used || expired(t, e, now_ms)) {
			if (slot == NULL)
				slot = e;
			continue;
		}
		if (oldest == NULL || e->born_ms < oldest->born_ms)
			oldest = e;
	}
	if (slot == NULL)
		slot = oldest;
	/* The key is copied field by field so the padding stays zero. */
	memset(slot, 0, sizeof(*slot));
	slot->key.src_ip = key->src_ip;
	slot->key.dst_ip = key->dst_ip;
	slot->key.ip_id = key->ip_id;
	slot->key.proto = key->proto;
	slot->used = 1;
	slot->first_end = first_end;
	slot->app = app;
	slot->born_ms = now_ms;
}

enum frag_result frag_lookup(const struct frag_table *t, const struct frag_key *key,
			     uint64_t now_ms, uint32_t *app, uint16_t *first_end)
{
	for (unsigned i = 0; i < FRAG_TABLE_SIZE; i++) {
		const struct frag_entry *e = &t->e[i];

		if (!e->used || !key_eq(&e->key, key))
			continue;
		if (expired(t, e, now_ms))
			return FRAG_MISS;
		*app = e->app;
		if (first_end != NULL)
			*first_end = e->first_end;
		return FRAG_HIT;
	}
	return FRAG_MISS;
}

void frag_forget_app(struct frag_table *t, uint32_t app)
{
	for (unsigned i = 0; i < FRAG_TABLE_SIZE; i++)
		if (t->e[i].used && t->e[i].app == app)
			memset(&t->e[i], 0, sizeof(t->e[i]));
}

unsigned frag_count(const struct frag_table *t, uint64_t now_ms)
{
	unsigned n = 0;

	for (unsigned i = 0; i < FRAG_TABLE_SIZE; i++)
		if (t->e[i].used && !expired(t, &t->e[i], now_ms))
			n++;
	return n;
}
