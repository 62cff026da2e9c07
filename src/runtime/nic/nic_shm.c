/* The shm backend (indirect mode): frames to and from libretto-netd through the application's ring region. */
#include <errno.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libretto/ring.h"
#include "ipx/real.h"
#include "nic/nic.h"

/*
 * The region (include/libretto/ring.h) is made by librettod and shared with
 * netd; we are the application side: producer of fill and tx, consumer of
 * rx and comp.  As in the AF_XDP backend, the frames are split in two pools
 * that never mix, so the receive side (rx(), under the receive lock) and
 * the transmit side (tx(), under the stack lock) share no mutable state:
 *   - receive frames circulate fill -> netd -> rx -> rx() -> fill;
 *   - transmit frames circulate tx_free -> tx -> netd -> comp -> tx_free.
 * netd is trusted for memory safety but every descriptor it returns is
 * still checked (ring_desc_valid) before its frame is touched.
 *
 * Doorbells: netd writes efd_app only when we set NEED_WAKEUP on the rx
 * ring, which rx() does when it finds the ring empty (the progress thread
 * then sleeps on efd_app) and clears when frames come; we write efd_netd
 * only when netd set NEED_WAKEUP on the tx (or fill) ring.
 */
#define SHM_RX_MAX 64
/* The shortest Ethernet frame without FCS; shorter ones are padded. */
#define SHM_MIN_FRAME 60

struct shm {
	int ring_fd, efd_netd, efd_app;
	void *mem;
	size_t maplen;
	struct ring_region_hdr hdr;	/* checked private copy */
	unsigned char *frames;
	struct ring_prod fill, tx;
	struct ring_cons rx, comp;
	uint32_t generation;
	bool rx_sleeping;		/* NEED_WAKEUP is set on rx */
	uint64_t *rx_backlog;		/* receive frames the fill ring had no room for */
	uint32_t rx_nbacklog, rx_cap;
	uint64_t *tx_free;
	uint32_t tx_nfree, tx_cap;
	uint32_t nfill;			/* frames [0, nfill) receive, the rest transmit */
	/* Transmit frames in tx_free (one byte per transmit frame): a frame
	 * handed back twice (after a resync) is taken once. */
	uint8_t *tx_mine;
	atomic_uint gen_seen;		/* the generation tx() last resynchronised to */
	bool quiesced;
	bool warned_desc;
	uint64_t resyncs;
};

static int shm_lease_fd(const struct kv *lease, const char *key, int *fd)
{
	unsigned long v;

	if (kv_get_ulong(lease, key, &v) < 0 || v > INT32_MAX) {
		fprintf(stderr, "libretto: shm: lease key %s is missing or not a descriptor\n", key);
		return -EINVAL;
	}
	*fd = (int)v;
	return 0;
}

static void shm_free(struct shm *x)
{
	if (x->mem != NULL && x->mem != MAP_FAILED)
		munmap(x->mem, x->maplen);
	free(x->rx_backlog);
	free(x->tx_free);
	free(x->tx_mine);
	free(x);
}

static void shm_ring_bell(int efd)
{
	uint64_t one = 1;

	/* A full counter (EAGAIN) means a wake-up is pending anyway. */
	if (real.write(efd, &one, sizeof(one)) < 0) {
	}
}

/* Post receive frames on the fill ring, parking what does not fit. */
static void shm_refill(struct shm *x, const uint64_t *frames, uint32_t n)
{
	uint32_t idx, k;

	for (int pass = 0; pass < 2; pass++) {
		const uint64_t *src = pass == 0 ? x->rx_backlog : frames;
		uint32_t cnt = pass == 0 ? x->rx_nbacklog : n;

		if (cnt == 0)
			continue;
		k = ring_prod_reserve(&x->fill, cnt, &idx);
		for (uint32_t i = 0; i < k; i++) {
			struct ring_desc *d = ring_prod_desc(&x->fill, idx + i);

			d->offset = src[i];
			d->len = x->hdr.frame_size;
			d->flags = 0;
		}
		if (k > 0)
			ring_prod_submit(&x->fill, k);
		if (pass == 0) {
			memmove(x->rx_backlog, x->rx_backlog + k,
				(size_t)(x->rx_nbacklog - k) * sizeof(uint64_t));
			x->rx_nbacklog -= k;
		} else {
			for (uint32_t i = k; i < n && x->rx_nbacklog < x->rx_cap; i++)
				x->rx_backlog[x->rx_nbacklog++] = frames[i];
		}
	}
	if (ring_prod_needs_wakeup(&x->fill))
		shm_ring_bell(x->efd_netd);
}

static int shm_nic_open(struct nic *nic, const struct kv *lease)
{
	struct shm *x = calloc(1, sizeof(*x));
	struct stat st;
	uint32_t nfill;
	int err;

	if (x == NULL)
		return -ENOMEM;
	if (shm_lease_fd(lease, "ring_fd", &x->ring_fd) < 0 ||
	    shm_lease_fd(lease, "efd_netd_fd", &x->efd_netd) < 0 ||
	    shm_lease_fd(lease, "efd_app_fd", &x->efd_app) < 0) {
		err = -EINVAL;
		goto fail;
	}
	if (fstat(x->ring_fd, &st) < 0) {
		err = -errno;
		goto fail;
	}
	x->maplen = (size_t)st.st_size;
	x->mem = mmap(NULL, x->maplen, PROT_READ | PROT_WRITE, MAP_SHARED, x->ring_fd, 0);
	if (x->mem == MAP_FAILED) {
		err = -errno;
		fprintf(stderr, "libretto: shm: cannot map the ring region (%zu bytes): %s\n",
			x->maplen, strerror(-err));
		goto fail;
	}
	/* A forked child must not touch the rings (see the AF_XDP backend). */
	madvise(x->mem, x->maplen, MADV_DONTFORK);
	err = ring_region_check(x->mem, x->maplen, &x->hdr);
	if (err < 0) {
		fprintf(stderr, "libretto: shm: the ring region is not valid (%s)\n",
			strerror(-err));
		goto fail;
	}
	if (x->hdr.frame_size < SHM_MIN_FRAME + nic->mtu) {
		fprintf(stderr, "libretto: shm: frames of %u bytes cannot hold an MTU of %u\n",
			x->hdr.frame_size, nic->mtu);
		err = -EINVAL;
		goto fail;
	}
	x->frames = ring_frames(x->mem, &x->hdr);
	if (ring_prod_attach(&x->fill, x->mem, &x->hdr, RING_FILL) < 0 ||
	    ring_prod_attach(&x->tx, x->mem, &x->hdr, RING_TX) < 0 ||
	    ring_cons_attach(&x->rx, x->mem, &x->hdr, RING_RX) < 0 ||
	    ring_cons_attach(&x->comp, x->mem, &x->hdr, RING_COMP) < 0) {
		fprintf(stderr, "libretto: shm: the ring region's indices are inconsistent\n");
		err = -EPROTO;
		goto fail;
	}
	if (x->fill.prod != 0 || x->tx.prod != 0 || x->rx.cons != 0 || x->comp.cons != 0) {
		fprintf(stderr, "libretto: shm: the lease's rings are already in use\n");
		err = -EBUSY;
		goto fail;
	}
	x->generation = ring_region_generation(x->mem);
	nfill = x->hdr.nframes / 2;
	if (nfill > x->hdr.ring_size)
		nfill = x->hdr.ring_size;
	x->rx_cap = nfill;
	/* No more transmit frames than the completion ring holds: netd
	 * takes a frame from tx only when it has room to complete it, and we
	 * reap completions only when we transmit, so a completion ring that
	 * could fill up would leave frames stranded on tx. */
	x->tx_cap = x->hdr.nframes - nfill;
	if (x->tx_cap > x->hdr.ring_size)
		x->tx_cap = x->hdr.ring_size;
	x->nfill = nfill;
	x->rx_backlog = calloc(nfill, sizeof(uint64_t));
	x->tx_free = calloc(x->tx_cap, sizeof(uint64_t));
	x->tx_mine = calloc(x->tx_cap ? x->tx_cap : 1, 1);
	if (x->rx_backlog == NULL || x->tx_free == NULL || x->tx_mine == NULL) {
		err = -ENOMEM;
		goto fail;
	}
	for (uint32_t i = 0; i < x->tx_cap; i++) {
		x->tx_free[x->tx_nfree++] = (uint64_t)(nfill + i) * x->hdr.frame_size;
		x->tx_mine[i] = 1;
	}
	atomic_init(&x->gen_seen, x->generation);
	for (uint32_t i = 0; i < nfill; i++)
		x->rx_backlog[x->rx_nbacklog++] = (uint64_t)i * x->hdr.frame_size;
	shm_refill(x, NULL, 0);
	nic->priv = x;
	return 0;
fail:
	shm_free(x);
	return err;
}

static void shm_fork_keep(struct nic *nic, bool keep)
{
	struct shm *x = nic->priv;

	madvise(x->mem, x->maplen, keep ? MADV_DOFORK : MADV_DONTFORK);
}

static void shm_quiesce(struct nic *nic)
{
	struct shm *x = nic->priv;

	x->quiesced = true;
}

static void shm_nic_close(struct nic *nic)
{
	struct shm *x = nic->priv;

	if (x == NULL)
		return;
	real.close(x->ring_fd);
	real.close(x->efd_netd);
	real.close(x->efd_app);
	shm_free(x);
	nic->priv = NULL;
}

static void shm_resync_rx(struct shm *x);

static int shm_rx(struct nic *nic, int budget, nic_rx_fn fn, void *arg)
{
	struct shm *x = nic->priv;
	uint64_t frames[SHM_RX_MAX];
	uint32_t n, idx, nframes = 0;

	if (budget > SHM_RX_MAX)
		budget = SHM_RX_MAX;
	uint32_t gen = ring_region_generation(x->mem);

	if (gen != x->generation) {
		/* A new netd: the transmit side resyncs in tx() (its lock). */
		x->generation = gen;
		x->resyncs++;
		shm_resync_rx(x);
	}
	n = ring_cons_peek(&x->rx, (uint32_t)budget, &idx);
	if (n == 0) {
		if (x->rx_nbacklog)
			shm_refill(x, NULL, 0);
		/* Nothing: ask netd for a doorbell before the caller sleeps
		 * on efd_app (ring.h's sleeper protocol), unless frames came
		 * in between. */
		if (!x->rx_sleeping) {
			x->rx_sleeping = true;
			if (ring_cons_prepare_sleep(&x->rx) == 0)
				return 0;
			n = ring_cons_peek(&x->rx, (uint32_t)budget, &idx);
		}
		if (n == 0)
			return 0;
	}
	if (x->rx_sleeping) {
		uint64_t v;

		x->rx_sleeping = false;
		ring_cons_end_sleep(&x->rx);
		/* Drain the doorbell so the next sleep waits for a new one. */
		if (real.read(x->efd_app, &v, sizeof(v)) < 0) {
		}
	}
	for (uint32_t i = 0; i < n; i++) {
		struct ring_desc d;

		ring_cons_read(&x->rx, idx + i, &d);
		if (!ring_desc_valid(&x->hdr, &d)) {
			if (!x->warned_desc) {
				x->warned_desc = true;
				fprintf(stderr, "libretto: shm: bad rx descriptor offset=%llu len=%u "
					"from the network server\n", (unsigned long long)d.offset, d.len);
			}
			if (d.offset < x->hdr.frames_len)
				frames[nframes++] = d.offset - d.offset % x->hdr.frame_size;
			continue;
		}
		frames[nframes++] = d.offset - d.offset % x->hdr.frame_size;
		fn(arg, x->frames + d.offset, d.len);
	}
	ring_cons_release(&x->rx, n);
	shm_refill(x, frames, nframes);
	return (int)n;
}

/* A transmit frame comes back (comp, or a resync): into tx_free once. */
static void shm_tx_give(struct shm *x, uint64_t off)
{
	uint64_t f;

	if (off >= x->hdr.frames_len)
		return;
	f = off / x->hdr.frame_size;
	if (f < x->nfill || f - x->nfill >= x->tx_cap || x->tx_mine[f - x->nfill])
		return;
	x->tx_mine[f - x->nfill] = 1;
	x->tx_free[x->tx_nfree++] = f * x->hdr.frame_size;
}

/*
 * A new netd attached to the region (restart, upgrade: the generation
 * changed).  Frames the old one held (taken from fill or tx, not yet given
 * back on rx or comp) are lost to it: take back every frame of ours that is
 * on none of the rings, so the pools do not shrink with each restart.
 * Receive side (rx(), under the receive lock): a receive frame is netd's if
 * it is between fill's consumer and producer, ours if on rx unread or in
 * the backlog; the rest go back on the fill ring.  Transmit side (tx(),
 * under the stack lock), the same with tx and comp.  The new netd may
 * already be moving frames while we look: we scan the ring a frame reaches
 * last first (rx before fill, comp before tx), so a frame moving meanwhile
 * is seen at least once; a frame inside netd during both scans (a few
 * microseconds) could be lent twice, and tx_mine keeps a transmit frame
 * from being handed out twice.
 */
static void shm_mark(uint8_t *seen, const struct shm *x, uint64_t off, uint32_t first,
		     uint32_t count)
{
	uint64_t f;

	if (off >= x->hdr.frames_len)
		return;
	f = off / x->hdr.frame_size;
	if (f >= first && f - first < count)
		seen[f - first] = 1;
}

/* Mark the descriptors between two indices of a ring, read once each. */
static void shm_mark_ring(uint8_t *seen, const struct shm *x, const struct ring_desc *descs,
			  uint32_t mask, uint32_t from, uint32_t to, uint32_t size, uint32_t first,
			  uint32_t count)
{
	uint32_t n = to - from;

	if (n > size)
		return;	/* impossible indices: trust none of it */
	for (uint32_t i = 0; i < n; i++) {
		uint64_t off = __atomic_load_n(&descs[(from + i) & mask].offset, __ATOMIC_RELAXED);

		shm_mark(seen, x, off, first, count);
	}
}

static void shm_resync_rx(struct shm *x)
{
	uint8_t *seen = calloc(x->nfill ? x->nfill : 1, 1);
	uint32_t rx_prod, fill_cons;

	if (seen == NULL)
		return;
	rx_prod = __atomic_load_n(x->rx.producer, __ATOMIC_ACQUIRE);
	shm_mark_ring(seen, x, x->rx.descs, x->rx.mask, x->rx.cons, rx_prod, x->rx.size, 0, x->nfill);
	fill_cons = __atomic_load_n(x->fill.consumer, __ATOMIC_ACQUIRE);
	shm_mark_ring(seen, x, x->fill.descs, x->fill.mask, fill_cons, x->fill.prod, x->fill.size,
		      0, x->nfill);
	for (uint32_t i = 0; i < x->rx_nbacklog; i++)
		shm_mark(seen, x, x->rx_backlog[i], 0, x->nfill);
	for (uint32_t f = 0; f < x->nfill && x->rx_nbacklog < x->rx_cap; f++)
		if (!seen[f])
			x->rx_backlog[x->rx_nbacklog++] = (uint64_t)f * x->hdr.frame_size;
	free(seen);
	/* The new netd's consumer may have moved since it attached. */
	x->fill.cached_cons = __atomic_load_n(x->fill.consumer, __ATOMIC_ACQUIRE);
	x->rx.cached_prod = rx_prod;
	shm_refill(x, NULL, 0);
}

static void shm_resync_tx(struct shm *x)
{
	uint8_t *seen = calloc(x->tx_cap ? x->tx_cap : 1, 1);
	uint32_t comp_prod, tx_cons;

	if (seen == NULL)
		return;
	comp_prod = __atomic_load_n(x->comp.producer, __ATOMIC_ACQUIRE);
	shm_mark_ring(seen, x, x->comp.descs, x->comp.mask, x->comp.cons, comp_prod, x->comp.size,
		      x->nfill, x->tx_cap);
	tx_cons = __atomic_load_n(x->tx.consumer, __ATOMIC_ACQUIRE);
	shm_mark_ring(seen, x, x->tx.descs, x->tx.mask, tx_cons, x->tx.prod, x->tx.size,
		      x->nfill, x->tx_cap);
	for (uint32_t i = 0; i < x->tx_cap; i++)
		if (!seen[i] && !x->tx_mine[i])
			shm_tx_give(x, (uint64_t)(x->nfill + i) * x->hdr.frame_size);
	free(seen);
}

/* Take the frames netd finished with back from the comp ring. */
static void shm_reclaim(struct shm *x)
{
	uint32_t n, idx;

	n = ring_cons_peek(&x->comp, x->comp.size, &idx);
	for (uint32_t i = 0; i < n; i++) {
		struct ring_desc d;

		ring_cons_read(&x->comp, idx + i, &d);
		shm_tx_give(x, d.offset);
	}
	if (n > 0)
		ring_cons_release(&x->comp, n);
}

static int shm_tx(struct nic *nic, const struct iovec *iov, int iovcnt)
{
	struct shm *x = nic->priv;
	struct ring_desc *d;
	unsigned char *p;
	size_t len = 0;
	uint64_t off;
	uint32_t idx;

	if (x->quiesced)
		return -ENETDOWN;
	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (len > x->hdr.frame_size || len > nic->mtu + 18u)
		return -EMSGSIZE;
	uint32_t gen = ring_region_generation(x->mem);

	if (gen != atomic_load_explicit(&x->gen_seen, memory_order_relaxed)) {
		atomic_store_explicit(&x->gen_seen, gen, memory_order_relaxed);
		shm_reclaim(x);
		shm_resync_tx(x);
	}
	shm_reclaim(x);
	if (x->tx_nfree == 0 || ring_prod_reserve(&x->tx, 1, &idx) != 1) {
		/* All in flight: make sure netd looks, and drop (TCP resends). */
		shm_ring_bell(x->efd_netd);
		return -EAGAIN;
	}
	off = x->tx_free[--x->tx_nfree];
	x->tx_mine[off / x->hdr.frame_size - x->nfill] = 0;
	p = x->frames + off;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(p, iov[i].iov_base, iov[i].iov_len);
		p += iov[i].iov_len;
	}
	if (len < SHM_MIN_FRAME) {
		memset(p, 0, SHM_MIN_FRAME - len);
		len = SHM_MIN_FRAME;
	}
	d = ring_prod_desc(&x->tx, idx);
	d->offset = off;
	d->len = (uint32_t)len;
	d->flags = 0;
	ring_prod_submit(&x->tx, 1);
	if (!nic->defer_kick && ring_prod_needs_wakeup(&x->tx))
		shm_ring_bell(x->efd_netd);
	return 0;
}

static int shm_wait_fd(struct nic *nic)
{
	struct shm *x = nic->priv;

	return x->efd_app;
}

/* Without the stack lock: reads only the shared flags. */
static int shm_kick(struct nic *nic)
{
	struct shm *x = nic->priv;

	if (ring_prod_needs_wakeup(&x->tx))
		shm_ring_bell(x->efd_netd);
	return 0;
}

const struct nic_ops nic_shm_ops = {
	.name = "shm",
	.open = shm_nic_open,
	.fork_keep = shm_fork_keep,
	.quiesce = shm_quiesce,
	.close = shm_nic_close,
	.rx = shm_rx,
	.tx = shm_tx,
	.wait_fd = shm_wait_fd,
	.kick = shm_kick,
};
