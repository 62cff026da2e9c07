/* Behaviour: blocking and non-blocking connect, to an open and to a closed peer port. */
#include "bt.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

static struct sockaddr_in peer_addr(uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr = bt_peer };
	return sa;
}

static int so_error(int fd)
{
	int e = -1;
	socklen_t len = sizeof(e);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
		return -errno;
	return e;
}

static void nonblocking(const char *name, uint16_t port)
{
	struct sockaddr_in sa = peer_addr(port);
	char step[64];
	int fd = bt_tcp_socket(1), r, e;

	snprintf(step, sizeof(step), "%s connect", name);
	r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	bt_ok(step, r);
	r = bt_wait(fd, POLLOUT, 5000);
	bt_say("%s poll: %s", name, r < 0 ? bt_errname(-r) : bt_poll_events((short)r));
	e = so_error(fd);
	bt_say("%s SO_ERROR: %s", name, e ? bt_errname(e) : "0");
	e = so_error(fd);
	bt_say("%s SO_ERROR again: %s", name, e ? bt_errname(e) : "0");
	if (port == BT_PORT_ECHO) {
		char buf[8];
		/* Programs call connect() again to learn the outcome: Linux
		 * answers 0 the first time after completion, EISCONN after. */
		bt_ok("nb open connect again", connect(fd, (struct sockaddr *)&sa, sizeof(sa)));
		bt_ok("nb open connect third", connect(fd, (struct sockaddr *)&sa, sizeof(sa)));
		bt_ok("nb open send", send(fd, "ping", 4, 0));
		bt_wait(fd, POLLIN, 5000);
		bt_val("nb open recv", recv(fd, buf, sizeof(buf), 0));
	}
	close(fd);
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa;
	int fd, r;

	bt_init(argc, argv, 30);

	/* Blocking connect to the echo service succeeds and data flows. */
	fd = bt_tcp_socket(0);
	sa = peer_addr(BT_PORT_ECHO);
	bt_ok("blocking open connect", connect(fd, (struct sockaddr *)&sa, sizeof(sa)));
	bt_ok("blocking open connect again", connect(fd, (struct sockaddr *)&sa, sizeof(sa)));
	char buf[16];
	bt_val("blocking open send", send(fd, "hello", 5, 0));
	bt_val("blocking open recv", recv(fd, buf, sizeof(buf), 0));
	close(fd);

	/* Blocking connect to a closed port is refused by the peer's RST. */
	fd = bt_tcp_socket(0);
	sa = peer_addr(BT_PORT_CLOSED);
	bt_ok("blocking closed connect", connect(fd, (struct sockaddr *)&sa, sizeof(sa)));
	r = so_error(fd);
	bt_say("blocking closed SO_ERROR: %s", r ? bt_errname(r) : "0");
	bt_ok("blocking closed send", send(fd, "x", 1, MSG_NOSIGNAL));
	close(fd);

	nonblocking("nb open", BT_PORT_ECHO);
	nonblocking("nb closed", BT_PORT_CLOSED);

	/* A second socket connecting to the same service works independently. */
	fd = bt_connect_peer(BT_PORT_ECHO);
	bt_say("helper connect: %s", fd >= 0 ? "ok" : bt_errname(-fd));
	if (fd >= 0)
		close(fd);
	return 0;
}
