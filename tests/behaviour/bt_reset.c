/* Behaviour: connection resets, received (peer closes with SO_LINGER 0) and sent (we close with unread data). */
#include "bt.h"

int main(int argc, char **argv)
{
	char buf[8192], token[64], line[160];
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	int fd, q;

	bt_init(argc, argv, 30);

	/* The reset service reads our request and answers with RST. */
	fd = bt_connect_peer(BT_PORT_RESET);
	bt_ok("reset connect", fd);
	bt_val("request", send(fd, "hello", 5, 0));
	bt_say("poll: %s", bt_poll_events((short)bt_wait(fd, POLLIN, 5000)));
	bt_val("recv after RST", recv(fd, buf, sizeof(buf), 0));
	bt_val("recv after reported RST", recv(fd, buf, sizeof(buf), 0));
	bt_val("send after RST", send(fd, "x", 1, MSG_NOSIGNAL));
	bt_ok("close", close(fd));

	/* A blocked reader is woken by the RST. */
	fd = bt_connect_peer(BT_PORT_RESET);
	bt_ok("reset connect", fd);
	bt_val("request", send(fd, "hello", 5, 0));
	bt_val("blocking read woken by RST", read(fd, buf, sizeof(buf)));
	close(fd);

	/* A reset connection reports ECONNRESET once through SO_ERROR too. */
	fd = bt_connect_peer(BT_PORT_RESET);
	bt_ok("reset connect", fd);
	bt_val("request", send(fd, "hello", 5, 0));
	bt_say("poll: %s", bt_poll_events((short)bt_wait(fd, POLLIN, 5000)));
	{
		int e = -1;
		socklen_t len = sizeof(e);
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len);
		bt_say("SO_ERROR: %s", e ? bt_errname(e) : "0");
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len);
		bt_say("SO_ERROR again: %s", e ? bt_errname(e) : "0");
	}
	close(fd);

	/* Our close with unread received data must send RST, not FIN: the
	 * observe service tells what its read saw. */
	snprintf(token, sizeof(token), "unread-%d", (int)getpid());
	fd = bt_connect_peer(BT_PORT_OBSERVE);
	bt_ok("observe connect", fd);
	snprintf(line, sizeof(line), "%s\n", token);
	bt_ok("token", bt_write_all(fd, line, strlen(line)));
	bt_say("data waiting: %s", bt_poll_events((short)bt_wait(fd, POLLIN, 5000)));
	bt_ok("close with unread data", close(fd));
	q = bt_connect_peer(BT_PORT_RESULT);
	bt_ok("result connect", q);
	bt_write_all(q, line, strlen(line));
	bt_read_line(q, buf, sizeof(buf));
	bt_say("peer saw: %s", buf);
	close(q);

	/* Reading everything first makes close a graceful FIN. */
	snprintf(token, sizeof(token), "read-%d", (int)getpid());
	fd = bt_connect_peer(BT_PORT_OBSERVE);
	snprintf(line, sizeof(line), "%s\n", token);
	bt_write_all(fd, line, strlen(line));
	bt_val("read all", bt_read_full(fd, buf, 4096));
	bt_ok("close after reading", close(fd));
	q = bt_connect_peer(BT_PORT_RESULT);
	bt_write_all(q, line, strlen(line));
	bt_read_line(q, buf, sizeof(buf));
	bt_say("peer saw: %s", buf);
	close(q);

	/* SO_LINGER 0 on our side: an abortive close even with nothing unread. */
	snprintf(token, sizeof(token), "linger-%d", (int)getpid());
	fd = bt_connect_peer(BT_PORT_OBSERVE);
	snprintf(line, sizeof(line), "%s\n", token);
	bt_write_all(fd, line, strlen(line));
	bt_val("read all", bt_read_full(fd, buf, 4096));
	bt_ok("SO_LINGER 0", setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)));
	bt_ok("close with linger 0", close(fd));
	q = bt_connect_peer(BT_PORT_RESULT);
	bt_write_all(q, line, strlen(line));
	bt_read_line(q, buf, sizeof(buf));
	bt_say("peer saw: %s", buf);
	close(q);
	return 0;
}
