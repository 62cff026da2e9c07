/* Behaviour: one socket used by several threads (created, connected, written, sent to concurrently) and one epoll set waited on by several threads. */
#include "bt.h"

#include <fcntl.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/epoll.h>

/*
 * Only what Linux guarantees is printed: with EPOLLET or EPOLLONESHOT one
 * event wakes exactly one of the threads waiting on the same epoll
 * descriptor (epoll(7)); level-triggered wakes at least one; an ADD or MOD
 * from another thread of an already ready socket wakes a waiter; small
 * send()s from two threads land in the stream whole.
 */

/* ---- A socket made in one thread, connected in a second, written by a third. ---- */

struct relay_step {
	int fd;
	int r;
};

static void *make_socket(void *arg)
{
	struct relay_step *s = arg;

	s->fd = socket(AF_INET, SOCK_STREAM, 0);
	s->r = s->fd < 0 ? -errno : 0;
	return NULL;
}

static void *connect_socket(void *arg)
{
	struct relay_step *s = arg;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(BT_PORT_SINK), .sin_addr = bt_peer };

	s->r = connect(s->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
	return NULL;
}

static void *write_socket(void *arg)
{
	struct relay_step *s = arg;
	uint8_t buf[20000];

	bt_pattern(buf, sizeof(buf), 0);
	s->r = bt_write_all(s->fd, buf, sizeof(buf));
	if (s->r == 0)
		s->r = shutdown(s->fd, SHUT_WR) < 0 ? -errno : 0;
	return NULL;
}

static void say_r(const char *step, int r)
{
	if (r < 0)
		bt_say("%s: -1 %s", step, bt_errname(-r));
	else
		bt_say("%s: ok", step);
}

static void case_three_threads(void)
{
	struct relay_step s = { -1, 0 };
	uint8_t buf[20000];
	char line[128], want[128];
	pthread_t t;

	pthread_create(&t, NULL, make_socket, &s);
	pthread_join(t, NULL);
	say_r("three threads: socket in thread 1", s.r);
	pthread_create(&t, NULL, connect_socket, &s);
	pthread_join(t, NULL);
	say_r("three threads: connect in thread 2", s.r);
	pthread_create(&t, NULL, write_socket, &s);
	pthread_join(t, NULL);
	say_r("three threads: write in thread 3", s.r);
	bt_val("three threads: reply in main", bt_read_line(s.fd, line, sizeof(line)) > 0);
	bt_pattern(buf, sizeof(buf), 0);
	snprintf(want, sizeof(want), "bytes=%zu fnv=%016llx", sizeof(buf),
		 (unsigned long long)bt_fnv(BT_FNV_INIT, buf, sizeof(buf)));
	bt_say("three threads: sink saw everything: %d", !strcmp(line, want));
	close(s.fd);
}

/* ---- Concurrent send() from two threads on one TCP socket. ---- */

#define REC_SIZE 64
#define REC_COUNT 150	/* per thread: 2 * 150 * 64 bytes, well within a send buffer */

struct sender {
	int fd;
	uint8_t id;
	int short_sends;
	int err;
};

static void rec_fill(uint8_t *rec, uint8_t id, uint32_t seq)
{
	rec[0] = id;
	memcpy(rec + 1, &seq, sizeof(seq));
	for (int i = 5; i < REC_SIZE; i++)
		rec[i] = (uint8_t)(id * 31 + seq * 7 + i);
}

static void *sender_run(void *arg)
{
	struct sender *s = arg;
	uint8_t rec[REC_SIZE];

	for (uint32_t seq = 0; seq < REC_COUNT; seq++) {
		rec_fill(rec, s->id, seq);
		ssize_t r = send(s->fd, rec, sizeof(rec), MSG_NOSIGNAL);
		if (r < 0) {
			s->err = errno;
			break;
		}
		if (r != sizeof(rec))
			s->short_sends++;
	}
	return NULL;
}

struct collector {
	int fd;
	size_t total;
	int whole, broken;
	uint32_t next[2];
	int out_of_order;
};

static void *collector_run(void *arg)
{
	struct collector *c = arg;
	static uint8_t buf[2 * REC_COUNT * REC_SIZE];
	ssize_t n = bt_read_full(c->fd, buf, sizeof(buf));

	c->total = n > 0 ? (size_t)n : 0;
	for (size_t off = 0; off + REC_SIZE <= c->total; off += REC_SIZE) {
		uint8_t want[REC_SIZE];
		uint8_t id = buf[off];
		uint32_t seq;

		memcpy(&seq, buf + off + 1, sizeof(seq));
		if ((id != 'A' && id != 'B') || seq >= REC_COUNT) {
			c->broken++;
			continue;
		}
		rec_fill(want, id, seq);
		if (memcmp(want, buf + off, REC_SIZE)) {
			c->broken++;
			continue;
		}
		c->whole++;
		if (seq != c->next[id - 'A'])
			c->out_of_order++;
		c->next[id - 'A'] = seq + 1;
	}
	return NULL;
}

static void case_concurrent_send(void)
{
	struct sender a = { .id = 'A' }, b = { .id = 'B' };
	struct collector c = { 0 };
	pthread_t ta, tb, tc;
	int fd, one = 1;

	fd = bt_connect_peer(BT_PORT_ECHO);
	bt_ok("concurrent send: connect echo", fd);
	/* Small segments make a torn send visible at the peer too. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	a.fd = b.fd = c.fd = fd;
	pthread_create(&tc, NULL, collector_run, &c);
	pthread_create(&ta, NULL, sender_run, &a);
	pthread_create(&tb, NULL, sender_run, &b);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	bt_say("concurrent send: thread A errors %s short %d", a.err ? bt_errname(a.err) : "none", a.short_sends);
	bt_say("concurrent send: thread B errors %s short %d", b.err ? bt_errname(b.err) : "none", b.short_sends);
	pthread_join(tc, NULL);
	bt_say("concurrent send: echoed %zu bytes, %d whole records, %d broken, %d out of order",
	       c.total, c.whole, c.broken, c.out_of_order);
	bt_say("concurrent send: per thread %u %u", c.next[0], c.next[1]);
	close(fd);
}

/* ---- Several threads in epoll_wait on one epoll descriptor. ---- */

struct waiter {
	int ep;
	int timeout_ms;
	int n;
	int err;
	uint32_t ev;
	pthread_t t;
};

static void *waiter_run(void *arg)
{
	struct waiter *w = arg;
	struct epoll_event e = { 0 };

	w->n = epoll_wait(w->ep, &e, 1, w->timeout_ms);
	w->err = w->n < 0 ? errno : 0;
	w->ev = e.events;
	return NULL;
}

static void waiters_start(struct waiter *w, int n, int ep, int timeout_ms)
{
	for (int i = 0; i < n; i++) {
		w[i] = (struct waiter){ .ep = ep, .timeout_ms = timeout_ms };
		pthread_create(&w[i].t, NULL, waiter_run, &w[i]);
	}
	usleep(150000);
}

/* Join them; returns how many returned an event, -1 on an error. */
static int waiters_join(struct waiter *w, int n)
{
	int woken = 0, bad = 0;

	for (int i = 0; i < n; i++) {
		pthread_join(w[i].t, NULL);
		if (w[i].n < 0)
			bad = 1;
		woken += w[i].n > 0;
	}
	return bad ? -1 : woken;
}

static void drain_now(int fd)
{
	char buf[256];

	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

/* The echo of one byte has arrived (polled, so nothing is consumed). */
static void wait_echo(const char *step, int fd)
{
	int r = bt_wait(fd, POLLIN, 3000);

	bt_say("%s: %s", step, r > 0 ? bt_poll_events((short)r) : r == 0 ? "timeout" : bt_errname(-r));
}

static void case_two_waiters(void)
{
	struct waiter w[2];
	struct epoll_event e = { .events = EPOLLIN | EPOLLET, .data.u64 = 1 };
	int fd, ep, n;

	fd = bt_connect_peer(BT_PORT_ECHO);
	bt_ok("two waiters: connect echo", fd);
	ep = epoll_create1(0);

	/* Edge-triggered: one event, exactly one thread. */
	bt_ok("two waiters ET: add", epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e));
	waiters_start(w, 2, ep, 1000);
	bt_val("two waiters ET: send", send(fd, "x", 1, 0));
	n = waiters_join(w, 2);
	bt_say("two waiters ET: threads woken with the event: %d", n);
	drain_now(fd);

	/* One-shot (level-triggered otherwise): exactly one thread, then
	 * disarmed while the byte stays unread. */
	e.events = EPOLLIN | EPOLLONESHOT;
	bt_ok("two waiters ONESHOT: mod", epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e));
	waiters_start(w, 2, ep, 1000);
	bt_val("two waiters ONESHOT: send", send(fd, "y", 1, 0));
	n = waiters_join(w, 2);
	bt_say("two waiters ONESHOT: threads woken with the event: %d", n);

	/* Re-armed by the main thread while another thread waits: the unread
	 * byte is reported at once, and the socket is disarmed again. */
	waiters_start(w, 1, ep, 3000);
	bt_ok("ONESHOT rearm: mod from main", epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e));
	n = waiters_join(w, 1);
	bt_say("ONESHOT rearm: waiter woken: %d events %s", n, bt_epoll_events(w[0].ev));
	bt_val("ONESHOT rearm: disarmed again", epoll_wait(ep, &e, 1, 200));
	drain_now(fd);

	/* Level-triggered: at least one thread sees it. */
	e.events = EPOLLIN;
	bt_ok("two waiters LT: mod", epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e));
	waiters_start(w, 2, ep, 400);
	bt_val("two waiters LT: send", send(fd, "z", 1, 0));
	n = waiters_join(w, 2);
	bt_say("two waiters LT: at least one woken: %d", n >= 1);
	drain_now(fd);

	/* ADD from another thread of a socket that is already readable wakes
	 * the waiter; DEL from another thread keeps later data from it. */
	bt_ok("ctl from main: del", epoll_ctl(ep, EPOLL_CTL_DEL, fd, &e));
	bt_val("ctl from main: send", send(fd, "w", 1, 0));
	wait_echo("ctl from main: echo arrived", fd);
	waiters_start(w, 1, ep, 3000);
	e.data.u64 = 7;
	bt_ok("ctl from main: add ready socket", epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e));
	n = waiters_join(w, 1);
	bt_say("ctl from main: waiter woken by add: %d events %s", n, bt_epoll_events(w[0].ev));
	drain_now(fd);
	waiters_start(w, 1, ep, 800);
	bt_ok("ctl from main: del while waiting", epoll_ctl(ep, EPOLL_CTL_DEL, fd, &e));
	bt_val("ctl from main: send after del", send(fd, "v", 1, 0));
	n = waiters_join(w, 1);
	bt_say("ctl from main: waiter after del: %d", n);
	wait_echo("ctl from main: echo of v", fd);
	close(ep);
	close(fd);
}

/*
 * EPOLLEXCLUSIVE: its ctl rules, and a listener in two epoll sets, one
 * thread on each: one connection is accepted exactly once.
 */
struct excl {
	int ep, lsn;
	int woken, accepted;
	pthread_t t;
};

static void *excl_run(void *arg)
{
	struct excl *x = arg;
	struct epoll_event e;

	x->woken = epoll_wait(x->ep, &e, 1, 1500);
	if (x->woken > 0) {
		int c = accept(x->lsn, NULL, NULL);
		if (c >= 0) {
			x->accepted = 1;
			close(c);
		}
	}
	return NULL;
}

static void case_exclusive(void)
{
	struct epoll_event e = { .events = EPOLLIN | EPOLLEXCLUSIVE };
	struct excl x[2] = { 0 };
	int lsn, ctl, ep3;

	lsn = bt_listen_self(0, 8);
	bt_ok("exclusive: listen", lsn);
	/* Both threads may wake ("one or more", epoll(7)): the loser's
	 * accept must not block. */
	bt_ok("exclusive: nonblocking listener", fcntl(lsn, F_SETFL, fcntl(lsn, F_GETFL) | O_NONBLOCK));
	for (int i = 0; i < 2; i++) {
		x[i].ep = epoll_create1(0);
		x[i].lsn = lsn;
		bt_ok("exclusive: add", epoll_ctl(x[i].ep, EPOLL_CTL_ADD, lsn, &e));
	}
	bt_ok("exclusive: mod", epoll_ctl(x[0].ep, EPOLL_CTL_MOD, lsn, &e));
	e.events = EPOLLIN | EPOLLEXCLUSIVE | EPOLLONESHOT;
	ep3 = epoll_create1(0);
	bt_ok("exclusive: add with ONESHOT", epoll_ctl(ep3, EPOLL_CTL_ADD, lsn, &e));
	close(ep3);
	for (int i = 0; i < 2; i++)
		pthread_create(&x[i].t, NULL, excl_run, &x[i]);
	usleep(150000);
	ctl = bt_callback(bt_local_port(lsn), 1, 0, 0);
	bt_ok("exclusive: callback request", ctl);
	for (int i = 0; i < 2; i++)
		pthread_join(x[i].t, NULL);
	bt_say("exclusive: some thread woken: %d, accepted once: %d",
	       x[0].woken > 0 || x[1].woken > 0, x[0].accepted + x[1].accepted == 1);
	bt_callback_report("exclusive: callback", ctl);
	close(x[0].ep);
	close(x[1].ep);
	close(lsn);
}

int main(int argc, char **argv)
{
	bt_init(argc, argv, 60);
	case_three_threads();
	case_concurrent_send();
	case_two_waiters();
	case_exclusive();
	return 0;
}
