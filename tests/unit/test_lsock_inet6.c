/* AF_INET6 lsocks: dual-stack over IPv4-mapped addresses, IPv6 binds on kfd. */
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "stack_loop.h"

static struct sockaddr_in6 addr6(const char *ip, uint16_t port)
{
	struct sockaddr_in6 a;

	memset(&a, 0, sizeof(a));
	a.sin6_family = AF_INET6;
	a.sin6_port = htons(port);
	inet_pton(AF_INET6, ip, &a.sin6_addr);
	return a;
}

static struct lsock *socket6(int kfd, int type)
{
	struct lsock *s = NULL;

	if (lsock_create_domain(kfd, AF_INET6, type, &s) < 0)
		return NULL;
	lsock_fd_get(s);
	return s;
}

/* A dual-stack listener on [::]: IPv4 clients of the libOS, and (through
 * kfd) loopback IPv6 clients of the kernel. */
static int test_tcp_dual_stack(void)
{
	int kfd = real.socket(AF_INET6, SOCK_STREAM, 0);
	struct lsock *l = socket6(kfd, SOCK_STREAM);
	struct sockaddr_in6 any = addr6("::", 0), me;
	socklen_t ml = sizeof(me);
	char txt[64];
	int one = 1;

	CHECK(kfd >= 0 && l);
	CHECK_EQ(lsock_setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
	CHECK_EQ(lsock_bind(l, (struct sockaddr *)&any, sizeof(any)), 0);
	CHECK_EQ(lsock_listen(l, 8), 0);
	CHECK_EQ(lsock_getsockname(l, (struct sockaddr *)&me, &ml), 0);
	CHECK_EQ(ml, sizeof(me));
	CHECK_EQ(me.sin6_family, AF_INET6);
	CHECK(IN6_IS_ADDR_UNSPECIFIED(&me.sin6_addr));
	uint16_t port = ntohs(me.sin6_port);
	CHECK(port != 0);
	int v = 0;
	socklen_t vl = sizeof(v);
	CHECK_EQ(lsock_getsockopt(l, SOL_SOCKET, SO_DOMAIN, &v, &vl), 0);
	CHECK_EQ(v, AF_INET6);

	/* An IPv4 libOS client. */
	struct lsock *c = loop_socket(-1, SOCK_STREAM);
	struct sockaddr_in to = loop_addr(LOOP_IP, port);
	CHECK_EQ(lsock_connect(c, (struct sockaddr *)&to, sizeof(to)), 0);
	struct lsock *s = NULL;
	int nk = -1;
	struct sockaddr_in6 peer;
	socklen_t pl = sizeof(peer);
	CHECK_EQ(lsock_accept(l, &s, &nk, (struct sockaddr *)&peer, &pl, 0), 0);
	CHECK(s != NULL);
	lsock_fd_get(s);
	CHECK_EQ(pl, sizeof(peer));
	CHECK(IN6_IS_ADDR_V4MAPPED(&peer.sin6_addr));
	inet_ntop(AF_INET6, &peer.sin6_addr, txt, sizeof(txt));
	CHECK(strcmp(txt, "::ffff:" LOOP_IP) == 0);
	CHECK_EQ(loop_send(c, "v4", 2, 0), 2);
	char buf[8];
	CHECK_EQ(loop_recv(s, buf, sizeof(buf), 0), 2);
	struct sockaddr_in6 sl;
	socklen_t sll = sizeof(sl);
	CHECK_EQ(lsock_getsockname(s, (struct sockaddr *)&sl, &sll), 0);
	inet_ntop(AF_INET6, &sl.sin6_addr, txt, sizeof(txt));
	CHECK(strcmp(txt, "::ffff:" LOOP_IP) == 0);
	loop_close(c);
	loop_close(s);

	/* A kernel IPv6 loopback client. */
	if (lsock_kernel_events(l) & EPOLLIN) {
		int k = real.socket(AF_INET6, SOCK_STREAM, 0);
		struct sockaddr_in6 lo = addr6("::1", port);
		CHECK_EQ(real.connect(k, (struct sockaddr *)&lo, sizeof(lo)), 0);
		struct lsock *none = NULL;
		CHECK_EQ(lsock_accept(l, &none, &nk, NULL, NULL, 0), 0);
		CHECK(none == NULL && nk >= 0);
		real.close(k);
		real.close(nk);
	} else {
		fprintf(stderr, "kernel port %u busy: kernel half skipped\n", port);
	}

	/* An IPv6 destination is the kernel's. */
	struct lsock *c6 = socket6(-1, SOCK_STREAM);
	struct sockaddr_in6 far = addr6("2001:db8::1", 80);
	CHECK_EQ(lsock_connect(c6, (struct sockaddr *)&far, sizeof(far)), -EXDEV);
	struct sockaddr_in6 mapped = addr6("::ffff:" LOOP_IP, port);
	CHECK_EQ(lsock_connect(c6, (struct sockaddr *)&mapped, sizeof(mapped)), 0);
	s = NULL;
	CHECK_EQ(lsock_accept(l, &s, &nk, NULL, NULL, 0), 0);
	CHECK(s != NULL);
	lsock_fd_get(s);
	loop_close(s);
	loop_close(c6);
	loop_close(l);
	real.close(kfd);
	return 0;
}

static int test_udp_and_v6only(void)
{
	struct lsock *u = socket6(-1, SOCK_DGRAM);
	struct sockaddr_in6 any = addr6("::", 5400), from;
	char buf[8], txt[64];

	CHECK(u);
	CHECK_EQ(lsock_bind(u, (struct sockaddr *)&any, sizeof(any)), 0);
	struct lsock *c = loop_socket(-1, SOCK_DGRAM);
	struct sockaddr_in to = loop_addr(LOOP_IP, 5400);
	struct iovec v = { .iov_base = "dg", .iov_len = 2 };
	struct msghdr m = { .msg_name = &to, .msg_namelen = sizeof(to), .msg_iov = &v, .msg_iovlen = 1 };
	CHECK_EQ(lsock_sendmsg(c, &m, 0), 2);
	struct iovec rv = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct msghdr rm = { .msg_name = &from, .msg_namelen = sizeof(from), .msg_iov = &rv, .msg_iovlen = 1 };
	CHECK_EQ(lsock_recvmsg(u, &rm, 0), 2);
	CHECK_EQ(rm.msg_namelen, sizeof(from));
	inet_ntop(AF_INET6, &from.sin6_addr, txt, sizeof(txt));
	CHECK(strcmp(txt, "::ffff:" LOOP_IP) == 0);
	/* Reply to the mapped address. */
	struct iovec pv = { .iov_base = "re", .iov_len = 2 };
	struct msghdr pm = { .msg_name = &from, .msg_namelen = sizeof(from), .msg_iov = &pv, .msg_iovlen = 1 };
	CHECK_EQ(lsock_sendmsg(u, &pm, 0), 2);
	CHECK_EQ(loop_recv(c, buf, sizeof(buf), 0), 2);
	loop_close(c);
	loop_close(u);

	/* IPV6_V6ONLY: nothing for the IPv4 libOS, all on kfd. */
	int kfd = real.socket(AF_INET6, SOCK_DGRAM, 0);
	struct lsock *o = socket6(kfd, SOCK_DGRAM);
	int one = 1;
	CHECK_EQ(lsock_setsockopt(o, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)), 0);
	struct sockaddr_in6 any0 = addr6("::", 0), me;
	socklen_t ml = sizeof(me);
	CHECK_EQ(lsock_bind(o, (struct sockaddr *)&any0, sizeof(any0)), 0);
	CHECK_EQ(lsock_setsockopt(o, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)), -EINVAL);
	CHECK_EQ(lsock_getsockname(o, (struct sockaddr *)&me, &ml), 0);
	CHECK(me.sin6_port != 0);
	CHECK_EQ(stack_loop_port_state(17, ntohs(me.sin6_port)), 0);
	CHECK(lsock_kernel_events(o) & EPOLLIN);
	int k = real.socket(AF_INET6, SOCK_DGRAM, 0);
	struct sockaddr_in6 lo = addr6("::1", ntohs(me.sin6_port));
	CHECK_EQ(real.sendto(k, "k6", 2, 0, (struct sockaddr *)&lo, sizeof(lo)), 2);
	CHECK_EQ(loop_recv(o, buf, sizeof(buf), 0), 2);
	CHECK(memcmp(buf, "k6", 2) == 0);
	real.close(k);
	loop_close(o);
	real.close(kfd);
	return 0;
}

int main(void)
{
	static const struct {
		const char *name;
		int (*fn)(void);
	} tests[] = {
		{ "tcp_dual_stack", test_tcp_dual_stack },
		{ "udp_and_v6only", test_udp_and_v6only },
	};
	int fails = 0;

	signal(SIGPIPE, SIG_IGN);
	if (stack_init() != 0)
		return 77;
	int probe = real.socket(AF_INET6, SOCK_DGRAM, 0);
	if (probe < 0) {
		fprintf(stderr, "no IPv6 in this kernel: skip\n");
		return 77;
	}
	real.close(probe);
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		alarm(20);
		int r = tests[i].fn();
		alarm(0);
		fprintf(stderr, "%s %s\n", r == 0 ? "ok  " : "FAIL", tests[i].name);
		fails += r != 0;
	}
	return fails ? 1 : 0;
}
