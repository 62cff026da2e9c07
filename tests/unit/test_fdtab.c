/* Unit test: the descriptor table (growth, shared slots, concurrent pins). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ipx/fdtab.h"

#define CHECK(c)                                                              \
	do {                                                                  \
		if (!(c)) {                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #c);                                \
			exit(1);                                              \
		}                                                             \
	} while (0)

#define MAGIC 0x5eed5eedu
#define DEAD 0xdeaddeadu

/* A refcounted object; dead ones are kept (quarantined), so a pin of a
 * freed object is detected instead of being a use after free. */
struct obj {
	atomic_uint magic;
	atomic_int refs;
};

static atomic_int bad_pins;

static void pin(void *o)
{
	struct obj *b = o;

	if (atomic_fetch_add(&b->refs, 1) <= 0 || atomic_load(&b->magic) != MAGIC)
		atomic_fetch_add(&bad_pins, 1);
}

static void put(struct obj *b)
{
	if (atomic_fetch_sub(&b->refs, 1) == 1)
		atomic_store(&b->magic, DEAD);
}

static struct obj *obj_new(void)
{
	struct obj *b = calloc(1, sizeof(*b));

	CHECK(b != NULL);
	atomic_init(&b->magic, MAGIC);
	atomic_init(&b->refs, 1);
	return b;
}

static void test_grow(void)
{
	static const int fds[] = { 0, 1, 5, 1023, 1024, 4097, 65535, 100000, 1 << 20 };
	struct obj *o[sizeof(fds) / sizeof(fds[0])];
	void *old;
	size_t i;

	CHECK(fdtab_get(3, pin) == NULL);
	CHECK(fdtab_swap(-1, NULL, &old) == -EBADF);
	/* Clearing a slot the table never had allocates nothing. */
	CHECK(fdtab_swap(5000000, NULL, &old) == 0 && old == NULL);
	CHECK(fdtab_limit() <= 5000000);
	for (i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		o[i] = obj_new();
		CHECK(fdtab_swap(fds[i], o[i], &old) == 0 && old == NULL);
		CHECK(fdtab_limit() > fds[i]);
	}
	/* Every earlier slot survived each growth. */
	for (i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		CHECK(fdtab_peek(fds[i]) == o[i]);
		CHECK(fdtab_get(fds[i], pin) == o[i]);
		put(o[i]);
	}
	CHECK(fdtab_get(2, pin) == NULL && fdtab_get(1025, pin) == NULL);
	CHECK(fdtab_get((1 << 20) + 1, pin) == NULL);
	for (i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		CHECK(fdtab_swap(fds[i], NULL, &old) == 0 && old == o[i]);
		put(o[i]);
		CHECK(atomic_load(&o[i]->magic) == DEAD);
		CHECK(fdtab_peek(fds[i]) == NULL);
	}
}

/* dup semantics: two slots naming one object, each holding a reference. */
static void test_shared(void)
{
	struct obj *a = obj_new(), *b = obj_new();
	void *old;

	CHECK(fdtab_swap(10, a, &old) == 0 && old == NULL);
	atomic_fetch_add(&a->refs, 1);			/* dup(10) -> 11 */
	CHECK(fdtab_swap(11, a, &old) == 0 && old == NULL);
	CHECK(fdtab_swap(10, NULL, &old) == 0 && old == a);	/* close(10) */
	put(a);
	CHECK(atomic_load(&a->magic) == MAGIC);
	CHECK(fdtab_get(11, pin) == a);
	put(a);
	/* dup2(12, 11) over it: the replaced object comes back once. */
	CHECK(fdtab_swap(11, b, &old) == 0 && old == a);
	put(a);
	CHECK(atomic_load(&a->magic) == DEAD);
	CHECK(fdtab_swap(11, NULL, &old) == 0 && old == b);
	put(b);
	CHECK(atomic_load(&b->magic) == DEAD);
}

#define NFD 64
#define READERS 3
static atomic_bool stop;
static atomic_long lookups, hits;

static void *reader(void *arg)
{
	unsigned int seed = (unsigned int)(uintptr_t)arg;
	struct obj *b;

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		b = fdtab_get(rand_r(&seed) % NFD, pin);
		atomic_fetch_add_explicit(&lookups, 1, memory_order_relaxed);
		if (b != NULL) {
			atomic_fetch_add_explicit(&hits, 1, memory_order_relaxed);
			if (atomic_load(&b->magic) != MAGIC)
				atomic_fetch_add(&bad_pins, 1);
			put(b);
		}
	}
	return NULL;
}

/* Writers replace and clear slots (and grow the table far away) while
 * readers pin what they find: no reader may ever pin a dead object. */
static void test_concurrent(void)
{
	pthread_t t[READERS];
	struct timespec t0, now;
	unsigned int seed = 1;
	long swaps = 0;
	void *old;
	int i, fd, far = 2 << 20;

	for (i = 0; i < READERS; i++)
		CHECK(pthread_create(&t[i], NULL, reader, (void *)(uintptr_t)(i + 1)) == 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		fd = rand_r(&seed) % NFD;
		CHECK(fdtab_swap(fd, (rand_r(&seed) & 1) ? obj_new() : NULL, &old) == 0);
		if (old != NULL)
			put(old);
		if (++swaps % 50000 == 0 && far < (64 << 20)) {
			struct obj *g = obj_new();

			CHECK(fdtab_swap(far, g, &old) == 0);
			far *= 2;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while ((now.tv_sec - t0.tv_sec) * 1000000000L + (now.tv_nsec - t0.tv_nsec) < 1500000000L);
	atomic_store(&stop, true);
	for (i = 0; i < READERS; i++)
		pthread_join(t[i], NULL);
	printf("concurrent: %ld swaps, %ld lookups, %ld hits\n", swaps,
	       atomic_load(&lookups), atomic_load(&hits));
	CHECK(atomic_load(&bad_pins) == 0);
	CHECK(atomic_load(&hits) > 0);
	for (fd = 0; fd < NFD; fd++) {
		CHECK(fdtab_swap(fd, NULL, &old) == 0);
		if (old != NULL)
			put(old);
	}
}

int main(void)
{
	test_grow();
	test_shared();
	test_concurrent();
	CHECK(atomic_load(&bad_pins) == 0);
	printf("fdtab: ok\n");
	return 0;
}
