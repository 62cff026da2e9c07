/* The in-process TCP/IP stack: lwIP, its one netif, the progress thread. */
#ifndef LIBRETTO_STACK_H
#define LIBRETTO_STACK_H

#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/types.h>

#include "libretto/region.h"

/*
 * Locking: every lwIP raw-API call and every access to socket-layer state
 * shared with lwIP callbacks happens under the stack lock, which is lwIP's
 * core lock (LOCK_TCPIP_CORE).  It is not recursive.  lwIP's tcpip thread
 * runs the TCP timers under the same lock.
 *
 * The progress thread waits on the NIC's wait fd (bounded spin, then sleep),
 * takes the lock and feeds received frames to lwIP.  A thread that is about
 * to block may call stack_poll() to process pending frames itself.
 */

/*
 * Take the lease from the environment (LIBRETTO_LEASE): parse and validate
 * it, run the symbol check, move its descriptors to private numbers and map
 * the counters region.  Called once from the runtime constructor.  It does
 * NOT start lwIP, the NIC or the progress thread: stack_start() does, at the
 * first use (so a wrapper that only execs the real program, e.g. a shell
 * script, hands the lease on instead of consuming it).
 * Returns 0, or -errno with a message already printed to stderr.
 * Returns -ENOENT when there is no lease (not started by `libretto run`):
 * then the runtime stays out of the way and every socket is a kernel socket.
 */
int stack_init(void);

/*
 * Start the library OS (NIC, lwIP, netif, progress thread) if this process
 * holds a lease and has not started it yet.  Thread-safe and idempotent:
 * the first caller starts it, concurrent callers wait, later calls return
 * the first result at once.  Returns 0 (running), -ENOENT (no lease: the
 * caller uses the kernel), or -ENETDOWN when the stack cannot run in this
 * process (start failed, or another process of the same lease owns the
 * NIC); one line on stderr says why, the first time.  Never exits.
 */
int stack_start(void);

/* True once stack_start() succeeded in this process (or in the parent this
 * process was forked from). */
bool stack_active(void);

/*
 * True while this process holds a lease it has not started (nor failed to
 * start): an exec now must hand the lease on to the new image.
 */
bool stack_lease_pending(void);

/*
 * For exec while the lease is pending: the environment entries that give
 * the new image the lease ("LIBRETTO_LEASE=..." with the current descriptor
 * numbers) and the runtime's path for LD_PRELOAD, and the lease's
 * descriptors (whose close-on-exec flag the caller clears just before the
 * real exec).  Strings are static; the call allocates nothing (safe in a
 * vfork child).  Returns the number of descriptors stored (at most max).
 */
const char *stack_lease_env(void);
const char *stack_runtime_path(void);
int stack_private_fds(int *fds, int max);

void stack_lock(void);
void stack_unlock(void);

/* Process up to budget received frames now; returns how many. Takes the lock. */
int stack_poll(int budget);

/*
 * Addition (performance, docs/performance.md): application threads that run
 * the stack themselves.  A thread in one of the runtime's waits (epoll_wait,
 * poll/select, a blocking socket call) calls stack_poller_note() whenever it
 * polls the NIC (stack_poll) and when it leaves the wait for the
 * application, and stack_poller_sleep() right before it sleeps in the
 * kernel on anything but the NIC.  While notes come in, the progress thread
 * stands aside (parks a millisecond at a time, so it stops within two
 * periods of the last note); a sleep hands the NIC back to it at once.
 * Lock-free and cheap (a relaxed increment; the sleep adds a futex wake
 * only when the progress thread is parked); any thread, no lock held.
 */
void stack_poller_note(void);
void stack_poller_sleep(void);
/*
 * Better than a hand-over: sleep with the NIC in the wait set.
 * stack_wait_fd() is the current NIC's wait descriptor (readable while
 * frames wait; it changes with a mode switch, so ask before every sleep),
 * or -1 when the caller must hand over instead (no stack, a switch
 * draining, or the NIC busy right now).  A thread that sleeps in the kernel
 * with it in its wait set brackets the sleep with
 * stack_poller_nic_sleep(true) / (false) and, woken by it, calls
 * stack_poll().  Lock-free apart from a trylock; any thread.
 */
int stack_wait_fd(void);
void stack_poller_nic_sleep(bool begin);

/* The netif's address and prefix (network byte order in s_addr). */
struct in_addr stack_ip(void);
struct in_addr stack_netmask(void);

/*
 * True if dst must go through the libOS (it is on the netif's subnet, or
 * routed via its gateway when the lease names one), false for loopback and
 * destinations that stay on the kernel (the kernel fd carries those).
 * dst is network byte order.
 */
bool stack_routes(struct in_addr dst);

/* The shared counters region (never NULL once stack_init() succeeded). */
struct libretto_region *stack_region(void);
/* Publish / withdraw a port in the region's table (under the stack lock). */
void stack_port_add(uint8_t proto, uint16_t port, uint8_t state);
void stack_port_del(uint8_t proto, uint16_t port);

/*
 * Additions (stack engineer):
 *
 * stack_fd_is_private(): true for the descriptors the runtime took from the
 * lease (NIC, region, lease connection).  stack_init() moves them to high
 * close-on-exec numbers (>= 900, or just under a lower RLIMIT_NOFILE); the
 * interposition layer must refuse to let the application close, dup2/dup3
 * over or fcntl them (EBADF, as if they were not open).  Cheap, lock-free,
 * callable from any thread at any time (false before stack_init()).
 *
 * stack_ctl_fd(): the lease connection to librettod (the register
 * connection; closing it releases the VF and IP), or -1.
 *
 * Notes on the existing calls:
 *  - stack_port_add/del: the caller holds the stack lock.  Entries are
 *    reference counted, so two sockets on one (proto, port) (SO_REUSEPORT)
 *    publish one entry that stays until both are gone; the state shown is
 *    the highest added.
 *  - stack_poll: the caller does not hold the stack lock.  Frames are taken
 *    from the NIC under a separate receive lock (a trylock: if another
 *    thread is receiving, returns 0 at once) and handed to lwIP under the
 *    stack lock, one hold per batch of up to 64.
 *  - fork(): stack_init() registers pthread_atfork handlers that take the
 *    start lock and, once the stack runs, the receive lock and the stack
 *    lock around fork(), so the child's copies are free; never call fork() with the stack lock held.  In the child the
 *    NIC is not used (its rings are MADV_DONTFORK): lwIP's copy there sends
 *    and receives nothing, and no progress or timer thread runs.
 *  - Exit: the progress and lwIP threads never keep the process alive; a
 *    destructor only asks the progress thread to stop, and waits for nothing.
 */
bool stack_fd_is_private(int fd);
int stack_ctl_fd(void);

/*
 * The keeper (ipx_relay.c): the process that runs the stack exits while
 * forked children still use sockets it serves (nginx's `daemon on`: the
 * parent exits right after fork).  It forks a keeper, a copy of itself
 * that goes on running the stack exactly where the parent stopped:
 *  stack_keeper_prepare()  before that fork: stop using the NIC here and
 *                          let the child inherit the NIC's memory;
 *  stack_keeper_abort()    the fork failed: use the NIC again;
 *  stack_keeper_parent(k)  in the exiting parent: tell librettod that pid
 *                          k holds the lease now; this process stays off
 *                          the NIC until it is gone;
 *  stack_keeper_child()    in the keeper: claim the NIC and the region,
 *                          restart the progress thread and lwIP's timers.
 */
/*
 * Indirect mode (backend shm): every port a socket uses is claimed in
 * librettod's port table (the `port` command of ctl.h) before lwIP binds
 * it, so that netd steers its traffic here and no other application on the
 * shared IP can take it.  stack_port_claim(proto, &port): port 0 picks a
 * free ephemeral port (49152-65535) and returns it; a port this process
 * already claimed is reference counted.  0, -EADDRINUSE (another
 * application holds it) or -errno.  stack_port_unclaim() drops one
 * reference.  Both are no-ops in direct mode.  The caller holds the stack
 * lock: the request to librettod is made under it (librettod answers
 * without waiting on anything).
 */
bool stack_indirect(void);
int stack_port_claim(uint8_t proto, uint16_t *port);
void stack_port_unclaim(uint8_t proto, uint16_t port);

void stack_keeper_prepare(void);
void stack_keeper_abort(void);
void stack_keeper_parent(pid_t keeper);
int stack_keeper_child(void);

/*
 * Addition (signals, implemented in ipx/ipx_signal.c): stack_lock() counts
 * this thread's holds in ipx_sig_lock_depth; while it is non-zero the signal
 * trampoline postpones the application's handlers (they may call socket
 * functions, and the lock is not recursive) and records them in
 * ipx_sig_deferred; when the last hold is released stack_unlock() calls
 * ipx_sig_release(), which lets the kernel deliver them again.
 */
extern __thread volatile unsigned ipx_sig_lock_depth;
extern __thread volatile uint64_t ipx_sig_deferred;
void ipx_sig_release(void);

#endif
