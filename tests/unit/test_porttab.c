/* Unit test: the port table (src/common/porttab.{h,c}). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/porttab.h"

#include "check.h"


#define TCP 6
#define UDP 17
#define IP_A 0x0a2a0002u /* 10.42.0.2, the shared IP */
#define IP_B 0x0a2a000au /* 10.42.0.10 */

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint32_t rnd(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void *table_new(uint32_t capacity, struct porttab *t)
{
	size_t size = porttab_size(capacity);
	void *mem = aligned_alloc(64, size);

	if (mem == NULL) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	memset(mem, 0xa5, size);
	if (porttab_init(mem, size) != 0 || porttab_attach(t, mem, size) != 0 ||
	    t->capacity != capacity) {
		fprintf(stderr, "cannot format a test table\n");
		exit(1);
	}
	return mem;
}

static void test_init(void)
{
	struct porttab t;
	uint64_t buf[(64 + 32 * 20) / 8];
	struct porttab_hdr *h = (struct porttab_hdr *)buf;

	CHECK(porttab_size(0) == 0);
	CHECK(porttab_size(4) == 0);
	CHECK(porttab_size(12) == 0);
	CHECK(porttab_size(PORTTAB_MAX_CAPACITY * 2) == 0);
	CHECK(porttab_size(8) == 64 + 8 * 32);
	CHECK(porttab_init(buf, 64 + 7 * 32) == -EINVAL);
	CHECK(porttab_init((char *)buf + 4, sizeof(buf) - 4) == -EINVAL);
	CHECK(porttab_init(NULL, sizeof(buf)) == -EINVAL);
	/* 20 slots of room: the largest power of two is 16. */
	CHECK(porttab_init(buf, sizeof(buf)) == 0);
	CHECK(h->magic == PORTTAB_MAGIC && h->capacity == 16 && h->max_live == 12);
	CHECK(porttab_attach(&t, buf, sizeof(buf)) == 0 && t.capacity == 16);
	CHECK(porttab_attach(&t, buf, 64 + 15 * 32) == -EINVAL);
	CHECK(porttab_attach(&t, buf, 10) == -EINVAL);
	h->capacity = 24;
	CHECK(porttab_attach(&t, buf, sizeof(buf)) == -EINVAL);
	h->capacity = 1u << 31;
	CHECK(porttab_attach(&t, buf, sizeof(buf)) == -EINVAL);
	h->capacity = 16;
	h->version = 9;
	CHECK(porttab_attach(&t, buf, sizeof(buf)) == -EPROTO);
	h->version = PORTTAB_VERSION;
	h->magic = 0;
	CHECK(porttab_attach(&t, buf, sizeof(buf)) == -EPROTO);
}

static void test_basic(void)
{
	struct porttab t;
	void *mem = table_new(64, &t);
	uint64_t g0 = porttab_generation(&t);

	CHECK(porttab_lookup(&t, IP_A, TCP, 80) == 0);
	CHECK(porttab_insert(&t, IP_A, TCP, 80, 0) == -EINVAL);
	CHECK(porttab_insert(&t, IP_A, 0, 80, 1) == -EINVAL);
	CHECK(porttab_insert(&t, IP_A, TCP, 80, 1) == 0);
	CHECK(porttab_generation(&t) != g0);
	CHECK(porttab_lookup(&t, IP_A, TCP, 80) == 1);
	CHECK(porttab_lookup(&t, IP_A, UDP, 80) == 0);
	CHECK(porttab_lookup(&t, IP_A, TCP, 81) == 0);
	CHECK(porttab_lookup(&t, IP_B, TCP, 80) == 0);
	/* Another application: refused; the same one: a second reference. */
	CHECK(porttab_insert(&t, IP_A, TCP, 80, 2) == -EADDRINUSE);
	CHECK(porttab_insert(&t, IP_A, UDP, 80, 2) == 0);
	CHECK(porttab_insert(&t, IP_B, TCP, 80, 2) == 0);
	CHECK(porttab_insert(&t, IP_A, TCP, 80, 1) == 0);
	CHECK(porttab_remove(&t, IP_A, TCP, 80, 2) == -EPERM);
	CHECK(porttab_remove(&t, IP_A, TCP, 81, 1) == -ENOENT);
	CHECK(porttab_remove(&t, IP_A, TCP, 80, 1) == 0);
	CHECK(porttab_lookup(&t, IP_A, TCP, 80) == 1);     /* one ref left */
	CHECK(porttab_insert(&t, IP_A, TCP, 80, 2) == -EADDRINUSE);
	CHECK(porttab_remove(&t, IP_A, TCP, 80, 1) == 0);
	CHECK(porttab_lookup(&t, IP_A, TCP, 80) == 0);
	CHECK(porttab_remove(&t, IP_A, TCP, 80, 1) == -ENOENT);
	CHECK(porttab_insert(&t, IP_A, TCP, 80, 2) == 0);   /* free again */
	CHECK(porttab_lookup(&t, IP_A, TCP, 80) == 2);
	CHECK(porttab_lookup(&t, IP_A, UDP, 80) == 2);
	CHECK(porttab_lookup(&t, IP_B, TCP, 80) == 2);
	CHECK(t.hdr->live == 3);

	/* Wildcard: matches every address, after the exact ones. */
	CHECK(porttab_insert(&t, 0, TCP, 443, 3) == 0);
	CHECK(porttab_lookup(&t, IP_A, TCP, 443) == 3);
	CHECK(porttab_lookup(&t, IP_B, TCP, 443) == 3);
	CHECK(porttab_lookup(&t, 0, TCP, 443) == 3);
	CHECK(porttab_lookup(&t, IP_A, UDP, 443) == 0);
	/* The wildcard owner may add specific entries; nobody else may. */
	CHECK(porttab_insert(&t, IP_A, TCP, 443, 3) == 0);
	CHECK(porttab_insert(&t, IP_B, TCP, 443, 4) == -EADDRINUSE);
	CHECK(porttab_insert(&t, 0, TCP, 443, 4) == -EADDRINUSE);
	/* Nor take the wildcard of a port someone has on one address. */
	CHECK(porttab_insert(&t, 0, TCP, 80, 3) == -EADDRINUSE);
	CHECK(porttab_insert(&t, 0, TCP, 80, 2) == 0);
	CHECK(porttab_lookup(&t, 0x01020304, TCP, 80) == 2);
	CHECK(porttab_remove(&t, 0, TCP, 443, 3) == 0);
	CHECK(porttab_lookup(&t, IP_B, TCP, 443) == 0);
	CHECK(porttab_lookup(&t, IP_A, TCP, 443) == 3);

	/* remove_all: every entry of the dead application, whatever its refs. */
	CHECK(porttab_insert(&t, IP_A, UDP, 80, 2) == 0);
	CHECK(porttab_remove_all(&t, 2) == 4);
	CHECK(porttab_lookup(&t, IP_A, TCP, 80) == 0);
	CHECK(porttab_lookup(&t, IP_A, UDP, 80) == 0);
	CHECK(porttab_lookup(&t, IP_B, TCP, 80) == 0);
	CHECK(porttab_lookup(&t, IP_A, TCP, 443) == 3);
	CHECK(porttab_remove_all(&t, 2) == 0);
	CHECK(porttab_remove_all(&t, 3) == 1);
	CHECK(porttab_remove_all(&t, 0) == 0);
	CHECK(t.hdr->live == 0);
	/* Everything was removed: all tombstones must have been reaped. */
	CHECK(t.hdr->tombs == 0);
	for (uint32_t i = 0; i < t.capacity; i++)
		CHECK(t.ents[i].state == PORTTAB_EMPTY);
	free(mem);
}

static void test_full(void)
{
	struct porttab t;
	void *mem = table_new(64, &t);
	int i;

	for (i = 0; i < 48; i++)
		CHECK(porttab_insert(&t, IP_A, TCP, 1000 + i, 1) == 0);
	CHECK(porttab_insert(&t, IP_A, TCP, 2000, 1) == -ENOSPC);
	/* A new reference to an existing entry needs no slot. */
	CHECK(porttab_insert(&t, IP_A, TCP, 1000, 1) == 0);
	for (i = 0; i < 48; i++)
		CHECK(porttab_lookup(&t, IP_A, TCP, 1000 + i) == 1);
	CHECK(porttab_remove(&t, IP_A, TCP, 1001, 1) == 0);
	CHECK(porttab_insert(&t, IP_A, TCP, 2000, 1) == 0);
	CHECK(porttab_insert(&t, IP_A, TCP, 2001, 1) == -ENOSPC);
	CHECK(porttab_lookup(&t, IP_A, TCP, 2000) == 1);
	free(mem);
}

/*
 * A simple reference model: a list of (key, app, refs) with the same rules,
 * checked against the table over many random operations on a small key
 * space (so chains collide, wrap and fill with tombstones).
 */
struct model_ent {
	uint32_t ip;
	uint16_t port;
	uint8_t proto;
	uint32_t app;
	uint32_t refs;
};

#define MODEL_MAX 256

struct model {
	struct model_ent e[MODEL_MAX];
	int n;
	int max_live;
};

static int model_find(struct model *m, uint32_t ip, uint8_t proto, uint16_t port)
{
	for (int i = 0; i < m->n; i++)
		if (m->e[i].ip == ip && m->e[i].port == port && m->e[i].proto == proto)
			return i;
	return -1;
}

static int model_insert(struct model *m, uint32_t ip, uint8_t proto, uint16_t port,
			uint32_t app)
{
	int i = model_find(m, ip, proto, port);

	if (i >= 0) {
		if (m->e[i].app != app)
			return -EADDRINUSE;
		m->e[i].refs++;
		return 0;
	}
	for (i = 0; i < m->n; i++)
		if (m->e[i].port == port && m->e[i].proto == proto &&
		    m->e[i].app != app && (ip == 0 || m->e[i].ip == 0))
			return -EADDRINUSE;
	if (m->n >= m->max_live)
		return -ENOSPC;
	m->e[m->n++] = (struct model_ent){ ip, port, proto, app, 1 };
	return 0;
}

static int model_remove(struct model *m, uint32_t ip, uint8_t proto, uint16_t port,
			uint32_t app)
{
	int i = model_find(m, ip, proto, port);

	if (i < 0)
		return -ENOENT;
	if (m->e[i].app != app)
		return -EPERM;
	if (--m->e[i].refs == 0)
		m->e[i] = m->e[--m->n];
	return 0;
}

static int model_remove_all(struct model *m, uint32_t app)
{
	int n = 0;

	for (int i = 0; i < m->n;) {
		if (m->e[i].app == app) {
			m->e[i] = m->e[--m->n];
			n++;
		} else {
			i++;
		}
	}
	return n;
}

static uint32_t model_lookup(struct model *m, uint32_t ip, uint8_t proto, uint16_t port)
{
	int i = model_find(m, ip, proto, port);

	if (i < 0 && ip != 0)
		i = model_find(m, 0, proto, port);
	return i < 0 ? 0 : m->e[i].app;
}

static void test_model(int ops)
{
	static const uint32_t ips[] = { 0, IP_A, IP_B, 0x0a2a0011u };
	struct porttab t;
	static struct model m;
	void *mem = table_new(128, &t);
	uint32_t rs = 2463534242u;
	int counts[4] = { 0 }, peak_tombs = 0;

	m.n = 0;
	m.max_live = t.max_live;
	for (int op = 0; op < ops; op++) {
		uint32_t ip = ips[rnd(&rs) % 4];
		uint8_t proto = rnd(&rs) % 2 ? TCP : UDP;
		uint16_t port = 1 + rnd(&rs) % 60;
		uint32_t app = 1 + rnd(&rs) % 5;
		uint32_t r = rnd(&rs) % 1000;
		int a, b;

		if (r < 480) {
			a = porttab_insert(&t, ip, proto, port, app);
			b = model_insert(&m, ip, proto, port, app);
			counts[0]++;
		} else if (r < 990) {
			a = porttab_remove(&t, ip, proto, port, app);
			b = model_remove(&m, ip, proto, port, app);
			counts[1]++;
		} else {
			a = porttab_remove_all(&t, app);
			b = model_remove_all(&m, app);
			counts[2]++;
		}
		if (a != b) {
			fprintf(stderr, "op %d: table %d, model %d\n", op, a, b);
			CHECK(0);
			break;
		}
		/* A few lookups after every operation, all of them sometimes. */
		for (int j = 0; j < 4; j++) {
			ip = ips[rnd(&rs) % 4];
			proto = rnd(&rs) % 2 ? TCP : UDP;
			port = 1 + rnd(&rs) % 62;
			if (porttab_lookup(&t, ip, proto, port) !=
			    model_lookup(&m, ip, proto, port)) {
				fprintf(stderr, "op %d: lookup %08x/%u/%u differs\n",
					op, ip, proto, port);
				CHECK(0);
				goto out;
			}
			counts[3]++;
		}
		if ((int)t.hdr->tombs > peak_tombs)
			peak_tombs = t.hdr->tombs;
		if (op % 1000 == 0) {
			uint32_t live = 0, tombs = 0;

			for (uint32_t i = 0; i < t.capacity; i++) {
				live += t.ents[i].state == PORTTAB_LIVE;
				tombs += t.ents[i].state == PORTTAB_TOMB;
			}
			CHECK(live == (uint32_t)m.n && live == t.hdr->live);
			CHECK(tombs == t.hdr->tombs);
			for (int k = 0; k < 4; k++)
				for (int pr = 0; pr < 2; pr++)
					for (port = 1; port <= 62; port++)
						CHECK(porttab_lookup(&t, ips[k], pr ? TCP : UDP, port) ==
						      model_lookup(&m, ips[k], pr ? TCP : UDP, port));
		}
	}
out:
	fprintf(stderr, "model: %d inserts, %d removes, %d remove_all, %d lookups, "
		"peak %d tombstones, %u live at end\n",
		counts[0], counts[1], counts[2], counts[3], peak_tombs, t.hdr->live);
	free(mem);
}

/*
 * A dead writer (a slot left odd) and a garbage table: lookups still end,
 * and keys in untouched slots are still found.
 */
static void test_hostile(void)
{
	struct porttab t;
	void *mem = table_new(64, &t);
	uint32_t rs = 5;

	for (int i = 0; i < 40; i++)
		CHECK(porttab_insert(&t, IP_A, TCP, 100 + i, 7) == 0);
	/* Freeze the slot of port 100 mid-update. */
	for (uint32_t i = 0; i < t.capacity; i++)
		if (t.ents[i].state == PORTTAB_LIVE && t.ents[i].port == 100)
			t.ents[i].seq |= 1;
	CHECK(porttab_lookup(&t, IP_A, TCP, 100) == 0);
	for (int i = 1; i < 40; i++)
		CHECK(porttab_lookup(&t, IP_A, TCP, 100 + i) == 7);
	CHECK(porttab_lookup(&t, IP_A, TCP, 99) == 0);
	/* Every slot frozen: nothing found, nothing loops. */
	for (uint32_t i = 0; i < t.capacity; i++)
		t.ents[i].seq |= 1;
	CHECK(porttab_lookup(&t, IP_A, TCP, 101) == 0);
	/* Garbage everywhere (bad states included). */
	for (size_t i = 0; i < t.capacity * sizeof(struct porttab_entry); i++)
		((unsigned char *)t.ents)[i] = rnd(&rs);
	for (int i = 0; i < 1000; i++)
		(void)porttab_lookup(&t, rnd(&rs), rnd(&rs), rnd(&rs));
	free(mem);
}

/*
 * One writer churning keys of its own while readers look up keys that never
 * change and must always find them, for a bounded time.
 */
#define STABLE 48

struct conc {
	struct porttab t;
	int stop;
	uint64_t lookups;
	uint64_t misses;
	uint64_t writes;
};

static void *conc_reader(void *arg)
{
	struct conc *c = arg;
	uint64_t n = 0, miss = 0;
	uint32_t rs = (uint32_t)(uintptr_t)&n | 1;

	while (!__atomic_load_n(&c->stop, __ATOMIC_RELAXED)) {
		for (int k = 0; k < 64; k++) {
			uint32_t i = rnd(&rs) % STABLE;
			uint32_t app = porttab_lookup(&c->t, IP_A, TCP, 5000 + i);

			if (app != 100 + i % 3)
				miss++;
			/* A key never inserted: always unknown. */
			if (porttab_lookup(&c->t, IP_B, UDP, 9999) != 0)
				miss++;
			n += 2;
		}
	}
	__atomic_fetch_add(&c->lookups, n, __ATOMIC_RELAXED);
	__atomic_fetch_add(&c->misses, miss, __ATOMIC_RELAXED);
	return NULL;
}

static void test_concurrent(double seconds)
{
	static struct conc c;
	pthread_t r[2];
	void *mem = table_new(256, &c.t);
	uint32_t rs = 42;
	double end;

	for (int i = 0; i < STABLE; i++)
		CHECK(porttab_insert(&c.t, IP_A, TCP, 5000 + i, 100 + i % 3) == 0);
	for (int i = 0; i < 2; i++)
		pthread_create(&r[i], NULL, conc_reader, &c);
	end = now() + seconds;
	while (now() < end) {
		for (int k = 0; k < 256; k++) {
			uint32_t ip = rnd(&rs) % 2 ? IP_A : IP_B;
			uint16_t port = 1 + rnd(&rs) % 100;
			uint8_t proto = rnd(&rs) % 2 ? TCP : UDP;
			uint32_t app = 1 + rnd(&rs) % 4;

			if (rnd(&rs) % 2)
				(void)porttab_insert(&c.t, ip, proto, port, app);
			else
				(void)porttab_remove(&c.t, ip, proto, port, app);
			if (rnd(&rs) % 512 == 0)
				(void)porttab_remove_all(&c.t, app);
			c.writes++;
		}
	}
	__atomic_store_n(&c.stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < 2; i++)
		pthread_join(r[i], NULL);
	fprintf(stderr, "concurrent: %" PRIu64 " writes, %" PRIu64 " lookups, %" PRIu64
		" wrong, %u live, %u tombstones at end\n",
		c.writes, c.lookups, c.misses, c.t.hdr->live, c.t.hdr->tombs);
	CHECK(c.misses == 0);
	CHECK(c.lookups > 0);
	free(mem);
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 2.0;

	test_init();
	test_basic();
	test_full();
	test_model(100000);
	test_hostile();
	test_concurrent(secs);
	if (failures) {
		fprintf(stderr, "test_porttab: %d failures\n", failures);
		return 1;
	}
	return 0;
}
