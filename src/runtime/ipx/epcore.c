/* epoll bookkeeping for libOS members (see epcore.h for the rules). */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "ipx/epcore.h"

/* The bits of an interest mask that are flags, not events. */
#define EPC_FLAGS (EPOLLET | EPOLLONESHOT | EPOLLEXCLUSIVE | EPOLLWAKEUP)
/* What Linux accepts next to EPOLLEXCLUSIVE (EPOLLEXCLUSIVE_OK_BITS). */
#define EPC_EXCLUSIVE_OK (EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLWAKEUP | EPOLLET | \
			  EPOLLEXCLUSIVE)

void epc_init(struct epc *ep, void (*ring)(struct epc *ep))
{
	memset(ep, 0, sizeof(*ep));
	pthread_mutex_init(&ep->lock, NULL);
	TAILQ_INIT(&ep->interest);
	TAILQ_INIT(&ep->ready);
	atomic_init(&ep->sleepers, 0);
	atomic_init(&ep->always_ring, false);
	ep->ring = ring;
}

void epc_fini(struct epc *ep)
{
	pthread_mutex_destroy(&ep->lock);
}

static uint32_t epc_mask(const struct epc_member *m)
{
	return (m->events & ~(uint32_t)EPC_FLAGS) | EPOLLERR | EPOLLHUP;
}

static struct epc_member *epc_find(struct epc *ep, int fd, const void *key)
{
	struct epc_member *m;

	TAILQ_FOREACH(m, &ep->interest, ilink)
		if (m->fd == fd && m->key == key)
			return m;
	return NULL;
}

/* Called with the lock held: put m on the ready list for a check. */
static void epc_queue(struct epc *ep, struct epc_member *m)
{
	m->gen++;
	if (!m->queued) {
		m->queued = true;
		TAILQ_INSERT_TAIL(&ep->ready, m, rlink);
	}
}

static void epc_maybe_ring(struct epc *ep)
{
	/* seq_cst: pairs with the increment in epc_sleep_begin(). */
	if (atomic_load(&ep->always_ring) || atomic_load(&ep->sleepers) > 0)
		ep->ring(ep);
}

int epc_add(struct epc *ep, struct epc_member *m, int fd, const void *key,
	    const struct epoll_event *ev)
{
	if (ev == NULL)
		return -EINVAL;
	/* Linux: EPOLLEXCLUSIVE excludes EPOLLONESHOT, EPOLLRDHUP, EPOLLPRI... */
	if ((ev->events & EPOLLEXCLUSIVE) && (ev->events & ~(uint32_t)EPC_EXCLUSIVE_OK))
		return -EINVAL;
	pthread_mutex_lock(&ep->lock);
	if (epc_find(ep, fd, key) != NULL) {
		pthread_mutex_unlock(&ep->lock);
		return -EEXIST;
	}
	m->ep = ep;
	m->fd = fd;
	m->key = key;
	m->events = ev->events;
	m->data = ev->data;
	m->refs = 1;
	m->linked = true;
	m->armed = true;
	TAILQ_INSERT_TAIL(&ep->interest, m, ilink);
	ep->nmembers++;
	epc_queue(ep, m);
	pthread_mutex_unlock(&ep->lock);
	epc_maybe_ring(ep);
	return 0;
}

int epc_mod(struct epc *ep, int fd, const void *key, const struct epoll_event *ev)
{
	struct epc_member *m;

	if (ev == NULL)
		return -EINVAL;
	pthread_mutex_lock(&ep->lock);
	m = epc_find(ep, fd, key);
	if (m == NULL) {
		pthread_mutex_unlock(&ep->lock);
		return -ENOENT;
	}
	/* Linux: EPOLLEXCLUSIVE is for ADD only, and sticks. */
	if ((ev->events | m->events) & EPOLLEXCLUSIVE) {
		pthread_mutex_unlock(&ep->lock);
		return -EINVAL;
	}
	m->events = ev->events;
	m->data = ev->data;
	m->armed = true;
	epc_queue(ep, m);
	pthread_mutex_unlock(&ep->lock);
	epc_maybe_ring(ep);
	return 0;
}

/* Called with the lock held. */
static void epc_unlink_locked(struct epc *ep, struct epc_member *m)
{
	TAILQ_REMOVE(&ep->interest, m, ilink);
	ep->nmembers--;
	m->linked = false;
	/* A member in a collector's batch is dropped by that collector. */
	if (m->queued && !m->inbatch) {
		TAILQ_REMOVE(&ep->ready, m, rlink);
		m->queued = false;
	}
}

struct epc_member *epc_del(struct epc *ep, int fd, const void *key)
{
	struct epc_member *m;

	pthread_mutex_lock(&ep->lock);
	m = epc_find(ep, fd, key);
	if (m != NULL)
		epc_unlink_locked(ep, m);
	pthread_mutex_unlock(&ep->lock);
	return m;
}

bool epc_unlink(struct epc_member *m)
{
	struct epc *ep = m->ep;
	bool was;

	pthread_mutex_lock(&ep->lock);
	was = m->linked;
	if (was)
		epc_unlink_locked(ep, m);
	pthread_mutex_unlock(&ep->lock);
	return was;
}

struct epc_member *epc_pop(struct epc *ep)
{
	struct epc_member *m;

	pthread_mutex_lock(&ep->lock);
	m = TAILQ_FIRST(&ep->interest);
	if (m != NULL)
		epc_unlink_locked(ep, m);
	pthread_mutex_unlock(&ep->lock);
	return m;
}

void epc_put(struct epc_member *m)
{
	struct epc *ep = m->ep;
	int left;

	pthread_mutex_lock(&ep->lock);
	left = --m->refs;
	pthread_mutex_unlock(&ep->lock);
	if (left == 0)
		m->ops->release(m);
}

void epc_notify(struct epc_member *m, uint32_t events)
{
	struct epc *ep = m->ep;

	pthread_mutex_lock(&ep->lock);
	if (!m->linked || !m->armed || !(events & epc_mask(m))) {
		pthread_mutex_unlock(&ep->lock);
		return;
	}
	epc_queue(ep, m);
	pthread_mutex_unlock(&ep->lock);
	epc_maybe_ring(ep);
}

bool epc_has_ready(struct epc *ep)
{
	bool r;

	pthread_mutex_lock(&ep->lock);
	r = !TAILQ_EMPTY(&ep->ready);
	pthread_mutex_unlock(&ep->lock);
	return r;
}

/*
 * The scan behind epc_collect (report) and epc_prune (!report: members
 * found ready stay queued and nothing is consumed, those not ready leave
 * the list as a collect would drop them).
 */
static int epc_scan(struct epc *ep, struct epoll_event *out, int max, bool report)
{
	struct epc_list batch, rest, again, dead;
	struct epc_member *m;
	uint32_t ev;
	int n = 0, found = 0;

	TAILQ_INIT(&batch);
	TAILQ_INIT(&rest);
	TAILQ_INIT(&again);
	TAILQ_INIT(&dead);
	if (max <= 0)
		return 0;

	/* Take the whole ready list; the members stay "queued", so notifies
	 * only count edges while we poll them without the lock. */
	pthread_mutex_lock(&ep->lock);
	while ((m = TAILQ_FIRST(&ep->ready)) != NULL) {
		TAILQ_REMOVE(&ep->ready, m, rlink);
		TAILQ_INSERT_TAIL(&batch, m, rlink);
		m->inbatch = true;
		m->polled = false;
		m->seen_gen = m->gen;
		m->snap_mask = epc_mask(m);
		m->refs++;
	}
	pthread_mutex_unlock(&ep->lock);
	if (TAILQ_EMPTY(&batch))
		return 0;

	/* Poll until max members were found ready; the rest wait their turn.
	 * Counting uses the interest seen at detach time; the verdict below
	 * is made under the lock with the current one (a MOD may race). */
	TAILQ_FOREACH(m, &batch, rlink) {
		if (found >= max)
			break;
		m->got = m->ops->poll(m);
		m->polled = true;
		if (m->got & m->snap_mask)
			found++;
	}

	pthread_mutex_lock(&ep->lock);
	while ((m = TAILQ_FIRST(&batch)) != NULL) {
		TAILQ_REMOVE(&batch, m, rlink);
		m->inbatch = false;
		if (!m->linked) {
			m->queued = false;
		} else if (!m->polled || n >= max) {
			TAILQ_INSERT_TAIL(&rest, m, rlink);
		} else {
			ev = m->armed ? m->got & epc_mask(m) : 0;
			if (!report) {
				if (ev != 0 || m->gen != m->seen_gen)
					TAILQ_INSERT_TAIL(&again, m, rlink);
				else
					m->queued = false;
				n += ev != 0;
			} else if (ev != 0) {
				out[n].events = ev;
				out[n].data = m->data;
				n++;
			}
			if (!report) {
				/* Decided above. */
			} else if (ev != 0 && (m->events & EPOLLONESHOT)) {
				m->armed = false;
				m->queued = false;
			} else if (ev != 0 && !(m->events & EPOLLET)) {
				TAILQ_INSERT_TAIL(&again, m, rlink);
			} else if (m->gen != m->seen_gen) {
				/* A new edge (or a MOD) arrived meanwhile. */
				TAILQ_INSERT_TAIL(&again, m, rlink);
			} else {
				m->queued = false;
			}
		}
		if (--m->refs == 0)
			TAILQ_INSERT_TAIL(&dead, m, rlink);
	}
	/* Unchecked members first (their turn is next), then those queued
	 * meanwhile, then the level-triggered ones just reported. */
	TAILQ_CONCAT(&rest, &ep->ready, rlink);
	TAILQ_CONCAT(&rest, &again, rlink);
	TAILQ_CONCAT(&ep->ready, &rest, rlink);
	pthread_mutex_unlock(&ep->lock);

	while ((m = TAILQ_FIRST(&dead)) != NULL) {
		TAILQ_REMOVE(&dead, m, rlink);
		m->ops->release(m);
	}
	return n;
}

int epc_collect(struct epc *ep, struct epoll_event *out, int max)
{
	return epc_scan(ep, out, max, true);
}

bool epc_prune(struct epc *ep)
{
	return epc_scan(ep, NULL, INT_MAX, false) > 0;
}

void epc_sleep_begin(struct epc *ep)
{
	atomic_fetch_add(&ep->sleepers, 1);
}

void epc_sleep_end(struct epc *ep)
{
	atomic_fetch_sub(&ep->sleepers, 1);
}
