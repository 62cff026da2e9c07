/* Behaviour: epoll level-, edge-triggered and one-shot over a pipe, an eventfd and sockets; shared and nested sets. */
#include "bt.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>

enum { T_PIPE = 1, T_EFD, T_SOCK, T_SOCK2, T_INNER };
static const char *const tag_name[] = { "?", "pipe", "eventfd", "sock", "sock2", "inner" };

static int pipefd[2], efd, sock;

/* One epoll_wait, its events printed sorted by tag so order never matters. */
static void wait_print(const char *step, int ep, int timeout)
{
	struct epoll_event ev[8];
	char line[512];
	size_t len = 0;
	int n = epoll_wait(ep, ev, 8, timeout);

	if (n < 0) {
		bt_say("%s: -1 %s", step, bt_errname(errno));
		return;
	}
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && ev[j].data.u64 < ev[j - 1].data.u64; j--) {
			struct epoll_event t = ev[j];
			ev[j] = ev[j - 1];
			ev[j - 1] = t;
		}
	line[0] = 0;
	for (int i = 0; i < n; i++) {
		uint64_t t = ev[i].data.u64 < T_INNER + 1 ? ev[i].data.u64 : 0;
		len += snprintf(line + len, sizeof(line) - len, "%s%s %s", i ? ", " : "", tag_name[t],
				bt_epoll_events(ev[i].events));
	}
	bt_say("%s: %d [%s]", step, n, line);
}

static int add(int ep, int fd, uint32_t events, uint64_t tag)
{
	struct epoll_event ev = { .events = events, .data.u64 = tag };

	return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

/* Make all three sources readable: the socket's data comes back from the
 * echo service, so we wait for it before looking. */
static void make_ready(const char *what)
{
	uint64_t one = 1;
	char step[64];

	if (write(pipefd[1], "p", 1) != 1 || write(efd, &one, 8) != 8 || send(sock, "s", 1, 0) != 1)
		bt_say("%s: make ready failed %s", what, bt_errname(errno));
	snprintf(step, sizeof(step), "%s sock readable", what);
	bt_say("%s: %s", step, bt_poll_events((short)bt_wait(sock, POLLIN, 5000)));
}

static void drain_all(void)
{
	char buf[256];
	uint64_t v;

	while (bt_wait(pipefd[0], POLLIN, 0) > 0 && read(pipefd[0], buf, sizeof(buf)) > 0)
		;
	while (bt_wait(efd, POLLIN, 0) > 0 && read(efd, &v, 8) == 8)
		;
	while (bt_wait(sock, POLLIN, 0) > 0 && recv(sock, buf, sizeof(buf), 0) > 0)
		;
}

static void level(void)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);

	bt_ok("lt create", ep);
	bt_ok("lt add pipe", add(ep, pipefd[0], EPOLLIN, T_PIPE));
	bt_ok("lt add eventfd", add(ep, efd, EPOLLIN, T_EFD));
	bt_ok("lt add sock", add(ep, sock, EPOLLIN | EPOLLOUT | EPOLLRDHUP, T_SOCK));
	wait_print("lt only writable", ep, 0);
	make_ready("lt");
	wait_print("lt round 1", ep, 0);
	wait_print("lt round 2 (still ready)", ep, 0);
	drain_all();
	wait_print("lt after drain", ep, 0);
	close(ep);
}

static void edge(void)
{
	int ep = epoll_create1(0);
	uint64_t one = 1;

	bt_ok("et add pipe", add(ep, pipefd[0], EPOLLIN | EPOLLET, T_PIPE));
	bt_ok("et add eventfd", add(ep, efd, EPOLLIN | EPOLLET, T_EFD));
	bt_ok("et add sock", add(ep, sock, EPOLLIN | EPOLLRDHUP | EPOLLET, T_SOCK));
	wait_print("et idle", ep, 0);
	make_ready("et");
	wait_print("et round 1", ep, 0);
	wait_print("et round 2 (no new edge)", ep, 0);
	bt_val("et more pipe", write(pipefd[1], "q", 1));
	wait_print("et pipe edge", ep, 0);
	bt_val("et more sock", send(sock, "t", 1, 0));
	/* New data on a socket whose old data is unread is a new edge. */
	{
		int i = 0;
		while (i++ < 500 && bt_wait(sock, POLLIN, 0) > 0) {
			int avail = 0;
			if (ioctl(sock, FIONREAD, &avail) == 0 && avail >= 2)
				break;
			usleep(10000);
		}
	}
	wait_print("et sock edge", ep, 0);
	bt_val("et more eventfd", write(efd, &one, 8));
	wait_print("et eventfd edge", ep, 0);
	/* A blocking wait is woken by a socket edge. */
	drain_all();
	bt_val("et send", send(sock, "u", 1, 0));
	wait_print("et blocking wait", ep, 5000);
	drain_all();
	close(ep);
}

static void oneshot(void)
{
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.u64 = T_SOCK };

	bt_ok("os add pipe", add(ep, pipefd[0], EPOLLIN | EPOLLONESHOT, T_PIPE));
	bt_ok("os add sock", add(ep, sock, EPOLLIN | EPOLLONESHOT, T_SOCK));
	make_ready("os");
	wait_print("os round 1", ep, 0);
	wait_print("os round 2 (disarmed)", ep, 0);
	bt_ok("os rearm sock", epoll_ctl(ep, EPOLL_CTL_MOD, sock, &ev));
	wait_print("os after rearm", ep, 0);
	wait_print("os disarmed again", ep, 0);
	bt_ok("os add sock again", add(ep, sock, EPOLLIN, T_SOCK));
	bt_ok("os del sock", epoll_ctl(ep, EPOLL_CTL_DEL, sock, NULL));
	bt_ok("os del sock again", epoll_ctl(ep, EPOLL_CTL_DEL, sock, NULL));
	bt_ok("os mod unknown", epoll_ctl(ep, EPOLL_CTL_MOD, sock, &ev));
	bt_ok("os add self", add(ep, ep, EPOLLIN, T_INNER));
	drain_all();
	close(ep);
}

static void shared_and_nested(void)
{
	int a = epoll_create1(0), b = epoll_create1(0), inner = epoll_create1(0), outer = epoll_create1(0);

	bt_ok("two sets add a (LT)", add(a, sock, EPOLLIN, T_SOCK));
	bt_ok("two sets add b (ET)", add(b, sock, EPOLLIN | EPOLLET, T_SOCK));
	bt_val("two sets send", send(sock, "v", 1, 0));
	wait_print("two sets a blocking", a, 5000);
	wait_print("two sets b", b, 0);
	wait_print("two sets a again", a, 0);
	wait_print("two sets b again", b, 0);
	drain_all();
	wait_print("two sets a drained", a, 0);

	bt_ok("nested add pipe to inner", add(inner, pipefd[0], EPOLLIN, T_PIPE));
	bt_ok("nested add sock to inner", add(inner, sock, EPOLLIN, T_SOCK));
	bt_ok("nested add inner to outer", add(outer, inner, EPOLLIN, T_INNER));
	wait_print("nested outer idle", outer, 0);
	bt_val("nested send", send(sock, "w", 1, 0));
	wait_print("nested outer blocking", outer, 5000);
	wait_print("nested inner", inner, 0);
	drain_all();
	wait_print("nested outer drained", outer, 0);
	bt_val("nested pipe", write(pipefd[1], "x", 1));
	wait_print("nested outer pipe", outer, 0);
	wait_print("nested inner pipe", inner, 0);
	drain_all();
	close(a);
	close(b);
	close(inner);
	close(outer);
}

static void hangups(void)
{
	int ep = epoll_create1(0);
	int f = bt_connect_peer(BT_PORT_SEND), r = bt_connect_peer(BT_PORT_RESET);
	char buf[64];

	bt_ok("fin add", add(ep, f, EPOLLIN | EPOLLRDHUP, T_SOCK));
	bt_ok("rst add", add(ep, r, EPOLLIN | EPOLLRDHUP, T_SOCK2));
	bt_val("fin request", send(f, "10\n", 3, 0));
	bt_val("rst request", send(r, "x", 1, 0));
	bt_say("fin poll: %s", bt_poll_events((short)bt_wait(f, POLLRDHUP, 5000)));
	bt_say("rst poll: %s", bt_poll_events((short)bt_wait(r, POLLRDHUP, 5000)));
	wait_print("hangups", ep, 0);
	bt_val("fin read", read(f, buf, sizeof(buf)));
	bt_val("rst read", read(r, buf, sizeof(buf)));
	wait_print("hangups after read", ep, 0);
	/* Closing the only fd of a socket removes it from every set. */
	close(f);
	close(r);
	wait_print("after close", ep, 0);
	close(ep);
}

int main(int argc, char **argv)
{
	bt_init(argc, argv, 60);
	bt_ok("pipe", pipe(pipefd));
	efd = eventfd(0, EFD_NONBLOCK);
	bt_ok("eventfd", efd);
	sock = bt_connect_peer(BT_PORT_ECHO);
	bt_ok("connect", sock);
	level();
	edge();
	oneshot();
	shared_and_nested();
	hangups();
	close(sock);
	return 0;
}
