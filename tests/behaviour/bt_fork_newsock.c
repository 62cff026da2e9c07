/* Behaviour: a forked child opens sockets of its own (connect, UDP, listen) and uses a UDP socket it inherited, as a worker that talks to a backend does. */
#include "bt_fork.h"

#include <stdlib.h>

/*
 * The child's observations go through a pipe (its stdout is the pipe's
 * write end) and the parent prints them, prefixed "child: ", once the
 * child has exited, so the output keeps its order.  Then the parent checks
 * that its own listener and connection still work.
 */

/* A UDP socket the parent bound before the fork. */
static int inherited_udp = -1;

static void child_main(void)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(BT_PORT_UDP_ECHO), .sin_addr = bt_peer };
	char buf[64];
	int c, u, l2, ctl, a;

	fk_child_init();
	/* A new outgoing connection. */
	c = bt_connect_peer(BT_PORT_ECHO);
	bt_ok("connect echo", c);
	if (c >= 0) {
		fk_echo_round("new connection", c, 0);
		bt_ok("shutdown", shutdown(c, SHUT_WR));
		bt_val("read at the end", bt_read_full(c, buf, sizeof(buf)));
		close(c);
	}

	/* A new UDP socket. */
	u = socket(AF_INET, SOCK_DGRAM, 0);
	bt_ok("udp socket", u);
	bt_val("udp sendto", sendto(u, "child datagram", 14, 0, (struct sockaddr *)&to, sizeof(to)));
	bt_say("udp poll: %s", bt_poll_events((short)bt_wait(u, POLLIN, 3000)));
	bt_val("udp recv", recv(u, buf, sizeof(buf), MSG_DONTWAIT));
	close(u);

	/* The UDP socket it inherited (bound by the parent): a datagram
	 * out, the echo back with the peer's address, then connected. */
	{
		struct sockaddr_in from;
		socklen_t fl = sizeof(from);

		bt_val("inherited udp sendto", sendto(inherited_udp, "from the child", 14, 0,
						      (struct sockaddr *)&to, sizeof(to)));
		bt_say("inherited udp poll: %s",
		       bt_poll_events((short)bt_wait(inherited_udp, POLLIN, 3000)));
		bt_val("inherited udp recvfrom", recvfrom(inherited_udp, buf, sizeof(buf), MSG_DONTWAIT,
							  (struct sockaddr *)&from, &fl));
		bt_say("inherited udp from the peer's echo port: %s",
		       fl == sizeof(from) && from.sin_addr.s_addr == bt_peer.s_addr &&
		       from.sin_port == to.sin_port ? "yes" : "no");
		bt_ok("inherited udp connect", connect(inherited_udp, (struct sockaddr *)&to,
						       sizeof(to)));
		bt_val("inherited udp send", send(inherited_udp, "connected", 9, 0));
		bt_say("inherited udp poll again: %s",
		       bt_poll_events((short)bt_wait(inherited_udp, POLLIN, 3000)));
		bt_val("inherited udp read", read(inherited_udp, buf, sizeof(buf)));
	}

	/* A new listener of its own: the peer connects to it. */
	l2 = bt_listen_self(0, 4);
	bt_ok("listen", l2);
	if (l2 >= 0) {
		ctl = bt_callback(bt_local_port(l2), 1, 2000, 0);
		bt_ok("callback request", ctl);
		a = accept(l2, NULL, NULL);
		if (bt_ok("accept", a) >= 0) {
			bt_val("echo", fk_echo_until_eof(a));
			close(a);
		}
		fk_report("callback", ctl, 1, 2000, fk_expect_fnv(2000, ""));
		close(l2);
	}
	_exit(0);
}

int main(int argc, char **argv)
{
	int l, e, p[2], ctl, c;
	char line[256];
	FILE *f;
	pid_t pid;

	bt_init(argc, argv, 60);
	l = bt_listen_self(0, 16);
	bt_ok("listen", l);
	e = bt_connect_peer(BT_PORT_ECHO);
	bt_ok("connect echo", e);
	fk_echo_round("parent before the child", e, 0);
	{
		struct sockaddr_in any = { .sin_family = AF_INET, .sin_addr = bt_self };

		inherited_udp = socket(AF_INET, SOCK_DGRAM, 0);
		bt_ok("udp socket", inherited_udp);
		bt_ok("udp bind", bind(inherited_udp, (struct sockaddr *)&any, sizeof(any)));
	}

	if (pipe(p) < 0)
		return 1;
	pid = fork();
	if (pid == 0) {
		close(p[0]);
		if (dup2(p[1], STDOUT_FILENO) < 0)
			_exit(FK_CHILD_FAILED);
		close(p[1]);
		child_main();
	}
	bt_ok("fork", pid);
	close(p[1]);
	fk_wait("child", pid);
	f = fdopen(p[0], "r");
	while (f && fgets(line, sizeof(line), f))
		printf("child: %s", line);
	if (f)
		fclose(f);

	/* The parent's own sockets are as they were. */
	fk_echo_round("parent after the child", e, 1);
	{
		struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(BT_PORT_UDP_ECHO),
					  .sin_addr = bt_peer };
		char buf[64];

		bt_val("parent udp sendto", sendto(inherited_udp, "parent datagram", 15, 0,
						   (struct sockaddr *)&to, sizeof(to)));
		bt_say("parent udp poll: %s",
		       bt_poll_events((short)bt_wait(inherited_udp, POLLIN, 3000)));
		bt_val("parent udp recv", recv(inherited_udp, buf, sizeof(buf), MSG_DONTWAIT));
		close(inherited_udp);
	}
	ctl = bt_callback(bt_local_port(l), 1, 1000, 0);
	bt_ok("parent callback request", ctl);
	c = accept(l, NULL, NULL);
	bt_ok("parent accept", c);
	bt_val("parent echo", fk_echo_until_eof(c));
	close(c);
	fk_report("parent callback", ctl, 1, 1000, fk_expect_fnv(1000, ""));
	{
		char buf[16];
		bt_ok("parent shutdown", shutdown(e, SHUT_WR));
		bt_val("parent read at the end", bt_read_full(e, buf, sizeof(buf)));
	}
	close(e);
	close(l);
	return 0;
}
