/* Behaviour: blocking socket calls and waits interrupted by a signal, with and without SA_RESTART. */
#include "bt.h"

#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>

static volatile sig_atomic_t handled;
static pthread_t main_thread;

static void on_usr1(int sig)
{
	handled++;
}

static void handler(int restart)
{
	struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = restart ? SA_RESTART : 0 };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	handled = 0;
}

/* A helper thread signals the main thread after 200 ms and, if fd >= 0,
 * sends one byte to the echo service through fd at 400 ms, so that a
 * restarted recv finally gets data. */
struct poke {
	int fd;
	pthread_t t;
};

static void *poke_thread(void *arg)
{
	struct poke *p = arg;

	usleep(200000);
	pthread_kill(main_thread, SIGUSR1);
	if (p->fd >= 0) {
		usleep(200000);
		if (send(p->fd, "x", 1, MSG_NOSIGNAL) != 1)
			fprintf(stderr, "poke send: %s\n", bt_errname(errno));
	}
	return NULL;
}

static void poke_start(struct poke *p, int fd)
{
	p->fd = fd;
	pthread_create(&p->t, NULL, poke_thread, p);
}

static void poke_join(struct poke *p)
{
	pthread_join(p->t, NULL);
}

/* Keep the steps independent: if a step ended early, the helper's byte
 * arrives later; let it come and throw it away (nothing on Linux). */
static void settle(int fd)
{
	char buf[16];

	usleep(300000);
	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

int main(int argc, char **argv)
{
	struct poke pk;
	char buf[16];
	int fd, ep, l, c, ctl;

	bt_init(argc, argv, 30);
	main_thread = pthread_self();
	fd = bt_connect_peer(BT_PORT_ECHO);
	bt_ok("connect", fd);

	handler(0);
	poke_start(&pk, -1);
	bt_ok("recv, no SA_RESTART", recv(fd, buf, sizeof(buf), 0));
	poke_join(&pk);
	bt_say("handler ran: %d", handled);

	handler(1);
	poke_start(&pk, fd);
	bt_val("recv, SA_RESTART (restarted until data)", recv(fd, buf, sizeof(buf), 0));
	poke_join(&pk);
	bt_say("handler ran: %d", handled);
	settle(fd);

	/* With SO_RCVTIMEO set, Linux never restarts socket input calls. */
	{
		struct timeval tv = { .tv_sec = 5 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		handler(1);
		poke_start(&pk, -1);
		bt_ok("recv, SA_RESTART and SO_RCVTIMEO", recv(fd, buf, sizeof(buf), 0));
		poke_join(&pk);
		tv.tv_sec = 0;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}

	/* Waits are never restarted. */
	ep = epoll_create1(0);
	{
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 1 }, out;
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
		handler(1);
		poke_start(&pk, -1);
		bt_ok("epoll_wait, SA_RESTART", epoll_wait(ep, &out, 1, 5000));
		poke_join(&pk);
	}
	{
		struct pollfd p = { fd, POLLIN, 0 };
		poke_start(&pk, -1);
		bt_ok("poll, SA_RESTART", poll(&p, 1, 5000));
		poke_join(&pk);
	}
	{
		fd_set rd;
		struct timeval tv = { .tv_sec = 5 };
		FD_ZERO(&rd);
		FD_SET(fd, &rd);
		poke_start(&pk, -1);
		bt_ok("select, SA_RESTART", select(fd + 1, &rd, NULL, NULL, &tv));
		poke_join(&pk);
	}
	bt_say("handler ran: %d", handled);
	close(ep);

	/* accept is restarted under SA_RESTART: the connection comes after
	 * the signal. */
	l = bt_listen_self(0, 4);
	handler(1);
	ctl = bt_callback(bt_local_port(l), 1, 3, 500);
	poke_start(&pk, -1);
	c = accept(l, NULL, NULL);
	bt_ok("accept, SA_RESTART (restarted)", c);
	poke_join(&pk);
	bt_say("handler ran: %d", handled);
	if (c < 0) {
		/* Take the connection anyway so that the next steps and the
		 * peer's report do not depend on this one. */
		bt_wait(l, POLLIN, 3000);
		c = accept(l, NULL, NULL);
	}
	if (c >= 0) {
		bt_val("read", bt_read_full(c, buf, 3));
		close(c);
	}
	bt_callback_report("callback", ctl);

	/* Without SA_RESTART accept fails with EINTR. */
	handler(0);
	poke_start(&pk, -1);
	bt_ok("accept, no SA_RESTART", accept(l, NULL, NULL));
	poke_join(&pk);
	close(l);

	/* A pending signal blocked by ppoll's mask is delivered during it. */
	{
		sigset_t block, empty;
		struct pollfd p = { fd, POLLIN, 0 };
		struct timespec ts = { 5, 0 };
		sigemptyset(&block);
		sigaddset(&block, SIGUSR1);
		sigemptyset(&empty);
		handler(1);
		pthread_sigmask(SIG_BLOCK, &block, NULL);
		raise(SIGUSR1);
		bt_say("handler ran while blocked: %d", handled);
		bt_ok("ppoll unblocking SIGUSR1", ppoll(&p, 1, &ts, &empty));
		bt_say("handler ran: %d", handled);
		pthread_sigmask(SIG_UNBLOCK, &block, NULL);
	}
	close(fd);
	return 0;
}
