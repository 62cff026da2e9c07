/* Waiters: wake-up from another thread, timeouts, EINTR, extra fds, blocking recv. */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "stack_loop.h"

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct waker {
	struct lsock_waiter *w;
	pthread_t target;
	int delay_ms;
};

static void *wake_later(void *arg)
{
	struct waker *k = arg;

	usleep((useconds_t)k->delay_ms * 1000);
	lsock_waiter_wake(k->w);
	return NULL;
}

static int test_wake_other_thread(void)
{
	struct lsock_waiter *w = lsock_waiter_self();
	struct waker k = { .w = w, .delay_ms = 100 };
	pthread_t t;

	CHECK(w != NULL);
	CHECK(lsock_waiter_self() == w);
	lsock_waiter_arm(w);
	CHECK_EQ(pthread_create(&t, NULL, wake_later, &k), 0);
	long t0 = now_ms();
	CHECK_EQ(lsock_waiter_sleep(w, NULL, 0, 5000, NULL), 0);
	long dt = now_ms() - t0;
	pthread_join(t, NULL);
	CHECK(dt >= 50 && dt < 4000);

	/* A wake between arm and sleep is not lost. */
	lsock_waiter_arm(w);
	lsock_waiter_wake(w);
	CHECK_EQ(lsock_waiter_sleep(w, NULL, 0, 5000, NULL), 0);

	/* Timeout. */
	lsock_waiter_arm(w);
	t0 = now_ms();
	CHECK_EQ(lsock_waiter_sleep(w, NULL, 0, 150, NULL), -ETIMEDOUT);
	dt = now_ms() - t0;
	CHECK(dt >= 140 && dt < 3000);
	return 0;
}

static void on_usr1(int sig)
{
}

struct killer {
	pthread_t target;
};

static void *kill_later(void *arg)
{
	struct killer *k = arg;

	usleep(100000);
	pthread_kill(k->target, SIGUSR1);
	return NULL;
}

static int test_eintr_and_extra(void)
{
	struct lsock_waiter *w = lsock_waiter_self();
	struct sigaction sa = { .sa_handler = on_usr1 };
	struct killer k = { .target = pthread_self() };
	pthread_t t;

	sigaction(SIGUSR1, &sa, NULL);
	lsock_waiter_arm(w);
	CHECK_EQ(pthread_create(&t, NULL, kill_later, &k), 0);
	CHECK_EQ(lsock_waiter_sleep(w, NULL, 0, 5000, NULL), -EINTR);
	pthread_join(t, NULL);

	/* An extra fd that becomes readable ends the sleep, revents filled. */
	int p[2];
	CHECK_EQ(pipe(p), 0);
	CHECK_EQ(write(p[1], "x", 1), 1);
	struct pollfd pf = { .fd = p[0], .events = POLLIN };
	lsock_waiter_arm(w);
	CHECK_EQ(lsock_waiter_sleep(w, &pf, 1, 5000, NULL), 0);
	CHECK(pf.revents & POLLIN);
	close(p[0]);
	close(p[1]);
	return 0;
}

/* A thread blocked in recv is woken by data sent from another thread. */
struct sender {
	struct lsock *c;
};

static void *send_later(void *arg)
{
	struct sender *s = arg;

	usleep(100000);
	loop_send(s->c, "wake", 4, 0);
	return NULL;
}

static int test_blocking_recv(void)
{
	struct lsock *l = loop_socket(-1, SOCK_STREAM), *c = loop_socket(-1, SOCK_STREAM), *s = NULL;
	struct sockaddr_in a = loop_addr(LOOP_IP, 7100);
	int nk;
	char buf[8];
	pthread_t t;

	CHECK(l && c);
	CHECK_EQ(lsock_bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	CHECK_EQ(lsock_listen(l, 4), 0);
	CHECK_EQ(lsock_connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
	CHECK_EQ(lsock_accept(l, &s, &nk, NULL, NULL, 0), 0);
	lsock_fd_get(s);
	struct sender sd = { .c = c };
	CHECK_EQ(pthread_create(&t, NULL, send_later, &sd), 0);
	long t0 = now_ms();
	CHECK_EQ(loop_recv(s, buf, sizeof(buf), 0), 4);
	CHECK(now_ms() - t0 >= 50);
	pthread_join(t, NULL);
	loop_close(c);
	loop_close(s);
	loop_close(l);
	return 0;
}

/* With only SA_RESTART handlers installed, a blocked recv without a timeout
 * goes on waiting after the handler (Linux restarts it). */
static volatile sig_atomic_t usr2_ran;

static void on_usr2(int sig)
{
	usr2_ran = 1;
}

struct restart_job {
	pthread_t target;
	struct lsock *c;
};

static void *signal_then_send(void *arg)
{
	struct restart_job *j = arg;

	usleep(100000);
	pthread_kill(j->target, SIGUSR2);
	usleep(200000);
	loop_send(j->c, "late", 4, 0);
	return NULL;
}

static int test_sa_restart(void)
{
	struct lsock *l = loop_socket(-1, SOCK_STREAM), *c = loop_socket(-1, SOCK_STREAM), *s = NULL;
	struct sockaddr_in a = loop_addr(LOOP_IP, 7101);
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	struct sigaction sa = { .sa_handler = on_usr2, .sa_flags = SA_RESTART };
	int nk;
	char buf[8];
	pthread_t t;

	CHECK(l && c);
	sigaction(SIGUSR1, &dfl, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	CHECK_EQ(lsock_bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	CHECK_EQ(lsock_listen(l, 4), 0);
	CHECK_EQ(lsock_connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
	CHECK_EQ(lsock_accept(l, &s, &nk, NULL, NULL, 0), 0);
	lsock_fd_get(s);
	struct restart_job j = { .target = pthread_self(), .c = c };
	CHECK_EQ(pthread_create(&t, NULL, signal_then_send, &j), 0);
	CHECK_EQ(loop_recv(s, buf, sizeof(buf), 0), 4);
	pthread_join(t, NULL);
	CHECK(usr2_ran);
	sigaction(SIGUSR2, &dfl, NULL);
	loop_close(c);
	loop_close(s);
	loop_close(l);
	return 0;
}

static void *waiter_thread(void *arg)
{
	/* Each thread gets its own waiter, freed at exit. */
	struct lsock_waiter **out = arg;

	*out = lsock_waiter_self();
	return NULL;
}

static int test_per_thread(void)
{
	struct lsock_waiter *mine = lsock_waiter_self(), *theirs = NULL;
	pthread_t t;

	CHECK_EQ(pthread_create(&t, NULL, waiter_thread, &theirs), 0);
	pthread_join(t, NULL);
	CHECK(theirs != NULL && theirs != mine);
	return 0;
}

int main(void)
{
	static const struct {
		const char *name;
		int (*fn)(void);
	} tests[] = {
		{ "wake_other_thread", test_wake_other_thread },
		{ "eintr_and_extra", test_eintr_and_extra },
		{ "blocking_recv", test_blocking_recv },
		{ "per_thread", test_per_thread },
		{ "sa_restart", test_sa_restart },
	};
	int fails = 0;

	if (stack_init() != 0)
		return 77;
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		alarm(20);
		int r = tests[i].fn();
		alarm(0);
		fprintf(stderr, "%s %s\n", r == 0 ? "ok  " : "FAIL", tests[i].name);
		fails += r != 0;
	}
	return fails ? 1 : 0;
}
