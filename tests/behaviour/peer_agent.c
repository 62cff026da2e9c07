/* The behaviour suite's counterpart: fixed TCP/UDP services on the peer's kernel stack, bounded lifetime. */
#include "bt.h"

#include <arpa/inet.h>
#include <err.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/*
 * Usage: peer_agent [SECONDS]
 * Listens on every BT_PORT_* service of bt.h on all addresses, prints
 * "ready" on stdout once every listener is up, and exits after SECONDS
 * (default 300) whatever happens, so a crashed runner leaves nothing behind.
 * One thread per accepted connection; every connection has a receive
 * timeout so a silent subject cannot pin a thread for ever.
 */

#define AGENT_IO_TIMEOUT_S 10
#define AGENT_MAX_RESULTS 128

struct agent_result {
	char token[64];
	char text[96];
};

static pthread_mutex_t results_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t results_cond = PTHREAD_COND_INITIALIZER;
static struct agent_result results[AGENT_MAX_RESULTS];
static unsigned results_next;

struct agent_conn {
	int fd;
	void (*serve)(int fd);
};

static void agent_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = AGENT_IO_TIMEOUT_S };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static void serve_echo(int fd)
{
	char buf[65536];

	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (bt_write_all(fd, buf, (size_t)r) < 0)
			break;
	}
	shutdown(fd, SHUT_WR);
}

static void serve_send(int fd)
{
	char line[64];
	uint8_t buf[65536];
	unsigned long long n, off = 0;

	if (bt_read_line(fd, line, sizeof(line)) <= 0)
		return;
	n = strtoull(line, NULL, 10);
	if (n > (1ULL << 28))
		return;
	while (off < n) {
		size_t chunk = n - off < sizeof(buf) ? (size_t)(n - off) : sizeof(buf);
		bt_pattern(buf, chunk, off);
		if (bt_write_all(fd, buf, chunk) < 0)
			return;
		off += chunk;
	}
}

static void serve_reset(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	char buf[4096];

	if (read(fd, buf, sizeof(buf)) < 0)
		warn("reset: read");
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

static void serve_sink(int fd)
{
	uint64_t h = BT_FNV_INIT;
	ssize_t n = bt_drain(fd, &h);
	char reply[96];

	if (n < 0)
		snprintf(reply, sizeof(reply), "error=%s\n", bt_errname((int)-n));
	else
		snprintf(reply, sizeof(reply), "bytes=%zd fnv=%016llx\n", n, (unsigned long long)h);
	bt_write_all(fd, reply, strlen(reply));
}

static void result_put(const char *token, const char *text)
{
	pthread_mutex_lock(&results_lock);
	struct agent_result *r = &results[results_next++ % AGENT_MAX_RESULTS];
	snprintf(r->token, sizeof(r->token), "%s", token);
	snprintf(r->text, sizeof(r->text), "%s", text);
	pthread_cond_broadcast(&results_cond);
	pthread_mutex_unlock(&results_lock);
}

static void serve_observe(int fd)
{
	char token[64], text[96];
	uint8_t buf[4096];
	ssize_t n;

	if (bt_read_line(fd, token, sizeof(token)) <= 0)
		return;
	bt_pattern(buf, sizeof(buf), 0);
	if (bt_write_all(fd, buf, sizeof(buf)) < 0) {
		result_put(token, "write-failed");
		return;
	}
	n = bt_drain(fd, NULL);
	if (n < 0)
		snprintf(text, sizeof(text), "read=-1 %s", bt_errname((int)-n));
	else
		snprintf(text, sizeof(text), "read=EOF after %zd bytes", n);
	result_put(token, text);
}

static void serve_result(int fd)
{
	char token[64], reply[128] = "result=timeout\n";
	struct timespec deadline;
	int found = 0;

	if (bt_read_line(fd, token, sizeof(token)) <= 0)
		return;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 5;
	pthread_mutex_lock(&results_lock);
	while (!found) {
		for (unsigned i = 0; i < AGENT_MAX_RESULTS; i++) {
			if (!strcmp(results[i].token, token)) {
				snprintf(reply, sizeof(reply), "result=%s\n", results[i].text);
				found = 1;
				break;
			}
		}
		if (!found && pthread_cond_timedwait(&results_cond, &results_lock, &deadline))
			break;
	}
	pthread_mutex_unlock(&results_lock);
	bt_write_all(fd, reply, strlen(reply));
}

static void serve_callback(int fd)
{
	char line[128], ip[64], reply[160];
	unsigned port;
	int count, delay_ms;
	size_t bytes;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	static uint8_t buf[1 << 20];

	if (bt_read_line(fd, line, sizeof(line)) <= 0)
		return;
	if (sscanf(line, "%63s %u %d %zu %d", ip, &port, &count, &bytes, &delay_ms) != 5 ||
	    inet_pton(AF_INET, ip, &sa.sin_addr) != 1 || count < 0 || count > 1000 ||
	    bytes > sizeof(buf) || delay_ms < 0 || delay_ms > 5000) {
		bt_write_all(fd, "error=bad request\ndone\n", 23);
		return;
	}
	sa.sin_port = htons((uint16_t)port);
	bt_pattern(buf, bytes, 0);
	usleep((useconds_t)delay_ms * 1000);
	for (int i = 0; i < count; i++) {
		int c = socket(AF_INET, SOCK_STREAM, 0);
		uint64_t h = BT_FNV_INIT;
		ssize_t got = -1;
		int r;

		agent_timeouts(c);
		if (connect(c, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			snprintf(reply, sizeof(reply), "conn=%d connect=-1 %s\n", i, bt_errname(errno));
		} else {
			r = bt_write_all(c, buf, bytes);
			if (r == 0)
				shutdown(c, SHUT_WR);
			got = bt_drain(c, &h);
			if (got < 0)
				snprintf(reply, sizeof(reply), "conn=%d connect=ok sent=%s read=-1 %s\n", i,
					 r ? bt_errname(-r) : "all", bt_errname((int)-got));
			else
				snprintf(reply, sizeof(reply), "conn=%d connect=ok sent=%s got=%zd fnv=%016llx\n",
					 i, r ? bt_errname(-r) : "all", got, (unsigned long long)h);
		}
		close(c);
		if (bt_write_all(fd, reply, strlen(reply)) < 0)
			return;
	}
	bt_write_all(fd, "done\n", 5);
}

/* Never read: the client's sends stall once this socket's small receive
 * buffer (set on the listener, inherited) and its own send buffer are full. */
static void serve_hold(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLRDHUP };

	poll(&p, 1, AGENT_IO_TIMEOUT_S * 1000);
}

static void *conn_thread(void *arg)
{
	struct agent_conn *c = arg;

	agent_timeouts(c->fd);
	c->serve(c->fd);
	close(c->fd);
	free(c);
	return NULL;
}

struct agent_listener {
	int fd;
	void (*serve)(int fd);
};

static void *listen_thread(void *arg)
{
	struct agent_listener *l = arg;
	pthread_attr_t attr;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (;;) {
		int fd = accept(l->fd, NULL, NULL);
		if (fd < 0) {
			if (errno != EINTR && errno != ECONNABORTED)
				warn("accept");
			usleep(1000);
			continue;
		}
		struct agent_conn *c = malloc(sizeof(*c));
		pthread_t t;
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->serve = l->serve;
		if (pthread_create(&t, &attr, conn_thread, c)) {
			warnx("cannot start a connection thread");
			close(fd);
			free(c);
		}
	}
	return NULL;
}

static void *udp_thread(void *arg)
{
	int fd = *(int *)arg;
	char buf[65536];

	for (;;) {
		struct sockaddr_in from;
		socklen_t len = sizeof(from);
		ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &len);
		if (n < 0)
			continue;
		sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, len);
	}
	return NULL;
}

static int agent_bind(int type, uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1;
	int fd = socket(AF_INET, type, 0);

	if (fd < 0)
		err(1, "socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (port == BT_PORT_HOLD) {
		int small = 4096;
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		err(1, "bind port %u", port);
	if (type == SOCK_STREAM && listen(fd, 1024) < 0)
		err(1, "listen port %u", port);
	return fd;
}

int main(int argc, char **argv)
{
	static struct agent_listener ls[] = {
		{ -1, serve_echo }, { -1, serve_send }, { -1, serve_reset }, { -1, serve_sink },
		{ -1, serve_observe }, { -1, serve_result }, { -1, serve_callback }, { -1, serve_hold },
	};
	static const uint16_t ports[] = {
		BT_PORT_ECHO, BT_PORT_SEND, BT_PORT_RESET, BT_PORT_SINK,
		BT_PORT_OBSERVE, BT_PORT_RESULT, BT_PORT_CALLBACK, BT_PORT_HOLD,
	};
	int seconds = argc > 1 ? atoi(argv[1]) : 300;
	static int udp;
	pthread_t t;

	if (seconds <= 0 || seconds > 3600)
		errx(2, "usage: peer_agent [SECONDS 1..3600]");
	signal(SIGPIPE, SIG_IGN);
	/* The lifetime bound: SIGALRM's default action ends the process. */
	alarm((unsigned)seconds);
	for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
		ls[i].fd = agent_bind(SOCK_STREAM, ports[i]);
		if (pthread_create(&t, NULL, listen_thread, &ls[i]))
			errx(1, "pthread_create");
	}
	udp = agent_bind(SOCK_DGRAM, BT_PORT_UDP_ECHO);
	if (pthread_create(&t, NULL, udp_thread, &udp))
		errx(1, "pthread_create");
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}
