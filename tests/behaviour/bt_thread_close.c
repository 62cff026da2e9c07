/* Behaviour: close, dup and shutdown from one thread while another thread is blocked on the same socket. */
#include "bt.h"

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>

/*
 * On Linux a blocked call holds its own reference to the open file: close()
 * in another thread only frees the descriptor number, the socket lives on
 * until the blocked call returns, and the call is not woken by the close.
 * (epoll_wait is the exception: it holds the epoll file, not the sockets,
 * and the last close of a socket silently drops its registration.)  Every
 * case below makes the blocked call end deterministically (a timeout, or
 * data the main thread provokes through another descriptor) and prints how
 * it ended, never when.
 */

enum op { OP_RECV, OP_ACCEPT, OP_EPOLL, OP_POLL, OP_SELECT, OP_SEND };

struct job {
	enum op op;
	int fd;		/* the socket, or the epoll fd for OP_EPOLL */
	int timeout_ms;	/* OP_EPOLL, OP_POLL */
	size_t len;	/* OP_SEND */
	ssize_t r;
	int err;
	uint32_t ev;	/* epoll events / poll revents */
	uint64_t data;	/* epoll data */
	long ms;	/* how long the call took */
	pthread_t t;
};

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

static void *job_run(void *arg)
{
	static char sendbuf[1 << 20];
	struct job *j = arg;
	char buf[256];
	long t0 = now_ms();

	switch (j->op) {
	case OP_RECV:
		j->r = recv(j->fd, buf, sizeof(buf), 0);
		break;
	case OP_ACCEPT:
		j->r = accept(j->fd, NULL, NULL);
		break;
	case OP_EPOLL: {
		struct epoll_event e = { 0 };
		j->r = epoll_wait(j->fd, &e, 1, j->timeout_ms);
		j->ev = e.events;
		j->data = e.data.u64;
		break;
	}
	case OP_POLL: {
		struct pollfd p = { .fd = j->fd, .events = POLLIN };
		j->r = poll(&p, 1, j->timeout_ms);
		j->ev = (uint16_t)p.revents;
		break;
	}
	case OP_SELECT: {
		fd_set rs;
		struct timeval tv = { .tv_sec = j->timeout_ms / 1000, .tv_usec = (j->timeout_ms % 1000) * 1000 };
		FD_ZERO(&rs);
		FD_SET(j->fd, &rs);
		j->r = select(j->fd + 1, &rs, NULL, NULL, &tv);
		j->ev = FD_ISSET(j->fd, &rs);
		break;
	}
	case OP_SEND:
		j->r = send(j->fd, sendbuf, j->len, MSG_NOSIGNAL);
		break;
	}
	j->err = j->r < 0 ? errno : 0;
	j->ms = now_ms() - t0;
	return NULL;
}

/* Start the job and give it time to block. */
static void job_start(struct job *j)
{
	j->r = -2;
	pthread_create(&j->t, NULL, job_run, j);
	usleep(150000);
}

static void job_join(struct job *j)
{
	pthread_join(j->t, NULL);
}

/* "step: N" or "step: -1 ENAME" for the job's result. */
static void job_say(const char *step, const struct job *j)
{
	if (j->r >= 0)
		bt_say("%s: %zd", step, j->r);
	else
		bt_say("%s: -1 %s", step, bt_errname(j->err));
}

static void set_timeo(int fd, int opt, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv));
}

/*
 * close() while another thread is blocked in recv: the recv is not woken,
 * it ends by its SO_RCVTIMEO, and only then does the peer see the FIN.
 */
static void case_recv_close(void)
{
	char token[64], line[128];
	uint8_t buf[4096];
	struct job j = { .op = OP_RECV };
	int fd, res;

	snprintf(token, sizeof(token), "thread-close-%d\n", (int)getpid());
	fd = bt_connect_peer(BT_PORT_OBSERVE);
	bt_ok("recv/close: connect observe", fd);
	bt_ok("recv/close: token", bt_write_all(fd, token, strlen(token)));
	bt_val("recv/close: read greeting", bt_read_full(fd, buf, sizeof(buf)));
	set_timeo(fd, SO_RCVTIMEO, 1000);
	j.fd = fd;
	job_start(&j);
	bt_ok("recv/close: close in main", close(fd));
	job_join(&j);
	job_say("recv/close: blocked recv ended", &j);
	bt_say("recv/close: recv waited for its timeout: %d", j.ms >= 900);

	/* The peer saw a plain EOF: the description closed with the recv. */
	res = bt_connect_peer(BT_PORT_RESULT);
	bt_ok("recv/close: ask result", bt_write_all(res, token, strlen(token)));
	bt_val("recv/close: result length", bt_read_line(res, line, sizeof(line)) > 0);
	bt_say("recv/close: peer %s", line);
	close(res);
}

/*
 * close() of a listener while another thread is blocked in accept: the
 * accept goes on waiting and takes the next connection; the listener is
 * gone once accept returned.
 */
static void case_accept_close(void)
{
	struct job j = { .op = OP_ACCEPT };
	uint8_t want[1000];
	uint64_t h = BT_FNV_INIT;
	uint16_t port;
	int lsn, ctl;

	lsn = bt_listen_self(0, 8);
	bt_ok("accept/close: listen", lsn);
	port = bt_local_port(lsn);
	j.fd = lsn;
	job_start(&j);
	ctl = bt_callback(port, 1, sizeof(want), 600);
	bt_ok("accept/close: callback request", ctl);
	bt_ok("accept/close: close listener in main", close(lsn));
	job_join(&j);
	bt_say("accept/close: blocked accept ended: %s", j.r >= 0 ? "ok" : bt_errname(j.err));
	if (j.r >= 0) {
		bt_val("accept/close: read accepted", bt_drain((int)j.r, &h));
		bt_pattern(want, sizeof(want), 0);
		bt_say("accept/close: fnv equal: %d", h == bt_fnv(BT_FNV_INIT, want, sizeof(want)));
		close((int)j.r);
	}
	bt_callback_report("accept/close: callback", ctl);

	/* The listener closed when accept let go of it. */
	ctl = bt_callback(port, 1, 10, 0);
	bt_ok("accept/close: second callback request", ctl);
	bt_callback_report("accept/close: second callback", ctl);
}

/*
 * The last close of a socket while another thread waits in epoll_wait on
 * a set holding it: the registration goes, the wait just times out, and
 * the number is no longer in the set.
 */
static void case_epoll_close(void)
{
	struct job j = { .op = OP_EPOLL, .timeout_ms = 800 };
	struct epoll_event e = { .events = EPOLLIN, .data.u64 = 111 };
	int fd, ep;

	fd = bt_connect_peer(BT_PORT_ECHO);
	bt_ok("epoll/close: connect echo", fd);
	ep = epoll_create1(0);
	bt_ok("epoll/close: add", epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e));
	j.fd = ep;
	job_start(&j);
	bt_ok("epoll/close: close in main", close(fd));
	job_join(&j);
	job_say("epoll/close: blocked epoll_wait ended", &j);
	bt_ok("epoll/close: del closed fd", epoll_ctl(ep, EPOLL_CTL_DEL, fd, &e));
	close(ep);
}

/*
 * Closing a descriptor whose description lives on through a dup: the
 * registration stays, and the wait reports the event under the closed
 * number's data; the closed number cannot be deleted from the set any more
 * and the dup was never in it.
 */
static void case_epoll_close_dup(void)
{
	struct job j = { .op = OP_EPOLL, .timeout_ms = 3000 };
	struct epoll_event e = { .events = EPOLLIN, .data.u64 = 222 };
	char buf[16];
	int fd, d, ep;

	fd = bt_connect_peer(BT_PORT_ECHO);
	bt_ok("epoll/close dup: connect echo", fd);
	d = dup(fd);
	bt_ok("epoll/close dup: dup", d);
	ep = epoll_create1(0);
	bt_ok("epoll/close dup: add original", epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e));
	j.fd = ep;
	job_start(&j);
	bt_ok("epoll/close dup: close original in main", close(fd));
	bt_val("epoll/close dup: send on dup", send(d, "ping", 4, 0));
	job_join(&j);
	job_say("epoll/close dup: blocked epoll_wait ended", &j);
	bt_say("epoll/close dup: event %s data %llu", bt_epoll_events(j.ev), (unsigned long long)j.data);
	bt_ok("epoll/close dup: del closed number", epoll_ctl(ep, EPOLL_CTL_DEL, fd, &e));
	bt_ok("epoll/close dup: del dup", epoll_ctl(ep, EPOLL_CTL_DEL, d, &e));
	bt_val("epoll/close dup: read on dup", recv(d, buf, sizeof(buf), 0));
	/* The last descriptor goes: so does the registration. */
	close(d);
	bt_val("epoll/close dup: wait after last close", epoll_wait(ep, &e, 1, 100));
	close(ep);
}

/*
 * close() of the epoll descriptor while another thread waits on it: the
 * wait holds the instance and still reports the event.
 */
static void case_epfd_close(void)
{
	struct job j = { .op = OP_EPOLL, .timeout_ms = 3000 };
	struct epoll_event e = { .events = EPOLLIN, .data.u64 = 333 };
	char buf[16];
	int fd, ep;

	fd = bt_connect_peer(BT_PORT_ECHO);
	bt_ok("epfd/close: connect echo", fd);
	ep = epoll_create1(0);
	bt_ok("epfd/close: add", epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e));
	j.fd = ep;
	job_start(&j);
	bt_ok("epfd/close: close epoll fd in main", close(ep));
	bt_val("epfd/close: send", send(fd, "ping", 4, 0));
	job_join(&j);
	job_say("epfd/close: blocked epoll_wait ended", &j);
	bt_say("epfd/close: event %s data %llu", bt_epoll_events(j.ev), (unsigned long long)j.data);
	bt_ok("epfd/close: ctl on closed epoll fd", epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e));
	bt_val("epfd/close: read", recv(fd, buf, sizeof(buf), 0));
	close(fd);
}

/*
 * close() while another thread is blocked in poll: poll holds the socket,
 * nothing wakes it, and at its timeout it finds the number closed (POLLNVAL
 * on the 6.x kernels; older ones returned 0).
 */
static void case_poll_close(void)
{
	struct job j = { .op = OP_POLL, .timeout_ms = 800 };
	int fd;

	fd = bt_connect_peer(BT_PORT_ECHO);
	bt_ok("poll/close: connect echo", fd);
	j.fd = fd;
	job_start(&j);
	bt_ok("poll/close: close in main", close(fd));
	job_join(&j);
	job_say("poll/close: blocked poll ended", &j);
	bt_say("poll/close: revents %s", bt_poll_events((short)j.ev));
	bt_say("poll/close: poll waited for its timeout: %d", j.ms >= 700);
}

/*
 * close() while another thread is blocked in select: nothing wakes it; at
 * its timeout Linux finds the number closed and reports it ready (the
 * default poll mask, readable and writable).
 */
static void case_select_close(void)
{
	struct job j = { .op = OP_SELECT, .timeout_ms = 800 };
	int fd;

	fd = bt_connect_peer(BT_PORT_ECHO);
	bt_ok("select/close: connect echo", fd);
	j.fd = fd;
	job_start(&j);
	bt_ok("select/close: close in main", close(fd));
	job_join(&j);
	job_say("select/close: blocked select ended", &j);
	bt_say("select/close: closed number reported readable: %u", j.ev);
	bt_say("select/close: select waited for its timeout: %d", j.ms >= 700);
}

/*
 * The accept case again with a listener bound to INADDR_ANY (the libOS
 * listens on its kernel socket too, and that socket's number goes with
 * the close), and a UDP socket closed under a blocked recv.
 */
static void case_any_and_udp_close(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct job j = { .op = OP_ACCEPT };
	uint16_t port;
	int lsn, ctl, one = 1, u;

	lsn = bt_tcp_socket(0);
	setsockopt(lsn, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	bt_ok("accept any/close: bind any", bind(lsn, (struct sockaddr *)&sa, sizeof(sa)));
	bt_ok("accept any/close: listen", listen(lsn, 8));
	port = bt_local_port(lsn);
	j.fd = lsn;
	job_start(&j);
	ctl = bt_callback(port, 1, 100, 600);
	bt_ok("accept any/close: callback request", ctl);
	bt_ok("accept any/close: close listener in main", close(lsn));
	job_join(&j);
	bt_say("accept any/close: blocked accept ended: %s", j.r >= 0 ? "ok" : bt_errname(j.err));
	if (j.r >= 0) {
		bt_val("accept any/close: read accepted", bt_drain((int)j.r, NULL));
		close((int)j.r);
	}
	bt_callback_report("accept any/close: callback", ctl);

	u = socket(AF_INET, SOCK_DGRAM, 0);
	sa.sin_addr = bt_self;
	bt_ok("udp/close: bind", bind(u, (struct sockaddr *)&sa, sizeof(sa)));
	set_timeo(u, SO_RCVTIMEO, 1000);
	j = (struct job){ .op = OP_RECV, .fd = u };
	job_start(&j);
	bt_ok("udp/close: close in main", close(u));
	job_join(&j);
	job_say("udp/close: blocked recv ended", &j);
	bt_say("udp/close: recv waited for its timeout: %d", j.ms >= 900);
}

/*
 * A dup'ed descriptor closed in one thread while another reads the
 * original, and the original closed while another reads the dup: the
 * reader gets the data main sends through the remaining descriptor.
 */
static void case_dup_read(int close_original)
{
	const char *tag = close_original ? "dup read/close original" : "dup read/close dup";
	struct job j = { .op = OP_RECV };
	char step[96];
	int fd, d;

	fd = bt_connect_peer(BT_PORT_ECHO);
	snprintf(step, sizeof(step), "%s: connect echo", tag);
	bt_ok(step, fd);
	d = dup(fd);
	snprintf(step, sizeof(step), "%s: dup", tag);
	bt_ok(step, d);
	j.fd = close_original ? d : fd;
	job_start(&j);
	snprintf(step, sizeof(step), "%s: close in main", tag);
	bt_ok(step, close(close_original ? fd : d));
	snprintf(step, sizeof(step), "%s: send from main", tag);
	bt_val(step, send(j.fd, "hello", 5, 0));
	job_join(&j);
	snprintf(step, sizeof(step), "%s: blocked recv ended", tag);
	job_say(step, &j);
	snprintf(step, sizeof(step), "%s: shutdown write", tag);
	bt_ok(step, shutdown(j.fd, SHUT_WR));
	snprintf(step, sizeof(step), "%s: eof", tag);
	bt_val(step, bt_drain(j.fd, NULL));
	close(j.fd);
}

/*
 * shutdown(SHUT_RDWR) from the main thread wakes a thread in epoll_wait or
 * poll on the socket, with the events of a shut-down socket.
 */
static void case_shutdown_wakes_waits(void)
{
	struct job j = { .op = OP_EPOLL, .timeout_ms = 3000 };
	struct epoll_event e = { .events = EPOLLIN | EPOLLRDHUP, .data.u64 = 444 };
	int fd, ep, lsn;

	fd = bt_connect_peer(BT_PORT_ECHO);
	bt_ok("shutdown/epoll: connect echo", fd);
	ep = epoll_create1(0);
	bt_ok("shutdown/epoll: add", epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e));
	j.fd = ep;
	job_start(&j);
	bt_ok("shutdown/epoll: shutdown RDWR in main", shutdown(fd, SHUT_RDWR));
	job_join(&j);
	job_say("shutdown/epoll: blocked epoll_wait ended", &j);
	bt_say("shutdown/epoll: has IN|RDHUP: %d", (j.ev & (EPOLLIN | EPOLLRDHUP)) == (EPOLLIN | EPOLLRDHUP));
	close(fd);
	close(ep);

	fd = bt_connect_peer(BT_PORT_ECHO);
	bt_ok("shutdown/poll: connect echo", fd);
	j = (struct job){ .op = OP_POLL, .timeout_ms = 3000, .fd = fd };
	job_start(&j);
	bt_ok("shutdown/poll: shutdown RDWR in main", shutdown(fd, SHUT_RDWR));
	job_join(&j);
	job_say("shutdown/poll: blocked poll ended", &j);
	bt_say("shutdown/poll: has IN: %d", (j.ev & POLLIN) != 0);
	close(fd);

	/* A listener in an epoll set, shut down while a thread waits. */
	lsn = bt_listen_self(0, 8);
	bt_ok("shutdown/epoll listener: listen", lsn);
	ep = epoll_create1(0);
	e.data.u64 = 555;
	bt_ok("shutdown/epoll listener: add", epoll_ctl(ep, EPOLL_CTL_ADD, lsn, &e));
	j = (struct job){ .op = OP_EPOLL, .timeout_ms = 3000, .fd = ep };
	job_start(&j);
	bt_ok("shutdown/epoll listener: shutdown RDWR in main", shutdown(lsn, SHUT_RDWR));
	job_join(&j);
	job_say("shutdown/epoll listener: blocked epoll_wait ended", &j);
	bt_say("shutdown/epoll listener: event %s", bt_epoll_events(j.ev));
	bt_ok("shutdown/epoll listener: accept", accept4(lsn, NULL, NULL, SOCK_NONBLOCK));
	close(lsn);
	close(ep);
}

/*
 * A send buffer far below the 1 MiB we send, so the send blocks: Linux's
 * send buffer autotuning (up to tcp_wmem's 4 MiB) could otherwise take
 * the whole megabyte at once on some machines.
 */
static void small_sndbuf(int fd)
{
	int v = 64 * 1024;

	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
}

/*
 * A thread blocked in send (the peer never reads) is woken by
 * shutdown(SHUT_WR) from another thread (partial count or EPIPE), and one
 * whose descriptor is closed meanwhile ends by its SO_SNDTIMEO instead.
 */
static void case_send_blocked(void)
{
	struct job j = { .op = OP_SEND, .len = 1 << 20 };
	int fd;

	fd = bt_connect_peer(BT_PORT_HOLD);
	bt_ok("send/shutdown: connect hold", fd);
	small_sndbuf(fd);
	j.fd = fd;
	pthread_create(&j.t, NULL, job_run, &j);
	usleep(500000);
	bt_ok("send/shutdown: shutdown WR in main", shutdown(fd, SHUT_WR));
	job_join(&j);
	bt_say("send/shutdown: blocked send ended: %s",
	       j.r > 0 && (size_t)j.r < j.len ? "partial" : j.r < 0 ? bt_errname(j.err) : "other");
	bt_val("send/shutdown: send after shutdown", send(fd, "x", 1, MSG_NOSIGNAL));
	close(fd);

	fd = bt_connect_peer(BT_PORT_HOLD);
	bt_ok("send/close: connect hold", fd);
	small_sndbuf(fd);
	set_timeo(fd, SO_SNDTIMEO, 1000);
	j = (struct job){ .op = OP_SEND, .len = 1 << 20, .fd = fd };
	pthread_create(&j.t, NULL, job_run, &j);
	usleep(300000);
	bt_ok("send/close: close in main", close(fd));
	job_join(&j);
	bt_say("send/close: blocked send ended: %s",
	       j.r > 0 && (size_t)j.r < j.len ? "partial" : j.r < 0 ? bt_errname(j.err) : "other");
	bt_say("send/close: send waited for its timeout: %d", j.ms >= 900);
}

int main(int argc, char **argv)
{
	bt_init(argc, argv, 60);
	case_recv_close();
	case_accept_close();
	case_epoll_close();
	case_epoll_close_dup();
	case_epfd_close();
	case_poll_close();
	case_select_close();
	case_any_and_udp_close();
	case_dup_read(1);
	case_dup_read(0);
	case_shutdown_wakes_waits();
	case_send_blocked();
	return 0;
}
