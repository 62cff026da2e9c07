/* Unit test: the runtime's shm NIC backend (indirect mode) against a simulated netd on the other side of the ring region. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/kv.h"
#include "ipx/real.h"
#include "libretto/ring.h"
#include "nic/nic.h"

#include "check.h"


#define NFRAMES 256
#define FRAME 2048
#define RINGSZ 64

/* The netd side: what librettod makes and netd attaches to. */
struct sim {
	int ring_fd, efd_netd, efd_app;
	void *mem;
	size_t len;
	struct ring_region_hdr hdr;
	struct ring_cons fill, tx;
	struct ring_prod rx, comp;
};

static void sim_new_geo(struct sim *s, uint32_t nframes, uint32_t ringsz)
{
	s->len = ring_region_size(nframes, FRAME, ringsz);
	s->ring_fd = memfd_create("test-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	CHECK(s->ring_fd >= 0 && ftruncate(s->ring_fd, (off_t)s->len) == 0);
	s->mem = mmap(NULL, s->len, PROT_READ | PROT_WRITE, MAP_SHARED, s->ring_fd, 0);
	CHECK(s->mem != MAP_FAILED);
	CHECK(ring_region_init(s->mem, s->len, nframes, FRAME, ringsz) == 0);
	CHECK(ring_region_check(s->mem, s->len, &s->hdr) == 0);
	s->efd_netd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	s->efd_app = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

static void sim_new(struct sim *s)
{
	sim_new_geo(s, NFRAMES, RINGSZ);
}

/* netd attaches only after the application posted its fill frames, as the
 * real one may: the indices are taken from the region. */
static void sim_attach(struct sim *s)
{
	CHECK(ring_cons_attach(&s->fill, s->mem, &s->hdr, RING_FILL) == 0);
	CHECK(ring_cons_attach(&s->tx, s->mem, &s->hdr, RING_TX) == 0);
	CHECK(ring_prod_attach(&s->rx, s->mem, &s->hdr, RING_RX) == 0);
	CHECK(ring_prod_attach(&s->comp, s->mem, &s->hdr, RING_COMP) == 0);
}

/* Deliver one frame: take a fill frame, copy, post on rx, ring if asked. */
static int sim_deliver(struct sim *s, const void *data, uint32_t len)
{
	struct ring_desc f;
	uint32_t idx, ridx;

	if (ring_cons_peek(&s->fill, 1, &idx) != 1 || ring_prod_reserve(&s->rx, 1, &ridx) != 1)
		return -EAGAIN;
	ring_cons_read(&s->fill, idx, &f);
	CHECK(ring_desc_valid(&s->hdr, &f));
	memcpy((char *)ring_frames(s->mem, &s->hdr) + f.offset, data, len);
	ring_cons_release(&s->fill, 1);
	*ring_prod_desc(&s->rx, ridx) = (struct ring_desc){ .offset = f.offset, .len = len };
	ring_prod_submit(&s->rx, 1);
	if (ring_prod_needs_wakeup(&s->rx)) {
		uint64_t one = 1;

		CHECK(write(s->efd_app, &one, sizeof(one)) == sizeof(one));
	}
	return 0;
}

/* Take one transmitted frame (copied into out), complete it. */
static int sim_take(struct sim *s, void *out, uint32_t *len)
{
	struct ring_desc d;
	uint32_t idx, cidx;

	/* As the real netd: a frame is taken only when it can be completed. */
	if (ring_prod_free(&s->comp, 1) < 1 || ring_cons_peek(&s->tx, 1, &idx) != 1)
		return -EAGAIN;
	ring_cons_read(&s->tx, idx, &d);
	CHECK(ring_desc_valid(&s->hdr, &d));
	memcpy(out, (char *)ring_frames(s->mem, &s->hdr) + d.offset, d.len);
	*len = d.len;
	ring_cons_release(&s->tx, 1);
	CHECK(ring_prod_reserve(&s->comp, 1, &cidx) == 1);
	*ring_prod_desc(&s->comp, cidx) = d;
	ring_prod_submit(&s->comp, 1);
	return 0;
}

static int lease_of(struct sim *s, struct kv *kv)
{
	char text[256];

	snprintf(text, sizeof(text), "ring_fd=%d\nefd_netd_fd=%d\nefd_app_fd=%d\n",
		 dup(s->ring_fd), dup(s->efd_netd), dup(s->efd_app));
	return kv_parse(kv, text, strlen(text));
}

struct got {
	int n;
	uint32_t len;
	unsigned char last[FRAME];
	uint64_t seq_sum;
};

static void on_frame(void *arg, const void *frame, size_t len)
{
	struct got *g = arg;

	g->n++;
	g->len = (uint32_t)len;
	memcpy(g->last, frame, len);
	if (len >= 8) {
		uint64_t v;

		memcpy(&v, frame, 8);
		g->seq_sum += v;
	}
}

static void test_basic(void)
{
	struct sim s;
	struct nic nic = { .ops = &nic_shm_ops, .mtu = 1500 };
	struct kv kv;
	struct got g = { 0 };
	unsigned char frame[1514], out[FRAME];
	uint32_t len;

	sim_new(&s);
	CHECK(lease_of(&s, &kv) == 0);
	CHECK(nic.ops->open(&nic, &kv) == 0);
	sim_attach(&s);
	/* The application lent half its frames (up to the ring size). */
	CHECK(ring_cons_avail(&s.fill, RINGSZ) == RINGSZ);

	/* Empty: rx asks for a doorbell, netd rings it, rx drains it. */
	CHECK(nic.ops->rx(&nic, 64, on_frame, &g) == 0);
	memset(frame, 0xab, sizeof(frame));
	memcpy(frame, "hello", 5);
	CHECK(sim_deliver(&s, frame, 1514) == 0);
	struct pollfd p = { .fd = nic.ops->wait_fd(&nic), .events = POLLIN };
	CHECK(poll(&p, 1, 0) == 1);
	CHECK(nic.ops->rx(&nic, 64, on_frame, &g) == 1);
	CHECK(g.n == 1 && g.len == 1514 && memcmp(g.last, "hello", 5) == 0);
	CHECK(poll(&p, 1, 0) == 0);	/* drained */
	/* The frame went back to the fill ring. */
	CHECK(ring_cons_avail(&s.fill, RINGSZ) == RINGSZ);

	/* Transmit: a gathered frame arrives whole, short ones are padded;
	 * too long ones are refused. */
	struct iovec iov[2] = { { "ab", 2 }, { "cdefgh", 6 } };
	CHECK(nic.ops->tx(&nic, iov, 2) == 0);
	CHECK(sim_take(&s, out, &len) == 0);
	CHECK(len == 60 && memcmp(out, "abcdefgh", 8) == 0 && out[59] == 0);
	struct iovec big = { frame, 1600 };
	CHECK(nic.ops->tx(&nic, &big, 1) == -EMSGSIZE);

	/* netd asleep on tx: a send rings efd_netd. */
	__atomic_store_n(s.tx.flags, RING_NEED_WAKEUP, __ATOMIC_SEQ_CST);
	CHECK(nic.ops->tx(&nic, iov, 1) == 0);
	struct pollfd pn = { .fd = s.efd_netd, .events = POLLIN };
	CHECK(poll(&pn, 1, 0) == 1);
	CHECK(sim_take(&s, out, &len) == 0);

	/* Every tx frame in flight and none completed: -EAGAIN, not a hang;
	 * completions give them back. */
	int sent = 0;
	while (nic.ops->tx(&nic, iov, 1) == 0 && sent < 10000)
		sent++;
	CHECK(sent > 0 && sent < 10000);
	while (sim_take(&s, out, &len) == 0)
		;
	CHECK(nic.ops->tx(&nic, iov, 1) == 0);

	/* A descriptor outside the frame area from "netd" is not followed. */
	uint32_t ridx;
	CHECK(ring_prod_reserve(&s.rx, 1, &ridx) == 1);
	*ring_prod_desc(&s.rx, ridx) = (struct ring_desc){ .offset = s.hdr.frames_len + 4096,
							   .len = 100 };
	ring_prod_submit(&s.rx, 1);
	int before = g.n;
	CHECK(nic.ops->rx(&nic, 64, on_frame, &g) == 1);
	CHECK(g.n == before);

	nic.ops->close(&nic);
	kv_free(&kv);
	munmap(s.mem, s.len);
	close(s.ring_fd);
	close(s.efd_netd);
	close(s.efd_app);
}

/* Two threads: a netd that echoes every frame, the application sending
 * numbered frames and receiving them back, sleeping on its doorbell when
 * idle.  Every frame must come back exactly once. */
#define STRESS_N 200000

struct stress {
	struct sim *s;
	atomic_bool stop;
};

static void *netd_main(void *arg)
{
	struct stress *st = arg;
	unsigned char buf[FRAME];
	uint32_t len;

	while (!atomic_load(&st->stop)) {
		if (sim_take(st->s, buf, &len) == 0) {
			while (sim_deliver(st->s, buf, len) != 0 && !atomic_load(&st->stop))
				sched_yield();
		} else {
			sched_yield();
		}
	}
	return NULL;
}

static void test_stress(void)
{
	struct sim s;
	struct nic nic = { .ops = &nic_shm_ops, .mtu = 1500 };
	struct stress st = { .s = &s };
	struct kv kv;
	struct got g = { 0 };
	pthread_t t;
	uint64_t sent = 0, want = 0;
	unsigned char frame[64] = { 0 };

	sim_new(&s);
	CHECK(lease_of(&s, &kv) == 0);
	CHECK(nic.ops->open(&nic, &kv) == 0);
	sim_attach(&s);
	CHECK(pthread_create(&t, NULL, netd_main, &st) == 0);
	while (g.n < STRESS_N) {
		if (sent < STRESS_N) {
			uint64_t v = sent + 1;
			struct iovec iov = { frame, sizeof(frame) };

			memcpy(frame, &v, 8);
			if (nic.ops->tx(&nic, &iov, 1) == 0) {
				sent++;
				want += v;
			}
		}
		if (nic.ops->rx(&nic, 64, on_frame, &g) == 0 && sent == STRESS_N) {
			struct pollfd p = { .fd = nic.ops->wait_fd(&nic), .events = POLLIN };

			if (poll(&p, 1, 2000) == 0) {
				fprintf(stderr, "stress: no doorbell after %d frames\n", g.n);
				break;
			}
		}
	}
	atomic_store(&st.stop, true);
	pthread_join(t, NULL);
	CHECK(g.n == STRESS_N);
	CHECK(g.seq_sum == want);
	nic.ops->close(&nic);
	kv_free(&kv);
	munmap(s.mem, s.len);
	close(s.ring_fd);
	close(s.efd_netd);
	close(s.efd_app);
}

/* netd restarts while it holds frames: the old one took 3 fill frames
 * and 5 tx frames and died with them.  After the new one attached (new
 * generation), the application takes them back: all its receive frames
 * are lent again and all its transmit frames can be sent again. */
static void test_resync(void)
{
	struct sim s;
	struct nic nic = { .ops = &nic_shm_ops, .mtu = 1500 };
	struct kv kv;
	struct got g = { 0 };
	struct iovec iov = { "x", 1 };
	unsigned char out[FRAME];
	uint32_t idx, len;
	int sent;

	sim_new_geo(&s, 32, 64);	/* 16 receive frames, 16 transmit frames */
	CHECK(lease_of(&s, &kv) == 0);
	CHECK(nic.ops->open(&nic, &kv) == 0);
	sim_attach(&s);
	CHECK(ring_cons_avail(&s.fill, 64) == 16);
	for (int i = 0; i < 10; i++)
		CHECK(nic.ops->tx(&nic, &iov, 1) == 0);
	/* The old netd takes 3 fill and 5 tx frames, then dies. */
	CHECK(ring_cons_peek(&s.fill, 3, &idx) == 3);
	ring_cons_release(&s.fill, 3);
	CHECK(ring_cons_peek(&s.tx, 5, &idx) == 5);
	ring_cons_release(&s.tx, 5);
	/* The new one attaches where the region says and bumps the generation. */
	sim_attach(&s);
	ring_region_new_generation(s.mem);
	CHECK(ring_cons_avail(&s.fill, 64) == 13);
	CHECK(nic.ops->rx(&nic, 64, on_frame, &g) == 0);
	CHECK(ring_cons_avail(&s.fill, 64) == 16);	/* the 3 lent again */
	/* The 5 still on tx are completed by the new netd; then every
	 * transmit frame is free: 16 sends before EAGAIN (without the resync,
	 * 11). */
	while (sim_take(&s, out, &len) == 0)
		;
	for (sent = 0; sent < 40 && nic.ops->tx(&nic, &iov, 1) == 0; sent++)
		;
	CHECK(sent == 16);
	nic.ops->close(&nic);
	kv_free(&kv);
	munmap(s.mem, s.len);
	close(s.ring_fd);
	close(s.efd_netd);
	close(s.efd_app);
}

int main(void)
{
	real_init();
	test_basic();
	test_resync();
	test_stress();
	if (failures) {
		fprintf(stderr, "test_nic_shm: %d failures\n", failures);
		return 1;
	}
	printf("test_nic_shm: ok\n");
	return 0;
}
