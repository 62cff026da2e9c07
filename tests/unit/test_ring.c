/* Unit test: the app<->netd shared-memory ring ABI (include/libretto/ring.h). */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "libretto/ring.h"

#include "check.h"


static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A region in ordinary memory; the tests need no memfd. */
static void *region_new(uint32_t nframes, uint32_t frame_size, uint32_t ring_size,
			struct ring_region_hdr *hdr)
{
	size_t len = ring_region_size(nframes, frame_size, ring_size);
	void *mem = NULL;

	if (len == 0 || posix_memalign(&mem, RING_PAGE, len) != 0) {
		fprintf(stderr, "cannot allocate a test region\n");
		exit(1);
	}
	memset(mem, 0xa5, len); /* init must not depend on zeroed memory */
	if (ring_region_init(mem, len, nframes, frame_size, ring_size) != 0 ||
	    ring_region_check(mem, len, hdr) != 0) {
		fprintf(stderr, "cannot format a test region\n");
		exit(1);
	}
	return mem;
}

static void test_region(void)
{
	struct ring_region_hdr h, *sh;
	void *mem;
	size_t len;
	char small[RING_PAGE] __attribute__((aligned(64)));

	/* Parameter validation. */
	CHECK(ring_region_size(16, 2048, 0) == 0);
	CHECK(ring_region_size(16, 2048, 3) == 0);
	CHECK(ring_region_size(16, 2048, 2) == 0);
	CHECK(ring_region_size(16, 2048, RING_MAX_SIZE * 2) == 0);
	CHECK(ring_region_size(16, 2000, 64) == 0);
	CHECK(ring_region_size(16, 128, 64) == 0);
	CHECK(ring_region_size(16, 131072, 64) == 0);
	CHECK(ring_region_size(0, 2048, 64) == 0);
	CHECK(ring_region_size(UINT32_MAX, 65536, 64) == 0);
	CHECK(ring_region_size((1u << 30) / 2048 + 1, 2048, 64) == 0);
	CHECK(ring_region_size((1u << 30) / 2048, 2048, 64) != 0);

	/* 128 + 4 * (128 + 64 * 16) = 4736 -> frames at 8192. */
	len = ring_region_size(16, 2048, 64);
	CHECK(len == 8192 + 16 * 2048);
	CHECK(ring_region_size(1, 256, 4) == 8192);

	CHECK(ring_region_init(small, sizeof(small), 16, 2048, 64) == -ENOSPC);
	CHECK(ring_region_init(small + 1, sizeof(small) - 1, 1, 256, 4) == -EINVAL);
	CHECK(ring_region_init(small, sizeof(small), 1, 256, 3) == -EINVAL);
	CHECK(ring_region_init(NULL, sizeof(small), 1, 256, 4) == -EINVAL);

	mem = region_new(16, 2048, 64, &h);
	sh = mem;
	CHECK(h.magic == RING_MAGIC && h.abi_version == RING_ABI_VERSION);
	CHECK(h.ring_off[RING_FILL] == 128);
	CHECK(h.ring_off[RING_RX] == 128 + 1152);
	CHECK(h.ring_off[RING_TX] == 128 + 2 * 1152);
	CHECK(h.ring_off[RING_COMP] == 128 + 3 * 1152);
	CHECK(h.frames_off == 8192 && h.frames_len == 16 * 2048);
	CHECK(h.generation == 1 && h.flags == 0);
	CHECK(ring_region_generation(mem) == 1);
	CHECK(ring_region_new_generation(mem) == 2 && ring_region_generation(mem) == 2);
	for (int i = 0; i < RING_COUNT; i++) {
		struct ring_ctl *c = ring_ctl_of(mem, &h, i);

		CHECK(c->producer == 0 && c->consumer == 0 && c->flags == 0);
	}

	/* ring_region_check() refuses every inconsistent header. */
	CHECK(ring_region_check(mem, len - 1, &h) == -EINVAL);
	sh->abi_version = 2;
	CHECK(ring_region_check(mem, len, &h) == -EPROTO);
	sh->abi_version = RING_ABI_VERSION;
	sh->nframes = 17;
	CHECK(ring_region_check(mem, len, &h) == -EINVAL);
	sh->nframes = 16;
	sh->frames_off = 4096;
	CHECK(ring_region_check(mem, len, &h) == -EINVAL);
	sh->frames_off = 8192;
	sh->ring_off[RING_TX] += 64;
	CHECK(ring_region_check(mem, len, &h) == -EINVAL);
	sh->ring_off[RING_TX] -= 64;
	sh->magic = 0;
	CHECK(ring_region_check(mem, len, &h) == -EPROTO);
	sh->magic = RING_MAGIC;
	CHECK(ring_region_check(mem, len, &h) == 0);
	free(mem);
}

/* Full, empty and wrap at 2^32, one thread, both handles on one ring. */
static void test_single_thread(void)
{
	struct ring_region_hdr h;
	struct ring_prod p;
	struct ring_cons c;
	struct ring_ctl *ctl;
	uint32_t idx, n, i, seq = 0, expect = 0, start;
	void *mem = region_new(64, 256, 8, &h);

	ctl = ring_ctl_of(mem, &h, RING_TX);
	start = UINT32_MAX - 20;
	ctl->producer = ctl->consumer = start;
	CHECK(ring_prod_attach(&p, mem, &h, RING_TX) == 0);
	CHECK(ring_cons_attach(&c, mem, &h, RING_TX) == 0);
	CHECK(ring_prod_attach(&p, mem, &h, 4) == -EINVAL);
	CHECK(ring_cons_attach(&c, mem, &h, -1) == -EINVAL);
	CHECK(ring_prod_attach(&p, mem, &h, RING_TX) == 0);
	CHECK(ring_cons_attach(&c, mem, &h, RING_TX) == 0);

	for (int round = 0; round < 12; round++) {
		/* Empty. */
		CHECK(ring_cons_peek(&c, 8, &idx) == 0);
		CHECK(ring_cons_avail(&c, 1) == 0);
		CHECK(ring_prod_free(&p, 8) == 8);
		/* Fill completely, in two reservations. */
		n = ring_prod_reserve(&p, 3, &idx);
		CHECK(n == 3);
		for (i = 0; i < n; i++)
			*ring_prod_desc(&p, idx + i) = (struct ring_desc){ 256ull * i, seq++, 0 };
		n = ring_prod_reserve(&p, 100, &idx);
		CHECK(n == 5);
		for (i = 0; i < n; i++)
			*ring_prod_desc(&p, idx + i) = (struct ring_desc){ 256ull * i, seq++, 0 };
		/* Nothing is visible before submit. */
		CHECK(ring_cons_avail(&c, 1) == 0);
		ring_prod_submit(&p, 8);
		/* Full. */
		CHECK(ring_prod_reserve(&p, 1, &idx) == 0);
		CHECK(ring_prod_free(&p, 1) == 0);
		/* Peek in batches, release partially: the space returns only
		 * when released. */
		n = ring_cons_peek(&c, 5, &idx);
		CHECK(n == 5);
		for (i = 0; i < n; i++) {
			struct ring_desc d;

			ring_cons_read(&c, idx + i, &d);
			CHECK(d.len == expect);
			expect++;
		}
		CHECK(ring_prod_free(&p, 1) == 0);
		ring_cons_release(&c, 2);
		CHECK(ring_prod_free(&p, 1) == 2);
		ring_cons_release(&c, 3);
		n = ring_cons_peek(&c, 8, &idx);
		CHECK(n == 3);
		for (i = 0; i < n; i++) {
			struct ring_desc d;

			ring_cons_read(&c, idx + i, &d);
			CHECK(d.len == expect);
			expect++;
		}
		ring_cons_release(&c, n);
		CHECK(ring_prod_free(&p, 8) == 8);
	}
	/* 12 rounds of 8 from UINT32_MAX - 20 crossed 2^32. */
	CHECK(ctl->producer == start + 96 && ctl->producer < start);
	CHECK(ctl->consumer == ctl->producer);
	CHECK(p.errors == 0 && c.errors == 0);

	/* A producer index more than ring_size ahead (a hostile app) is
	 * ignored and counted; so is one moving backwards. */
	ctl->producer = c.cons + 9;
	CHECK(ring_cons_avail(&c, 1) == 0 && c.errors == 1);
	ctl->producer = c.cons - 1;
	CHECK(ring_cons_peek(&c, 1, &idx) == 0 && c.errors == 2);
	ctl->producer = c.cons + 8;
	CHECK(ring_cons_avail(&c, 1) == 8);
	ctl->producer = c.cons + 2;  /* backwards from an accepted 8 */
	CHECK(ring_cons_avail(&c, 9) == 8 && c.errors == 3);
	/* A consumer index ahead of the producer is ignored as well. */
	ctl->producer = p.prod;
	ctl->consumer = p.prod + 5;
	CHECK(ring_prod_free(&p, 9) == 8 && p.errors == 1);
	ctl->consumer = p.prod;
	/* Attach refuses inconsistent indices. */
	ctl->producer = ctl->consumer + 9;
	CHECK(ring_cons_attach(&c, mem, &h, RING_TX) == -EPROTO);
	CHECK(ring_prod_attach(&p, mem, &h, RING_TX) == -EPROTO);
	free(mem);
}

static void test_desc_valid(void)
{
	struct ring_region_hdr h;
	void *mem = region_new(4, 2048, 4, &h);
	struct ring_desc d;

#define V(o, l) (d = (struct ring_desc){ (o), (l), 0 }, ring_desc_valid(&h, &d))
	CHECK(V(0, 1));
	CHECK(V(0, 2048));
	CHECK(V(3 * 2048, 2048));
	CHECK(V(3 * 2048 + 2047, 1));
	CHECK(V(100, 1948));
	CHECK(!V(0, 0));                      /* empty */
	CHECK(!V(0, 2049));                   /* longer than a frame */
	CHECK(!V(0, UINT32_MAX));
	CHECK(!V(100, 1949));                 /* crosses into the next frame */
	CHECK(!V(3 * 2048 + 1, 2048));        /* crosses the end of the area */
	CHECK(!V(4 * 2048, 1));               /* just past the end */
	CHECK(!V(4 * 2048 - 1, 2));
	CHECK(!V(UINT64_MAX, 1));             /* offset + len would wrap */
	CHECK(!V(UINT64_MAX - 2047, 2048));
	CHECK(!V(UINT64_MAX - 2047, 4096));
	CHECK(!V(1ull << 63, 16));
	CHECK(!V((1ull << 32) + 100, 16));    /* beyond 32-bit truncation */
#undef V
	free(mem);
}

/*
 * Two threads, all four rings.  The "app" thread sends sequence numbers on
 * tx (in the frame and in the descriptor), recycles tx frames from comp,
 * lends frames on fill and checks the sequence numbers that come back on rx.
 * The "netd" thread checks tx, returns the frames on comp, and fills lent
 * frames with its own sequence numbers onto rx.
 */
#define STRESS_FRAMES 128
#define STRESS_FSIZE 256

struct stress {
	void *mem;
	struct ring_region_hdr h;
	uint64_t count;
	uint64_t tx_done, rx_done;
	double deadline;
};

static uint32_t rnd(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void *stress_app(void *arg)
{
	struct stress *st = arg;
	struct ring_prod tx, fill;
	struct ring_cons rx, comp;
	uint64_t free_tx[STRESS_FRAMES / 2];
	unsigned nfree = 0;
	uint64_t seq = 0, rseq = 0;
	uint32_t rs = 12345, idx, n, i;
	char *frames = ring_frames(st->mem, &st->h);
	unsigned long spins = 0;

	if (ring_prod_attach(&tx, st->mem, &st->h, RING_TX) ||
	    ring_prod_attach(&fill, st->mem, &st->h, RING_FILL) ||
	    ring_cons_attach(&rx, st->mem, &st->h, RING_RX) ||
	    ring_cons_attach(&comp, st->mem, &st->h, RING_COMP)) {
		CHECK(0);
		return NULL;
	}
	for (i = 0; i < STRESS_FRAMES / 2; i++)
		free_tx[nfree++] = (uint64_t)i * STRESS_FSIZE;
	/* The other half is lent to netd through fill. */
	n = ring_prod_reserve(&fill, STRESS_FRAMES / 2, &idx);
	for (i = 0; i < n; i++)
		*ring_prod_desc(&fill, idx + i) = (struct ring_desc){
			(uint64_t)(STRESS_FRAMES / 2 + i) * STRESS_FSIZE, STRESS_FSIZE, 0 };
	ring_prod_submit(&fill, n);
	{
		/* Frames the fill ring had no room for wait here. */
		uint64_t pend[STRESS_FRAMES / 2];
		unsigned npend = 0;

		for (i = n; i < STRESS_FRAMES / 2; i++)
			pend[npend++] = (uint64_t)(STRESS_FRAMES / 2 + i) * STRESS_FSIZE;

		/* Until every tx frame is back too: netd needs comp room to
		 * finish the last tx entries. */
		while (seq < st->count || rseq < st->count || nfree < STRESS_FRAMES / 2) {
			int progress = 0;

			if (now() > st->deadline) {
				CHECK(!"stress deadline");
				break;
			}
			/* Completions back to the free list. */
			n = ring_cons_peek(&comp, 1 + rnd(&rs) % 32, &idx);
			for (i = 0; i < n; i++) {
				struct ring_desc d;

				ring_cons_read(&comp, idx + i, &d);
				CHECK(ring_desc_valid(&st->h, &d));
				free_tx[nfree++] = d.offset;
			}
			ring_cons_release(&comp, n);
			progress |= n;
			/* Send. */
			if (seq < st->count && nfree) {
				uint32_t want = 1 + rnd(&rs) % 16;

				if (want > nfree)
					want = nfree;
				if (want > st->count - seq)
					want = st->count - seq;
				n = ring_prod_reserve(&tx, want, &idx);
				for (i = 0; i < n; i++) {
					uint64_t off = free_tx[--nfree];

					memcpy(frames + off, &seq, sizeof(seq));
					*ring_prod_desc(&tx, idx + i) = (struct ring_desc){
						off, sizeof(seq), (uint32_t)seq };
					seq++;
				}
				ring_prod_submit(&tx, n);
				progress |= n;
			}
			/* Receive and lend the frames again. */
			n = ring_cons_peek(&rx, 1 + rnd(&rs) % 32, &idx);
			for (i = 0; i < n; i++) {
				struct ring_desc d;
				uint64_t v;

				ring_cons_read(&rx, idx + i, &d);
				CHECK(ring_desc_valid(&st->h, &d) && d.len == sizeof(v));
				memcpy(&v, frames + d.offset, sizeof(v));
				if (v != rseq || d.flags != (uint32_t)~rseq) {
					fprintf(stderr, "rx seq %" PRIu64 " expected %" PRIu64 "\n", v, rseq);
					CHECK(0);
					return NULL;
				}
				rseq++;
				pend[npend++] = d.offset;
			}
			ring_cons_release(&rx, n);
			progress |= n;
			if (npend) {
				uint32_t m = ring_prod_reserve(&fill, npend, &idx);

				for (i = 0; i < m; i++)
					*ring_prod_desc(&fill, idx + i) = (struct ring_desc){
						pend[--npend], STRESS_FSIZE, 0 };
				ring_prod_submit(&fill, m);
			}
			if (!progress && (++spins & 3) == 0)
				sched_yield();
		}
	}
	__atomic_store_n(&st->tx_done, seq, __ATOMIC_RELEASE);
	__atomic_store_n(&st->rx_done, rseq, __ATOMIC_RELEASE);
	CHECK(tx.errors + fill.errors + rx.errors + comp.errors == 0);
	return NULL;
}

static void *stress_netd(void *arg)
{
	struct stress *st = arg;
	struct ring_cons tx, fill;
	struct ring_prod rx, comp;
	uint64_t seq = 0, rseq = 0;
	uint32_t rs = 777, idx, n, m, i, lim;
	char *frames = ring_frames(st->mem, &st->h);
	unsigned long spins = 0;

	if (ring_cons_attach(&tx, st->mem, &st->h, RING_TX) ||
	    ring_cons_attach(&fill, st->mem, &st->h, RING_FILL) ||
	    ring_prod_attach(&rx, st->mem, &st->h, RING_RX) ||
	    ring_prod_attach(&comp, st->mem, &st->h, RING_COMP)) {
		CHECK(0);
		return NULL;
	}
	while (seq < st->count || rseq < st->count) {
		int progress = 0;

		if (now() > st->deadline) {
			CHECK(!"stress deadline");
			break;
		}
		/* tx -> comp: never take more than comp can take back. */
		n = ring_prod_free(&comp, 1);
		lim = 1 + rnd(&rs) % 32;
		if (n > lim)
			n = lim;
		n = ring_cons_peek(&tx, n, &idx);
		if (n) {
			uint32_t cidx;

			m = ring_prod_reserve(&comp, n, &cidx);
			CHECK(m == n);
			for (i = 0; i < n; i++) {
				struct ring_desc d;
				uint64_t v;

				ring_cons_read(&tx, idx + i, &d);
				CHECK(ring_desc_valid(&st->h, &d) && d.len == sizeof(v));
				memcpy(&v, frames + d.offset, sizeof(v));
				if (v != seq || d.flags != (uint32_t)seq) {
					fprintf(stderr, "tx seq %" PRIu64 " expected %" PRIu64 "\n", v, seq);
					CHECK(0);
					return NULL;
				}
				seq++;
				*ring_prod_desc(&comp, cidx + i) = d;
			}
			ring_cons_release(&tx, n);
			ring_prod_submit(&comp, n);
			progress = 1;
		}
		/* fill -> rx. */
		if (rseq < st->count) {
			n = ring_prod_free(&rx, 1);
			lim = 1 + rnd(&rs) % 32;
			if (n > lim)
				n = lim;
			if (n > st->count - rseq)
				n = st->count - rseq;
			n = ring_cons_peek(&fill, n, &idx);
			if (n) {
				uint32_t ridx;

				m = ring_prod_reserve(&rx, n, &ridx);
				CHECK(m == n);
				for (i = 0; i < n; i++) {
					struct ring_desc d;

					ring_cons_read(&fill, idx + i, &d);
					CHECK(ring_desc_valid(&st->h, &d));
					memcpy(frames + d.offset, &rseq, sizeof(rseq));
					*ring_prod_desc(&rx, ridx + i) = (struct ring_desc){
						d.offset, sizeof(rseq), (uint32_t)~rseq };
					rseq++;
				}
				ring_cons_release(&fill, n);
				ring_prod_submit(&rx, n);
				progress = 1;
			}
		}
		if (!progress && (++spins & 3) == 0)
			sched_yield();
	}
	CHECK(tx.errors + fill.errors + rx.errors + comp.errors == 0);
	return NULL;
}

static void test_stress(uint64_t count)
{
	struct stress st = { 0 };
	pthread_t a, b;
	double t0 = now();

	st.mem = region_new(STRESS_FRAMES, STRESS_FSIZE, 16, &st.h);
	/* Start near the wrap so the stress crosses 2^32 as well. */
	for (int i = 0; i < RING_COUNT; i++) {
		struct ring_ctl *c = ring_ctl_of(st.mem, &st.h, i);

		c->producer = c->consumer = UINT32_MAX - 1000;
	}
	st.count = count;
	st.deadline = t0 + 15;
	pthread_create(&a, NULL, stress_app, &st);
	pthread_create(&b, NULL, stress_netd, &st);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	CHECK(st.tx_done == count && st.rx_done == count);
	fprintf(stderr, "stress: %" PRIu64 " tx + %" PRIu64 " rx descriptors in %.2f s\n",
		st.tx_done, st.rx_done, now() - t0);
	free(st.mem);
}

/*
 * The doorbell protocol.  The consumer sleeps on an eventfd whenever the tx
 * ring is empty; the producer sends bursts with pauses of varying length so
 * the consumer keeps going to sleep, and rings only when NEED_WAKEUP is set.
 * A consumer asleep for 1 s with entries in the ring is a lost wake-up.
 */
struct wake {
	void *mem;
	struct ring_region_hdr h;
	int efd;
	int stop;
	uint64_t sent;
	uint64_t got;
	uint64_t sleeps;
	uint64_t wakeups;
	uint64_t lost;
};

static void *wake_consumer(void *arg)
{
	struct wake *w = arg;
	struct ring_cons c;
	uint32_t idx, n, i;
	uint64_t expect = 0;

	if (ring_cons_attach(&c, w->mem, &w->h, RING_TX)) {
		CHECK(0);
		return NULL;
	}
	for (;;) {
		n = ring_cons_peek(&c, 16, &idx);
		for (i = 0; i < n; i++) {
			struct ring_desc d;

			ring_cons_read(&c, idx + i, &d);
			CHECK(d.flags == (uint32_t)expect);
			expect++;
		}
		ring_cons_release(&c, n);
		if (n)
			continue;
		if (ring_cons_prepare_sleep(&c) == 0) {
			struct pollfd pfd = { .fd = w->efd, .events = POLLIN };
			int r;

			if (__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE) &&
			    ring_cons_avail(&c, 1) == 0)
				break;
			w->sleeps++;
			r = poll(&pfd, 1, 1000);
			if (r == 0 && ring_cons_avail(&c, 1) != 0) {
				/* Asleep with work pending and no doorbell. */
				w->lost++;
			} else if (r == 1) {
				uint64_t v;

				if (read(w->efd, &v, sizeof(v)) == sizeof(v))
					w->wakeups++;
			}
		}
		ring_cons_end_sleep(&c);
	}
	w->got = expect;
	return NULL;
}

static void test_wakeup(double seconds)
{
	struct wake w = { 0 };
	struct ring_prod p;
	pthread_t t;
	uint32_t rs = 99, idx, n, i;
	uint64_t rings = 0, one = 1;
	double end;

	w.mem = region_new(16, 256, 16, &w.h);
	w.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w.efd < 0) {
		perror("eventfd");
		exit(1);
	}
	CHECK(ring_prod_attach(&p, w.mem, &w.h, RING_TX) == 0);
	pthread_create(&t, NULL, wake_consumer, &w);
	end = now() + seconds;
	while (now() < end) {
		uint32_t burst = 1 + rnd(&rs) % 24;

		while (burst) {
			n = ring_prod_reserve(&p, burst, &idx);
			for (i = 0; i < n; i++)
				*ring_prod_desc(&p, idx + i) = (struct ring_desc){
					0, 1, (uint32_t)w.sent++ };
			ring_prod_submit(&p, n);
			if (ring_prod_needs_wakeup(&p)) {
				CHECK(write(w.efd, &one, sizeof(one)) == sizeof(one));
				rings++;
			}
			burst -= n;
			if (burst)
				sched_yield();
		}
		/* Mostly tiny pauses (the race window), sometimes long ones. */
		switch (rnd(&rs) % 8) {
		case 0:
			usleep(rnd(&rs) % 200);
			break;
		case 1:
			sched_yield();
			break;
		default:
			for (volatile int k = rnd(&rs) % 2000; k > 0; k--)
				;
		}
	}
	__atomic_store_n(&w.stop, 1, __ATOMIC_RELEASE);
	/* The stop flag itself needs a doorbell for a sleeping consumer. */
	CHECK(write(w.efd, &one, sizeof(one)) == sizeof(one));
	pthread_join(t, NULL);
	fprintf(stderr, "wakeup: %" PRIu64 " descriptors, %" PRIu64 " sleeps, %" PRIu64
		" doorbells rung, %" PRIu64 " wakeups, %" PRIu64 " lost\n",
		w.sent, w.sleeps, rings, w.wakeups, w.lost);
	CHECK(w.lost == 0);
	CHECK(w.got == w.sent);
	CHECK(w.sleeps > 0 && rings > 0);
	close(w.efd);
	free(w.mem);
}

int main(int argc, char **argv)
{
	/* COUNT descriptors each way (10 million in all by default), SECONDS
	 * of doorbell stress; smaller for sanitizer builds. */
	uint64_t count = argc > 1 ? strtoull(argv[1], NULL, 0) : 5000000;
	double secs = argc > 2 ? atof(argv[2]) : 2.0;

	test_region();
	test_single_thread();
	test_desc_valid();
	test_stress(count);
	test_wakeup(secs);
	if (failures) {
		fprintf(stderr, "test_ring: %d failures\n", failures);
		return 1;
	}
	return 0;
}
