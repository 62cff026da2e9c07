/* Behaviour: poll, ppoll, select and pselect over mixed sets of kernel fds (pipe, eventfd) and sockets. */
#include "bt.h"

#include <signal.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <time.h>

static int pipefd[2], efd, sock, lsn, udp;

static void print_poll(const char *step, struct pollfd *p, int n, int r)
{
	static const char *const names[] = { "pipe-r", "pipe-w", "eventfd", "sock", "listener", "udp", "closed" };
	char line[512];
	size_t len = 0;

	if (r < 0) {
		bt_say("%s: -1 %s", step, bt_errname(errno));
		return;
	}
	line[0] = 0;
	for (int i = 0; i < n; i++)
		len += snprintf(line + len, sizeof(line) - len, "%s%s=%s", i ? " " : "", names[i],
				bt_poll_events(p[i].revents));
	bt_say("%s: %d [%s]", step, r, line);
}

/* With rd_only, the always-writable fds are watched for nothing, so a
 * blocking poll really sleeps until something becomes readable. */
static int do_poll(const char *step, int timeout, int closed_fd, int rd_only)
{
	short out = rd_only ? 0 : POLLOUT;
	struct pollfd p[] = {
		{ pipefd[0], POLLIN, 0 }, { pipefd[1], out, 0 }, { efd, POLLIN, 0 },
		{ sock, POLLIN | out | POLLRDHUP, 0 }, { lsn, POLLIN, 0 }, { udp, POLLIN, 0 },
		{ closed_fd, POLLIN, 0 },
	};
	int n = closed_fd >= 0 ? 7 : 6;
	int r = poll(p, (nfds_t)n, timeout);

	print_poll(step, p, n, r);
	return r;
}

static void do_select(const char *step, int timeout_ms, int rd_only)
{
	fd_set rd, wr, ex;
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	int fds[] = { pipefd[0], efd, sock, lsn, udp };
	static const char *const names[] = { "pipe-r", "eventfd", "sock", "listener", "udp" };
	int maxfd = 0, r;
	char line[256];
	size_t len = 0;

	FD_ZERO(&rd);
	FD_ZERO(&wr);
	FD_ZERO(&ex);
	for (size_t i = 0; i < 5; i++) {
		FD_SET(fds[i], &rd);
		FD_SET(fds[i], &ex);
		if (fds[i] > maxfd)
			maxfd = fds[i];
	}
	if (!rd_only) {
		FD_SET(sock, &wr);
		FD_SET(pipefd[1], &wr);
	}
	if (pipefd[1] > maxfd)
		maxfd = pipefd[1];
	r = select(maxfd + 1, &rd, &wr, &ex, &tv);
	if (r < 0) {
		bt_say("%s: -1 %s", step, bt_errname(errno));
		return;
	}
	line[0] = 0;
	for (size_t i = 0; i < 5; i++)
		if (FD_ISSET(fds[i], &rd))
			len += snprintf(line + len, sizeof(line) - len, " r:%s", names[i]);
	if (FD_ISSET(pipefd[1], &wr))
		len += snprintf(line + len, sizeof(line) - len, " w:pipe-w");
	if (FD_ISSET(sock, &wr))
		len += snprintf(line + len, sizeof(line) - len, " w:sock");
	for (size_t i = 0; i < 5; i++)
		if (FD_ISSET(fds[i], &ex))
			len += snprintf(line + len, sizeof(line) - len, " x:%s", names[i]);
	bt_say("%s: %d [%s ]", step, r, line);
}

static void drain(void)
{
	char buf[256];
	uint64_t v;

	while (bt_wait(pipefd[0], POLLIN, 0) > 0 && read(pipefd[0], buf, sizeof(buf)) > 0)
		;
	while (bt_wait(efd, POLLIN, 0) > 0 && read(efd, &v, 8) == 8)
		;
	while (bt_wait(sock, POLLIN, 0) > 0 && recv(sock, buf, sizeof(buf), 0) > 0)
		;
	while (bt_wait(udp, POLLIN, 0) > 0 && recv(udp, buf, sizeof(buf), 0) > 0)
		;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr = bt_peer };
	uint64_t one = 1;
	int ctl, c, spare;

	bt_init(argc, argv, 30);
	sa.sin_addr = bt_peer;
	bt_ok("pipe", pipe(pipefd));
	efd = eventfd(0, EFD_NONBLOCK);
	sock = bt_connect_peer(BT_PORT_ECHO);
	bt_ok("connect", sock);
	lsn = bt_listen_self(0, 4);
	bt_ok("listen", lsn);
	udp = socket(AF_INET, SOCK_DGRAM, 0);
	sa.sin_port = htons(BT_PORT_UDP_ECHO);
	bt_ok("udp connect", connect(udp, (struct sockaddr *)&sa, sizeof(sa)));

	do_poll("poll idle", 0, -1, 0);
	do_select("select idle", 0, 0);

	/* Every source becomes readable: pipe, eventfd, echo data, a pending
	 * connection on the listener and a UDP echo. */
	bt_val("pipe write", write(pipefd[1], "a", 1));
	bt_val("eventfd write", write(efd, &one, 8));
	bt_val("sock send", send(sock, "b", 1, 0));
	bt_val("udp send", send(udp, "c", 1, 0));
	ctl = bt_callback(bt_local_port(lsn), 1, 1, 0);
	bt_say("listener ready: %s", bt_poll_events((short)bt_wait(lsn, POLLIN, 5000)));
	bt_say("sock ready: %s", bt_poll_events((short)bt_wait(sock, POLLIN, 5000)));
	bt_say("udp ready: %s", bt_poll_events((short)bt_wait(udp, POLLIN, 5000)));
	do_poll("poll all ready", 0, -1, 0);
	do_select("select all ready", 0, 0);
	{
		sigset_t mask;
		struct timespec ts = { 0, 0 };
		struct pollfd p = { sock, POLLIN, 0 };
		fd_set rd;
		sigemptyset(&mask);
		bt_val("ppoll sock", ppoll(&p, 1, &ts, &mask));
		FD_ZERO(&rd);
		FD_SET(sock, &rd);
		bt_val("pselect sock", pselect(sock + 1, &rd, NULL, NULL, &ts, &mask));
	}
	c = accept(lsn, NULL, NULL);
	bt_ok("accept", c);
	if (c >= 0) {
		char b;
		bt_val("accepted read", read(c, &b, 1));
		close(c);
	}
	bt_callback_report("callback", ctl);
	drain();
	do_poll("poll drained", 0, -1, 0);

	/* A blocking poll and a blocking select are woken by socket data. */
	bt_val("sock send", send(sock, "d", 1, 0));
	do_poll("poll blocking", 5000, -1, 1);
	drain();
	bt_val("udp send", send(udp, "e", 1, 0));
	do_select("select blocking", 5000, 1);
	drain();

	/* A closed fd in a poll set is POLLNVAL; in select it is EBADF. */
	spare = socket(AF_INET, SOCK_STREAM, 0);
	close(spare);
	do_poll("poll with closed fd", 0, spare, 0);
	{
		fd_set rd;
		struct timeval tv = { 0, 0 };
		FD_ZERO(&rd);
		FD_SET(spare, &rd);
		bt_val("select closed fd", select(spare + 1, &rd, NULL, NULL, &tv));
	}
	/* Negative fds are ignored by poll. */
	{
		struct pollfd p[2] = { { -1, POLLIN, 0 }, { sock, POLLOUT, 0 } };
		int r = poll(p, 2, 0);
		bt_say("poll negative fd: %d revents %s %s", r, bt_poll_events(p[0].revents),
		       bt_poll_events(p[1].revents));
	}
	close(sock);
	close(lsn);
	close(udp);
	return 0;
}
