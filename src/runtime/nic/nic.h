/* The NIC backend interface: one ops table per way of reaching the wire. */
#ifndef LIBRETTO_NIC_H
#define LIBRETTO_NIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/kv.h"

/*
 * A backend moves whole Ethernet frames between the runtime's single netif
 * and the wire.  Backends: "afxdp" (direct, nic_afxdp.c), "afpacket"
 * (direct fallback, nic_afpacket.c), later "shm" (indirect, rings to netd).
 *
 * Threading: rx() is called by one thread at a time, serialized by the
 * stack's receive lock but without the stack lock (frames are copied out
 * before lwIP is locked), so it may run while another thread is in tx();
 * tx() may be called by any thread but always with the stack lock held
 * (lwIP's linkoutput runs under it).  So a backend needs no lock of its own
 * as long as rx() and tx() share no mutable state.  wait_fd() and kick() may
 * be called without any lock, concurrently with both.
 *
 * Switching (network-server issue): the netif quiesces the old backend,
 * opens the new one, swaps nic pointers under the receive and stack locks,
 * and keeps calling rx() on the old one until it returns 0 for a while, then
 * closes it.
 */
struct nic;

/* Called by rx() for each received frame; the frame is valid only during
 * the call (the callee copies it). */
typedef void (*nic_rx_fn)(void *arg, const void *frame, size_t len);

struct nic_ops {
	const char *name;
	/*
	 * Build the backend from the lease (the register reply, with "<x>_fd"
	 * keys for the descriptors).  Takes ownership of the descriptors it
	 * uses.  Returns 0 or -errno; on error nothing is left allocated.
	 */
	int (*open)(struct nic *nic, const struct kv *lease);
	/* Stop taking new TX; RX still drains.  Idempotent. */
	void (*quiesce)(struct nic *nic);
	/* Release everything; the nic is unusable afterwards. */
	void (*close)(struct nic *nic);
	/* Deliver up to budget received frames through fn; returns how many
	 * (0 when nothing was pending) or -errno on a fatal device error. */
	int (*rx)(struct nic *nic, int budget, nic_rx_fn fn, void *arg);
	/* Queue one frame (gathered from iov) for transmission and make sure it
	 * leaves (kick if the kernel needs it; unless nic->defer_kick, when the
	 * caller kicks after its batch).  Returns 0, -EAGAIN when the TX
	 * ring is full (the caller drops; TCP retransmits), -EMSGSIZE, or -errno. */
	int (*tx)(struct nic *nic, const struct iovec *iov, int iovcnt);
	/* A descriptor that becomes readable (POLLIN) when rx() has work. */
	int (*wait_fd)(struct nic *nic);
	/* Push out anything queued for TX (e.g. sendto on the XSK fd). */
	int (*kick)(struct nic *nic);
	/* Optional.  keep: let the next fork() child inherit the device's
	 * memory (rings, UMEM) at the same addresses, so it can take over the
	 * NIC exactly where this process stopped (the stack's keeper, see
	 * stack_keeper_prepare); !keep: back to children getting none. */
	void (*fork_keep)(struct nic *nic, bool keep);
};

struct nic {
	const struct nic_ops *ops;
	void *priv;              /* backend state */
	uint8_t mac[6];          /* the MAC frames are sent from */
	unsigned mtu;            /* payload MTU, 1500 */
	/* Set by the stack while it holds the stack lock and will call kick()
	 * before releasing it: tx() may then queue without a doorbell per
	 * frame.  Read by tx() only (under the same lock). */
	bool defer_kick;
};

extern const struct nic_ops nic_afxdp_ops;
extern const struct nic_ops nic_afpacket_ops;
/* Indirect mode: the ring region shared with libretto-netd (lease keys
 * ring_fd, efd_netd_fd, efd_app_fd; include/libretto/ring.h). */
extern const struct nic_ops nic_shm_ops;

/* The ops table named by the lease's "backend=" key, or NULL. */
const struct nic_ops *nic_ops_by_name(const char *name);

static inline int nic_rx(struct nic *n, int budget, nic_rx_fn fn, void *arg)
{
	return n->ops->rx(n, budget, fn, arg);
}

static inline int nic_tx(struct nic *n, const struct iovec *iov, int iovcnt)
{
	return n->ops->tx(n, iov, iovcnt);
}

static inline int nic_wait_fd(struct nic *n)
{
	return n->ops->wait_fd(n);
}

static inline int nic_kick(struct nic *n)
{
	return n->ops->kick(n);
}

#endif
