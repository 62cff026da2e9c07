/* Behaviour: 1 MiB through the peer's echo service, blocking (two threads) and non-blocking (poll loop). */
#include "bt.h"

#include <pthread.h>

#define ECHO_BYTES (1 << 20)

static uint8_t out[ECHO_BYTES];
static uint8_t in[ECHO_BYTES + 1]; /* one spare byte to see EOF after the last */

struct writer {
	int fd;
	int rc;
};

static void *writer_thread(void *arg)
{
	struct writer *w = arg;

	/* Odd-sized writes so segment boundaries never line up with calls. */
	for (size_t off = 0; off < ECHO_BYTES && !w->rc;) {
		size_t n = ECHO_BYTES - off < 7919 ? ECHO_BYTES - off : 7919;
		w->rc = bt_write_all(w->fd, out + off, n);
		off += n;
	}
	if (!w->rc)
		w->rc = shutdown(w->fd, SHUT_WR) ? -errno : 0;
	return NULL;
}

static void blocking_echo(void)
{
	struct writer w = { .fd = bt_connect_peer(BT_PORT_ECHO) };
	pthread_t t;
	ssize_t n;

	bt_ok("blocking connect", w.fd);
	if (w.fd < 0)
		return;
	pthread_create(&t, NULL, writer_thread, &w);
	n = bt_read_full(w.fd, in, ECHO_BYTES);
	pthread_join(t, NULL);
	bt_say("blocking writer: %s", w.rc ? bt_errname(-w.rc) : "ok");
	bt_val("blocking received", n);
	bt_say("blocking fnv equal: %d", n == ECHO_BYTES && bt_fnv(BT_FNV_INIT, in, ECHO_BYTES) ==
					       bt_fnv(BT_FNV_INIT, out, ECHO_BYTES));
	bt_val("blocking eof", read(w.fd, in, 1));
	close(w.fd);
}

static void nonblocking_echo(void)
{
	int fd = bt_tcp_socket(1);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(BT_PORT_ECHO), .sin_addr = bt_peer };
	size_t sent = 0, got = 0;
	int eagain_seen = 0, shut = 0, eof = 0, rounds = 0;

	connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	while (!eof && rounds++ < 100000) {
		struct pollfd p = { .fd = fd, .events = POLLIN | (shut ? 0 : POLLOUT) };
		if (poll(&p, 1, 5000) <= 0) {
			bt_say("nb poll: timeout or error");
			break;
		}
		if ((p.revents & POLLOUT) && !shut) {
			ssize_t r = send(fd, out + sent, ECHO_BYTES - sent, MSG_NOSIGNAL);
			if (r > 0)
				sent += (size_t)r;
			else if (r < 0 && errno == EAGAIN)
				eagain_seen = 1;
			else if (r < 0)
				break;
			if (sent == ECHO_BYTES) {
				shutdown(fd, SHUT_WR);
				shut = 1;
			}
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r;
			/* Drain until EAGAIN, as an edge-driven program would. */
			while ((r = recv(fd, in + got, ECHO_BYTES - got + (got == ECHO_BYTES), 0)) > 0)
				got += (size_t)r;
			if (r == 0)
				eof = 1;
			else if (errno != EAGAIN) {
				bt_say("nb recv: -1 %s", bt_errname(errno));
				break;
			}
		}
	}
	/* Whether a send hit EAGAIN depends on buffer sizes, not semantics:
	 * it is reported on stderr only. */
	fprintf(stderr, "nb: send saw EAGAIN: %d\n", eagain_seen);
	bt_say("nb sent: %zu", sent);
	bt_say("nb received: %zu eof: %d", got, eof);
	bt_say("nb fnv equal: %d", got == ECHO_BYTES && bt_fnv(BT_FNV_INIT, in, ECHO_BYTES) ==
					  bt_fnv(BT_FNV_INIT, out, ECHO_BYTES));
	close(fd);
}

int main(int argc, char **argv)
{
	bt_init(argc, argv, 60);
	bt_pattern(out, ECHO_BYTES, 12345);
	blocking_echo();
	nonblocking_echo();
	return 0;
}
