/*
 * Unit test: the interposition layer's descriptor, epoll, poll and select
 * logic, linked with a fake socket layer (test_epoll_ipx_fake.c): libOS UDP
 * sockets mixed with pipes (kernel fds), LT/ET/ONESHOT, several sets,
 * nested sets, dup/close/dup2 semantics, timeouts, EINTR, wake-ups from
 * another thread, and dup/close races.  No privilege, no network.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ipx/ipx.h"

extern int fk_live;

#define CHECK(c)                                                              \
	do {                                                                  \
		if (!(c)) {                                                   \
			fprintf(stderr, "%s:%d: check failed: %s (errno %d)\n", \
				__FILE__, __LINE__, #c, errno);               \
			exit(1);                                              \
		}                                                             \
	} while (0)

static struct sockaddr_in addr(uint32_t ip, uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(ip) };
	return a;
}

static int udp(uint16_t port)
{
	struct sockaddr_in a = addr(0x0a000002, port);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	CHECK(fd >= 0);
	CHECK(fdtab_peek(fd) != NULL);
	if (port)
		CHECK(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	return fd;
}

static void send_to(int fd, uint16_t port, const char *msg)
{
	struct sockaddr_in a = addr(0x0a000002, port);

	CHECK(sendto(fd, msg, strlen(msg), 0, (struct sockaddr *)&a, sizeof(a)) == (ssize_t)strlen(msg));
}

static long ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

static int wait_ev(int ep, struct epoll_event *ev, int max, int timeout)
{
	return epoll_wait(ep, ev, max, timeout);
}

static bool has(struct epoll_event *ev, int n, uint64_t data, uint32_t bits)
{
	for (int i = 0; i < n; i++)
		if (ev[i].data.u64 == data && (ev[i].events & bits) == bits)
			return true;
	return false;
}

static void test_basic_io(void)
{
	char buf[64];
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);
	int a = udp(1001), b = udp(1002), on = 1;

	send_to(b, 1001, "hello");
	CHECK(recvfrom(a, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl) == 5);
	CHECK(memcmp(buf, "hello", 5) == 0 && ntohs(from.sin_port) == 1002);
	/* Non-blocking by fcntl: EAGAIN, and F_GETFL says so. */
	CHECK(fcntl(a, F_SETFL, fcntl(a, F_GETFL) | O_NONBLOCK) == 0);
	CHECK(fcntl(a, F_GETFL) & O_NONBLOCK);
	CHECK(recv(a, buf, sizeof(buf), 0) == -1 && errno == EAGAIN);
	CHECK(fcntl(a, F_SETFL, 0) == 0 && !(fcntl(a, F_GETFL) & O_NONBLOCK));
	CHECK(ioctl(a, FIONBIO, &on) == 0);
	CHECK(read(a, buf, sizeof(buf)) == -1 && errno == EAGAIN);
	send_to(b, 1001, "xyz");
	CHECK(ioctl(a, FIONREAD, &on) == 0 && on == 3);
	CHECK(read(a, buf, sizeof(buf)) == 3);
	/* Not ours: AF_UNIX and pipes go to the kernel. */
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	CHECK(fdtab_peek(sv[0]) == NULL);
	CHECK(write(sv[0], "k", 1) == 1 && read(sv[1], buf, 1) == 1);
	close(sv[0]);
	close(sv[1]);
	CHECK(close(a) == 0 && close(b) == 0);
	CHECK(fdtab_peek(a) == NULL);
	CHECK(close(a) == -1 && errno == EBADF);
}

static void test_epoll_mixed(void)
{
	struct epoll_event ev[8], e;
	char buf[64];
	int p[2], a = udp(1101), b = udp(1102), ep, n;

	CHECK(pipe(p) == 0);
	ep = epoll_create1(EPOLL_CLOEXEC);
	CHECK(ep >= 0 && fdtab_peek(ep) != NULL);
	e.events = EPOLLIN;
	e.data.u64 = 111;
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e) == 0);
	e.data.u64 = 222;
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, a, &e) == 0);
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, a, &e) == -1 && errno == EEXIST);
	CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, b, &e) == -1 && errno == ENOENT);
	CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, b, NULL) == -1 && errno == ENOENT);
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, ep, &e) == -1 && errno == EINVAL);
	CHECK(wait_ev(ep, ev, 8, 0) == 0);

	CHECK(write(p[1], "x", 1) == 1);
	n = wait_ev(ep, ev, 8, 1000);
	CHECK(n == 1 && ev[0].data.u64 == 111);
	send_to(b, 1101, "d1");
	n = wait_ev(ep, ev, 8, 1000);
	CHECK(n == 2 && has(ev, n, 111, EPOLLIN) && has(ev, n, 222, EPOLLIN));
	CHECK(read(p[0], buf, 1) == 1);
	/* Level-triggered: still there until read. */
	n = wait_ev(ep, ev, 8, 0);
	CHECK(n == 1 && ev[0].data.u64 == 222 && ev[0].events == EPOLLIN);
	CHECK(recv(a, buf, sizeof(buf), 0) == 2);
	CHECK(wait_ev(ep, ev, 8, 0) == 0);

	/* Edge-triggered: once per new datagram. */
	e.events = EPOLLIN | EPOLLET;
	e.data.u64 = 333;
	CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, a, &e) == 0);
	CHECK(wait_ev(ep, ev, 8, 0) == 0);
	send_to(b, 1101, "d2");
	CHECK(wait_ev(ep, ev, 8, 0) == 1 && ev[0].data.u64 == 333);
	CHECK(wait_ev(ep, ev, 8, 0) == 0);
	send_to(b, 1101, "d3");
	CHECK(wait_ev(ep, ev, 8, 0) == 1);
	CHECK(wait_ev(ep, ev, 8, 0) == 0);
	CHECK(recv(a, buf, sizeof(buf), 0) == 2 && recv(a, buf, sizeof(buf), 0) == 2);

	/* One-shot: disarmed after one report until MOD. */
	e.events = EPOLLIN | EPOLLONESHOT;
	e.data.u64 = 444;
	CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, a, &e) == 0);
	send_to(b, 1101, "d4");
	CHECK(wait_ev(ep, ev, 8, 0) == 1 && ev[0].data.u64 == 444);
	send_to(b, 1101, "d5");
	CHECK(wait_ev(ep, ev, 8, 50) == 0);
	CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, a, &e) == 0);
	CHECK(wait_ev(ep, ev, 8, 0) == 1 && ev[0].data.u64 == 444);

	/* EPOLLOUT is level: every wait. */
	e.events = EPOLLOUT;
	e.data.u64 = 555;
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, b, &e) == 0);
	CHECK(wait_ev(ep, ev, 8, 0) == 1 && ev[0].data.u64 == 555 && ev[0].events == EPOLLOUT);
	CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, b, NULL) == 0);
	CHECK(wait_ev(ep, ev, 8, 0) == 0);

	/* Timeout with nothing ready. */
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK(wait_ev(ep, ev, 8, 120) == 0);
	CHECK(ms_since(&t0) >= 115 && ms_since(&t0) < 1000);

	/* Closing the member (last descriptor) removes it. */
	e.events = EPOLLIN;
	e.data.u64 = 666;
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, b, &e) == 0);
	CHECK(close(b) == 0);
	CHECK(close(a) == 0);
	CHECK(wait_ev(ep, ev, 8, 0) == 0);
	CHECK(close(ep) == 0 && close(p[0]) == 0 && close(p[1]) == 0);
}

static int nest_b;

static void *sender_1201(void *arg)
{
	usleep(50000);
	send_to(nest_b, 1201, "m");
	return NULL;
}

static void test_two_sets_and_nested(void)
{
	struct epoll_event ev[4], e = { .events = EPOLLIN };
	char buf[16];
	int a = udp(1201), b = udp(1202), e1, e2, outer;

	nest_b = b;
	e1 = epoll_create1(0);
	e2 = epoll_create1(0);
	outer = epoll_create1(0);
	e.data.u64 = 1;
	CHECK(epoll_ctl(e1, EPOLL_CTL_ADD, a, &e) == 0);
	e.data.u64 = 2;
	CHECK(epoll_ctl(e2, EPOLL_CTL_ADD, a, &e) == 0);
	e.data.u64 = 3;
	CHECK(epoll_ctl(outer, EPOLL_CTL_ADD, e1, &e) == 0);
	CHECK(wait_ev(outer, ev, 4, 0) == 0);
	send_to(b, 1201, "n");
	CHECK(wait_ev(e1, ev, 4, 0) == 1 && ev[0].data.u64 == 1);
	CHECK(wait_ev(e2, ev, 4, 0) == 1 && ev[0].data.u64 == 2);
	/* The inner set is readable from the outer one. */
	CHECK(wait_ev(outer, ev, 4, 1000) == 1 && ev[0].data.u64 == 3);
	/* poll() on an epoll fd works the same way. */
	struct pollfd pf = { .fd = e2, .events = POLLIN };
	CHECK(poll(&pf, 1, 1000) == 1 && (pf.revents & POLLIN));
	CHECK(recv(a, buf, sizeof(buf), 0) == 1);
	/* Drained (a read sends no notify): the outer set and poll() see
	 * nothing, without the inner sets being waited on first. */
	CHECK(wait_ev(outer, ev, 4, 0) == 0);
	CHECK(poll(&pf, 1, 0) == 0);
	CHECK(wait_ev(e1, ev, 4, 0) == 0 && wait_ev(e2, ev, 4, 0) == 0);
	/* Readable again: the outer set sees it again (blocking, woken by
	 * the inner's doorbell). */
	pthread_t t;
	CHECK(pthread_create(&t, NULL, sender_1201, NULL) == 0);
	CHECK(wait_ev(outer, ev, 4, 5000) == 1 && ev[0].data.u64 == 3);
	pthread_join(t, NULL);
	CHECK(recv(a, buf, sizeof(buf), 0) == 1);
	CHECK(wait_ev(outer, ev, 4, 0) == 0);
	close(outer);
	close(e1);
	close(e2);
	close(a);
	close(b);
}

static void test_dup_close(void)
{
	struct epoll_event ev[4], e = { .events = EPOLLIN, .data.u64 = 9 };
	char buf[16];
	int a = udp(1301), b = udp(1302), d, ep, p[2], live0;

	ep = epoll_create1(0);
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, a, &e) == 0);
	d = dup(a);
	CHECK(d >= 0 && fdtab_peek(d) == fdtab_peek(a));
	/* The same description under another number is another entry. */
	e.data.u64 = 10;
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, d, &e) == 0);
	send_to(b, 1301, "1");
	CHECK(wait_ev(ep, ev, 4, 0) == 2);
	/* Closing the original: the description lives on (through d), its
	 * number stays reserved (the socket layer's kfd) but is closed for
	 * the app; Linux keeps both registrations. */
	CHECK(close(a) == 0);
	CHECK(close(a) == -1 && errno == EBADF);
	CHECK(wait_ev(ep, ev, 4, 0) == 2);
	CHECK(recv(d, buf, sizeof(buf), 0) == 1);
	/* F_DUPFD_CLOEXEC and dup3 keep sharing it. */
	int d2 = fcntl(d, F_DUPFD_CLOEXEC, 100);
	CHECK(d2 >= 100 && fdtab_peek(d2) == fdtab_peek(d));
	CHECK(fcntl(d2, F_GETFD) == FD_CLOEXEC);
	int d3 = dup3(d, 200, O_CLOEXEC);
	CHECK(d3 == 200 && fdtab_peek(200) == fdtab_peek(d));
	/* dup2 of a pipe over one of them: that slot is a kernel fd now. */
	CHECK(pipe(p) == 0);
	CHECK(dup2(p[0], d3) == d3 && fdtab_peek(d3) == NULL);
	CHECK(close(d3) == 0);
	live0 = fk_live;
	CHECK(close(d2) == 0);
	send_to(b, 1301, "2");
	CHECK(wait_ev(ep, ev, 4, 0) == 2);
	/* The last descriptor: the socket closes, its registrations go. */
	CHECK(close(d) == 0);
	CHECK(fk_live == live0 - 1);
	CHECK(wait_ev(ep, ev, 4, 0) == 0);
	/* dup2 over a libOS socket closes it properly. */
	a = udp(1303);
	live0 = fk_live;
	CHECK(dup2(p[1], a) == a);
	CHECK(fk_live == live0 - 1 && fdtab_peek(a) == NULL);
	CHECK(write(a, "k", 1) == 1 && read(p[0], buf, 1) == 1);
	close(a);
	close(p[0]);
	close(p[1]);
	close(b);
	/* The epoll's doorbell is private: the app cannot close it. */
	for (int fd = ep + 1; fd < ep + 4; fd++)
		if (fdtab_peek(fd) == &ipx_private)
			CHECK(close(fd) == -1 && errno == EBADF);
	close(ep);
}

static int pa, pb, pc;

static void *sender(void *arg)
{
	usleep(50000);
	send_to(pb, (uint16_t)(uintptr_t)arg, "wake");
	return NULL;
}

static void test_poll_select(void)
{
	struct pollfd pf[3];
	fd_set rs, ws;
	struct timeval tv;
	struct timespec t0;
	pthread_t t;
	char buf[16];
	int p[2];

	pa = udp(1401);
	pb = udp(1402);
	CHECK(pipe(p) == 0);
	pf[0] = (struct pollfd){ .fd = pa, .events = POLLIN };
	pf[1] = (struct pollfd){ .fd = p[0], .events = POLLIN };
	pf[2] = (struct pollfd){ .fd = pb, .events = POLLOUT };
	CHECK(poll(pf, 3, 0) == 1 && pf[2].revents == POLLOUT && pf[0].revents == 0);
	CHECK(poll(pf, 2, 0) == 0);
	/* Blocking poll woken by another thread's datagram. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK(pthread_create(&t, NULL, sender, (void *)1401) == 0);
	CHECK(poll(pf, 2, 5000) == 1 && pf[0].revents == POLLIN);
	CHECK(ms_since(&t0) < 2000);
	pthread_join(t, NULL);
	CHECK(write(p[1], "x", 1) == 1);
	CHECK(poll(pf, 2, 0) == 2 && pf[1].revents == POLLIN);
	/* select over the same mix, including the timeval update. */
	FD_ZERO(&rs);
	FD_ZERO(&ws);
	FD_SET(pa, &rs);
	FD_SET(p[0], &rs);
	FD_SET(pb, &ws);
	tv.tv_sec = 1;
	tv.tv_usec = 0;
	CHECK(select(FD_SETSIZE, &rs, &ws, NULL, &tv) == 3);
	CHECK(FD_ISSET(pa, &rs) && FD_ISSET(p[0], &rs) && FD_ISSET(pb, &ws));
	CHECK(recv(pa, buf, sizeof(buf), 0) == 4 && read(p[0], buf, 1) == 1);
	FD_ZERO(&rs);
	FD_SET(pa, &rs);
	FD_SET(p[0], &rs);
	tv.tv_sec = 0;
	tv.tv_usec = 150000;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK(select(p[0] > pa ? p[0] + 1 : pa + 1, &rs, NULL, NULL, &tv) == 0);
	CHECK(ms_since(&t0) >= 145);
	CHECK(tv.tv_sec == 0 && tv.tv_usec == 0);
	CHECK(!FD_ISSET(pa, &rs) && !FD_ISSET(p[0], &rs));
	/* select woken by a datagram, with time left reported. */
	FD_SET(pa, &rs);
	tv.tv_sec = 5;
	tv.tv_usec = 0;
	CHECK(pthread_create(&t, NULL, sender, (void *)1401) == 0);
	CHECK(select(pa + 1, &rs, NULL, NULL, &tv) == 1 && FD_ISSET(pa, &rs));
	CHECK(tv.tv_sec >= 3 && tv.tv_sec <= 4);
	pthread_join(t, NULL);
	CHECK(recv(pa, buf, sizeof(buf), 0) == 4);
	/* A closed descriptor in a mixed select: EBADF. */
	pc = udp(0);
	close(p[1]);
	FD_ZERO(&rs);
	FD_SET(pa, &rs);
	FD_SET(p[1], &rs);
	tv.tv_sec = 0;
	tv.tv_usec = 0;
	CHECK(select(p[1] > pa ? p[1] + 1 : pa + 1, &rs, NULL, NULL, &tv) == -1 && errno == EBADF);
	close(p[0]);
	close(pc);
}

static volatile sig_atomic_t got_sig;

static void on_alarm(int sig)
{
	got_sig = 1;
}

static void test_eintr_and_wake(void)
{
	struct sigaction sa = { .sa_handler = on_alarm, .sa_flags = SA_RESTART };
	struct epoll_event ev[2], e = { .events = EPOLLIN, .data.u64 = 77 };
	struct pollfd pf = { .fd = pa, .events = POLLIN };
	struct timespec t0;
	pthread_t t;
	int ep = epoll_create1(0);
	char buf[16];

	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, pa, &e) == 0);
	/* A blocked epoll_wait is woken by a datagram from another thread. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK(pthread_create(&t, NULL, sender, (void *)1401) == 0);
	CHECK(wait_ev(ep, ev, 2, 5000) == 1 && ev[0].data.u64 == 77);
	CHECK(ms_since(&t0) < 2000);
	pthread_join(t, NULL);
	CHECK(recv(pa, buf, sizeof(buf), 0) == 4);
	/* A signal handler interrupts epoll_wait and poll: EINTR, even with
	 * SA_RESTART, as Linux. */
	sigaction(SIGALRM, &sa, NULL);
	ualarm(100000, 0);
	CHECK(wait_ev(ep, ev, 2, 5000) == -1 && errno == EINTR && got_sig);
	got_sig = 0;
	ualarm(100000, 0);
	CHECK(poll(&pf, 1, 5000) == -1 && errno == EINTR && got_sig);
	/* epoll_pwait with a mask that blocks it: the timeout wins. */
	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGALRM);
	sigprocmask(SIG_BLOCK, &block, NULL);
	got_sig = 0;
	ualarm(50000, 0);
	CHECK(epoll_pwait(ep, ev, 2, 150, &block) == 0);
	sigprocmask(SIG_UNBLOCK, &block, NULL);
	CHECK(got_sig);
	signal(SIGALRM, SIG_DFL);
	close(ep);
}

/* dup/close races: threads dup and close one description while others
 * send, receive and wait on it; nothing may crash or leak. */
static atomic_bool race_stop;
static int race_fd;

static void *racer(void *arg)
{
	char buf[16];
	int d;

	while (!atomic_load(&race_stop)) {
		d = dup(race_fd);
		if (d >= 0) {
			(void)recv(d, buf, sizeof(buf), MSG_DONTWAIT);
			send_to(d, 1501, "r");
			close(d);
		}
	}
	return NULL;
}

static void *race_waiter(void *arg)
{
	struct epoll_event ev[4];
	int ep = *(int *)arg;

	while (!atomic_load(&race_stop))
		(void)epoll_wait(ep, ev, 4, 5);
	return NULL;
}

static void test_races(void)
{
	struct epoll_event e = { .events = EPOLLIN | EPOLLET };
	pthread_t t[3];
	struct timespec t0;
	int ep = epoll_create1(0), live0 = fk_live, i, d;

	race_fd = udp(1501);
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, race_fd, &e) == 0);
	for (i = 0; i < 2; i++)
		CHECK(pthread_create(&t[i], NULL, racer, NULL) == 0);
	CHECK(pthread_create(&t[2], NULL, race_waiter, &ep) == 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (ms_since(&t0) < 700) {
		d = dup(race_fd);
		CHECK(d >= 0);
		e.data.u64 = (uint64_t)d;
		(void)epoll_ctl(ep, EPOLL_CTL_ADD, d, &e);
		CHECK(close(d) == 0);
	}
	atomic_store(&race_stop, true);
	for (i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	CHECK(close(race_fd) == 0);
	CHECK(close(ep) == 0);
	CHECK(fk_live == live0);
}

/* A domain the socket layer refuses (the fake has no AF_INET6) stays a
 * plain kernel socket. */
static void test_inet6(void)
{
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	socklen_t l = sizeof(a6);
	int s6 = socket(AF_INET6, SOCK_DGRAM, 0);

	CHECK(s6 >= 0 && fdtab_peek(s6) == NULL);
	CHECK(bind(s6, (struct sockaddr *)&a6, sizeof(a6)) == 0);
	CHECK(getsockname(s6, (struct sockaddr *)&a6, &l) == 0 && ntohs(a6.sin6_port) != 0);
	CHECK(close(s6) == 0);
}

/* connect() to a kernel destination (loopback): the descriptor becomes a
 * plain kernel socket and keeps its epoll registration. */
static void test_connect_kernel(void)
{
	struct epoll_event ev[2], e = { .events = EPOLLOUT, .data.u64 = 4242 };
	struct sockaddr_in lo = addr(0x7f000001, 9);
	int s = udp(0), ep = epoll_create1(0), live0 = fk_live;

	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, s, &e) == 0);
	CHECK(connect(s, (struct sockaddr *)&lo, sizeof(lo)) == 0);
	CHECK(fdtab_peek(s) == NULL && fk_live == live0 - 1);
	/* The kernel UDP socket is writable: the app's data comes back. */
	CHECK(epoll_wait(ep, ev, 2, 1000) == 1 && ev[0].data.u64 == 4242 &&
	      (ev[0].events & EPOLLOUT));
	CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL) == 0);
	close(s);
	close(ep);
}

/* Closing a socket's first number while a dup lives: the number is free
 * for the program again, as on Linux. */
static void test_close_original_number(void)
{
	char buf[8];
	int a = udp(1701), b = udp(1702), d = dup(a), p[2];

	CHECK(close(a) == 0);
	CHECK(pipe(p) == 0);
	CHECK(p[0] == a);
	send_to(b, 1701, "q");
	CHECK(recv(d, buf, sizeof(buf), 0) == 1);
	close(p[0]);
	close(p[1]);
	close(d);
	close(b);
}

int main(void)
{
	alarm(60);
	test_basic_io();
	test_epoll_mixed();
	test_two_sets_and_nested();
	test_dup_close();
	test_poll_select();
	test_eintr_and_wake();
	close(pa);
	close(pb);
	test_inet6();
	test_connect_kernel();
	test_close_original_number();
	test_races();
	CHECK(fk_live == 0);
	printf("epoll/poll/select/dup over the fake socket layer: ok\n");
	return 0;
}
