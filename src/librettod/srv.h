/* What librettod's supervision of its two servers (netd_sup.c, fsd_sup.c) has in common. */
#ifndef LIBRETTOD_SRV_H
#define LIBRETTOD_SRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t srv_mono_ms(void);

/* Arm the timerfd tfd to fire once, ms from now (0: at once). */
void srv_timer_set_ms(int tfd, unsigned ms);

/*
 * The binary of server NAME ("netd", "fsd"): $LIBRETTO_<NAME> when set,
 * else libretto-NAME next to librettod's own executable (installed), else
 * ../NAME/libretto-NAME from it (the build tree).  0 with the path in
 * path[plen], or -ENOENT with what was tried in why[wlen].
 */
int srv_find(const char *name, char *path, size_t plen, char *why, size_t wlen);

/*
 * One request on a server's control socket ctl (kv text, descriptors) and
 * its reply in buf[cap], waiting at most timeout_ms.  Returns the reply's
 * errno= value (0, or positive with error= in buf), or -errno when the
 * server did not answer: then *stale counts a reply still owed, which the
 * next request skips.  ping_owed (may be NULL): an answer "pong=" met while
 * it is set is the answer to a ping sent earlier and is skipped.
 * Descriptors the server sends are closed.
 */
int srv_request(int ctl, char *buf, size_t cap, unsigned *stale, bool *ping_owed,
		unsigned timeout_ms, const char *text, const int *fds, int nfds);

/* Whether a reply is the answer to a ping ("pong=" on one of its lines). */
bool srv_is_pong(const char *reply);

/* The error= text of a reply in buf, up to its line's end (a static buffer), or "no reason given". */
const char *srv_reply_error(const char *buf);

/* "exit N", "signal N (Name)" or "status 0x..": a waitpid status for the log and `libretto status`. */
void srv_format_status(int st, char *buf, size_t len);

/*
 * The delay before restarting a server that died `quick` times in a row
 * soon after its start: none for the first quick_max, then base_ms
 * doubling up to max_ms, so a server that cannot run does not make
 * librettod spin.
 */
unsigned srv_backoff_ms(unsigned quick, unsigned quick_max, unsigned base_ms, unsigned max_ms);

/*
 * A new SOCK_SEQPACKET control pair (both ends close-on-exec) and a fork.
 * Parent: the child's pid, sp[1] closed, sp[0] (the supervisor's end)
 * non-blocking.  Child: 0, both ends open.  -errno on failure, nothing
 * left open, the cause ("socketpair: ..", "fork: ..") in reason[rlen].
 */
pid_t srv_fork_ctl(int sp[2], char *reason, size_t rlen);

/*
 * In a forked child before exec: no signal blocked (librettod blocks the
 * ones its signalfd reads) and SIGHUP, SIGPIPE at their defaults.
 */
void srv_child_reset(void);

/* SIGKILL pid (when > 0) and reap it; its waitpid status, 0 when none. */
int srv_kill_reap(pid_t pid);

#endif
