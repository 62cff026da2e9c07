/* Helpers shared by the fork behaviour programs (bt_fork_*.c): child bookkeeping, echo loops, checked peer reports. */
#ifndef BT_FORK_H
#define BT_FORK_H

#include "bt.h"

#include <signal.h>
#include <sys/wait.h>

/*
 * Rules the fork programs follow so that their stdout stays deterministic:
 * only the parent prints; a child reports through its exit status (or not
 * at all), arms its own alarm (alarms are not inherited by fork) and ends
 * with _exit(), so it never flushes or runs anything of the parent's.  All
 * helpers are static: each program is one translation unit.
 */

/* Exit statuses a child uses for its own failures (anything else is a count). */
#define FK_CHILD_FAILED 200

/* The seconds a child may live: well under the parent's own alarm. */
#define FK_CHILD_ALARM 20

/* Called first in every child: its own time bound, default SIGALRM action. */
static __attribute__((unused)) void fk_child_init(void)
{
	signal(SIGALRM, SIG_DFL);
	alarm(FK_CHILD_ALARM);
}

/* Wait for one child (EINTR retried) and print "step: exit N" or "step: signal NAME". Returns the exit status or -1. */
static __attribute__((unused)) int fk_wait(const char *step, pid_t pid)
{
	int st;
	pid_t r;

	if (pid < 0) {
		bt_say("%s: no child", step);
		return -1;
	}
	do
		r = waitpid(pid, &st, 0);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		bt_say("%s: waitpid -1 %s", step, bt_errname(errno));
		return -1;
	}
	if (WIFEXITED(st)) {
		bt_say("%s: exit %d", step, WEXITSTATUS(st));
		return WEXITSTATUS(st);
	}
	bt_say("%s: signal %s", step, WIFSIGNALED(st) ? sigabbrev_np(WTERMSIG(st)) : "?");
	return -1;
}

/* Like fk_wait but silent; returns the exit status, or -1 - signal number. */
static __attribute__((unused)) int fk_wait_quiet(pid_t pid)
{
	int st;
	pid_t r;

	do
		r = waitpid(pid, &st, 0);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1 - (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* Echo everything read back until EOF; returns the byte count or -errno. */
static __attribute__((unused)) ssize_t fk_echo_until_eof(int fd)
{
	char buf[8192];
	size_t total = 0;

	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return (ssize_t)total;
		int w = bt_write_all(fd, buf, (size_t)r);
		if (w < 0)
			return w;
		total += (size_t)r;
	}
}

/* Echo exactly n bytes (or until EOF); returns the count or -errno. */
static __attribute__((unused)) ssize_t fk_echo_n(int fd, size_t n)
{
	char buf[8192];
	size_t total = 0;

	while (total < n) {
		size_t want = n - total < sizeof(buf) ? n - total : sizeof(buf);
		ssize_t r = read(fd, buf, want);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		int w = bt_write_all(fd, buf, (size_t)r);
		if (w < 0)
			return w;
		total += (size_t)r;
	}
	return (ssize_t)total;
}

/*
 * One round trip over a connection to the peer's echo service: send a
 * numbered line, read the same number of bytes back, compare.  Prints
 * "step: echo ok" or what went wrong; returns 0 or -1.
 */
static __attribute__((unused)) int fk_echo_round(const char *step, int fd, int round)
{
	char msg[64], back[64];
	int len = snprintf(msg, sizeof(msg), "round %d of the echo check\n", round);
	int w = bt_write_all(fd, msg, (size_t)len);
	ssize_t r;

	if (w < 0) {
		bt_say("%s: send -1 %s", step, bt_errname(-w));
		return -1;
	}
	if (bt_wait(fd, POLLIN, 5000) <= 0) {
		bt_say("%s: no echo within 5 s", step);
		return -1;
	}
	r = bt_read_full(fd, back, (size_t)len);
	if (r < 0) {
		bt_say("%s: read -1 %s", step, bt_errname((int)-r));
		return -1;
	}
	if (r != len || memcmp(msg, back, (size_t)len)) {
		bt_say("%s: echo differs (%zd of %d bytes)", step, r, len);
		return -1;
	}
	bt_say("%s: echo ok", step);
	return 0;
}

/* The checksum the peer's callback report carries for `bytes` pattern bytes followed by `tail`. */
static __attribute__((unused)) uint64_t fk_expect_fnv(size_t bytes, const char *tail)
{
	uint8_t buf[4096];
	uint64_t h = BT_FNV_INIT;
	size_t off = 0;

	while (off < bytes) {
		size_t n = bytes - off < sizeof(buf) ? bytes - off : sizeof(buf);
		bt_pattern(buf, n, off);
		h = bt_fnv(h, buf, n);
		off += n;
	}
	return bt_fnv(h, tail, strlen(tail));
}

/* The checksum of the last connection fk_report parsed, to tell which wrong stream arrived. */
static uint64_t fk_last_fnv __attribute__((unused));

/*
 * Read the peer's callback report (bt_callback) and check each connection
 * against what the subject meant to send back: `want_got` bytes with
 * checksum `want_fnv`, ended by EOF.  Prints "step: conn=I ok" per good
 * connection, the peer's own words otherwise, then "step: N of COUNT ok".
 * Closes ctl.  Returns the number of good connections.
 */
static __attribute__((unused)) int fk_report(const char *step, int ctl, int count, size_t want_got,
					     uint64_t want_fnv)
{
	char line[256];
	int good = 0, seen = 0;

	fk_last_fnv = 0;
	if (ctl < 0) {
		bt_say("%s: no control connection", step);
		return 0;
	}
	while (seen <= count) {
		int conn;
		size_t got;
		unsigned long long fnv;
		ssize_t r = bt_read_line(ctl, line, sizeof(line));

		if (r < 0) {
			bt_say("%s: report read -1 %s", step, bt_errname((int)-r));
			break;
		}
		if (r == 0) {
			bt_say("%s: report ended without done", step);
			break;
		}
		if (!strcmp(line, "done"))
			break;
		seen++;
		if (sscanf(line, "conn=%d connect=ok sent=all got=%zu fnv=%llx", &conn, &got, &fnv) != 3) {
			/* An error report: the peer's words name the failure. */
			const char *rest = strchr(line, ' ');
			bt_say("%s: %s", step, rest ? rest + 1 : line);
			continue;
		}
		fk_last_fnv = fnv;
		if (got != want_got)
			bt_say("%s: conn got %zu bytes, want %zu", step, got, want_got);
		else if (fnv != want_fnv)
			bt_say("%s: conn got %zu bytes as wanted but their checksum differs", step, got);
		else
			good++;
	}
	bt_say("%s: %d of %d ok", step, good, count);
	close(ctl);
	return good;
}

#endif
