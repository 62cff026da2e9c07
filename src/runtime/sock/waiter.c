/* Per-thread waiters: bounded spin running the stack, then ppoll on an eventfd. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include "ipx/real.h"
#include "sock/lsock.h"
#include "stack/stack.h"

/* The signal counters live in the interposition layer (ipx_signal.c); weak
 * so the socket layer also links without it (unit tests), where the
 * waiter falls back to looking at the installed handlers. */
#pragma weak lsock_sig_snap
#pragma weak lsock_sig_since
/* The progress thread's hand-over (stack.h); weak for the same reason. */
#pragma weak stack_poller_note
#pragma weak stack_poller_sleep
#pragma weak stack_wait_fd
#pragma weak stack_poller_nic_sleep

/* How long a sleeper first spins running the stack, and how often it polls
 * the NIC meanwhile.  Tens of microseconds: a cross-CPU wake-up costs ~25. */
#define WAITER_SPIN_NS 30000
#define WAITER_POLL_BUDGET 32
/* Extra pollfds handled without allocating. */
#define WAITER_STACK_FDS 8

struct lsock_waiter {
	int efd;
	/* Set by wake() before it writes the eventfd, cleared by arm();
	 * sleep() reads it first.  seq_cst: wake's exchange pairs with arm's
	 * store and sleep's load so a wake after arm is never missed. */
	atomic_bool woken;
	/* This thread's handler counters at arm(); whether the handlers
	 * behind the last -EINTR all had SA_RESTART. */
	struct lsock_sigsnap sigs;
	bool restartable;
};

static pthread_key_t waiter_key;
static pthread_once_t waiter_once = PTHREAD_ONCE_INIT;
static bool waiter_key_ok;

static void waiter_free(void *p)
{
	struct lsock_waiter *w = p;

	if (w == NULL)
		return;
	if (w->efd >= 0)
		real.close(w->efd);
	free(w);
}

static void waiter_key_init(void)
{
	waiter_key_ok = pthread_key_create(&waiter_key, waiter_free) == 0;
}

struct lsock_waiter *lsock_waiter_self(void)
{
	struct lsock_waiter *w;

	pthread_once(&waiter_once, waiter_key_init);
	if (!waiter_key_ok)
		return NULL;
	w = pthread_getspecific(waiter_key);
	if (w)
		return w;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return NULL;
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->efd < 0) {
		fprintf(stderr, "libretto: waiter eventfd: %s\n", strerror(errno));
		free(w);
		return NULL;
	}
	atomic_init(&w->woken, false);
	if (pthread_setspecific(waiter_key, w) != 0) {
		waiter_free(w);
		return NULL;
	}
	return w;
}

void lsock_waiter_wake(struct lsock_waiter *w)
{
	uint64_t one = 1;

	if (w == NULL || atomic_exchange(&w->woken, true))
		return;	/* already woken since the last arm: one write is enough */
	while (real.write(w->efd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

void lsock_waiter_arm(struct lsock_waiter *w)
{
	uint64_t v;

	if (lsock_sig_snap)
		lsock_sig_snap(&w->sigs);
	atomic_store(&w->woken, false);
	/* Drain after clearing: a wake racing with us either sees false and
	 * writes again (after our read) or its write was drained with its flag
	 * already cleared, which only costs a spurious wake-up. */
	while (real.read(w->efd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
}

static int64_t waiter_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

bool lsock_waiter_restartable(const struct lsock_waiter *w)
{
	return w->restartable;
}

/*
 * ppoll said EINTR but no handler went through our trampoline (one was
 * installed behind sigaction's back, e.g. by a raw system call): the kernel
 * would restart if the handler that ran had SA_RESTART, which we cannot
 * tell, so restart only when every installed handler has it.
 */
static bool waiter_all_restart(void)
{
	for (int sig = 1; sig < NSIG; sig++) {
		struct sigaction sa;
		if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &sa) != 0)
			continue;
		if (!(sa.sa_flags & SA_SIGINFO) &&
		    (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN))
			continue;
		if (!(sa.sa_flags & SA_RESTART))
			return false;
	}
	return true;
}

/* Did an application handler run on this thread since arm()?  Then the
 * wait is over, as the kernel would end it: -EINTR, restartable or not. */
static int waiter_signalled(struct lsock_waiter *w, const struct lsock_sigsnap *sigs)
{
	int k = lsock_sig_since ? lsock_sig_since(sigs) : 0;

	if (k == 0)
		return 0;
	w->restartable = k == LSOCK_SIG_RESTART;
	return -EINTR;
}

int lsock_waiter_sleep(struct lsock_waiter *w, struct pollfd *extra, int nextra,
		       int timeout_ms, const sigset_t *mask)
{
	struct pollfd local[WAITER_STACK_FDS + 2];
	struct pollfd *pfd = local;
	int64_t start = waiter_now_ns();
	int64_t deadline = timeout_ms >= 0 ? start + (int64_t)timeout_ms * 1000000 : -1;
	/* A handler that itself blocks in a socket call re-arms this
	 * thread's waiter: compare with our own copy of arm's snapshot. */
	struct lsock_sigsnap sigs = w->sigs;
	int r;

	w->restartable = false;
	if (nextra < 0)
		nextra = 0;
	/* Spin first: the wake-up usually comes from a frame that is about
	 * to arrive, and this thread may as well run the stack for it.  A
	 * handler that runs meanwhile (stack_poll() releases postponed ones)
	 * interrupts the wait as it would interrupt ppoll. */
	while (!atomic_load(&w->woken)) {
		int64_t now = waiter_now_ns();
		if ((r = waiter_signalled(w, &sigs)) < 0)
			return r;
		if (now - start >= WAITER_SPIN_NS || (deadline >= 0 && now >= deadline))
			break;
		if (stack_active()) {
			stack_poll(WAITER_POLL_BUDGET);
			/* The progress thread stands aside while we poll. */
			if (stack_poller_note)
				stack_poller_note();
		}
	}
	if (atomic_load(&w->woken) && nextra == 0)
		return 0;
	if ((r = waiter_signalled(w, &sigs)) < 0)
		return r;

	if (nextra > WAITER_STACK_FDS) {
		pfd = calloc((size_t)nextra + 2, sizeof(*pfd));
		if (pfd == NULL)
			return -ENOMEM;
	}
	pfd[0].fd = w->efd;
	pfd[0].events = POLLIN;
	pfd[0].revents = 0;
	for (int i = 0; i < nextra; i++) {
		pfd[i + 1] = extra[i];
		pfd[i + 1].revents = 0;
	}
	struct timespec ts, *tsp = NULL;
	if (atomic_load(&w->woken)) {
		/* Only collect the extra fds' state. */
		ts.tv_sec = 0;
		ts.tv_nsec = 0;
		tsp = &ts;
	} else if (deadline >= 0) {
		int64_t left = deadline - waiter_now_ns();
		if (left < 0)
			left = 0;
		ts.tv_sec = left / 1000000000;
		ts.tv_nsec = left % 1000000000;
		tsp = &ts;
	}
	/*
	 * Sleep with the NIC in the set: a frame wakes this thread, which runs
	 * the stack itself, rather than the progress thread, which would wake
	 * us in turn.  Without it (no stack, a mode switch under way), hand
	 * the NIC to the progress thread; its frames wake us through the
	 * eventfd.  The NIC's slot is the last one; -1 is ignored by ppoll.
	 */
	struct pollfd *nic = &pfd[nextra + 1];

	nic->fd = -1;
	nic->events = POLLIN;
	nic->revents = 0;
	if ((tsp == NULL || ts.tv_sec != 0 || ts.tv_nsec != 0) && stack_active()) {
		if (stack_wait_fd && stack_poller_nic_sleep)
			nic->fd = stack_wait_fd();
		if (nic->fd < 0 && stack_poller_sleep)
			stack_poller_sleep();
	}
	for (;;) {
		if (nic->fd >= 0)
			stack_poller_nic_sleep(true);
		r = real.ppoll(pfd, (nfds_t)nextra + 2, tsp, mask);
		if (nic->fd >= 0)
			stack_poller_nic_sleep(false);
		if (r <= 0 || nic->revents == 0)
			break;
		if (nic->revents & (POLLERR | POLLNVAL)) {
			/* Not ours to judge (the progress thread reports it):
			 * stop watching it and let the progress thread run. */
			r--;
			nic->fd = -1;
			nic->revents = 0;
			if (stack_poller_sleep)
				stack_poller_sleep();
		} else {
			stack_poll(WAITER_POLL_BUDGET);
			r--;
			nic->revents = 0;
		}
		if (r > 0 || atomic_load(&w->woken))
			break;
		/* The frames were not for us: sleep on, for what is left. */
		if (deadline >= 0) {
			int64_t left = deadline - waiter_now_ns();
			if (left <= 0)
				break;
			ts.tv_sec = left / 1000000000;
			ts.tv_nsec = left % 1000000000;
			tsp = &ts;
		}
		if ((r = waiter_signalled(w, &sigs)) < 0) {
			/* A handler ran while we took the frames in. */
			if (pfd != local)
				free(pfd);
			return r;
		}
		/* Arm the NIC again before sleeping on it (stack_wait_fd: a
		 * backend may ring its descriptor only after a receive that
		 * found nothing); if it cannot be, hand it over. */
		if (nic->fd >= 0 && (nic->fd = stack_wait_fd()) < 0 && stack_poller_sleep)
			stack_poller_sleep();
	}
	if (r < 0) {
		r = -errno;
		if (r == -EINTR && waiter_signalled(w, &sigs) == 0)
			w->restartable = waiter_all_restart();
	} else {
		for (int i = 0; i < nextra; i++)
			extra[i].revents = pfd[i + 1].revents;
		if (r > 0 || atomic_load(&w->woken))
			r = 0;
		else
			r = -ETIMEDOUT;
	}
	if (pfd != local)
		free(pfd);
	return r;
}
