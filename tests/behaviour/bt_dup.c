/* Behaviour: dup, dup2, dup3, F_DUPFD and close on sockets; the connection lives until its last fd closes. */
#include "bt.h"

#include <fcntl.h>
#include <sys/epoll.h>

static void echo_through(const char *step, int fd)
{
	char buf[16], s[64];

	snprintf(s, sizeof(s), "%s send", step);
	bt_val(s, send(fd, "ping", 4, MSG_NOSIGNAL));
	snprintf(s, sizeof(s), "%s recv", step);
	bt_wait(fd, POLLIN, 5000);
	bt_val(s, recv(fd, buf, sizeof(buf), MSG_DONTWAIT));
}

int main(int argc, char **argv)
{
	int fd, d1, d2, d3, d4, spare, ep;
	char buf[16];

	bt_init(argc, argv, 30);

	fd = bt_connect_peer(BT_PORT_ECHO);
	bt_ok("connect", fd);
	d1 = dup(fd);
	bt_ok("dup", d1);
	echo_through("original", fd);
	echo_through("dup", d1);

	/* Closing the original leaves the connection up behind the dup. */
	bt_ok("close original", close(fd));
	echo_through("dup after close", d1);
	bt_ok("use closed fd", send(fd, "x", 1, MSG_NOSIGNAL));

	/* dup2 onto an fd number that holds another socket closes that one. */
	spare = bt_connect_peer(BT_PORT_ECHO);
	bt_ok("spare connect", spare);
	d2 = dup2(d1, spare);
	bt_say("dup2 onto spare returns target: %d", d2 == spare);
	echo_through("dup2 target", spare);
	bt_say("dup2 same fd returns it: %d", dup2(d1, d1) == d1);
	bt_ok("dup3 same fd", dup3(d1, d1, 0));

	d3 = fcntl(d1, F_DUPFD_CLOEXEC, 100);
	bt_say("F_DUPFD_CLOEXEC >= 100: %d", d3 >= 100);
	bt_say("F_GETFD: %d", fcntl(d3, F_GETFD));
	bt_say("F_GETFD of source: %d", fcntl(d1, F_GETFD));
	bt_ok("F_SETFD 0", fcntl(d3, F_SETFD, 0));
	bt_say("F_GETFD after: %d", fcntl(d3, F_GETFD));
	echo_through("F_DUPFD", d3);

	/* File status flags are shared between dups, fd flags are not. */
	bt_ok("set O_NONBLOCK on one", fcntl(d1, F_SETFL, fcntl(d1, F_GETFL) | O_NONBLOCK));
	bt_say("O_NONBLOCK seen on other: %d", !!(fcntl(d3, F_GETFL) & O_NONBLOCK));
	bt_ok("nonblocking recv through other", recv(d3, buf, sizeof(buf), 0));
	fcntl(d1, F_SETFL, fcntl(d1, F_GETFL) & ~O_NONBLOCK);

	d4 = dup3(d1, 200, O_CLOEXEC);
	bt_say("dup3 to 200: %d cloexec %d", d4 == 200, fcntl(200, F_GETFD));
	bt_ok("dup3 bad flags", dup3(d1, 201, 12345));

	/* shutdown through one fd is seen through all: it acts on the
	 * connection, unlike close. */
	bt_ok("close d1", close(d1));
	bt_ok("close spare", close(spare));
	bt_ok("close d3", close(d3));
	echo_through("last fd", d4);
	bt_ok("shutdown SHUT_WR via last", shutdown(d4, SHUT_WR));
	bt_val("read EOF via last", read(d4, buf, sizeof(buf)));
	bt_ok("close last", close(d4));
	bt_ok("close last again", close(d4));

	/* A connection with two fds: closing one keeps the peer connected. */
	fd = bt_connect_peer(BT_PORT_SINK);
	d1 = dup(fd);
	bt_ok("sink write", bt_write_all(fd, "abcdef", 6));
	bt_ok("close one", close(fd));
	bt_ok("sink write via dup", bt_write_all(d1, "ghij", 4));
	bt_ok("shutdown via dup", shutdown(d1, SHUT_WR));
	bt_read_line(d1, buf, sizeof(buf));
	bt_say("sink saw: %.9s", buf);
	close(d1);

	/* epoll registrations belong to the open file: after closing one of
	 * two fds the socket still reports through the set. */
	fd = bt_connect_peer(BT_PORT_ECHO);
	d1 = dup(fd);
	ep = epoll_create1(0);
	{
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 7 }, out;
		bt_ok("epoll add original", epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
		bt_ok("epoll add dup", epoll_ctl(ep, EPOLL_CTL_ADD, d1, &ev));
		close(fd);
		send(d1, "z", 1, 0);
		bt_wait(d1, POLLIN, 5000);
		int n = epoll_wait(ep, &out, 1, 0);
		bt_say("epoll after closing original: %d tag %d", n, n > 0 ? (int)out.data.u64 : 0);
		bt_ok("epoll del closed fd", epoll_ctl(ep, EPOLL_CTL_DEL, fd, &ev));
	}
	close(d1);
	close(ep);
	return 0;
}
