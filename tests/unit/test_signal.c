/* Unit test of ipx_signal.c: the application's view of sigaction, the handler counters, and handlers postponed under the stack lock. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ipx/real.h"
#include "sock/lsock.h"
#include "stack/stack.h"

#include "check.h"

/* siginterrupt() is deprecated, but programs still call it: test it. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"


static volatile sig_atomic_t ran, got_signo, got_code, usr2_blocked, had_uc;

static void on_plain(int sig)
{
	ran++;
	got_signo = sig;
	errno = 0;	/* a careless handler: the kernel does not restore errno either */
}

static void on_info(int sig, siginfo_t *si, void *uc)
{
	sigset_t cur;

	ran++;
	got_signo = si->si_signo;
	got_code = si->si_code;
	had_uc = uc != NULL;
	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	usr2_blocked = sigismember(&cur, SIGUSR2);
}

static void on_quiet(int sig)
{
	ran++;
}

static void test_view(void)
{
	struct sigaction sa = { .sa_handler = on_plain, .sa_flags = SA_RESTART | SA_NODEFER };
	struct sigaction old, k;

	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGUSR2);
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	memset(&old, 0, sizeof(old));
	CHECK(sigaction(SIGUSR1, NULL, &old) == 0);
	CHECK(old.sa_handler == on_plain);
	CHECK((old.sa_flags & (SA_RESTART | SA_NODEFER | SA_SIGINFO | SA_RESETHAND)) ==
	      (SA_RESTART | SA_NODEFER));
	CHECK(sigismember(&old.sa_mask, SIGUSR2) == 1);
	/* The kernel has the trampoline, with the program's flags. */
	CHECK(real.sigaction(SIGUSR1, NULL, &k) == 0);
	CHECK(k.sa_handler != on_plain && (k.sa_flags & SA_SIGINFO) &&
	      (k.sa_flags & SA_RESTART) && (k.sa_flags & SA_NODEFER));

	/* signal() returns the previous handler and installs BSD semantics. */
	CHECK(signal(SIGUSR1, on_quiet) == on_plain);
	CHECK(sigaction(SIGUSR1, NULL, &old) == 0);
	CHECK(old.sa_handler == on_quiet && (old.sa_flags & SA_RESTART) &&
	      sigismember(&old.sa_mask, SIGUSR1) == 1);
	CHECK(siginterrupt(SIGUSR1, 1) == 0);
	CHECK(sigaction(SIGUSR1, NULL, &old) == 0 && !(old.sa_flags & SA_RESTART));
	CHECK(signal(SIGUSR1, SIG_IGN) == on_quiet);
	CHECK(sigaction(SIGUSR1, NULL, &old) == 0 && !(old.sa_flags & SA_RESTART));
	CHECK(siginterrupt(SIGUSR1, 0) == 0);
	CHECK(signal(SIGUSR1, SIG_DFL) == SIG_IGN);
	CHECK(real.sigaction(SIGUSR1, NULL, &k) == 0 && k.sa_handler == SIG_DFL);

	/* Errors are the C library's. */
	errno = 0;
	CHECK(sigaction(SIGKILL, &sa, NULL) == -1 && errno == EINVAL);
	CHECK(sigaction(0, NULL, &old) == -1 && errno == EINVAL);
	CHECK(signal(NSIG, on_quiet) == SIG_ERR && errno == EINVAL);

	/* SA_RESETHAND: after one delivery the program sees SIG_DFL. */
	sa.sa_handler = on_quiet;
	sa.sa_flags = SA_RESETHAND;
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	ran = 0;
	raise(SIGUSR1);
	CHECK(ran == 1);
	CHECK(sigaction(SIGUSR1, NULL, &old) == 0 && old.sa_handler == SIG_DFL &&
	      !(old.sa_flags & SA_SIGINFO));
}

static void test_counters(void)
{
	struct sigaction r = { .sa_handler = on_quiet, .sa_flags = SA_RESTART };
	struct sigaction n = { .sa_handler = on_quiet, .sa_flags = 0 };
	struct lsock_sigsnap snap;

	sigemptyset(&r.sa_mask);
	sigemptyset(&n.sa_mask);
	CHECK(sigaction(SIGUSR1, &r, NULL) == 0);
	CHECK(sigaction(SIGUSR2, &n, NULL) == 0);
	lsock_sig_snap(&snap);
	CHECK(lsock_sig_since(&snap) == 0);
	raise(SIGUSR1);
	CHECK(lsock_sig_since(&snap) == LSOCK_SIG_RESTART);
	raise(SIGUSR2);
	CHECK(lsock_sig_since(&snap) == LSOCK_SIG_INTR);
	lsock_sig_snap(&snap);
	raise(SIGUSR2);
	raise(SIGUSR1);
	CHECK(lsock_sig_since(&snap) == LSOCK_SIG_INTR);	/* any without SA_RESTART */
	signal(SIGUSR1, SIG_DFL);
	signal(SIGUSR2, SIG_DFL);
}

static void test_deferred(void)
{
	struct sigaction sa = { .sa_sigaction = on_info, .sa_flags = SA_SIGINFO | SA_RESTART };
	struct lsock_sigsnap snap;
	sigset_t pend, cur;

	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGUSR2);
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);

	/* While the thread "holds the stack lock" the handler waits. */
	ran = 0;
	lsock_sig_snap(&snap);
	ipx_sig_lock_depth = 1;
	errno = ERANGE;
	raise(SIGUSR1);
	CHECK(errno == ERANGE);
	CHECK(ran == 0);
	CHECK(lsock_sig_since(&snap) == 0);
	CHECK(ipx_sig_deferred == 1ULL << (SIGUSR1 - 1));
	sigpending(&pend);
	CHECK(sigismember(&pend, SIGUSR1) == 1);
	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	CHECK(sigismember(&cur, SIGUSR1) == 1);

	/* The unlock: handler runs with its own mask and the original
	 * siginfo; the thread's mask is back as it was. */
	ipx_sig_lock_depth = 0;
	ipx_sig_release();
	CHECK(errno == ERANGE);
	CHECK(ran == 1);
	CHECK(got_signo == SIGUSR1 && got_code == SI_TKILL && had_uc);
	CHECK(usr2_blocked == 1);
	CHECK(ipx_sig_deferred == 0);
	CHECK(lsock_sig_since(&snap) == LSOCK_SIG_RESTART);
	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	CHECK(sigismember(&cur, SIGUSR1) == 0);
	sigpending(&pend);
	CHECK(sigismember(&pend, SIGUSR1) == 0);

	/* Nested holds: only the outermost unlock releases. */
	ran = 0;
	ipx_sig_lock_depth = 2;
	raise(SIGUSR1);
	ipx_sig_lock_depth = 1;
	CHECK(ran == 0);
	ipx_sig_lock_depth = 0;
	ipx_sig_release();
	CHECK(ran == 1);

	/* SA_RESETHAND: the postponed delivery still runs the handler,
	 * once, and the action is SIG_DFL afterwards. */
	{
		struct sigaction rh = { .sa_handler = on_quiet, .sa_flags = SA_RESETHAND };
		struct sigaction old;
		sigemptyset(&rh.sa_mask);
		CHECK(sigaction(SIGUSR2, &rh, NULL) == 0);
		ran = 0;
		ipx_sig_lock_depth = 1;
		raise(SIGUSR2);
		CHECK(ran == 0);
		ipx_sig_lock_depth = 0;
		ipx_sig_release();
		CHECK(ran == 1);
		CHECK(sigaction(SIGUSR2, NULL, &old) == 0 && old.sa_handler == SIG_DFL &&
		      !(old.sa_flags & SA_SIGINFO) && (old.sa_flags & SA_RESETHAND));
	}

	/* Not held: runs at once, errno as the handler left it. */
	sa.sa_handler = on_plain;
	sa.sa_flags = 0;
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	ran = 0;
	errno = ERANGE;
	raise(SIGUSR1);
	CHECK(ran == 1 && got_signo == SIGUSR1 && errno == 0);
	signal(SIGUSR1, SIG_DFL);
}

int main(void)
{
	real_init();
	test_view();
	test_counters();
	test_deferred();
	if (failures) {
		fprintf(stderr, "test_signal: %d failures\n", failures);
		return 1;
	}
	printf("test_signal: ok\n");
	return 0;
}
