/* Behaviour: getsockname/getpeername through a socket's life (addresses printed as classes only). */
#include "bt.h"

static void names(const char *step, int fd)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	memset(&sa, 0xff, sizeof(sa));
	if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		bt_say("%s getsockname: -1 %s", step, bt_errname(errno));
	else
		bt_say("%s getsockname: %s port %s len %u", step, bt_addr_class(&sa),
		       sa.sin_port ? "nonzero" : "zero", len);
	len = sizeof(sa);
	memset(&sa, 0xff, sizeof(sa));
	if (getpeername(fd, (struct sockaddr *)&sa, &len) < 0)
		bt_say("%s getpeername: -1 %s", step, bt_errname(errno));
	else
	{
		/* Service ports are fixed; the peer's ephemeral ports are not. */
		char port[16];
		unsigned p = ntohs(sa.sin_port);
		snprintf(port, sizeof(port), "%u", p);
		bt_say("%s getpeername: %s port %s len %u", step, bt_addr_class(&sa),
		       p >= 7001 && p <= 7009 ? port : p ? "nonzero" : "zero", len);
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct sockaddr_in small;
	socklen_t len;
	int fd, l, c, ctl, u;

	bt_init(argc, argv, 30);

	fd = bt_tcp_socket(0);
	names("fresh tcp", fd);
	sa.sin_addr.s_addr = htonl(INADDR_ANY);
	bt_ok("bind any:0", bind(fd, (struct sockaddr *)&sa, sizeof(sa)));
	names("bound any", fd);
	bt_ok("bind again", bind(fd, (struct sockaddr *)&sa, sizeof(sa)));
	close(fd);

	fd = bt_tcp_socket(0);
	sa.sin_addr = bt_self;
	bt_ok("bind self:0", bind(fd, (struct sockaddr *)&sa, sizeof(sa)));
	names("bound self", fd);
	close(fd);

	fd = bt_tcp_socket(0);
	sa.sin_addr = bt_peer;
	bt_ok("bind foreign address", bind(fd, (struct sockaddr *)&sa, sizeof(sa)));
	sa.sin_family = AF_INET6;
	bt_ok("bind wrong family", bind(fd, (struct sockaddr *)&sa, sizeof(sa)));
	sa.sin_family = AF_INET;
	bt_ok("bind short length", bind(fd, (struct sockaddr *)&sa, 4));
	close(fd);

	fd = bt_connect_peer(BT_PORT_ECHO);
	names("connected", fd);
	/* A short buffer gets a truncated address and the full length. */
	len = 4;
	memset(&small, 0, sizeof(small));
	bt_ok("getpeername short", getpeername(fd, (struct sockaddr *)&small, &len));
	bt_say("short len reported: %u port %u", len, ntohs(small.sin_port));
	shutdown(fd, SHUT_WR);
	bt_drain(fd, NULL);
	names("after EOF", fd);
	close(fd);

	/* Two bind()s to one port: EADDRINUSE; listening socket names. */
	l = bt_listen_self(0, 4);
	names("listener", l);
	fd = bt_tcp_socket(0);
	sa.sin_addr = bt_self;
	sa.sin_port = htons(bt_local_port(l));
	bt_ok("bind listener's port", bind(fd, (struct sockaddr *)&sa, sizeof(sa)));
	close(fd);
	ctl = bt_callback(bt_local_port(l), 1, 1, 0);
	c = accept(l, NULL, NULL);
	names("accepted", c);
	{
		struct sockaddr_in a, b;
		socklen_t la = sizeof(a), lb = sizeof(b);
		getsockname(c, (struct sockaddr *)&a, &la);
		getsockname(l, (struct sockaddr *)&b, &lb);
		bt_say("accepted local port equals listener's: %d", a.sin_port == b.sin_port);
	}
	bt_drain(c, NULL);
	close(c);
	bt_callback_report("callback", ctl);
	close(l);

	/* UDP: names after connect and after sendto. */
	u = socket(AF_INET, SOCK_DGRAM, 0);
	names("fresh udp", u);
	sa.sin_addr = bt_peer;
	sa.sin_port = htons(BT_PORT_UDP_ECHO);
	bt_val("udp sendto", sendto(u, "x", 1, 0, (struct sockaddr *)&sa, sizeof(sa)));
	names("udp after sendto", u);
	bt_ok("udp connect", connect(u, (struct sockaddr *)&sa, sizeof(sa)));
	names("udp connected", u);
	sa.sin_family = AF_UNSPEC;
	bt_ok("udp disconnect", connect(u, (struct sockaddr *)&sa, sizeof(sa)));
	/* Linux also drops an automatic bind here; that detail is not
	 * compared, only the lost peer. */
	len = sizeof(small);
	bt_ok("udp disconnected getpeername", getpeername(u, (struct sockaddr *)&small, &len));
	close(u);
	return 0;
}
