/* Unit test: epoll bookkeeping (ready list, LT/ET/ONESHOT) with fake members. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ipx/epcore.h"

#define CHECK(c)                                                              \
	do {                                                                  \
		if (!(c)) {                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #c);                                \
			exit(1);                                              \
		}                                                             \
	} while (0)

/* A fake socket: its readiness is a variable; poll may also notify itself
 * (to simulate an event that races with epoll_wait's scan). */
struct fake {
	struct epc_member m;	/* first */
	atomic_uint ready;
	int released;
	int notify_in_poll;
};

static atomic_int rings;

static void ring(struct epc *ep)
{
	atomic_fetch_add(&rings, 1);
}

static uint32_t fake_poll(struct epc_member *m)
{
	struct fake *f = (struct fake *)m;

	if (f->notify_in_poll > 0) {
		f->notify_in_poll--;
		epc_notify(m, atomic_load(&f->ready));
	}
	return atomic_load(&f->ready);
}

static void fake_release(struct epc_member *m)
{
	((struct fake *)m)->released++;
}

static const struct epc_member_ops fake_ops = { fake_poll, fake_release };

static void fake_init(struct fake *f, uint32_t ready)
{
	memset(f, 0, sizeof(*f));
	f->m.ops = &fake_ops;
	atomic_init(&f->ready, ready);
}

static int add(struct epc *ep, struct fake *f, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = { .events = events, .data.u64 = data };

	return epc_add(ep, &f->m, fd, f, &ev);
}

static int collect(struct epc *ep, struct epoll_event *out, int max)
{
	return epc_collect(ep, out, max);
}

static void test_level(void)
{
	struct epc ep;
	struct fake a;
	struct epoll_event out[4];

	epc_init(&ep, ring);
	fake_init(&a, EPOLLIN);
	CHECK(add(&ep, &a, 3, EPOLLIN, 33) == 0);
	CHECK(collect(&ep, out, 4) == 1 && out[0].events == EPOLLIN && out[0].data.u64 == 33);
	/* Level-triggered: reported as long as it is ready. */
	CHECK(collect(&ep, out, 4) == 1);
	CHECK(collect(&ep, out, 4) == 1);
	/* Events outside the interest are not reported... */
	atomic_store(&a.ready, EPOLLOUT);
	CHECK(collect(&ep, out, 4) == 0);
	CHECK(!epc_has_ready(&ep));
	/* ...and do not queue it. */
	epc_notify(&a.m, EPOLLOUT);
	CHECK(!epc_has_ready(&ep));
	/* EPOLLERR and EPOLLHUP always are. */
	atomic_store(&a.ready, EPOLLHUP | EPOLLOUT);
	epc_notify(&a.m, EPOLLHUP | EPOLLOUT);
	CHECK(collect(&ep, out, 4) == 1 && out[0].events == EPOLLHUP);
	CHECK(epc_del(&ep, 3, &a) == &a.m);
	epc_put(&a.m);
	CHECK(a.released == 1);
	epc_fini(&ep);
}

static void test_edge(void)
{
	struct epc ep;
	struct fake a;
	struct epoll_event out[4];

	epc_init(&ep, ring);
	fake_init(&a, EPOLLIN | EPOLLOUT);
	/* Already ready at ADD: reported once. */
	CHECK(add(&ep, &a, 4, EPOLLIN | EPOLLOUT | EPOLLET, 44) == 0);
	CHECK(collect(&ep, out, 4) == 1 && out[0].events == (EPOLLIN | EPOLLOUT));
	CHECK(collect(&ep, out, 4) == 0);
	/* A new notify (more data) is a new edge, even with the same mask. */
	epc_notify(&a.m, EPOLLIN | EPOLLOUT);
	CHECK(collect(&ep, out, 4) == 1);
	CHECK(collect(&ep, out, 4) == 0);
	/* A notify whose readiness is gone by the time of the scan: none. */
	epc_notify(&a.m, EPOLLIN);
	atomic_store(&a.ready, 0);
	CHECK(collect(&ep, out, 4) == 0);
	CHECK(!epc_has_ready(&ep));
	/* A notify racing with the scan keeps it queued: one more report. */
	atomic_store(&a.ready, EPOLLIN);
	epc_notify(&a.m, EPOLLIN);
	a.notify_in_poll = 1;
	CHECK(collect(&ep, out, 4) == 1);
	CHECK(epc_has_ready(&ep));
	CHECK(collect(&ep, out, 4) == 1);
	CHECK(collect(&ep, out, 4) == 0);
	/* MOD re-checks: a ready member is reported once more. */
	{
		struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u64 = 45 };

		CHECK(epc_mod(&ep, 4, &a, &ev) == 0);
	}
	CHECK(collect(&ep, out, 4) == 1 && out[0].data.u64 == 45 && out[0].events == EPOLLIN);
	CHECK(collect(&ep, out, 4) == 0);
	CHECK(epc_del(&ep, 4, &a) == &a.m);
	epc_put(&a.m);
	CHECK(a.released == 1);
	epc_fini(&ep);
}

static void test_oneshot(void)
{
	struct epc ep;
	struct fake a;
	struct epoll_event out[4], ev = { .events = EPOLLIN | EPOLLONESHOT, .data.u64 = 7 };

	epc_init(&ep, ring);
	fake_init(&a, EPOLLIN);
	CHECK(add(&ep, &a, 5, EPOLLIN | EPOLLONESHOT, 5) == 0);
	CHECK(collect(&ep, out, 4) == 1);
	/* Disarmed: neither level nor new notifies report it. */
	CHECK(collect(&ep, out, 4) == 0);
	epc_notify(&a.m, EPOLLIN);
	CHECK(collect(&ep, out, 4) == 0);
	/* MOD re-arms. */
	CHECK(epc_mod(&ep, 5, &a, &ev) == 0);
	CHECK(collect(&ep, out, 4) == 1 && out[0].data.u64 == 7);
	CHECK(collect(&ep, out, 4) == 0);
	/* Re-armed but not ready: nothing until it becomes ready. */
	atomic_store(&a.ready, 0);
	CHECK(epc_mod(&ep, 5, &a, &ev) == 0);
	CHECK(collect(&ep, out, 4) == 0);
	atomic_store(&a.ready, EPOLLIN);
	epc_notify(&a.m, EPOLLIN);
	CHECK(collect(&ep, out, 4) == 1);
	CHECK(epc_del(&ep, 5, &a) == &a.m);
	epc_put(&a.m);
	epc_fini(&ep);
}

static void test_ctl_errors(void)
{
	struct epc ep;
	struct fake a, b, c;
	struct epoll_event ev = { .events = EPOLLIN };
	struct epoll_event out[4];

	epc_init(&ep, ring);
	fake_init(&a, EPOLLIN);
	fake_init(&b, 0);
	fake_init(&c, 0);
	CHECK(add(&ep, &a, 6, EPOLLIN, 6) == 0);
	/* The same (fd, description) twice. */
	CHECK(epc_add(&ep, &b.m, 6, &a, &ev) == -EEXIST);
	/* dup'ed fd of the same description: a separate entry, as Linux. */
	CHECK(epc_add(&ep, &b.m, 7, &a, &ev) == 0);
	/* The same number naming another description: separate too. */
	CHECK(epc_add(&ep, &c.m, 6, &c, &ev) == 0);
	CHECK(epc_mod(&ep, 8, &a, &ev) == -ENOENT);
	CHECK(epc_del(&ep, 8, &a) == NULL);
	CHECK(epc_add(&ep, &b.m, 9, &b, NULL) == -EINVAL);
	CHECK(ep.nmembers == 3);
	/* Only a (its poll says ready) is reported, b polls its own fake. */
	CHECK(collect(&ep, out, 4) == 1);
	/* DEL while queued: gone from the ready list at once. */
	CHECK(epc_del(&ep, 6, &a) == &a.m);
	epc_put(&a.m);
	CHECK(!epc_has_ready(&ep) || collect(&ep, out, 4) == 0);
	CHECK(epc_del(&ep, 7, &a) == &b.m);
	epc_put(&b.m);
	CHECK(epc_pop(&ep) == &c.m);
	epc_put(&c.m);
	CHECK(epc_pop(&ep) == NULL && ep.nmembers == 0);
	CHECK(a.released == 1 && b.released == 1 && c.released == 1);
	epc_fini(&ep);
}

static void test_max_fair(void)
{
	struct epc ep;
	struct fake f[5];
	struct epoll_event out[2];
	int seen[5] = { 0 }, i, n, round;

	epc_init(&ep, ring);
	for (i = 0; i < 5; i++) {
		fake_init(&f[i], EPOLLIN);
		CHECK(add(&ep, &f[i], 10 + i, EPOLLIN, (uint64_t)i) == 0);
	}
	for (round = 0; round < 3; round++) {
		n = collect(&ep, out, 2);
		CHECK(n == 2);
		for (i = 0; i < n; i++)
			seen[out[i].data.u64]++;
	}
	/* Six reports over five level-triggered members: nobody starves. */
	for (i = 0; i < 5; i++)
		CHECK(seen[i] >= 1);
	for (i = 0; i < 5; i++) {
		CHECK(epc_del(&ep, 10 + i, &f[i]) == &f[i].m);
		epc_put(&f[i].m);
	}
	epc_fini(&ep);
}

static void test_ring(void)
{
	struct epc ep;
	struct fake a;
	struct epoll_event out[1];

	epc_init(&ep, ring);
	fake_init(&a, 0);
	atomic_store(&rings, 0);
	CHECK(add(&ep, &a, 3, EPOLLIN, 0) == 0);
	CHECK(collect(&ep, out, 1) == 0);
	/* Nobody sleeps: no doorbell. */
	epc_notify(&a.m, EPOLLIN);
	CHECK(atomic_load(&rings) == 0);
	epc_sleep_begin(&ep);
	epc_notify(&a.m, EPOLLIN);
	CHECK(atomic_load(&rings) == 1);
	epc_sleep_end(&ep);
	/* Watched from outside (nested): always. */
	atomic_store(&ep.always_ring, true);
	epc_notify(&a.m, EPOLLIN);
	CHECK(atomic_load(&rings) == 2);
	CHECK(epc_del(&ep, 3, &a) == &a.m);
	epc_put(&a.m);
	epc_fini(&ep);
}

/* Concurrency: notifiers, a collector and a DEL/ADD churn on one instance. */
#define NM 16
static struct epc cep;
static struct fake cf[NM];
static atomic_bool cstop;

static void *notifier(void *arg)
{
	unsigned int seed = 7;
	int i;

	while (!atomic_load(&cstop)) {
		i = rand_r(&seed) % NM;
		atomic_store(&cf[i].ready, rand_r(&seed) & 1 ? EPOLLIN : 0);
		epc_notify(&cf[i].m, EPOLLIN);
	}
	return NULL;
}

static void *collector(void *arg)
{
	struct epoll_event out[8];
	long n = 0;

	while (!atomic_load(&cstop))
		n += collect(&cep, out, 8);
	return (void *)n;
}

static void test_concurrent(void)
{
	pthread_t tn, tc;
	struct epoll_event ev;
	struct epc_member *m;
	struct timespec t0, now;
	int i, k;
	void *res;

	epc_init(&cep, ring);
	for (i = 0; i < NM; i++) {
		fake_init(&cf[i], EPOLLIN);
		CHECK(add(&cep, &cf[i], i, i % 2 ? EPOLLIN | EPOLLET : EPOLLIN, (uint64_t)i) == 0);
	}
	CHECK(pthread_create(&tn, NULL, notifier, NULL) == 0);
	CHECK(pthread_create(&tc, NULL, collector, NULL) == 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (k = 0;; k++) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - t0.tv_sec) * 1000000000L + now.tv_nsec - t0.tv_nsec > 500000000L)
			break;
		i = k % NM;
		ev.events = (k & 2) ? EPOLLIN | EPOLLONESHOT : EPOLLIN;
		ev.data.u64 = (uint64_t)i;
		if (k & 1)
			CHECK(epc_mod(&cep, i, &cf[i], &ev) == 0);
	}
	atomic_store(&cstop, true);
	pthread_join(tn, NULL);
	pthread_join(tc, &res);
	printf("concurrent: %d mods, %ld reports\n", k, (long)res);
	CHECK((long)res > 0);
	while ((m = epc_pop(&cep)) != NULL)
		epc_put(m);
	for (i = 0; i < NM; i++)
		CHECK(cf[i].released == 1);
	epc_fini(&cep);
}

int main(void)
{
	test_level();
	test_edge();
	test_oneshot();
	test_ctl_errors();
	test_max_fair();
	test_ring();
	test_concurrent();
	printf("epoll core: ok\n");
	return 0;
}
