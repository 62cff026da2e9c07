/* The descriptor table: chunked, grown on demand, lock-free lookups. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "ipx/fdtab.h"

struct fdtab_slot {
	_Atomic(void *) obj;
	/* Lookups between their announcement and their pin (see fdtab_get). */
	atomic_uint readers;
};

struct fdtab_dir {
	size_t nchunks;
	struct fdtab_dir *retired;	/* the directory this one replaced */
	_Atomic(struct fdtab_slot *) chunk[];
};

/* Acquire loads of fdtab_cur pair with the release store in fdtab_grow(),
 * so a reader of a new directory sees its copied chunk pointers. */
static _Atomic(struct fdtab_dir *) fdtab_cur;
static pthread_mutex_t fdtab_lock = PTHREAD_MUTEX_INITIALIZER;

static struct fdtab_slot *fdtab_slot(int fd)
{
	struct fdtab_dir *d;
	struct fdtab_slot *c;
	size_t ci;

	if (fd < 0)
		return NULL;
	d = atomic_load_explicit(&fdtab_cur, memory_order_acquire);
	ci = (size_t)fd >> FDTAB_CHUNK_SHIFT;
	if (d == NULL || ci >= d->nchunks)
		return NULL;
	/* Pairs with the release store of a new chunk in fdtab_slot_make(). */
	c = atomic_load_explicit(&d->chunk[ci], memory_order_acquire);
	if (c == NULL)
		return NULL;
	return &c[fd & (FDTAB_CHUNK - 1)];
}

/* Called with fdtab_lock held: make sure fd's chunk exists. */
static struct fdtab_slot *fdtab_slot_make(int fd)
{
	struct fdtab_dir *d, *nd;
	struct fdtab_slot *c;
	size_t ci = (size_t)fd >> FDTAB_CHUNK_SHIFT, n, i;

	d = atomic_load_explicit(&fdtab_cur, memory_order_relaxed);
	if (d == NULL || ci >= d->nchunks) {
		n = d ? d->nchunks : 4;
		while (n <= ci)
			n *= 2;
		nd = calloc(1, sizeof(*nd) + n * sizeof(nd->chunk[0]));
		if (nd == NULL)
			return NULL;
		nd->nchunks = n;
		nd->retired = d;
		for (i = 0; d && i < d->nchunks; i++)
			atomic_init(&nd->chunk[i],
				    atomic_load_explicit(&d->chunk[i],
							 memory_order_relaxed));
		/* Readers still on d keep using it; it is never freed. */
		atomic_store_explicit(&fdtab_cur, nd, memory_order_release);
		d = nd;
	}
	c = atomic_load_explicit(&d->chunk[ci], memory_order_relaxed);
	if (c == NULL) {
		c = calloc(FDTAB_CHUNK, sizeof(*c));
		if (c == NULL)
			return NULL;
		atomic_store_explicit(&d->chunk[ci], c, memory_order_release);
	}
	return &c[fd & (FDTAB_CHUNK - 1)];
}

void *fdtab_peek(int fd)
{
	struct fdtab_slot *s = fdtab_slot(fd);

	return s ? atomic_load_explicit(&s->obj, memory_order_acquire) : NULL;
}

/*
 * The pin protocol.  A lookup increments readers, then loads obj; a swap
 * exchanges obj, then waits for readers to drain.  All four are seq_cst, so
 * in their single total order a lookup that loaded the old object had
 * incremented readers before the exchange, and the swapper's later load of
 * readers sees that increment until the lookup has pinned and decremented
 * (release, paired with the swapper's seq_cst load).
 */
void *fdtab_get(int fd, void (*pin)(void *obj))
{
	struct fdtab_slot *s = fdtab_slot(fd);
	void *o;

	/* Fast path for descriptors that are not ours: one load. */
	if (s == NULL || atomic_load_explicit(&s->obj, memory_order_relaxed) == NULL)
		return NULL;
	atomic_fetch_add(&s->readers, 1);
	o = atomic_load(&s->obj);
	if (o != NULL)
		pin(o);
	atomic_fetch_sub_explicit(&s->readers, 1, memory_order_release);
	return o;
}

int fdtab_swap(int fd, void *obj, void **old)
{
	struct fdtab_slot *s;
	unsigned int spins = 0;

	*old = NULL;
	if (fd < 0)
		return -EBADF;
	s = fdtab_slot(fd);
	if (s == NULL) {
		if (obj == NULL)
			return 0;
		pthread_mutex_lock(&fdtab_lock);
		s = fdtab_slot_make(fd);
		pthread_mutex_unlock(&fdtab_lock);
		if (s == NULL)
			return -ENOMEM;
	}
	*old = atomic_exchange(&s->obj, obj);
	if (*old != NULL) {
		/* A reader's window is a few instructions; yield in case it
		 * was preempted inside it. */
		while (atomic_load(&s->readers) != 0)
			if (++spins > 64)
				sched_yield();
	}
	return 0;
}

int fdtab_limit(void)
{
	struct fdtab_dir *d = atomic_load_explicit(&fdtab_cur, memory_order_acquire);
	size_t n;

	if (d == NULL)
		return 0;
	n = d->nchunks << FDTAB_CHUNK_SHIFT;
	return n > (size_t)1 << 30 ? 1 << 30 : (int)n;
}
