/* Behaviour: half-close.  After shutdown(SHUT_WR) the peer sees EOF and our read side keeps working. */
#include "bt.h"

int main(int argc, char **argv)
{
	uint8_t buf[100000];
	char line[128];
	uint64_t h;
	ssize_t n;
	int fd;

	bt_init(argc, argv, 30);
	bt_pattern(buf, sizeof(buf), 7);

	/* The sink service replies only after it read EOF: its reply proves
	 * the peer saw our FIN while our read side stayed open. */
	fd = bt_connect_peer(BT_PORT_SINK);
	bt_ok("sink connect", fd);
	bt_ok("sink write", bt_write_all(fd, buf, sizeof(buf)));
	bt_ok("shutdown SHUT_WR", shutdown(fd, SHUT_WR));
	bt_ok("send after SHUT_WR", send(fd, "x", 1, MSG_NOSIGNAL));
	n = bt_read_line(fd, line, sizeof(line));
	bt_val("sink reply length", n);
	h = bt_fnv(BT_FNV_INIT, buf, sizeof(buf));
	{
		char want[96];
		snprintf(want, sizeof(want), "bytes=%zu fnv=%016llx", sizeof(buf), (unsigned long long)h);
		bt_say("sink reply matches: %d", !strcmp(line, want));
	}
	bt_val("read after reply (EOF)", read(fd, buf, 1));
	bt_val("read after EOF again", read(fd, buf, 1));
	bt_say("poll after EOF: %s", bt_poll_events((short)bt_wait(fd, POLLIN | POLLOUT | POLLRDHUP, 1000)));
	bt_ok("shutdown SHUT_RD", shutdown(fd, SHUT_RD));
	close(fd);

	/* Echo: what we sent before SHUT_WR still comes back in full. */
	fd = bt_connect_peer(BT_PORT_ECHO);
	bt_ok("echo connect", fd);
	bt_ok("echo write", bt_write_all(fd, buf, 5000));
	bt_ok("shutdown SHUT_WR", shutdown(fd, SHUT_WR));
	h = BT_FNV_INIT;
	n = bt_drain(fd, &h);
	bt_val("echo read until EOF", n);
	bt_say("echo fnv equal: %d", h == bt_fnv(BT_FNV_INIT, buf, 5000));
	bt_say("poll after both closed: %s", bt_poll_events((short)bt_wait(fd, POLLIN | POLLOUT | POLLRDHUP, 1000)));
	close(fd);

	/* The send service closes after N bytes: we read them, then EOF,
	 * while our write side is still open. */
	fd = bt_connect_peer(BT_PORT_SEND);
	bt_ok("send-service connect", fd);
	bt_ok("request", bt_write_all(fd, "30000\n", 6));
	h = BT_FNV_INIT;
	n = bt_drain(fd, &h);
	bt_val("send-service read until EOF", n);
	bt_pattern(buf, 30000, 0);
	bt_say("send-service fnv equal: %d", h == bt_fnv(BT_FNV_INIT, buf, 30000));
	bt_say("poll after peer FIN: %s", bt_poll_events((short)bt_wait(fd, POLLIN | POLLOUT | POLLRDHUP, 1000)));
	/* The peer has closed its socket; our write still succeeds locally
	 * (the peer answers it with RST). */
	bt_val("write after peer FIN", send(fd, "x", 1, MSG_NOSIGNAL));
	close(fd);

	/* shutdown on a socket that is not connected. */
	fd = bt_tcp_socket(0);
	bt_ok("shutdown unconnected", shutdown(fd, SHUT_RDWR));
	close(fd);
	return 0;
}
