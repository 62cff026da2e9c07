/* Behaviour: UDP sendto/recvfrom, connect, datagram boundaries, MSG_PEEK/MSG_TRUNC, FIONREAD. */
#include "bt.h"

#include <sys/ioctl.h>

static struct sockaddr_in echo_addr(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(BT_PORT_UDP_ECHO), .sin_addr = bt_peer };
	return sa;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa, from;
	socklen_t len;
	char buf[2048];
	uint8_t big[1400];
	int u, n;

	bt_init(argc, argv, 30);
	sa = echo_addr();
	u = socket(AF_INET, SOCK_DGRAM, 0);
	bt_ok("socket", u);

	bt_val("sendto", sendto(u, "one", 3, 0, (struct sockaddr *)&sa, sizeof(sa)));
	bt_say("poll: %s", bt_poll_events((short)bt_wait(u, POLLIN, 5000)));
	len = sizeof(from);
	memset(&from, 0, sizeof(from));
	bt_val("recvfrom", recvfrom(u, buf, sizeof(buf), 0, (struct sockaddr *)&from, &len));
	bt_say("from: %s port %u len %u", bt_addr_class(&from), ntohs(from.sin_port), len);

	/* Datagram boundaries: two sends are two receives. */
	bt_val("sendto a", sendto(u, "aaaa", 4, 0, (struct sockaddr *)&sa, sizeof(sa)));
	bt_val("sendto b", sendto(u, "bbbbbbbb", 8, 0, (struct sockaddr *)&sa, sizeof(sa)));
	bt_wait(u, POLLIN, 5000);
	for (int i = 0; i < 100; i++) {
		/* Wait for both datagrams: FIONREAD tells only the first's size. */
		struct pollfd p = { u, POLLIN, 0 };
		usleep(5000);
		if (i > 10 && poll(&p, 1, 0) > 0)
			break;
	}
	n = -1;
	bt_ok("FIONREAD", ioctl(u, FIONREAD, &n));
	bt_say("FIONREAD first datagram: %d", n);
	bt_val("MSG_PEEK", recv(u, buf, sizeof(buf), MSG_PEEK));
	bt_val("recv a", recv(u, buf, sizeof(buf), 0));
	/* A short buffer truncates the datagram; MSG_TRUNC gives its real size. */
	bt_val("recv b short MSG_TRUNC|MSG_PEEK", recv(u, buf, 2, MSG_TRUNC | MSG_PEEK));
	{
		struct iovec iv = { buf, 3 };
		struct msghdr m = { .msg_iov = &iv, .msg_iovlen = 1 };
		bt_val("recvmsg b short", recvmsg(u, &m, 0));
		bt_say("msg_flags MSG_TRUNC: %d", !!(m.msg_flags & MSG_TRUNC));
	}
	bt_ok("recv empty MSG_DONTWAIT", recv(u, buf, sizeof(buf), MSG_DONTWAIT));

	/* A full-size datagram. */
	bt_pattern(big, sizeof(big), 5);
	bt_val("sendto 1400", sendto(u, big, sizeof(big), 0, (struct sockaddr *)&sa, sizeof(sa)));
	bt_wait(u, POLLIN, 5000);
	n = (int)recv(u, buf, sizeof(buf), 0);
	bt_val("recv 1400", n);
	bt_say("1400 fnv equal: %d", n == 1400 && !memcmp(buf, big, 1400));

	/* Zero-length datagram. */
	bt_val("sendto empty", sendto(u, "", 0, 0, (struct sockaddr *)&sa, sizeof(sa)));
	bt_wait(u, POLLIN, 5000);
	bt_val("recv empty datagram", recv(u, buf, sizeof(buf), 0));

	/* Connected UDP: send/recv without addresses, sendto with one. */
	bt_ok("connect", connect(u, (struct sockaddr *)&sa, sizeof(sa)));
	bt_val("send", send(u, "two", 3, 0));
	bt_wait(u, POLLIN, 5000);
	bt_val("recv", recv(u, buf, sizeof(buf), 0));
	bt_val("write", write(u, "three", 5));
	bt_wait(u, POLLIN, 5000);
	bt_val("read", read(u, buf, sizeof(buf)));
	bt_val("sendto on connected", sendto(u, "four", 4, 0, (struct sockaddr *)&sa, sizeof(sa)));
	bt_wait(u, POLLIN, 5000);
	len = sizeof(from);
	bt_val("recvfrom on connected", recvfrom(u, buf, sizeof(buf), 0, (struct sockaddr *)&from, &len));
	bt_say("from: %s port %u", bt_addr_class(&from), ntohs(from.sin_port));
	close(u);

	/* An unconnected UDP socket without an address. */
	u = socket(AF_INET, SOCK_DGRAM, 0);
	bt_ok("send unconnected", send(u, "x", 1, 0));
	close(u);
	/* A bound UDP socket. */
	u = socket(AF_INET, SOCK_DGRAM, 0);
	memset(&from, 0, sizeof(from));
	from.sin_family = AF_INET;
	from.sin_addr = bt_self;
	bt_ok("bind self:0", bind(u, (struct sockaddr *)&from, sizeof(from)));
	bt_val("sendto from bound", sendto(u, "five", 4, 0, (struct sockaddr *)&sa, sizeof(sa)));
	bt_wait(u, POLLIN, 5000);
	bt_val("recv on bound", recv(u, buf, sizeof(buf), 0));
	close(u);
	return 0;
}
