/* epoll over mixed kernel and libOS descriptors. */
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "ipx/ipx.h"
#include "stack/stack.h"

#define IPX_TAG_MEMBER 1u
#define IPX_TAG_DOORBELL 2u
/* Events of the private sleep set (ep->sleep_ep), which holds nothing else. */
#define IPX_SLEEP_KEP 1u
#define IPX_SLEEP_NIC 2u
/* How long epoll_wait runs the stack itself before it sleeps: adaptive per
 * instance, halved after a spin that found nothing (down to the minimum),
 * back to the maximum after one that did: an idle timer loop costs little,
 * a busy server keeps its wake-ups off the doorbell. */
#define IPX_SPIN_MAX_NS 50000
#define IPX_SPIN_MIN_NS 5000

/* The progress thread's hand-over (stack.h); weak so that this file still
 * links against a stack without it. */
#pragma weak stack_poller_note
#pragma weak stack_poller_sleep
#pragma weak stack_wait_fd
#pragma weak stack_poller_nic_sleep

static inline void ipx_poller_note(void)
{
	if (stack_poller_note)
		stack_poller_note();
}

static inline void ipx_poller_sleep(void)
{
	if (stack_poller_sleep)
		stack_poller_sleep();
}

static uint64_t ipx_doorbell_tag(struct ipx_epoll *ep)
{
	return (uint64_t)(uintptr_t)ep | IPX_TAG_DOORBELL;
}

/* Called without locks (see epc.ring). */
static void ipx_epoll_ring(struct epc *core)
{
	struct ipx_epoll *ep = (struct ipx_epoll *)core;
	uint64_t one = 1;

	(void)!real.write(ep->doorbell, &one, sizeof(one));
}

static void ipx_doorbell_drain(struct ipx_epoll *ep)
{
	uint64_t v;

	(void)!real.read(ep->doorbell, &v, sizeof(v));
}

/*
 * Drain first, then check, then ring: a notify that lands after the drain
 * rings again itself, so a ready member is never left without a ring.
 */
void ipx_epoll_sync_doorbell(struct ipx_epoll *ep)
{
	ipx_doorbell_drain(ep);
	if (epc_prune(&ep->core))
		ipx_epoll_ring(&ep->core);
}

/* Before the kernel looks at ep's set: the nested instances' doorbells may
 * still ring for members that stopped being ready (a read consumes data
 * without a notify), so make them exact. */
static void ipx_epoll_refresh_nested(struct ipx_epoll *ep)
{
	struct ipx_file *v[16];
	int n = 0, i;

	if (ep->nnested == 0)
		return;
	pthread_mutex_lock(&ep->core.lock);
	for (i = 0; i < ep->nnested && n < 16; i++) {
		ipx_pin(ep->nested[i]);
		v[n++] = ep->nested[i];
	}
	pthread_mutex_unlock(&ep->core.lock);
	for (i = 0; i < n; i++) {
		if (v[i]->nfd > 0)
			ipx_epoll_sync_doorbell(v[i]->ep);
		ipx_put(v[i]);
	}
}

/* Record (add) or forget (!add) an emulated instance nested in ep. */
static void ipx_epoll_nest(struct ipx_epoll *ep, struct ipx_file *inner, bool add)
{
	struct ipx_file *drop = NULL;
	void *p;
	int i;

	pthread_mutex_lock(&ep->core.lock);
	if (add) {
		if (ep->nnested == ep->capnested) {
			int cap = ep->capnested ? 2 * ep->capnested : 4;

			p = realloc(ep->nested, (size_t)cap * sizeof(*ep->nested));
			if (p != NULL) {
				ep->nested = p;
				ep->capnested = cap;
			}
		}
		if (ep->nnested < ep->capnested) {
			ipx_pin(inner);
			ep->nested[ep->nnested++] = inner;
		}
	} else {
		for (i = 0; i < ep->nnested; i++)
			if (ep->nested[i] == inner) {
				drop = inner;
				ep->nested[i] = ep->nested[--ep->nnested];
				break;
			}
	}
	pthread_mutex_unlock(&ep->core.lock);
	if (drop != NULL)
		ipx_put(drop);
}

uint32_t ipx_kernel_ready(struct ipx_file *f, int fd)
{
	uint32_t ke = lsock_kernel_events(f->sock);
	int kfd = lsock_kfd(f->sock);
	struct pollfd p;
	struct timespec zero = { 0, 0 };

	if (ke == 0)
		return 0;
	/* POLL* and EPOLL* share their values on Linux. */
	p.fd = kfd >= 0 ? kfd : fd;
	p.events = (short)ke;
	p.revents = 0;
	if (real.ppoll(&p, 1, &zero, NULL) <= 0)
		return 0;
	return (uint32_t)p.revents & ke;
}

/* Register the member's kernel fd for events its kernel side now carries. */
static void ipx_member_kcheck(struct ipx_member *m)
{
	uint32_t ke = lsock_kernel_events(m->file->sock), want;
	struct ipx_epoll *ep = m->ep;
	struct epoll_event kev;
	int op, r;

	if ((ke & ~m->kev) == 0)
		return;
	pthread_mutex_lock(&ipx_lock);
	want = m->kev | ke;
	/* A member already torn down (off its file's list) stays out. */
	if (m->onlist && want != m->kev) {
		/* Edge-triggered: every kernel edge becomes one notify, and
		 * the member's own LT/ET rules apply after re-polling. */
		kev.events = want | EPOLLET;
		kev.data.u64 = (uint64_t)(uintptr_t)m | IPX_TAG_MEMBER;
		op = m->kev ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
		r = real.epoll_ctl(m->epfd, op, m->core.fd, &kev);
		if (r == 0 && op == EPOLL_CTL_ADD) {
			pthread_mutex_lock(&ep->core.lock);
			if (ep->nkregs == ep->capkregs) {
				int cap = ep->capkregs ? 2 * ep->capkregs : 4;
				void *p = realloc(ep->kregs, (size_t)cap * sizeof(*ep->kregs));

				if (p != NULL) {
					ep->kregs = p;
					ep->capkregs = cap;
				}
			}
			if (ep->nkregs < ep->capkregs)
				ep->kregs[ep->nkregs++] = m;
			pthread_mutex_unlock(&ep->core.lock);
		}
		if (r == 0)
			m->kev = want;
	}
	pthread_mutex_unlock(&ipx_lock);
}

void ipx_members_kcheck(struct ipx_file *f)
{
	struct ipx_member *m, **v = NULL;
	int n = 0, i;

	/* Snapshot with refs, so the registration runs without the list. */
	pthread_mutex_lock(&ipx_lock);
	LIST_FOREACH(m, &f->members, flink)
		n++;
	if (n > 0 && (v = calloc((size_t)n, sizeof(*v))) != NULL) {
		n = 0;
		LIST_FOREACH(m, &f->members, flink) {
			pthread_mutex_lock(&m->ep->core.lock);
			m->core.refs++;
			pthread_mutex_unlock(&m->ep->core.lock);
			v[n++] = m;
		}
	}
	pthread_mutex_unlock(&ipx_lock);
	for (i = 0; v != NULL && i < n; i++) {
		ipx_member_kcheck(v[i]);
		epc_put(&v[i]->core);
	}
	free(v);
}

static uint32_t ipx_member_poll(struct epc_member *core)
{
	struct ipx_member *m = (struct ipx_member *)core;
	uint32_t ev = lsock_events(m->file->sock);

	if (lsock_kernel_events(m->file->sock) != 0) {
		ipx_member_kcheck(m);
		ev |= ipx_kernel_ready(m->file, core->fd);
	}
	return ev;
}

static void ipx_member_release(struct epc_member *core)
{
	struct ipx_member *m = (struct ipx_member *)core;

	ipx_put(m->file);
	free(m);
}

static const struct epc_member_ops ipx_member_ops = {
	.poll = ipx_member_poll,
	.release = ipx_member_release,
};

/* Called by the socket layer with the stack lock held. */
static void ipx_member_notify(struct lsock_watch *w, uint32_t events)
{
	epc_notify(w->arg, events);
}

/*
 * The one who unlinked m from its instance (epc_del/unlink/pop return it
 * once) finishes it: no more notifies, off the file's list and the kernel
 * set, then the instance's reference goes.
 */
static void ipx_member_finish(struct ipx_member *m)
{
	struct ipx_epoll *ep = m->ep;
	int i;

	lsock_watch_del(m->file->sock, &m->watch);
	pthread_mutex_lock(&ipx_lock);
	if (m->onlist) {
		LIST_REMOVE(m, flink);
		m->onlist = false;
	}
	if (m->kev != 0) {
		/* Fails harmlessly when the fd or the epoll fd is gone; the
		 * tag check in epoll_wait ignores any late event. */
		(void)real.epoll_ctl(m->epfd, EPOLL_CTL_DEL, m->core.fd, NULL);
		pthread_mutex_lock(&ep->core.lock);
		for (i = 0; i < ep->nkregs; i++)
			if (ep->kregs[i] == m) {
				ep->kregs[i] = ep->kregs[--ep->nkregs];
				break;
			}
		pthread_mutex_unlock(&ep->core.lock);
		m->kev = 0;
	}
	pthread_mutex_unlock(&ipx_lock);
	epc_put(&m->core);
}

void ipx_member_remove_all(struct ipx_file *f)
{
	struct ipx_member *m;

	pthread_mutex_lock(&ipx_lock);
	while ((m = LIST_FIRST(&f->members)) != NULL) {
		LIST_REMOVE(m, flink);
		m->onlist = false;
		if (!epc_unlink(&m->core))
			continue;	/* a concurrent DEL or teardown owns it */
		/* Order ipx_lock -> stack lock is allowed; keep the put
		 * (which may free the file's last ref) here too: it takes
		 * no ipx lock. */
		lsock_watch_del(f->sock, &m->watch);
		if (m->kev != 0) {
			pthread_mutex_lock(&m->ep->core.lock);
			for (int i = 0; i < m->ep->nkregs; i++)
				if (m->ep->kregs[i] == m) {
					m->ep->kregs[i] = m->ep->kregs[--m->ep->nkregs];
					break;
				}
			pthread_mutex_unlock(&m->ep->core.lock);
			m->kev = 0;
		}
		epc_put(&m->core);
	}
	pthread_mutex_unlock(&ipx_lock);
}

/*
 * The socket became a plain kernel socket (connect to a destination the
 * kernel serves): its epoll registrations move to the kernel sets, with the
 * interest and data the app gave, so the app keeps getting its events (nginx
 * registers an upstream socket before it connects).
 */
void ipx_member_convert_all(struct ipx_file *f)
{
	struct ipx_member *m;
	struct epoll_event kev;

	pthread_mutex_lock(&ipx_lock);
	while ((m = LIST_FIRST(&f->members)) != NULL) {
		LIST_REMOVE(m, flink);
		m->onlist = false;
		if (!epc_unlink(&m->core))
			continue;
		lsock_watch_del(f->sock, &m->watch);
		pthread_mutex_lock(&m->ep->core.lock);
		kev.events = m->core.events;
		kev.data = m->core.data;
		for (int i = 0; i < m->ep->nkregs; i++)
			if (m->ep->kregs[i] == m) {
				m->ep->kregs[i] = m->ep->kregs[--m->ep->nkregs];
				break;
			}
		pthread_mutex_unlock(&m->ep->core.lock);
		/* MOD where the kernel side was registered (ADD if that
		 * registration is gone with its kernel file). */
		if ((m->kev == 0 || real.epoll_ctl(m->epfd, EPOLL_CTL_MOD, m->core.fd, &kev) < 0) &&
		    real.epoll_ctl(m->epfd, EPOLL_CTL_ADD, m->core.fd, &kev) < 0)
			fprintf(stderr, "libretto: epoll: cannot move fd %d to the kernel set: %s\n",
				m->core.fd, strerror(errno));
		m->kev = 0;
		epc_put(&m->core);
	}
	pthread_mutex_unlock(&ipx_lock);
}

/* Close the waits' private epoll fd (once). */
static void ipx_epoll_close_kep(struct ipx_epoll *ep)
{
	int kep = atomic_exchange(&ep->kep, -1);
	int se = atomic_exchange(&ep->sleep_ep, -2);

	if (kep >= 0) {
		ipx_private_del(kep);
		real.close(kep);
	}
	if (se >= 0) {
		ipx_private_del(se);
		real.close(se);
	}
}

static void ipx_epoll_destroy_now(struct ipx_epoll *ep)
{
	struct epc_member *c;

	while ((c = epc_pop(&ep->core)) != NULL)
		ipx_member_finish((struct ipx_member *)c);
	ipx_epoll_close_kep(ep);
}

/*
 * destroy_pending and waiters pair as in Dekker's protocol (seq_cst): here
 * the store of destroy_pending precedes the load of waiters, in
 * ipx_epoll_wait the decrement of waiters precedes the exchange of
 * destroy_pending, so one of the two sees the other; the exchange makes
 * sure the teardown runs once.
 */
void ipx_epoll_destroy(struct ipx_epoll *ep)
{
	atomic_store(&ep->destroy_pending, true);
	if (atomic_load(&ep->waiters) > 0)
		return;
	if (atomic_exchange(&ep->destroy_pending, false))
		ipx_epoll_destroy_now(ep);
}

void ipx_epoll_free(struct ipx_epoll *ep)
{
	ipx_epoll_close_kep(ep);
	for (int i = 0; i < ep->nnested; i++)
		ipx_put(ep->nested[i]);
	free(ep->nested);
	ipx_private_del(ep->doorbell);
	real.close(ep->doorbell);
	epc_fini(&ep->core);
	free(ep->kregs);
	free(ep);
}

static int ipx_epoll_make(int kfd)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct ipx_epoll *ep;
	struct ipx_file *f;
	int err;

	ep = calloc(1, sizeof(*ep));
	if (ep == NULL)
		return -ENOMEM;
	epc_init(&ep->core, ipx_epoll_ring);
	atomic_init(&ep->waiters, 0);
	atomic_init(&ep->destroy_pending, false);
	atomic_init(&ep->kep, -1);
	atomic_init(&ep->sleep_ep, -1);
	atomic_init(&ep->sleep_nic, -1);
	ep->doorbell = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ep->doorbell < 0) {
		err = -errno;
		goto fail_free;
	}
	ev.data.u64 = ipx_doorbell_tag(ep);
	if (real.epoll_ctl(kfd, EPOLL_CTL_ADD, ep->doorbell, &ev) < 0) {
		err = -errno;
		goto fail_close;
	}
	err = ipx_private_add(ep->doorbell);
	if (err < 0)
		goto fail_close;
	f = ipx_file_new(IPX_EPOLL);
	if (f == NULL) {
		err = -ENOMEM;
		goto fail_private;
	}
	f->ep = ep;
	/* Without it, waits sleep on the program's number (a close during a
	 * wait then ends it with EBADF). */
	atomic_store(&ep->kep, ipx_private_dup(kfd));
	err = ipx_attach(f, kfd);
	/* On failure this frees f and, through ipx_epoll_free, ep. */
	ipx_put(f);
	return err;

fail_private:
	ipx_private_del(ep->doorbell);
fail_close:
	real.close(ep->doorbell);
fail_free:
	epc_fini(&ep->core);
	free(ep);
	return err;
}

/*
 * The stack starts at the first libOS socket (stack.h), and event loops
 * (libevent, redis, asyncio) make their epoll instance before their
 * sockets: while a lease is pending the instance is emulated too, ready for
 * the libOS sockets to come.  Weak, so the layer links without the stack.
 */
extern bool stack_lease_pending(void) __attribute__((weak));

static int ipx_epoll_create(int kfd)
{
	int err;

	if (kfd < 0 || !(stack_active() || (stack_lease_pending != NULL && stack_lease_pending())))
		return kfd;
	err = ipx_epoll_make(kfd);
	if (err < 0) {
		real.close(kfd);
		errno = -err;
		return -1;
	}
	return kfd;
}

IPX_EXPORT int epoll_create(int size)
{
	real_init();
	return ipx_epoll_create(real.epoll_create(size));
}

IPX_EXPORT int epoll_create1(int flags)
{
	real_init();
	return ipx_epoll_create(real.epoll_create1(flags));
}

static int ipx_epoll_ctl_member(struct ipx_file *ef, int epfd, int op, int fd,
				struct ipx_file *sf, struct epoll_event *ev)
{
	struct ipx_epoll *ep = ef->ep;
	struct epc_member *c;
	struct ipx_member *m;
	int err;

	switch (op) {
	case EPOLL_CTL_ADD:
		if (ev == NULL)
			return -EFAULT;
		m = calloc(1, sizeof(*m));
		if (m == NULL)
			return -ENOMEM;
		m->core.ops = &ipx_member_ops;
		m->watch.notify = ipx_member_notify;
		m->watch.arg = &m->core;
		m->ep = ep;
		m->epfd = epfd;
		ipx_pin(sf);
		m->file = sf;
		/* Linked, listed and watching under ipx_lock, so a final
		 * close of the socket (ipx_member_remove_all) sees all three
		 * or none. */
		pthread_mutex_lock(&ipx_lock);
		/* A descriptor was closed since we looked it up (then the
		 * teardown that follows its last close would miss us). */
		err = sf->nfd > 0 && ef->nfd > 0 ?
			epc_add(&ep->core, &m->core, fd, sf, ev) : -EBADF;
		if (err == 0) {
			LIST_INSERT_HEAD(&sf->members, m, flink);
			m->onlist = true;
			lsock_watch_add(sf->sock, &m->watch);
		}
		pthread_mutex_unlock(&ipx_lock);
		if (err < 0) {
			ipx_put(sf);
			free(m);
			return err;
		}
		ipx_member_kcheck(m);
		return 0;
	case EPOLL_CTL_MOD:
		if (ev == NULL)
			return -EFAULT;
		return epc_mod(&ep->core, fd, sf, ev);
	case EPOLL_CTL_DEL:
		c = epc_del(&ep->core, fd, sf);
		if (c == NULL)
			return -ENOENT;
		ipx_member_finish((struct ipx_member *)c);
		return 0;
	default:
		return -EINVAL;
	}
}

IPX_EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	struct ipx_file *ef, *tf;
	int r;

	real_init();
	if (fdtab_peek(epfd) == NULL && fdtab_peek(fd) == NULL)
		return real.epoll_ctl(epfd, op, fd, ev);
	ef = ipx_get(epfd);
	tf = ipx_get(fd);
	if ((tf == &ipx_private || ef == &ipx_private) && !ipx_priv_ok()) {
		/* The runtime's private descriptors do not exist for the program. */
		if (tf != NULL)
			ipx_put(tf);
		if (ef != NULL)
			ipx_put(ef);
		errno = EBADF;
		return -1;
	}
	if (tf != NULL && tf->kind == IPX_VFILE) {
		/* A regular file cannot be watched, as on Linux. */
		ipx_put(tf);
		if (ef != NULL)
			ipx_put(ef);
		errno = EPERM;
		return -1;
	}
	if (ef == NULL || ef->kind != IPX_EPOLL || tf == NULL || tf->kind != IPX_SOCK ||
	    epfd == fd) {
		/* Kernel members, nested epoll instances (they become
		 * readable through their doorbell, so they must ring even
		 * without a sleeper) and every error case are the kernel's.
		 * A libOS socket in an epoll set created before the stack
		 * started is seen through its kernel fd only. */
		if (tf != NULL && tf->kind == IPX_EPOLL && op != EPOLL_CTL_DEL)
			atomic_store(&tf->ep->core.always_ring, true);
		r = real.epoll_ctl(epfd, op, fd, ev);
		if (r == 0 && tf != NULL && tf->kind == IPX_EPOLL) {
			if (ef != NULL && ef->kind == IPX_EPOLL && op != EPOLL_CTL_MOD)
				ipx_epoll_nest(ef->ep, tf, op == EPOLL_CTL_ADD);
			if (op != EPOLL_CTL_DEL)
				ipx_epoll_sync_doorbell(tf->ep);
		}
	} else {
		r = (int)ipx_ret(ipx_epoll_ctl_member(ef, epfd, op, fd, tf, ev));
	}
	if (tf != NULL)
		ipx_put(tf);
	if (ef != NULL)
		ipx_put(ef);
	return r;
}

/*
 * Sort what the kernel set returned: the doorbell is drained and dropped, a
 * member's kernel edge becomes a notify, the app's own events are kept
 * (compacted to the front).  Returns how many were kept; *renotified says a
 * member may now be ready.
 */
static int ipx_epoll_sort(struct ipx_epoll *ep, struct epoll_event *ev, int k, bool *renotified)
{
	uint64_t bell = ipx_doorbell_tag(ep);
	struct ipx_member *m;
	int i, j, kept = 0;

	for (i = 0; i < k; i++) {
		if (ev[i].data.u64 == bell) {
			ipx_doorbell_drain(ep);
			continue;
		}
		if ((ev[i].data.u64 & 7) == IPX_TAG_MEMBER) {
			m = NULL;
			pthread_mutex_lock(&ep->core.lock);
			for (j = 0; j < ep->nkregs; j++)
				if ((uint64_t)(uintptr_t)ep->kregs[j] ==
				    (ev[i].data.u64 & ~(uint64_t)7)) {
					m = ep->kregs[j];
					m->core.refs++;
					break;
				}
			pthread_mutex_unlock(&ep->core.lock);
			if (m != NULL) {
				epc_notify(&m->core, ev[i].events);
				epc_put(&m->core);
				*renotified = true;
				continue;
			}
		}
		ev[kept++] = ev[i];
	}
	return kept;
}

static long ipx_ms_left(const struct timespec *deadline)
{
	struct timespec now;
	long ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (deadline->tv_sec - now.tv_sec) * 1000 +
	     (deadline->tv_nsec - now.tv_nsec + 999999) / 1000000;
	return ms < 0 ? 0 : ms;
}

static long ipx_ns_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t0->tv_sec) * 1000000000L + (now.tv_nsec - t0->tv_nsec);
}

/*
 * The set to sleep on so that a frame for the stack wakes this thread, not
 * the progress thread that would wake it in turn (stack.h,
 * stack_wait_fd): ep's private sleep set, holding kep and the NIC's current
 * wait descriptor; or -1, and the caller sleeps on kfd after handing the
 * NIC over.  Not kep itself: that is the program's epoll instance, which a
 * forked child may share, and whose waits must not wake on our NIC.
 * EPOLLEXCLUSIVE: of several threads asleep on the NIC in different sets,
 * one wakes per frame.  A NIC descriptor closed and reused under the same
 * number (a mode switch) would leave the set without it; the progress
 * thread notices frames that wait unseen and takes over.
 */
static int ipx_epoll_sleep_set(struct ipx_epoll *ep, int kfd)
{
	struct epoll_event ev;
	int se, nfd;

	if (!stack_wait_fd || !stack_poller_nic_sleep || kfd < 0 || kfd != atomic_load(&ep->kep))
		return -1;
	nfd = stack_wait_fd();
	if (nfd < 0)
		return -1;
	se = atomic_load(&ep->sleep_ep);
	if (se >= 0 && atomic_load(&ep->sleep_nic) == nfd)
		return se;
	if (se == -2)
		return -1;
	pthread_mutex_lock(&ep->core.lock);
	se = atomic_load(&ep->sleep_ep);
	if (se == -1) {
		se = real.epoll_create1(EPOLL_CLOEXEC);
		ev.events = EPOLLIN;
		ev.data.u64 = IPX_SLEEP_KEP;
		if (se >= 0 && (real.epoll_ctl(se, EPOLL_CTL_ADD, kfd, &ev) < 0 ||
				ipx_private_add(se) < 0)) {
			real.close(se);
			se = -2;
		} else if (se < 0) {
			se = -2;
		}
		atomic_store(&ep->sleep_ep, se);
	}
	if (se >= 0 && atomic_load(&ep->sleep_nic) != nfd) {
		int old = atomic_exchange(&ep->sleep_nic, -1);

		if (old >= 0)
			(void)real.epoll_ctl(se, EPOLL_CTL_DEL, old, NULL);
		ev.events = EPOLLIN | EPOLLEXCLUSIVE;
		ev.data.u64 = IPX_SLEEP_NIC;
		if (real.epoll_ctl(se, EPOLL_CTL_ADD, nfd, &ev) == 0 || errno == EEXIST)
			atomic_store(&ep->sleep_nic, nfd);
	}
	if (se >= 0 && atomic_load(&ep->sleep_nic) != nfd)
		se = -1;
	pthread_mutex_unlock(&ep->core.lock);
	return se < 0 ? -1 : se;
}

/* The wait proper on f (pinned, counted in waiters); -1 with errno on
 * failure.  kfd is the kernel epoll fd to sleep on. */
static int ipx_epoll_wait_on(struct ipx_file *f, int kfd, struct epoll_event *evs, int max,
			     int timeout, const sigset_t *mask)
{
	struct timespec deadline, spin0;
	struct ipx_epoll *ep = f->ep;
	bool spun = false, renotified;
	int n, k, saved, se;
	long left;
	struct lsock_sigsnap sigs;

	if (timeout > 0) {
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += timeout / 1000;
		deadline.tv_nsec += (long)(timeout % 1000) * 1000000;
		if (deadline.tv_nsec >= 1000000000) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000;
		}
	}
	/* A handler that runs before we sleep (during the spin) interrupts
	 * the call as it would interrupt the kernel's wait. */
	lsock_sig_snap(&sigs);
	/*
	 * Receive first, even when members are ready: a busy event loop
	 * rarely gets to the spin below, and the progress thread stands aside
	 * while we poll (stack_poller_note), so this thread takes the frames
	 * in, in the batch it is about to handle, without a lock fight.
	 */
	if (stack_active()) {
		stack_poll(64);
		ipx_poller_note();
	}
	for (;;) {
		renotified = false;
		n = epc_collect(&ep->core, evs, max);
		if (n < max) {
			ipx_epoll_refresh_nested(ep);
			k = real.epoll_wait(kfd, evs + n, max - n, 0);
			if (k < 0) {
				if (n > 0)
					break;
				return -1;
			}
			n += ipx_epoll_sort(ep, evs + n, k, &renotified);
		}
		if (n > 0)
			break;
		if (renotified)
			continue;
		if (timeout == 0)
			break;
		/* Bounded spin: run the stack ourselves, as a packet may be
		 * a few microseconds away. */
		if (!spun && stack_active()) {
			long budget = atomic_load_explicit(&ep->spin_ns, memory_order_relaxed);
			bool hit;

			spun = true;
			if (budget <= 0)
				budget = IPX_SPIN_MAX_NS;
			clock_gettime(CLOCK_MONOTONIC, &spin0);
			while (!(hit = epc_has_ready(&ep->core)) && ipx_ns_since(&spin0) < budget &&
			       !lsock_sig_since(&sigs)) {
				if (stack_poll(64) == 0)
					__builtin_ia32_pause();
				ipx_poller_note();
			}
			budget = hit ? IPX_SPIN_MAX_NS : budget / 2 < IPX_SPIN_MIN_NS ? IPX_SPIN_MIN_NS : budget / 2;
			atomic_store_explicit(&ep->spin_ns, budget, memory_order_relaxed);
			continue;
		}
		if (lsock_sig_since(&sigs)) {
			/* EINTR, never restarted (see below). */
			errno = EINTR;
			return -1;
		}
		left = timeout < 0 ? -1 : ipx_ms_left(&deadline);
		if (left == 0)
			break;
		ipx_epoll_refresh_nested(ep);
		epc_sleep_begin(&ep->core);
		if (epc_has_ready(&ep->core)) {
			epc_sleep_end(&ep->core);
			continue;
		}
		se = stack_active() ? ipx_epoll_sleep_set(ep, kfd) : -1;
		if (se >= 0) {
			struct epoll_event sev[2];

			/* Woken by a frame, we take it in; by kep, the loop
			 * collects.  Either way the loop looks again. */
			stack_poller_nic_sleep(true);
			k = real.epoll_pwait(se, sev, 2, left > INT_MAX ? INT_MAX : (int)left, mask);
			saved = errno;
			stack_poller_nic_sleep(false);
			epc_sleep_end(&ep->core);
			if (k < 0) {
				errno = saved;
				return -1;
			}
			for (int i = 0; i < k; i++)
				if (sev[i].data.u64 == IPX_SLEEP_NIC)
					stack_poll(64);
			continue;
		}
		/* Nobody here polls the NIC while we sleep: the progress thread's
		 * turn (its frames ring our doorbell). */
		if (stack_active())
			ipx_poller_sleep();
		k = real.epoll_pwait(kfd, evs, max, left > INT_MAX ? INT_MAX : (int)left, mask);
		saved = errno;
		epc_sleep_end(&ep->core);
		if (k < 0) {
			/* EINTR as Linux: never restarted, even with SA_RESTART. */
			errno = saved;
			return -1;
		}
		n = ipx_epoll_sort(ep, evs, k, &renotified);
		if (n > 0) {
			n += epc_collect(&ep->core, evs + n, max - n);
			break;
		}
	}
	/* Nested in another set: keep the doorbell readable while level-
	 * triggered members remain ready (reported again and again, as
	 * Linux's nested readiness is). */
	if (atomic_load(&ep->core.always_ring))
		ipx_epoll_sync_doorbell(ep);
	/* Back soon, as event loops are: the progress thread may stay aside. */
	if (stack_active())
		ipx_poller_note();
	return n;
}

static int ipx_epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout,
			  const sigset_t *mask, bool pwait)
{
	struct ipx_file *f;
	struct ipx_epoll *ep;
	int n, saved, kfd;

	real_init();
	f = fdtab_peek(epfd) ? ipx_get(epfd) : NULL;
	if (f == NULL || f->kind != IPX_EPOLL) {
		if (f != NULL)
			ipx_put(f);
		return pwait ? real.epoll_pwait(epfd, evs, max, timeout, mask)
			     : real.epoll_wait(epfd, evs, max, timeout);
	}
	ep = f->ep;
	if (max <= 0 || (size_t)max > INT_MAX / sizeof(struct epoll_event)) {
		ipx_put(f);
		errno = EINVAL;
		return -1;
	}
	atomic_fetch_add(&ep->waiters, 1);
	kfd = atomic_load(&ep->kep);
	n = ipx_epoll_wait_on(f, kfd >= 0 ? kfd : epfd, evs, max, timeout, mask);
	saved = errno;
	/* The last descriptor was closed during the wait: tear down now. */
	if (atomic_fetch_sub(&ep->waiters, 1) == 1 && atomic_exchange(&ep->destroy_pending, false))
		ipx_epoll_destroy_now(ep);
	ipx_put(f);
	errno = saved;
	return n;
}

IPX_EXPORT int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
	return ipx_epoll_wait(epfd, ev, max, timeout, NULL, false);
}

IPX_EXPORT int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout,
			   const sigset_t *mask)
{
	return ipx_epoll_wait(epfd, ev, max, timeout, mask, true);
}
