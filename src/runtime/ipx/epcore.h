/* epoll bookkeeping for libOS members: interest list, ready list, LT/ET/ONESHOT. */
#ifndef LIBRETTO_EPCORE_H
#define LIBRETTO_EPCORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/queue.h>

/*
 * This is the part of an emulated epoll instance that knows nothing about
 * lwIP, sockets or the kernel: members are opaque, their readiness comes
 * from ops->poll(), and "something became ready" comes from epc_notify().
 * The unit tests drive it with fake members.
 *
 * Rules (those of Linux's eventpoll):
 *  - A member is identified by (fd, key): key names the open description,
 *    so dup'ed descriptors of one socket are separate entries.
 *  - Every notify that carries interesting events puts the member on the
 *    ready list (once) and counts a new edge.  epc_collect() re-checks each
 *    ready member with ops->poll() outside the instance lock and reports
 *    (polled & (interest | EPOLLERR | EPOLLHUP)).
 *  - Level-triggered members that are still ready stay on the list (at its
 *    tail, for fairness); members found not ready leave it.
 *  - EPOLLET members leave the list once reported and come back only with a
 *    new notify (a notify that arrives while being collected keeps them).
 *  - EPOLLONESHOT members are disarmed once reported: notifies are ignored
 *    until epc_mod() re-arms them.
 *  - ADD and MOD queue the member for one check, so a member that is
 *    already ready is reported (once, even when edge-triggered).
 *
 * Locking: one mutex per instance guards both lists and every member's
 * state.  epc_notify() takes it and is meant to be called from a socket's
 * watch callback (under the stack lock), so nothing here calls ops->poll()
 * (which may take the stack lock) while holding it: lock order is
 * stack lock -> instance lock.
 */
struct epc;
struct epc_member;

struct epc_member_ops {
	/* Current EPOLL* readiness; called without the instance lock. */
	uint32_t (*poll)(struct epc_member *m);
	/* The last reference is gone: free the member. */
	void (*release)(struct epc_member *m);
};

struct epc_member {
	const struct epc_member_ops *ops;
	struct epc *ep;
	int fd;
	const void *key;
	uint32_t events;	/* interest, with EPOLLET/EPOLLONESHOT */
	epoll_data_t data;
	unsigned int gen;	/* notifies (edges) seen */
	int refs;		/* interest list 1 + collectors */
	bool linked;		/* on the interest list */
	bool queued;		/* on the ready list or in a collector's batch */
	bool armed;		/* false: a reported EPOLLONESHOT member */
	/* Scratch of the one collector whose batch holds the member. */
	bool inbatch, polled;
	unsigned int seen_gen;
	uint32_t snap_mask, got;
	TAILQ_ENTRY(epc_member) ilink;
	TAILQ_ENTRY(epc_member) rlink;
};

TAILQ_HEAD(epc_list, epc_member);

struct epc {
	pthread_mutex_t lock;
	struct epc_list interest;
	struct epc_list ready;
	int nmembers;
	/* Threads about to sleep or sleeping on this instance; written with
	 * seq_cst (see epc_sleep_begin). */
	atomic_int sleepers;
	/* Ring even without sleepers: the instance is watched from outside
	 * (nested in another epoll set, or polled). */
	atomic_bool always_ring;
	/* Wake sleepers (write the doorbell); called without the lock. */
	void (*ring)(struct epc *ep);
};

void epc_init(struct epc *ep, void (*ring)(struct epc *ep));
/* The instance must have no members left (epc_del them first). */
void epc_fini(struct epc *ep);

/*
 * ADD: m is zero-initialised storage with ops set; on success the instance
 * owns one reference.  -EEXIST if (fd, key) is already a member, -EINVAL
 * for a NULL event.
 */
int epc_add(struct epc *ep, struct epc_member *m, int fd, const void *key,
	    const struct epoll_event *ev);
/* MOD: new interest and data, re-armed, queued for a check.  -ENOENT. */
int epc_mod(struct epc *ep, int fd, const void *key, const struct epoll_event *ev);
/*
 * DEL: unlinks (fd, key) and returns it with the instance's reference now
 * owned by the caller (who stops the notifies, then calls epc_put()), or
 * NULL when it is not a member (-ENOENT for the caller).
 */
struct epc_member *epc_del(struct epc *ep, int fd, const void *key);
/* The same for a member the caller already knows; false if already gone. */
bool epc_unlink(struct epc_member *m);
/* Any member, unlinked as by epc_del (for tearing an instance down). */
struct epc_member *epc_pop(struct epc *ep);
void epc_put(struct epc_member *m);

/* Readiness may have changed; events is the current EPOLL* mask. */
void epc_notify(struct epc_member *m, uint32_t events);

/* Report up to max ready members into out; returns how many. */
int epc_collect(struct epc *ep, struct epoll_event *out, int max);
/* Whether the ready list is non-empty (members queued for a check). */
bool epc_has_ready(struct epc *ep);
/* Whether some queued member is really ready now (polls them; drops those
 * that are not, as a collect would; reports nothing). */
bool epc_prune(struct epc *ep);

/*
 * A waiter announces itself before its last check and withdraws after its
 * sleep.  The notifier's ready-list insert is under the lock and its load of
 * sleepers follows it, while the waiter's increment precedes its checking
 * under the same lock: either the waiter sees the member, or the notifier
 * sees the waiter and rings.
 */
void epc_sleep_begin(struct epc *ep);
void epc_sleep_end(struct epc *ep);

#endif
