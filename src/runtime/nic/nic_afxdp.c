/* The AF_XDP backend: drive a NIC queue through an XSK socket and UMEM handed over in the lease. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/if_xdp.h>

#include "ipx/real.h"
#include "nic/nic.h"
#include "nic/nic_xring.h"

#ifndef SOL_XDP
#define SOL_XDP 283
#endif

/* The shortest Ethernet frame without FCS; shorter ones are padded. */
#define AFXDP_MIN_FRAME 60
#define AFXDP_RX_MAX 64

/*
 * Frame ownership.  The UMEM is split in two pools that never mix, so the
 * receive side (rx(), under the receive lock) and the transmit side (tx(),
 * under the stack lock) share no mutable state:
 *   - receive frames circulate fill ring -> kernel -> RX ring -> rx() ->
 *     fill ring; rx_backlog holds the few the fill ring had no room for;
 *   - transmit frames circulate tx_free -> TX ring -> kernel -> completion
 *     ring -> tx_free.
 */
struct afxdp {
	int fd;
	int umem_fd;
	unsigned char *umem;
	size_t umem_size;
	uint32_t frame_size;
	uint32_t nframes;
	struct xring fill, comp, rx, tx;
	void *map[4];
	size_t map_len[4];
	uint64_t *rx_backlog;
	uint32_t rx_nbacklog;
	uint64_t *tx_free;
	uint32_t tx_nfree;
	uint32_t tx_cap;
	bool quiesced;
	bool warned_desc;
	bool warned_kick;
};

enum { MAP_FILL, MAP_COMP, MAP_RX, MAP_TX };

static int lease_ulong(const struct kv *lease, const char *key, unsigned long *v)
{
	int err = kv_get_ulong(lease, key, v);

	if (err < 0)
		fprintf(stderr, "libretto: afxdp: lease key %s is %s\n", key,
			err == -ENOENT ? "missing" : "not a number");
	return err < 0 ? -EINVAL : 0;
}

static bool is_pow2(unsigned long v)
{
	return v && !(v & (v - 1));
}

static void afxdp_free(struct afxdp *x)
{
	for (int i = 0; i < 4; i++)
		if (x->map[i] && x->map[i] != MAP_FAILED)
			munmap(x->map[i], x->map_len[i]);
	if (x->umem && x->umem != MAP_FAILED)
		munmap(x->umem, x->umem_size);
	free(x->rx_backlog);
	free(x->tx_free);
	free(x);
}

static int afxdp_map_ring(struct afxdp *x, int which, size_t len, off_t pgoff)
{
	void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, x->fd, pgoff);

	if (m == MAP_FAILED)
		return -errno;
	x->map[which] = m;
	x->map_len[which] = len;
	/* A forked child must not share the rings (it would race us on
	 * them); it gets no mapping at all instead. */
	madvise(m, len, MADV_DONTFORK);
	return 0;
}

/* Ask the kernel to look at the fill ring (it ran dry and stopped). */
static void afxdp_kick_rx(struct afxdp *x)
{
	if (xring_needs_wakeup(&x->fill))
		real.recvfrom(x->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
}

/*
 * Ask the kernel to send what is on the TX ring.  In copy mode (veth, and
 * any driver without zero-copy) one sendto() sends at most 32 frames and
 * says EAGAIN if more are queued; a 64 KiB response is 45 frames, so one
 * call left its tail on the ring until the next kick, a round trip later
 * (docs/performance.md, finding 8).  So call again while the kernel makes
 * progress.  EAGAIN without progress (the completion ring is full), EBUSY
 * and ENOBUFS mean "busy": the frames stay queued and the next tx() or
 * kick() retries.
 */
static int afxdp_kick_tx(struct afxdp *x)
{
	uint32_t left = xring_outstanding(&x->tx), before;
	int e = 0;

	if (!xring_needs_wakeup(&x->tx))
		return 0;
	/* Bounded: each turn takes up to 32 frames or ends the loop. */
	for (uint32_t turn = 0; turn <= x->tx.size / 32; turn++) {
		if (real.sendto(x->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) == 0)
			return 0;
		e = errno;
		before = left;
		left = xring_outstanding(&x->tx);
		if (e != EAGAIN || left == 0 || left >= before)
			break;
	}
	if (e == EAGAIN || e == EBUSY || e == ENOBUFS || e == EINTR)
		return 0;
	if (!x->warned_kick) {
		x->warned_kick = true;
		fprintf(stderr, "libretto: afxdp: transmit kick: %s\n", strerror(e));
	}
	return -e;
}

static int afxdp_open(struct nic *nic, const struct kv *lease)
{
	unsigned long xsk_fd, umem_fd, umem_size, frame_size, ring_size;
	struct xdp_mmap_offsets off;
	socklen_t optlen = sizeof(off);
	struct afxdp *x;
	uint32_t nfill, idx;
	int err;

	if (lease_ulong(lease, "xsk_fd", &xsk_fd) || lease_ulong(lease, "umem_fd", &umem_fd) ||
	    lease_ulong(lease, "umem_size", &umem_size) ||
	    lease_ulong(lease, "frame_size", &frame_size) ||
	    lease_ulong(lease, "ring_size", &ring_size))
		return -EINVAL;
	/* Aligned UMEM chunks are a power of two between 2 KiB and a page;
	 * every ring (fill, completion, RX, TX) has ring_size entries. */
	if (!is_pow2(frame_size) || frame_size < 2048 || frame_size > 65536 ||
	    !is_pow2(ring_size) || ring_size > (1u << 20) || umem_size % frame_size ||
	    umem_size / frame_size < 2 || umem_size / frame_size > (1u << 24) ||
	    frame_size < AFXDP_MIN_FRAME + nic->mtu) {
		fprintf(stderr, "libretto: afxdp: inconsistent lease: umem_size=%lu frame_size=%lu "
			"ring_size=%lu\n", umem_size, frame_size, ring_size);
		return -EINVAL;
	}
	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->fd = (int)xsk_fd;
	x->umem_fd = (int)umem_fd;
	x->umem_size = umem_size;
	x->frame_size = (uint32_t)frame_size;
	x->nframes = (uint32_t)(umem_size / frame_size);

	if (real.getsockopt(x->fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &optlen) < 0) {
		err = -errno;
		fprintf(stderr, "libretto: afxdp: xsk_fd=%d is not an AF_XDP socket: %s\n",
			x->fd, strerror(-err));
		goto fail;
	}
	if (optlen < sizeof(off)) {
		/* Pre-5.4 layout: no flags word, so no need-wakeup. */
		fprintf(stderr, "libretto: afxdp: kernel too old (no XDP_RING_NEED_WAKEUP)\n");
		err = -EOPNOTSUPP;
		goto fail;
	}
	x->umem = mmap(NULL, umem_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		       x->umem_fd, 0);
	if (x->umem == MAP_FAILED) {
		err = -errno;
		fprintf(stderr, "libretto: afxdp: cannot map the UMEM (umem_fd=%d, %lu bytes): %s\n",
			x->umem_fd, umem_size, strerror(-err));
		x->umem = NULL;
		goto fail;
	}
	madvise(x->umem, umem_size, MADV_DONTFORK);

	err = afxdp_map_ring(x, MAP_FILL, off.fr.desc + ring_size * sizeof(uint64_t),
			     XDP_UMEM_PGOFF_FILL_RING);
	if (!err)
		err = afxdp_map_ring(x, MAP_COMP, off.cr.desc + ring_size * sizeof(uint64_t),
				     XDP_UMEM_PGOFF_COMPLETION_RING);
	if (!err)
		err = afxdp_map_ring(x, MAP_RX, off.rx.desc + ring_size * sizeof(struct xdp_desc),
				     XDP_PGOFF_RX_RING);
	if (!err)
		err = afxdp_map_ring(x, MAP_TX, off.tx.desc + ring_size * sizeof(struct xdp_desc),
				     XDP_PGOFF_TX_RING);
	if (err) {
		fprintf(stderr, "libretto: afxdp: cannot map the rings (ring_size=%lu): %s\n",
			ring_size, strerror(-err));
		goto fail;
	}
	xring_init(&x->fill, x->map[MAP_FILL], &off.fr, (uint32_t)ring_size);
	xring_init(&x->comp, x->map[MAP_COMP], &off.cr, (uint32_t)ring_size);
	xring_init(&x->rx, x->map[MAP_RX], &off.rx, (uint32_t)ring_size);
	xring_init(&x->tx, x->map[MAP_TX], &off.tx, (uint32_t)ring_size);
	/* We own every frame only if nobody has used the rings yet. */
	if (x->fill.cached_prod != x->fill.cached_cons || x->rx.cached_prod != x->rx.cached_cons ||
	    x->tx.cached_prod != x->tx.cached_cons || x->comp.cached_prod != x->comp.cached_cons) {
		fprintf(stderr, "libretto: afxdp: the lease's rings are already in use\n");
		err = -EBUSY;
		goto fail;
	}

	nfill = x->nframes / 2;
	if (nfill > ring_size)
		nfill = (uint32_t)ring_size;
	x->rx_backlog = calloc(nfill, sizeof(uint64_t));
	x->tx_cap = x->nframes - nfill;
	x->tx_free = calloc(x->tx_cap, sizeof(uint64_t));
	if (!x->rx_backlog || !x->tx_free) {
		err = -ENOMEM;
		goto fail;
	}
	if (xring_reserve(&x->fill, nfill, &idx) != nfill) {
		err = -EBUSY;
		goto fail;
	}
	for (uint32_t i = 0; i < nfill; i++)
		*xring_addr(&x->fill, idx + i) = (uint64_t)i * x->frame_size;
	xring_submit(&x->fill);
	for (uint32_t i = 0; i < x->tx_cap; i++)
		x->tx_free[x->tx_nfree++] = (uint64_t)(nfill + i) * x->frame_size;
	afxdp_kick_rx(x);

	nic->priv = x;
	return 0;
fail:
	afxdp_free(x);
	return err;
}

static void afxdp_fork_keep(struct nic *nic, bool keep)
{
	struct afxdp *x = nic->priv;
	int advice = keep ? MADV_DOFORK : MADV_DONTFORK;

	for (int i = 0; i < 4; i++)
		if (x->map[i] && x->map[i] != MAP_FAILED)
			madvise(x->map[i], x->map_len[i], advice);
	if (x->umem && x->umem != MAP_FAILED)
		madvise(x->umem, x->umem_size, advice);
}

static void afxdp_quiesce(struct nic *nic)
{
	struct afxdp *x = nic->priv;

	x->quiesced = true;
}

static void afxdp_close(struct nic *nic)
{
	struct afxdp *x = nic->priv;

	if (!x)
		return;
	real.close(x->fd);
	real.close(x->umem_fd);
	afxdp_free(x);
	nic->priv = NULL;
}

/* Return receive frames to the fill ring, or park them if it is full. */
static void afxdp_refill(struct afxdp *x, const uint64_t *frames, uint32_t n)
{
	uint32_t idx, k;

	if (x->rx_nbacklog) {
		k = x->rx_nbacklog;
		if (xring_reserve(&x->fill, k, &idx) == k) {
			for (uint32_t i = 0; i < k; i++)
				*xring_addr(&x->fill, idx + i) = x->rx_backlog[i];
			x->rx_nbacklog = 0;
		}
	}
	if (n && xring_reserve(&x->fill, n, &idx) == n) {
		for (uint32_t i = 0; i < n; i++)
			*xring_addr(&x->fill, idx + i) = frames[i];
	} else {
		for (uint32_t i = 0; i < n; i++)
			x->rx_backlog[x->rx_nbacklog++] = frames[i];
	}
	xring_submit(&x->fill);
	afxdp_kick_rx(x);
}

static int afxdp_rx(struct nic *nic, int budget, nic_rx_fn fn, void *arg)
{
	struct afxdp *x = nic->priv;
	uint64_t frames[AFXDP_RX_MAX];
	uint32_t n, idx, nframes = 0;

	if (budget > AFXDP_RX_MAX)
		budget = AFXDP_RX_MAX;
	n = xring_peek(&x->rx, (uint32_t)budget, &idx);
	if (n == 0) {
		if (x->rx_nbacklog)
			afxdp_refill(x, NULL, 0);
		return 0;
	}
	for (uint32_t i = 0; i < n; i++) {
		const struct xdp_desc *d = xring_desc(&x->rx, idx + i);
		uint64_t addr = d->addr, off = addr % x->frame_size;
		uint32_t len = d->len;

		/* The kernel is trusted, but a wild read here would take the
		 * application down: check before touching the frame.  A frame
		 * outside the UMEM is not ours to recycle. */
		if (addr >= x->umem_size || off + len > x->frame_size) {
			if (!x->warned_desc) {
				x->warned_desc = true;
				fprintf(stderr, "libretto: afxdp: bad RX descriptor addr=%llu len=%u\n",
					(unsigned long long)addr, len);
			}
			if (addr < x->umem_size)
				frames[nframes++] = addr - off;
			continue;
		}
		frames[nframes++] = addr - off;
		fn(arg, x->umem + addr, len);
	}
	xring_release(&x->rx);
	afxdp_refill(x, frames, nframes);
	return (int)n;
}

/* Take sent frames back from the completion ring. */
static void afxdp_reclaim(struct afxdp *x)
{
	uint32_t n, idx;

	n = xring_peek(&x->comp, x->comp.size, &idx);
	if (n == 0)
		return;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t addr = *xring_addr(&x->comp, idx + i);

		if (addr < x->umem_size && x->tx_nfree < x->tx_cap)
			x->tx_free[x->tx_nfree++] = addr - addr % x->frame_size;
	}
	xring_release(&x->comp);
}

static int afxdp_tx(struct nic *nic, const struct iovec *iov, int iovcnt)
{
	struct afxdp *x = nic->priv;
	size_t len = 0;
	unsigned char *p;
	uint64_t addr;
	uint32_t idx;

	if (x->quiesced)
		return -ENETDOWN;
	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (len > x->frame_size || len > nic->mtu + 18u)
		return -EMSGSIZE;
	afxdp_reclaim(x);
	if (x->tx_nfree == 0 || xring_prod_free(&x->tx, 1) == 0) {
		/* Everything is in flight: push the kernel once, and take
		 * back what it finished. */
		afxdp_kick_tx(x);
		afxdp_reclaim(x);
		if (x->tx_nfree == 0 || xring_reserve(&x->tx, 1, &idx) == 0)
			return -EAGAIN;
	} else {
		xring_reserve(&x->tx, 1, &idx);
	}
	addr = x->tx_free[--x->tx_nfree];
	p = x->umem + addr;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(p, iov[i].iov_base, iov[i].iov_len);
		p += iov[i].iov_len;
	}
	if (len < AFXDP_MIN_FRAME) {
		memset(p, 0, AFXDP_MIN_FRAME - len);
		len = AFXDP_MIN_FRAME;
	}
	xring_desc(&x->tx, idx)->addr = addr;
	xring_desc(&x->tx, idx)->len = (uint32_t)len;
	xring_desc(&x->tx, idx)->options = 0;
	xring_submit(&x->tx);
	if (!nic->defer_kick)
		afxdp_kick_tx(x);
	return 0;
}

static int afxdp_wait_fd(struct nic *nic)
{
	struct afxdp *x = nic->priv;

	return x->fd;
}

/* Without the stack lock: reads only the shared indices and flags. */
static int afxdp_kick(struct nic *nic)
{
	struct afxdp *x = nic->priv;

	if (xring_outstanding(&x->tx) == 0)
		return 0;
	return afxdp_kick_tx(x);
}

const struct nic_ops nic_afxdp_ops = {
	.name = "afxdp",
	.open = afxdp_open,
	.fork_keep = afxdp_fork_keep,
	.quiesce = afxdp_quiesce,
	.close = afxdp_close,
	.rx = afxdp_rx,
	.tx = afxdp_tx,
	.wait_fd = afxdp_wait_fd,
	.kick = afxdp_kick,
};
