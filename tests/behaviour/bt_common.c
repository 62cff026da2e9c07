/* Shared helpers of the socket behaviour suite (see bt.h). */
#include "bt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct in_addr bt_self;
struct in_addr bt_peer;

void bt_init(int argc, char **argv, unsigned seconds)
{
	const char *self = argc > 1 ? argv[1] : getenv("BT_SELF");
	const char *peer = argc > 2 ? argv[2] : getenv("BT_PEER");

	if (!peer)
		peer = "10.42.0.1";
	if (!self || inet_pton(AF_INET, self, &bt_self) != 1 ||
	    inet_pton(AF_INET, peer, &bt_peer) != 1) {
		fprintf(stderr, "usage: %s SELF_IP [PEER_IP]\n", argv[0]);
		exit(2);
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	alarm(seconds);
}

void bt_say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

const char *bt_errname(int e)
{
	static __thread char buf[16];
	const char *n = strerrorname_np(e);

	if (n)
		return n;
	snprintf(buf, sizeof(buf), "E%d", e);
	return buf;
}

long bt_ok(const char *step, long r)
{
	int e = errno;

	if (r >= 0)
		bt_say("%s: ok", step);
	else
		bt_say("%s: -1 %s", step, bt_errname(e));
	errno = e;
	return r;
}

long bt_val(const char *step, long r)
{
	int e = errno;

	if (r >= 0)
		bt_say("%s: %ld", step, r);
	else
		bt_say("%s: -1 %s", step, bt_errname(e));
	errno = e;
	return r;
}

struct bt_flag {
	uint32_t bit;
	const char *name;
};

static const char *bt_flags(uint32_t v, const struct bt_flag *f, size_t nf)
{
	static __thread char buf[4][128];
	static __thread int slot;
	char *b = buf[slot++ & 3];
	size_t len = 0;

	b[0] = 0;
	for (size_t i = 0; i < nf; i++) {
		if (!(v & f[i].bit))
			continue;
		len += snprintf(b + len, 128 - len, "%s%s", len ? "|" : "", f[i].name);
		v &= ~f[i].bit;
	}
	if (v)
		len += snprintf(b + len, 128 - len, "%s0x%x", len ? "|" : "", v);
	if (!len)
		snprintf(b, 128, "none");
	return b;
}

const char *bt_epoll_events(uint32_t ev)
{
	static const struct bt_flag f[] = {
		{ EPOLLIN, "IN" }, { EPOLLPRI, "PRI" }, { EPOLLOUT, "OUT" },
		{ EPOLLRDNORM, "RDNORM" }, { EPOLLWRNORM, "WRNORM" },
		{ EPOLLERR, "ERR" }, { EPOLLHUP, "HUP" }, { EPOLLRDHUP, "RDHUP" },
	};
	return bt_flags(ev, f, sizeof(f) / sizeof(f[0]));
}

const char *bt_poll_events(short ev)
{
	static const struct bt_flag f[] = {
		{ POLLIN, "IN" }, { POLLPRI, "PRI" }, { POLLOUT, "OUT" },
		{ POLLRDNORM, "RDNORM" }, { POLLWRNORM, "WRNORM" },
		{ POLLERR, "ERR" }, { POLLHUP, "HUP" }, { POLLRDHUP, "RDHUP" },
		{ POLLNVAL, "NVAL" },
	};
	return bt_flags((uint16_t)ev, f, sizeof(f) / sizeof(f[0]));
}

const char *bt_addr_class(const struct sockaddr_in *sa)
{
	if (sa->sin_family != AF_INET)
		return "notinet";
	if (sa->sin_addr.s_addr == bt_self.s_addr)
		return "self";
	if (sa->sin_addr.s_addr == bt_peer.s_addr)
		return "peer";
	if (sa->sin_addr.s_addr == htonl(INADDR_ANY))
		return "any";
	return "other";
}

uint64_t bt_fnv(uint64_t h, const void *buf, size_t n)
{
	const uint8_t *p = buf;

	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

void bt_pattern(uint8_t *buf, size_t n, uint64_t off)
{
	/* Not periodic at any small power of two, so lost or reordered
	 * segments change the checksum. */
	for (size_t i = 0; i < n; i++) {
		uint64_t x = off + i;
		buf[i] = (uint8_t)((x * 131) ^ (x >> 9) ^ (x >> 17));
	}
}

int bt_tcp_socket(int nonblock)
{
	int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);

	return fd < 0 ? -errno : fd;
}

int bt_connect_peer(uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr = bt_peer };
	int fd = bt_tcp_socket(0);

	if (fd < 0)
		return fd;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -e;
	}
	return fd;
}

int bt_listen_self(uint16_t port, int backlog)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr = bt_self };
	int one = 1;
	int fd = bt_tcp_socket(0);

	if (fd < 0)
		return fd;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, backlog) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -e;
	}
	return fd;
}

uint16_t bt_local_port(int fd)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		return 0;
	return ntohs(sa.sin_port);
}

int bt_write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n) {
		ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

ssize_t bt_read_full(int fd, void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, (char *)buf + got, n - got);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

ssize_t bt_read_line(int fd, char *buf, size_t n)
{
	size_t len = 0;

	while (len + 1 < n) {
		char c;
		ssize_t r = read(fd, &c, 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0 || c == '\n')
			break;
		buf[len++] = c;
	}
	buf[len] = 0;
	return (ssize_t)len;
}

ssize_t bt_drain(int fd, uint64_t *fnv)
{
	char buf[16384];
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
		if (fnv)
			*fnv = bt_fnv(*fnv, buf, (size_t)r);
		total += (size_t)r;
	}
}

int bt_wait(int fd, short events, int ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	int r = poll(&p, 1, ms);

	if (r < 0)
		return -errno;
	return r ? p.revents : 0;
}

int bt_callback(uint16_t port, int count, size_t bytes, int delay_ms)
{
	char req[128], ip[INET_ADDRSTRLEN];
	int fd, r;

	inet_ntop(AF_INET, &bt_self, ip, sizeof(ip));
	snprintf(req, sizeof(req), "%s %u %d %zu %d\n", ip, port, count, bytes, delay_ms);
	fd = bt_connect_peer(BT_PORT_CALLBACK);
	if (fd < 0)
		return fd;
	r = bt_write_all(fd, req, strlen(req));
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

int bt_callback_report(const char *step, int ctl)
{
	char line[256];
	int n = 0;

	for (;;) {
		ssize_t r = bt_read_line(ctl, line, sizeof(line));
		if (r < 0) {
			bt_say("%s: report -1 %s", step, bt_errname((int)-r));
			close(ctl);
			return (int)r;
		}
		if (r == 0 || !strcmp(line, "done"))
			break;
		bt_say("%s: peer %s", step, line);
		if (++n > 1000)
			break;
	}
	close(ctl);
	return 0;
}
