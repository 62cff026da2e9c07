/* The socket layer: our own TCP/UDP socket objects on lwIP's raw API. */
#ifndef LIBRETTO_LSOCK_H
#define LIBRETTO_LSOCK_H

#include <stdbool.h>
#include <signal.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/types.h>

/*
 * A struct lsock is one open socket description (what Linux calls the open
 * file): dup'ed descriptors share it.  Every lsock has a kernel socket of the
 * same domain and type behind it, kfd, created by the interposition layer;
 * the kernel fd reserves the descriptor number and carries what AF_XDP never
 * sees:
 *   - connect()/sendto() to a destination !stack_routes(dst) (loopback, other
 *     subnets): lsock_connect() returns -EXDEV before touching lwIP and the
 *     interposition layer turns the descriptor into a plain kernel socket
 *     (forgets the lsock, calls real connect on kfd).  An unconnected UDP
 *     socket's sendto to such a destination is sent on kfd by the lsock.
 *   - a TCP listener bound to INADDR_ANY or a loopback address also listens
 *     on kfd (same port), so local clients reach it; lsock_accept() returns
 *     connections from either (a kernel one as *new_kfd).  A UDP socket bound
 *     to INADDR_ANY also receives on kfd.  lsock_kernel_events() tells the
 *     waiters which kfd events to watch for that.
 *
 * Conventions: functions return 0 / a byte count, or -errno; they never set
 * errno.  Blocking calls block only when the socket is blocking (see
 * lsock_set_nonblock) and the flags lack MSG_DONTWAIT; they honour
 * SO_RCVTIMEO/SO_SNDTIMEO (-EAGAIN on expiry, as Linux) and return -EINTR
 * when a signal handler ran while they waited (after handlers that all had
 * SA_RESTART, and no timeout set, they go on waiting, as Linux restarts
 * them; see lsock_waiter_restartable).  All functions are
 * thread-safe: they take the stack lock internally and never hold it while
 * sleeping.  Nothing here raises SIGPIPE: lsock_send* returns -EPIPE and the
 * interposition layer raises SIGPIPE unless MSG_NOSIGNAL.
 */
struct lsock;

/*
 * Readiness watchers (epoll sets, poll/select calls, blocked threads).
 * notify() is called with the stack lock held, whenever the socket's
 * readiness may have changed, with the current EPOLL* mask (EPOLLIN, EPOLLOUT,
 * EPOLLERR, EPOLLHUP, EPOLLRDHUP, EPOLLPRI never).  It must not block or call
 * back into lsock; typically it marks something ready and writes an eventfd.
 * A watch is added/removed with lsock_watch_add/del (they take the lock);
 * after lsock_watch_del returns, notify() is no longer running or called.
 */
struct lsock_watch {
	void (*notify)(struct lsock_watch *w, uint32_t events);
	void *arg;
	LIST_ENTRY(lsock_watch) link;
};

/* Create for AF_INET SOCK_STREAM/SOCK_DGRAM (type without flag bits);
 * kfd is the kernel socket behind it (owned by the caller, not closed here). */
int lsock_create(int kfd, int type, struct lsock **out);
/* The same for AF_INET or AF_INET6.  An AF_INET6 socket is served by the
 * libOS over IPv4 through IPv4-mapped addresses (::ffff:a.b.c.d) as Linux's
 * dual-stack sockets are: bind to :: is 0.0.0.0 on lwIP plus [::] on kfd;
 * addresses it returns are sockaddr_in6 (0.0.0.0 shown as ::).  Bound to
 * any other IPv6 address (::1 included), or to :: with IPV6_V6ONLY, it
 * lives on kfd alone (connect: -EXDEV).  Other domains: -EAFNOSUPPORT. */
int lsock_create_domain(int kfd, int domain, int type, struct lsock **out);

/* References: hold/drop pin the memory (an in-flight call holds one).
 * fd_get/fd_put count descriptors naming the description; the last fd_put
 * performs close() semantics (graceful FIN, or RST when SO_LINGER 0 or
 * unread data is pending, as Linux) and wakes every waiter.
 * lsock_create() returns a description with one hold (the caller's, dropped
 * with lsock_drop) and no descriptor reference.  With SO_LINGER {1, t>0} the
 * last fd_put blocks up to t seconds until the data and FIN are acknowledged
 * (it does not hold the stack lock while it sleeps). */
void lsock_hold(struct lsock *s);
void lsock_drop(struct lsock *s);
void lsock_fd_get(struct lsock *s);
void lsock_fd_put(struct lsock *s);

/*
 * Calls in flight.  On Linux a call blocked on a socket holds the open file:
 * close() in another thread frees the descriptor number but neither wakes
 * the call nor closes the socket, which closes when the call returns.  So
 * while a call is in flight the last fd_put only marks the close (the
 * kernel side, kfd, stops being watched: its number goes with the
 * descriptor), and the last lsock_busy_put performs it.  lsock_recvmsg,
 * lsock_sendmsg, lsock_accept and lsock_connect count themselves; a wait
 * outside the socket layer (poll, select) brackets its wait with these.
 */
void lsock_busy_get(struct lsock *s);
void lsock_busy_put(struct lsock *s);

/*
 * Remote references (fork, ipx_relay.c): a forked child that inherited a
 * description, or the relay serving one to a child, keeps it open in the
 * process that runs the stack as an open descriptor would.  The description
 * is closed (FIN/RST as by the last close) when its last descriptor AND its
 * last remote reference are gone, as Linux closes a socket when the last
 * process holding it closes it.  lsock_remote_get() also pins the memory
 * (one hold, dropped by lsock_remote_put()).  While remote references
 * exist the interposition layer may hand the socket a private kernel fd to
 * keep (lsock_own_kfd: the socket's kfd from now on); lsock_remote_put()
 * returns that fd (>= 0) when the description closed and the caller must
 * close it, else -1.
 */
void lsock_remote_get(struct lsock *s);
int lsock_remote_put(struct lsock *s);
int lsock_remote_refs(struct lsock *s);
/* lsock_fd_put() for the last descriptor of the process that runs the
 * stack, with the private kernel fd that descriptor left: if remote
 * references keep the description open, it takes kfd (as lsock_own_kfd)
 * and returns true; otherwise it behaves as lsock_fd_put() and returns
 * false (the caller closes kfd). */
bool lsock_fd_put_kfd(struct lsock *s, int kfd);
void lsock_own_kfd(struct lsock *s, int kfd);
/*
 * Ordering with a forked child: bytes a child wrote to a relayed
 * connection (ipx_relay.c) must reach TCP before bytes this process writes
 * later, as they would on one kernel socket.  While lsock_set_relayed(s,
 * true), lsock_sendmsg() first calls lsock_relay_flush(s) (set by the
 * relay; it moves what the child queued into the connection, and does
 * nothing when called from the relay itself).
 */
extern void (*lsock_relay_flush)(struct lsock *s);
void lsock_set_relayed(struct lsock *s, bool on);

/* The socket is a listener (listen() succeeded and it was not closed). */
bool lsock_is_listener(struct lsock *s);

/* Process exit's close of every socket (FIN or RST to the peers, then a
 * bounded wait for their acknowledgement); the keeper calls it at its end. */
void lsock_close_all(void);
/* The keeper (a forked copy) runs the stack from now on: it owns the
 * ports and the region's connection table again. */
void lsock_fork_owner(void);

/* lsock_accept() flag for internal callers: never block, whatever the
 * socket's O_NONBLOCK (the relay thread accepts for forked children). */
#define LSOCK_ACCEPT_NOWAIT 0x40000000

int lsock_kfd(const struct lsock *s);
/* Give an accepted connection (made with kfd -1) its kernel socket; called
 * once, before the lsock is shared with other threads. */
void lsock_set_kfd(struct lsock *s, int kfd);
bool lsock_is_stream(const struct lsock *s);
void lsock_set_nonblock(struct lsock *s, bool on);
bool lsock_nonblock(const struct lsock *s);

int lsock_bind(struct lsock *s, const struct sockaddr *sa, socklen_t len);
int lsock_listen(struct lsock *s, int backlog);
/* On success exactly one of *new_s (a libOS connection, fd refs 0, one
 * hold, kfd -1 until lsock_set_kfd) or *new_kfd (a kernel connection from
 * kfd's listener, >= 0, made by accept4 with flags) is set.
 * A listener bound to INADDR_ANY or 127.x listens on kfd too and sets
 * O_NONBLOCK on kfd (it accepts from it without blocking; blocking accept
 * sleeps in the waiter), so the descriptor's F_GETFL must come from
 * lsock_nonblock(), not from kfd.  Beyond the backlog (Linux queues
 * backlog + 1) new libOS connections are refused with RST.
 * flags: SOCK_NONBLOCK applies to the new socket; the caller handles
 * SOCK_CLOEXEC on the descriptor. */
int lsock_accept(struct lsock *s, struct lsock **new_s, int *new_kfd,
		 struct sockaddr *sa, socklen_t *len, int flags);
/* -EXDEV: the destination is not ours, use the kernel fd (see above).
 * Non-blocking: -EINPROGRESS, then SO_ERROR says how it ended. */
int lsock_connect(struct lsock *s, const struct sockaddr *sa, socklen_t len);
int lsock_shutdown(struct lsock *s, int how);

ssize_t lsock_sendmsg(struct lsock *s, const struct msghdr *msg, int flags);
ssize_t lsock_recvmsg(struct lsock *s, struct msghdr *msg, int flags);

int lsock_getsockopt(struct lsock *s, int level, int name, void *val, socklen_t *len);
int lsock_setsockopt(struct lsock *s, int level, int name, const void *val, socklen_t len);
int lsock_getsockname(struct lsock *s, struct sockaddr *sa, socklen_t *len);
int lsock_getpeername(struct lsock *s, struct sockaddr *sa, socklen_t *len);
/* FIONREAD/SIOCINQ, SIOCOUTQ, FIONBIO (int *arg). -ENOTTY for others. */
int lsock_ioctl(struct lsock *s, unsigned long req, void *arg);

/* Current readiness (EPOLL* mask) of the libOS side, without side effects. */
uint32_t lsock_events(struct lsock *s);
/* EPOLL* events to watch on lsock_kfd() as well (0 when the kernel fd
 * carries nothing, e.g. an unbound or connected libOS socket). */
uint32_t lsock_kernel_events(struct lsock *s);
void lsock_watch_add(struct lsock *s, struct lsock_watch *w);
void lsock_watch_del(struct lsock *s, struct lsock_watch *w);

/*
 * Waiters: how a thread sleeps until a libOS socket (or a kernel fd) is
 * ready.  One per thread (lazily made, freed at thread exit), built on an
 * eventfd.  Protocol, free of lost wake-ups:
 *
 *	w = lsock_waiter_self();
 *	register w with the sockets (a watch whose notify calls
 *	  lsock_waiter_wake(w)), then loop:
 *	lsock_waiter_arm(w);          clear the woken flag, drain the eventfd
 *	check the condition;          e.g. lsock_events(s) & EPOLLIN
 *	lsock_waiter_sleep(w, ...);   returns at once if woken since arm
 *
 * lsock_waiter_sleep() first spins briefly (bounded, tens of microseconds,
 * calling stack_poll() so the sleeping thread runs the stack itself), then
 * sleeps in real ppoll() on the eventfd plus the extra pollfds (their revents
 * are filled), with the given signal mask (NULL: unchanged) and timeout
 * (timeout_ms < 0: forever).  Returns 0 when woken or an extra fd is ready,
 * -ETIMEDOUT, or -EINTR (a signal handler ran).  lsock_waiter_wake() may be
 * called from any thread, with or without the stack lock.
 */
struct lsock_waiter;
struct lsock_waiter *lsock_waiter_self(void);
void lsock_waiter_wake(struct lsock_waiter *w);
void lsock_waiter_arm(struct lsock_waiter *w);
struct pollfd;
int lsock_waiter_sleep(struct lsock_waiter *w, struct pollfd *extra, int nextra,
		       int timeout_ms, const sigset_t *mask);

/*
 * Signals (addition).  lsock_waiter_arm() also takes a snapshot of this
 * thread's signal-handler counters (below); lsock_waiter_sleep() returns
 * -EINTR when an application handler ran on this thread since then, during
 * the spin as well as in ppoll.  After such an -EINTR,
 * lsock_waiter_restartable() tells whether every handler that ran had
 * SA_RESTART: a socket call (read, recv, write, send and their variants,
 * accept, connect) then restarts unless the socket has SO_RCVTIMEO or
 * SO_SNDTIMEO set; waits (poll, select, epoll) never restart (signal(7)).
 */
bool lsock_waiter_restartable(const struct lsock_waiter *w);

/*
 * The per-thread handler counters, kept by ipx/ipx_signal.c (the trampoline
 * that runs the application's handlers).  lsock_sig_since() says what ran
 * on this thread since lsock_sig_snap(): 0 nothing, LSOCK_SIG_RESTART only
 * handlers with SA_RESTART, LSOCK_SIG_INTR at least one without.
 * Async-signal-safe, lock-free.
 */
struct lsock_sigsnap {
	unsigned long run, norestart;
};
#define LSOCK_SIG_RESTART 1
#define LSOCK_SIG_INTR 2
void lsock_sig_snap(struct lsock_sigsnap *s);
int lsock_sig_since(const struct lsock_sigsnap *s);

#endif
