/* Signal handlers: sigaction() and friends interposed so a trampoline knows which handler ran and can postpone it. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <ucontext.h>

#include "ipx/ipx.h"
#include "stack/stack.h"

/*
 * Why: a blocking libOS call sleeps in ppoll() on an eventfd, so the kernel
 * cannot apply the interrupted call's own restart rule (SA_RESTART restarts
 * socket I/O, never waits).  The call must know whether a handler ran while
 * it waited and whether that handler had SA_RESTART; and a handler must not
 * run while its thread holds the (non-recursive) stack lock, because it may
 * call socket functions itself (Onload postpones handlers for this reason).
 *
 * How: for every caught signal the kernel gets our trampoline with the
 * application's own sa_mask and sa_flags (plus SA_SIGINFO), so the kernel
 * still applies the mask, SA_NODEFER, SA_RESETHAND, SA_ONSTACK and, for real
 * system calls on kernel descriptors, SA_RESTART exactly as it would for the
 * application.  The application's handler and flags live in a table read by
 * the trampoline; sigaction() answers from the kernel's action translated
 * back through the table, so the application sees what it installed.
 *
 * Postponing: when the signal lands on a thread inside stack_lock(), the
 * trampoline queues the same siginfo again to this thread
 * (rt_tgsigqueueinfo), adds the signal to the mask the kernel restores on
 * return (uc_sigmask) and records it; stack_unlock() unblocks the recorded
 * signals once the thread's last hold is gone, and the kernel delivers them
 * again with the handler's mask, flags and a real context.  Faults
 * (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS raised by the CPU) are
 * never postponed: returning would only fault again.
 */

#define IPX_TLS __thread __attribute__((tls_model("initial-exec")))

/*
 * The application's last caught handler for one signal and its sa_flags.
 * SIG_DFL and SIG_IGN go to the kernel untouched and leave fn as it was:
 * the trampoline only runs while the kernel holds it, and a vfork child
 * that resets its handlers (it shares our memory, not our handlers) must
 * not erase the parent's.  caught: the last action installed through us
 * was a handler.  Written under ipx_sig_mutex with every signal blocked,
 * read by the trampoline on any thread: seq is odd while a writer is
 * inside (a seqlock).
 */
struct ipx_sig_slot {
	atomic_uint seq;
	_Atomic uintptr_t fn;
	atomic_int flags;
	atomic_bool caught;
};

static struct ipx_sig_slot ipx_sig_tab[NSIG];
static pthread_mutex_t ipx_sig_mutex = PTHREAD_MUTEX_INITIALIZER;
/* siginterrupt(sig, 1) was called: signal() installs without SA_RESTART
 * (as glibc's _sigintr set).  Atomic, no lock: signal() may run in a
 * handler. */
static atomic_bool ipx_sig_intr[NSIG];

/* stack.h: this thread's stack-lock depth and the signals it postponed. */
IPX_TLS volatile unsigned ipx_sig_lock_depth;
IPX_TLS volatile uint64_t ipx_sig_deferred;
/* Handlers of the application run by this thread, and those without
 * SA_RESTART among them (lsock_sig_snap/lsock_sig_since). */
static IPX_TLS volatile unsigned long ipx_sig_run, ipx_sig_norestart;

static void ipx_sig_trampoline(int sig, siginfo_t *info, void *uc);

/*
 * Terminating signals and direct volumes (vfs_mount.h, vfs_exit_signal):
 * a program killed by SIGTERM without a handler of its own runs no
 * destructor, and its volume would need a journal replay, losing what was
 * not committed.  Once armed (the first direct attach), the signals below
 * whose action is SIG_DFL get ipx_sig_exit_handler instead; the program
 * still sees SIG_DFL through sigaction(), and any action it installs
 * replaces ours, except SIG_DFL, which keeps ours (the same outcome for
 * the program).  The handler commits and unmounts, restores SIG_DFL and
 * raises the signal again: the process ends by that signal, as before.
 * SIGPIPE is not among them: it is raised by a write on a broken pipe,
 * often in the middle of the program's work, and programs that let it
 * kill them expect it to be immediate.
 */
static const int ipx_sig_exit_list[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT };
static atomic_bool ipx_sig_exit_on[NSIG];
static void (*_Atomic ipx_sig_exit_fn)(void);
/* A handler is committing: the process is ending. */
static atomic_bool ipx_sig_exiting;

static void ipx_sig_exit_handler(int sig, siginfo_t *info, void *uc);

/* Our action for an armed signal: every other signal blocked while the
 * volume is committed. */
static void ipx_sig_exit_action(struct sigaction *k)
{
	memset(k, 0, sizeof(*k));
	k->sa_sigaction = ipx_sig_exit_handler;
	k->sa_flags = SA_SIGINFO | SA_RESTART;
	sigfillset(&k->sa_mask);
}

static bool ipx_sig_catches(const struct sigaction *act)
{
	return act->sa_handler != SIG_DFL && act->sa_handler != SIG_IGN;
}

static void ipx_sig_write(struct ipx_sig_slot *sl, uintptr_t fn, int flags)
{
	unsigned s = atomic_load_explicit(&sl->seq, memory_order_relaxed);

	atomic_store_explicit(&sl->seq, s + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&sl->fn, fn, memory_order_relaxed);
	atomic_store_explicit(&sl->flags, flags, memory_order_relaxed);
	atomic_store_explicit(&sl->seq, s + 2, memory_order_release);
}

/* Async-signal-safe: the writer on this thread cannot be interrupted (it
 * blocks every signal), one on another thread is done within microseconds;
 * the bound only guards against the impossible. */
static void ipx_sig_read(int sig, uintptr_t *fn, int *flags)
{
	struct ipx_sig_slot *sl = &ipx_sig_tab[sig];

	for (int i = 0; i < 1000000; i++) {
		unsigned s1 = atomic_load_explicit(&sl->seq, memory_order_acquire);
		*fn = atomic_load_explicit(&sl->fn, memory_order_relaxed);
		*flags = atomic_load_explicit(&sl->flags, memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		unsigned s2 = atomic_load_explicit(&sl->seq, memory_order_relaxed);
		if (s1 == s2 && !(s1 & 1))
			return;
	}
}

/* A fault raised by the CPU for the instruction that was running. */
static bool ipx_sig_synchronous(int sig, const siginfo_t *info)
{
	switch (sig) {
	case SIGSEGV:
	case SIGBUS:
	case SIGILL:
	case SIGFPE:
	case SIGTRAP:
	case SIGSYS:
		return info == NULL || info->si_code > 0;
	default:
		return false;
	}
}

/* Postpone sig until stack_unlock() (see the top of the file). */
static bool ipx_sig_defer(int sig, siginfo_t *info, ucontext_t *uc, int flags)
{
	if (sig > 64 || info == NULL || uc == NULL)
		return false;
	if (flags & SA_RESETHAND) {
		/* The kernel has just reset the action to SIG_DFL: put the
		 * trampoline back (same mask and flags) for the redelivery,
		 * which resets it again.  sigaction is async-signal-safe. */
		struct sigaction k;
		if (real.sigaction(sig, NULL, &k) != 0)
			return false;
		if (k.sa_handler == SIG_DFL) {
			k.sa_sigaction = ipx_sig_trampoline;
			if (real.sigaction(sig, &k, NULL) != 0)
				return false;
		}
	}
	if (syscall(SYS_rt_tgsigqueueinfo, getpid(), gettid(), sig, info) != 0)
		return false;
	sigaddset(&uc->uc_sigmask, sig);
	ipx_sig_deferred |= 1ULL << (sig - 1);
	return true;
}

static void ipx_sig_trampoline(int sig, siginfo_t *info, void *uc)
{
	int saved = errno;
	uintptr_t fn = 0;
	int flags = 0;

	ipx_sig_read(sig, &fn, &flags);
	if (ipx_sig_lock_depth > 0 && !ipx_sig_synchronous(sig, info) &&
	    ipx_sig_defer(sig, info, uc, flags)) {
		errno = saved;
		return;
	}
	if (fn == 0) {
		errno = saved;	/* cannot happen: installed before the kernel's */
		return;
	}
	/* Counted before the call: a handler may siglongjmp away. */
	if (!(flags & SA_RESTART))
		ipx_sig_norestart++;
	ipx_sig_run++;
	atomic_signal_fence(memory_order_seq_cst);
	errno = saved;
	if (flags & SA_SIGINFO)
		((void (*)(int, siginfo_t *, void *))fn)(sig, info, uc);
	else
		((void (*)(int))fn)(sig);
}

void ipx_sig_release(void)
{
	int saved = errno;
	uint64_t bits = ipx_sig_deferred;
	sigset_t set;

	/* The depth is 0: the trampoline no longer touches the bitmap. */
	ipx_sig_deferred = 0;
	sigemptyset(&set);
	for (int sig = 1; sig <= 64; sig++)
		if (bits & (1ULL << (sig - 1)))
			sigaddset(&set, sig);
	/* The kernel delivers the queued signals before this returns. */
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	errno = saved;
}

void lsock_sig_snap(struct lsock_sigsnap *s)
{
	s->run = ipx_sig_run;
	s->norestart = ipx_sig_norestart;
}

int lsock_sig_since(const struct lsock_sigsnap *s)
{
	if (ipx_sig_norestart != s->norestart)
		return LSOCK_SIG_INTR;
	if (ipx_sig_run != s->run)
		return LSOCK_SIG_RESTART;
	return 0;
}

/* The application's view of a kernel action k, given the table's entry. */
static void ipx_sig_view(const struct sigaction *k, uintptr_t fn, int flags,
			 bool caught, struct sigaction *out)
{
	*out = *k;
	if (k->sa_sigaction == ipx_sig_exit_handler) {
		/* Ours stands for the default action. */
		memset(out, 0, sizeof(*out));
		out->sa_handler = SIG_DFL;
		sigemptyset(&out->sa_mask);
	} else if (k->sa_sigaction == ipx_sig_trampoline) {
		out->sa_sigaction = (void (*)(int, siginfo_t *, void *))fn;
		out->sa_flags = (k->sa_flags & ~SA_SIGINFO) | (flags & SA_SIGINFO);
	} else if (caught && k->sa_handler == SIG_DFL) {
		/* SA_RESETHAND fired: the kernel kept our flags. */
		out->sa_flags = (k->sa_flags & ~SA_SIGINFO) | (flags & SA_SIGINFO);
	}
}

/*
 * fork() in another thread while one was inside sigaction(): the child's
 * copy of the mutex is held by a thread that does not exist there, and a
 * child that resets its handlers before exec (a common pattern) would hang.
 * The child is single-threaded: free the mutex and close any half-written
 * slot (its values are one of the two actions, either is acceptable).
 */
static void ipx_sig_atfork_child(void)
{
	pthread_mutex_init(&ipx_sig_mutex, NULL);
	for (int sig = 1; sig < NSIG; sig++) {
		unsigned s = atomic_load(&ipx_sig_tab[sig].seq);
		if (s & 1)
			atomic_store(&ipx_sig_tab[sig].seq, s + 1);
	}
}

static pthread_once_t ipx_sig_once = PTHREAD_ONCE_INIT;

static void ipx_sig_init(void)
{
	(void)pthread_atfork(NULL, NULL, ipx_sig_atfork_child);
}

/* Under ipx_sig_mutex with every signal blocked. */
static int ipx_sig_install(int sig, const struct sigaction *act, struct sigaction *oact)
{
	struct ipx_sig_slot *sl = &ipx_sig_tab[sig];
	uintptr_t pfn = atomic_load_explicit(&sl->fn, memory_order_relaxed);
	int pflags = atomic_load_explicit(&sl->flags, memory_order_relaxed);
	bool pcaught = atomic_load_explicit(&sl->caught, memory_order_relaxed);
	const struct sigaction *kp = act;
	struct sigaction k, kold;
	bool catches = act && ipx_sig_catches(act);

	if (act != NULL && act->sa_handler == SIG_DFL &&
	    atomic_load_explicit(&ipx_sig_exit_on[sig], memory_order_relaxed)) {
		ipx_sig_exit_action(&k);
		kp = &k;
	}
	if (catches) {
		k = *act;
		k.sa_sigaction = ipx_sig_trampoline;
		k.sa_flags |= SA_SIGINFO;
		kp = &k;
		/* Before the kernel switches: a delivery in between finds
		 * the new handler, as Linux would from then on. */
		ipx_sig_write(sl, (uintptr_t)act->sa_sigaction, act->sa_flags);
	}
	if (real.sigaction(sig, kp, &kold) < 0) {
		int e = errno;
		if (catches)
			ipx_sig_write(sl, pfn, pflags);
		return -e;
	}
	if (act)
		atomic_store_explicit(&sl->caught, catches, memory_order_relaxed);
	if (oact)
		ipx_sig_view(&kold, pfn, pflags, pcaught, oact);
	return 0;
}

IPX_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *oact)
{
	sigset_t all, old;
	int r;

	real_init();
	if (real.sigaction == NULL) {
		errno = ENOSYS;
		return -1;
	}
	if (sig < 1 || sig >= NSIG)
		return real.sigaction(sig, act, oact);	/* the C library's error */
	pthread_once(&ipx_sig_once, ipx_sig_init);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_mutex_lock(&ipx_sig_mutex);
	r = ipx_sig_install(sig, act, oact);
	pthread_mutex_unlock(&ipx_sig_mutex);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return (int)ipx_ret(r);
}

/*
 * Ends the process in at most this many seconds even if the commit hangs
 * (it may need a lock the interrupted code holds, the allocator's): by
 * SIGKILL, the only signal the handler's full mask cannot hold back.
 */
#define IPX_SIG_EXIT_WATCHDOG 10

static void ipx_sig_exit_watchdog(void)
{
	struct sigevent ev;
	struct itimerspec its;
	int tid;

	memset(&ev, 0, sizeof(ev));
	ev.sigev_notify = SIGEV_SIGNAL;
	ev.sigev_signo = SIGKILL;
	memset(&its, 0, sizeof(its));
	its.it_value.tv_sec = IPX_SIG_EXIT_WATCHDOG;
	/* The system calls: glibc's timer_create may allocate. */
	if (syscall(SYS_timer_create, CLOCK_MONOTONIC, &ev, &tid) == 0)
		(void)syscall(SYS_timer_settime, tid, 0, &its, NULL);
}

static void ipx_sig_exit_handler(int sig, siginfo_t *info, void *uc)
{
	void (*fn)(void) = atomic_load(&ipx_sig_exit_fn);
	struct sigaction dfl;
	sigset_t set;
	int saved = errno;

	(void)info;
	(void)uc;
	/*
	 * Every signal stays blocked on this thread until the commit is done
	 * (the action's mask), and our action stays on: the same signal sent
	 * again meanwhile (timeout(1) sends it to the child and then to its
	 * process group), or another one of the list, must not end the
	 * process halfway through the commit.  A second handler (another
	 * thread) waits for the first to end the process.
	 */
	if (atomic_exchange(&ipx_sig_exiting, true)) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		for (int i = 0; i < 100 * (IPX_SIG_EXIT_WATCHDOG + 5); i++)
			nanosleep(&ts, NULL);
	} else {
		ipx_sig_exit_watchdog();
		if (fn != NULL)
			fn();
	}
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	(void)real.sigaction(sig, &dfl, NULL);
	(void)syscall(SYS_tgkill, getpid(), gettid(), sig);
	sigemptyset(&set);
	sigaddset(&set, sig);
	(void)pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	errno = saved;	/* not reached: the signal is unblocked, its action the default */
}

void ipx_sig_exit_arm(void (*fn)(void))
{
	sigset_t all, old;

	real_init();
	if (real.sigaction == NULL)
		return;
	if (atomic_load(&ipx_sig_exit_fn) == fn)
		return;	/* armed already (the program's changes since then are its own) */
	pthread_once(&ipx_sig_once, ipx_sig_init);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_mutex_lock(&ipx_sig_mutex);
	atomic_store(&ipx_sig_exit_fn, fn);
	for (size_t i = 0; i < sizeof(ipx_sig_exit_list) / sizeof(ipx_sig_exit_list[0]); i++) {
		int sig = ipx_sig_exit_list[i];
		struct sigaction k;

		atomic_store(&ipx_sig_exit_on[sig], true);
		if (real.sigaction(sig, NULL, &k) == 0 && k.sa_handler == SIG_DFL) {
			ipx_sig_exit_action(&k);
			(void)real.sigaction(sig, &k, NULL);
		}
	}
	pthread_mutex_unlock(&ipx_sig_mutex);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* signal() and its System V variant, as glibc builds them on sigaction. */
static __sighandler_t ipx_sig_simple(int sig, __sighandler_t h, bool bsd)
{
	struct sigaction sa, old;

	if (h == SIG_ERR || sig < 1 || sig >= NSIG) {
		errno = EINVAL;
		return SIG_ERR;
	}
	sa.sa_handler = h;
	sigemptyset(&sa.sa_mask);
	if (bsd) {
		sigaddset(&sa.sa_mask, sig);
		sa.sa_flags = atomic_load(&ipx_sig_intr[sig]) ? 0 : SA_RESTART;
	} else {
		sa.sa_flags = SA_RESETHAND | SA_NODEFER;
#ifdef SA_INTERRUPT
		sa.sa_flags |= SA_INTERRUPT;
#endif
	}
	if (sigaction(sig, &sa, &old) < 0)
		return SIG_ERR;
	return old.sa_handler;
}

IPX_EXPORT __sighandler_t signal(int sig, __sighandler_t h)
{
	return ipx_sig_simple(sig, h, true);
}

IPX_EXPORT __sighandler_t bsd_signal(int sig, __sighandler_t h)
{
	return ipx_sig_simple(sig, h, true);
}

IPX_EXPORT __sighandler_t sysv_signal(int sig, __sighandler_t h)
{
	return ipx_sig_simple(sig, h, false);
}

/* What signal() becomes in programs built for strict ISO C. */
IPX_EXPORT __sighandler_t __sysv_signal(int sig, __sighandler_t h)
{
	return ipx_sig_simple(sig, h, false);
}

IPX_EXPORT int siginterrupt(int sig, int interrupt)
{
	struct sigaction sa;

	if (sigaction(sig, NULL, &sa) < 0)
		return -1;
	atomic_store(&ipx_sig_intr[sig], interrupt != 0);
	if (interrupt)
		sa.sa_flags &= ~SA_RESTART;
	else
		sa.sa_flags |= SA_RESTART;
	return sigaction(sig, &sa, NULL);
}

IPX_EXPORT __sighandler_t sigset(int sig, __sighandler_t disp)
{
	struct sigaction sa, old;
	sigset_t set, oset;

	if (sig < 1 || sig >= NSIG) {
		errno = EINVAL;
		return SIG_ERR;
	}
	sigemptyset(&set);
	sigaddset(&set, sig);
	if (disp == SIG_HOLD) {
		if (sigprocmask(SIG_BLOCK, &set, &oset) < 0)
			return SIG_ERR;
		if (sigismember(&oset, sig))
			return SIG_HOLD;
		if (sigaction(sig, NULL, &old) < 0)
			return SIG_ERR;
		return old.sa_handler;
	}
	sa.sa_handler = disp;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;
	if (sigaction(sig, &sa, &old) < 0)
		return SIG_ERR;
	if (sigprocmask(SIG_UNBLOCK, &set, &oset) < 0)
		return SIG_ERR;
	return sigismember(&oset, sig) ? SIG_HOLD : old.sa_handler;
}

IPX_EXPORT int sigignore(int sig)
{
	struct sigaction sa = { .sa_handler = SIG_IGN };

	sigemptyset(&sa.sa_mask);
	return sigaction(sig, &sa, NULL);
}
