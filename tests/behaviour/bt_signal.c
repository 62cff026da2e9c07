/* Behaviour: blocking socket calls and waits interrupted by a signal, with and without SA_RESTART. */
#include "bt.h"

#include <fcntl.h>
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
	int sig;
	pthread_t t;
};

static void *poke_thread(void *arg)
{
	struct poke *p = arg;

	usleep(200000);
	pthread_kill(main_thread, p->sig);
	if (p->fd >= 0) {
		usleep(200000);
		if (send(p->fd, "x", 1, MSG_NOSIGNAL) != 1)
			fprintf(stderr, "poke send: %s\n", bt_errname(errno));
	}
	return NULL;
}

static void poke_start_sig(struct poke *p, int fd, int sig)
{
	p->fd = fd;
	p->sig = sig;
	pthread_create(&p->t, NULL, poke_thread, p);
}

static void poke_start(struct poke *p, int fd)
{
	poke_start_sig(p, fd, SIGUSR1);
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

/* Extra steps: the application's view of its handlers, which handler
 * decides restart, and handlers that call socket functions. */
static volatile sig_atomic_t usr2_handled, info_signo, info_code, info_uc;
static int hfd = -1;
static volatile sig_atomic_t hcalls, hagain;

static void on_usr2(int sig)
{
	usr2_handled++;
}

static void on_info(int sig, siginfo_t *si, void *uc)
{
	handled++;
	info_signo = si->si_signo;
	info_code = si->si_code;
	info_uc = uc != NULL;
}

/* Calls into the socket layer from the handler (a libOS socket under
 * libretto): it must never deadlock on a lock its thread holds. */
static void on_sock(int sig)
{
	int saved = errno;
	char b;

	hcalls++;
	if (recv(hfd, &b, 1, MSG_DONTWAIT) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		hagain++;
	handled++;
	errno = saved;
}

/* Signals the main thread 100 times, one at a time (each waits, bounded,
 * for the previous one to be handled, so none merges with another). */
static void *storm_thread(void *arg)
{
	for (int i = 0; i < 100; i++) {
		int before = handled;
		pthread_kill(main_thread, SIGUSR1);
		for (int k = 0; k < 2000 && handled == before; k++)
			usleep(1000);
	}
	return NULL;
}

static const char *flag_names(int f)
{
	static char buf[96];

	buf[0] = 0;
	if (f & SA_RESTART)
		strcat(buf, "RESTART|");
	if (f & SA_NODEFER)
		strcat(buf, "NODEFER|");
	if (f & SA_RESETHAND)
		strcat(buf, "RESETHAND|");
	if (f & SA_SIGINFO)
		strcat(buf, "SIGINFO|");
	if (buf[0])
		buf[strlen(buf) - 1] = 0;
	else
		strcpy(buf, "0");
	return buf;
}

static void say_action(const char *step, int sig, void (*mine)(int))
{
	struct sigaction old;

	memset(&old, 0, sizeof(old));
	if (sigaction(sig, NULL, &old) < 0) {
		bt_ok(step, -1);
		return;
	}
	bt_say("%s: handler=%s flags=%s mask_usr2=%d", step,
	       old.sa_handler == SIG_DFL ? "DFL" : old.sa_handler == SIG_IGN ? "IGN" :
	       old.sa_handler == mine ? "mine" : "other",
	       flag_names(old.sa_flags), sigismember(&old.sa_mask, SIGUSR2));
}

static void more_steps(int fd)
{
	struct sigaction sa;
	struct poke pk;
	char buf[16];

	/* sigaction() shows what the program installed, flags included. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGUSR2);
	sigaction(SIGUSR1, &sa, NULL);
	say_action("view SA_RESTART|SA_NODEFER", SIGUSR1, on_usr1);
	bt_say("signal() returns the old handler: %s",
	       signal(SIGUSR1, on_usr2) == on_usr1 ? "yes" : "no");
	say_action("view after signal()", SIGUSR1, on_usr2);
	sa.sa_flags = SA_RESETHAND;
	sigaction(SIGUSR1, &sa, NULL);
	handled = 0;
	raise(SIGUSR1);
	bt_say("SA_RESETHAND handler ran: %d", handled);
	say_action("view after SA_RESETHAND fired", SIGUSR1, on_usr1);

	/* SA_SIGINFO handlers get the kernel's siginfo and a context. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_info;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	handled = 0;
	poke_start(&pk, fd);
	bt_val("recv, SA_SIGINFO|SA_RESTART (restarted)", recv(fd, buf, sizeof(buf), 0));
	poke_join(&pk);
	bt_say("siginfo: ran=%d signo_ok=%d code=%s uc=%d", handled, info_signo == SIGUSR1,
	       info_code == SI_TKILL ? "SI_TKILL" : info_code == SI_USER ? "SI_USER" : "other",
	       info_uc);
	settle(fd);

	/* errno survives a handler that does not touch it. */
	handler(1);
	errno = EDOM;
	raise(SIGUSR1);
	bt_say("errno after a handler: %s (handler ran %d)", bt_errname(errno), handled);

	/* Two handlers, one with SA_RESTART and one without: only the one
	 * that ran decides. */
	handler(1);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr2;
	sa.sa_flags = 0;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR2, &sa, NULL);
	usr2_handled = 0;
	poke_start_sig(&pk, fd, SIGUSR1);
	bt_val("recv, SIGUSR1 has SA_RESTART, SIGUSR2 not (restarted)", recv(fd, buf, sizeof(buf), 0));
	poke_join(&pk);
	settle(fd);
	poke_start_sig(&pk, fd, SIGUSR2);
	bt_val("recv, SIGUSR2 without SA_RESTART", recv(fd, buf, sizeof(buf), 0));
	poke_join(&pk);
	bt_say("handlers ran: usr1 %d usr2 %d", handled, usr2_handled);
	settle(fd);
	poke_start_sig(&pk, fd, SIGUSR1);
	bt_val("read, SIGUSR1 with SA_RESTART (restarted)", read(fd, buf, sizeof(buf)));
	poke_join(&pk);
	settle(fd);
	signal(SIGUSR2, SIG_DFL);

	/* Handlers that call socket functions while this thread is busy in
	 * the socket layer: 100 signals, one at a time, each handled. */
	hfd = bt_connect_peer(BT_PORT_ECHO);
	bt_ok("second connection", hfd);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sock;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	handled = 0;
	hcalls = hagain = 0;
	{
		pthread_t st;
		pthread_create(&st, NULL, storm_thread, NULL);
		/* Busy in the socket layer: non-blocking reads take and
		 * release the stack lock all the time. */
		for (int i = 0; i < 20000000 && handled < 100; i++)
			recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		pthread_join(st, NULL);
	}
	bt_say("handlers calling recv: ran %d, EAGAIN %d", handled, hagain);
	close(hfd);

	/* Output calls: a blocking send with no room (the peer never reads). */
	hfd = bt_connect_peer(BT_PORT_HOLD);
	bt_ok("hold connection", hfd);
	if (hfd >= 0) {
		static char big[65536];
		long total = 0;
		for (int round = 0; round < 2; round++) {
			for (int i = 0; i < 10000; i++) {
				ssize_t n = send(hfd, big, sizeof(big), MSG_DONTWAIT);
				if (n <= 0)
					break;
				total += n;
			}
			usleep(300000);
		}
		bt_say("send buffer filled: %s", total > 0 ? "yes" : "no");
		handler(0);
		poke_start(&pk, -1);
		ssize_t n = send(hfd, big, sizeof(big), 0);
		poke_join(&pk);
		bt_say("send, no SA_RESTART: %s", n < 0 ? bt_errname(errno) : "partial");
		struct timeval tv = { .tv_sec = 5 };
		setsockopt(hfd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		handler(1);
		poke_start(&pk, -1);
		n = send(hfd, big, sizeof(big), 0);
		poke_join(&pk);
		bt_say("send, SA_RESTART and SO_SNDTIMEO: %s", n < 0 ? bt_errname(errno) : "partial");
		bt_say("handler ran: %d", handled);
		close(hfd);
	}

	/* connect interrupted: the attempt goes on in the background (an
	 * unused address on the subnet, outside the address pool, so the
	 * SYN waits for ARP that never answers). */
	hfd = bt_tcp_socket(0);
	if (hfd >= 0) {
		struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(BT_PORT_ECHO) };
		to.sin_addr.s_addr = (bt_peer.s_addr & htonl(0xffffff00)) | htonl(201);
		handler(0);
		poke_start(&pk, -1);
		bt_ok("connect, no SA_RESTART", connect(hfd, (struct sockaddr *)&to, sizeof(to)));
		poke_join(&pk);
		int fl = fcntl(hfd, F_GETFL);
		fcntl(hfd, F_SETFL, fl | O_NONBLOCK);
		bt_ok("connect again (non-blocking)", connect(hfd, (struct sockaddr *)&to, sizeof(to)));
		close(hfd);
	}
	signal(SIGUSR1, SIG_DFL);
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
	more_steps(fd);
	close(fd);
	return 0;
}
