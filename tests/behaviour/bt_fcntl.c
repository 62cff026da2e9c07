/* Behaviour: O_NONBLOCK by fcntl and FIONBIO, MSG_DONTWAIT, FIONREAD, MSG_PEEK, MSG_WAITALL and the options programs set. */
#include "bt.h"

#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>

static void wait_avail(int fd, int want)
{
	for (int i = 0; i < 500; i++) {
		int n = 0;
		if (ioctl(fd, FIONREAD, &n) == 0 && n >= want)
			return;
		bt_wait(fd, POLLIN, 10);
		usleep(2000);
	}
}

int main(int argc, char **argv)
{
	char buf[256];
	int fd, fl, on = 1, off = 0, n, v;
	socklen_t len;

	bt_init(argc, argv, 30);
	fd = bt_connect_peer(BT_PORT_ECHO);
	bt_ok("connect", fd);

	fl = fcntl(fd, F_GETFL);
	bt_say("F_GETFL O_RDWR: %d O_NONBLOCK: %d", (fl & O_ACCMODE) == O_RDWR, !!(fl & O_NONBLOCK));
	bt_ok("F_SETFL O_NONBLOCK", fcntl(fd, F_SETFL, fl | O_NONBLOCK));
	bt_say("F_GETFL O_NONBLOCK: %d", !!(fcntl(fd, F_GETFL) & O_NONBLOCK));
	bt_ok("recv nonblocking empty", recv(fd, buf, sizeof(buf), 0));
	bt_ok("read nonblocking empty", read(fd, buf, sizeof(buf)));
	bt_ok("F_SETFL 0", fcntl(fd, F_SETFL, fl & ~O_NONBLOCK));

	bt_ok("FIONBIO on", ioctl(fd, FIONBIO, &on));
	bt_say("F_GETFL O_NONBLOCK after FIONBIO: %d", !!(fcntl(fd, F_GETFL) & O_NONBLOCK));
	bt_ok("recv FIONBIO empty", recv(fd, buf, sizeof(buf), 0));
	bt_ok("FIONBIO off", ioctl(fd, FIONBIO, &off));
	bt_say("F_GETFL O_NONBLOCK after FIONBIO off: %d", !!(fcntl(fd, F_GETFL) & O_NONBLOCK));

	/* A blocking socket with MSG_DONTWAIT does not block. */
	bt_ok("recv MSG_DONTWAIT empty", recv(fd, buf, sizeof(buf), MSG_DONTWAIT));

	n = -1;
	bt_ok("FIONREAD empty", ioctl(fd, FIONREAD, &n));
	bt_say("FIONREAD value: %d", n);
	bt_val("send 10", send(fd, "0123456789", 10, 0));
	wait_avail(fd, 10);
	n = -1;
	bt_ok("FIONREAD", ioctl(fd, FIONREAD, &n));
	bt_say("FIONREAD value: %d", n);

	bt_val("MSG_PEEK 4", recv(fd, buf, 4, MSG_PEEK));
	bt_say("peeked: %.4s", buf);
	bt_val("MSG_PEEK all", recv(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT));
	n = -1;
	ioctl(fd, FIONREAD, &n);
	bt_say("FIONREAD after peek: %d", n);
	bt_val("recv 3", recv(fd, buf, 3, 0));
	bt_say("got: %.3s", buf);
	bt_val("MSG_PEEK rest", recv(fd, buf, sizeof(buf), MSG_PEEK));
	bt_say("peeked: %.7s", buf);
	bt_val("recv rest", recv(fd, buf, sizeof(buf), MSG_DONTWAIT));
	bt_say("got: %.7s", buf);
	bt_ok("recv MSG_DONTWAIT drained", recv(fd, buf, sizeof(buf), MSG_DONTWAIT));

	/* MSG_WAITALL collects data from several segments. */
	bt_val("send a", send(fd, "aaaa", 4, 0));
	usleep(50000);
	bt_val("send b", send(fd, "bbbb", 4, 0));
	bt_val("recv MSG_WAITALL 8", recv(fd, buf, 8, MSG_WAITALL));

	/* Options programs commonly set, read back as classes. */
	bt_ok("TCP_NODELAY", setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)));
	v = -1;
	len = sizeof(v);
	getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len);
	bt_say("TCP_NODELAY readback nonzero: %d", v != 0);
	bt_ok("SO_KEEPALIVE", setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)));
	v = -1;
	getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &v, &len);
	bt_say("SO_KEEPALIVE readback: %d", v);
	v = -1;
	getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len);
	bt_say("SO_TYPE stream: %d", v == SOCK_STREAM);
	v = -1;
	bt_ok("SO_REUSEADDR", setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)));
	getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &v, &len);
	bt_say("SO_REUSEADDR readback: %d", v);
	v = 65536;
	bt_ok("SO_RCVBUF", setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v)));
	v = 0;
	getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, &len);
	bt_say("SO_RCVBUF readback positive: %d", v > 0);
	v = 0;
	getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, &len);
	bt_say("SO_SNDBUF positive: %d", v > 0);
	v = -1;
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &v, &len);
	bt_say("SO_ERROR: %d", v);
	bt_ok("unknown option", setsockopt(fd, SOL_SOCKET, 9999, &on, sizeof(on)));
	close(fd);

	/* Calls on a closed fd and on a non-socket. */
	bt_ok("fcntl on closed fd", fcntl(fd, F_GETFL));
	{
		int p[2];
		if (pipe(p) == 0) {
			bt_ok("send on a pipe", send(p[1], "x", 1, 0));
			bt_ok("getsockopt on a pipe", getsockopt(p[0], SOL_SOCKET, SO_TYPE, &v, &len));
			close(p[0]);
			close(p[1]);
		}
	}
	return 0;
}
