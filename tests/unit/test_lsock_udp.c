/* lsock UDP behaviour through real lwIP on the loop fixture (stack_loop.c). */
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "stack_loop.h"

static struct lsock *udp_bound(const char *ip, uint16_t port)
{
	struct lsock *s = loop_socket(-1, SOCK_DGRAM);
	struct sockaddr_in a = loop_addr(ip, port);

	if (s == NULL || lsock_bind(s, (struct sockaddr *)&a, sizeof(a)) != 0)
		return NULL;
	return s;
}

static ssize_t send_to(struct lsock *s, const void *buf, size_t n, const struct sockaddr_in *to)
{
	struct iovec v = { .iov_base = (void *)buf, .iov_len = n };
	struct msghdr m = { .msg_name = (void *)to, .msg_namelen = sizeof(*to),
			    .msg_iov = &v, .msg_iovlen = 1 };

	return lsock_sendmsg(s, &m, 0);
}

static ssize_t recv_from(struct lsock *s, void *buf, size_t n, int flags,
			 struct sockaddr_in *from, int *mflags)
{
	struct iovec v = { .iov_base = buf, .iov_len = n };
	struct msghdr m = { .msg_name = from, .msg_namelen = sizeof(*from),
			    .msg_iov = &v, .msg_iovlen = 1 };
	ssize_t r = lsock_recvmsg(s, &m, flags);

	if (mflags)
		*mflags = m.msg_flags;
	return r;
}

static int test_sendto_recvfrom(void)
{
	struct lsock *srv = udp_bound(LOOP_IP, 5300);
	struct lsock *cli = loop_socket(-1, SOCK_DGRAM);
	struct sockaddr_in to = loop_addr(LOOP_IP, 5300), from, me;
	socklen_t ml = sizeof(me);
	char buf[64];
	int fl, n;

	CHECK(srv && cli);
	CHECK_EQ(stack_loop_port_state(17, 5300), 1);
	/* Before any bind the address is 0.0.0.0:0. */
	CHECK_EQ(lsock_getsockname(cli, (struct sockaddr *)&me, &ml), 0);
	CHECK_EQ(me.sin_port, 0);
	CHECK_EQ(me.sin_addr.s_addr, 0);

	CHECK_EQ(send_to(cli, "one", 3, &to), 3);
	CHECK_EQ(send_to(cli, "", 0, &to), 0);
	CHECK_EQ(send_to(cli, "three33", 7, &to), 7);
	ml = sizeof(me);
	CHECK_EQ(lsock_getsockname(cli, (struct sockaddr *)&me, &ml), 0);
	CHECK(me.sin_port != 0);	/* implicit bind by sendto */

	CHECK(loop_wait_events(srv, EPOLLIN, 2000));
	CHECK_EQ(lsock_ioctl(srv, FIONREAD, &n), 0);
	CHECK_EQ(n, 3);
	CHECK_EQ(recv_from(srv, buf, sizeof(buf), MSG_PEEK, &from, NULL), 3);
	CHECK_EQ(recv_from(srv, buf, sizeof(buf), 0, &from, &fl), 3);
	CHECK(memcmp(buf, "one", 3) == 0);
	CHECK_EQ(from.sin_port, me.sin_port);
	CHECK_EQ(from.sin_addr.s_addr, inet_addr(LOOP_IP));
	/* Datagram boundaries, the empty one included. */
	for (int i = 0; i < 2000 && !(lsock_events(srv) & EPOLLIN); i++)
		usleep(1000);
	CHECK_EQ(recv_from(srv, buf, sizeof(buf), 0, &from, NULL), 0);
	CHECK_EQ(recv_from(srv, buf, 4, MSG_TRUNC, &from, &fl), 7);
	CHECK(fl & MSG_TRUNC);
	CHECK(memcmp(buf, "thre", 4) == 0);
	CHECK_EQ(recv_from(srv, buf, sizeof(buf), MSG_DONTWAIT, &from, NULL), -EAGAIN);

	/* Reply to the sender's address; connected receive. */
	CHECK_EQ(send_to(srv, "pong", 4, &from), 4);
	CHECK_EQ(recv_from(cli, buf, sizeof(buf), 0, &from, NULL), 4);
	CHECK(memcmp(buf, "pong", 4) == 0);

	CHECK_EQ(lsock_connect(cli, (struct sockaddr *)&to, sizeof(to)), 0);
	CHECK_EQ(loop_send(cli, "conn", 4, 0), 4);
	CHECK_EQ(recv_from(srv, buf, sizeof(buf), 0, &from, NULL), 4);
	struct sockaddr_in peer;
	socklen_t pl = sizeof(peer);
	CHECK_EQ(lsock_getpeername(cli, (struct sockaddr *)&peer, &pl), 0);
	CHECK_EQ(peer.sin_port, htons(5300));

	/* Double bind. */
	struct lsock *dup = loop_socket(-1, SOCK_DGRAM);
	struct sockaddr_in same = loop_addr(LOOP_IP, 5300);
	CHECK_EQ(lsock_bind(dup, (struct sockaddr *)&same, sizeof(same)), -EADDRINUSE);
	loop_close(dup);

	/* Unconnected send without an address. */
	struct lsock *lone = loop_socket(-1, SOCK_DGRAM);
	CHECK_EQ(loop_send(lone, "x", 1, 0), -EDESTADDRREQ);
	loop_close(lone);

	loop_close(cli);
	loop_close(srv);
	CHECK_EQ(stack_loop_port_state(17, 5300), 0);
	return 0;
}

static int test_rcvtimeo(void)
{
	struct lsock *s = udp_bound("0.0.0.0", 5301);
	struct timeval tv = { .tv_sec = 0, .tv_usec = 100000 };
	char buf[4];

	CHECK(s);
	CHECK_EQ(lsock_setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	CHECK_EQ(loop_recv(s, buf, sizeof(buf), 0), -EAGAIN);
	loop_close(s);
	return 0;
}

/* INADDR_ANY: the kernel side receives from loopback; sendto 127.x uses kfd. */
static int test_kernel_side(void)
{
	int kfd = real.socket(AF_INET, SOCK_DGRAM, 0);
	struct lsock *s = loop_socket(kfd, SOCK_DGRAM);
	struct sockaddr_in any = loop_addr("0.0.0.0", 0), me;
	socklen_t ml = sizeof(me);
	char buf[16];

	CHECK(kfd >= 0 && s);
	CHECK_EQ(lsock_bind(s, (struct sockaddr *)&any, sizeof(any)), 0);
	CHECK_EQ(lsock_getsockname(s, (struct sockaddr *)&me, &ml), 0);
	if (!(lsock_kernel_events(s) & EPOLLIN)) {
		fprintf(stderr, "kernel port %u busy: skipping\n", ntohs(me.sin_port));
		loop_close(s);
		real.close(kfd);
		return 0;
	}
	int k = real.socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in lo = loop_addr("127.0.0.1", ntohs(me.sin_port)), from;
	CHECK_EQ(real.sendto(k, "kern", 4, 0, (struct sockaddr *)&lo, sizeof(lo)), 4);
	CHECK_EQ(recv_from(s, buf, sizeof(buf), 0, &from, NULL), 4);
	CHECK(memcmp(buf, "kern", 4) == 0);
	CHECK_EQ(from.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
	/* And back through kfd (127.0.0.1 is not the stack's). */
	CHECK_EQ(send_to(s, "back", 4, &from), 4);
	CHECK_EQ(real.recv(k, buf, sizeof(buf), 0), 4);
	CHECK(memcmp(buf, "back", 4) == 0);
	real.close(k);
	loop_close(s);
	real.close(kfd);
	return 0;
}

int main(void)
{
	static const struct {
		const char *name;
		int (*fn)(void);
	} tests[] = {
		{ "sendto_recvfrom", test_sendto_recvfrom },
		{ "rcvtimeo", test_rcvtimeo },
		{ "kernel_side", test_kernel_side },
	};
	int fails = 0;

	signal(SIGPIPE, SIG_IGN);
	if (stack_init() != 0)
		return 77;
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		alarm(20);
		int r = tests[i].fn();
		alarm(0);
		fprintf(stderr, "%s %s\n", r == 0 ? "ok  " : "FAIL", tests[i].name);
		fails += r != 0;
	}
	return fails ? 1 : 0;
}
