/* Behaviour: TCP_CORK and MSG_MORE hold partial segments until uncork, the next send, or full segments. */
#include "bt.h"

#include <time.h>
#include <netinet/tcp.h>
#include <sys/sendfile.h>

/*
 * Timing: a held write is observed as "no echo within HOLD_MS"; Linux and
 * the libOS both send a held partial segment after at most 200 ms, so
 * HOLD_MS leaves a wide margin on both sides.  Data that must arrive is
 * given a second.
 */
#define HOLD_MS 60
#define ARRIVE_MS 1000
#define BIG 4000

static uint8_t out[BIG], in[BIG + 1];

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Read until want bytes arrived or ms passed; returns the count (or -errno). */
static ssize_t read_for(int fd, uint8_t *buf, size_t want, int ms)
{
	int64_t end = now_ms() + ms;
	size_t got = 0;

	while (got < want) {
		int64_t left = end - now_ms();
		if (left <= 0)
			break;
		int r = bt_wait(fd, POLLIN, (int)left);
		if (r < 0)
			return r;
		if (r == 0)
			break;
		ssize_t n = recv(fd, buf + got, want - got, MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		if (n == 0)
			break;
		if (n > 0)
			got += (size_t)n;
	}
	return (ssize_t)got;
}

static int set_int(int fd, int name, int v)
{
	return setsockopt(fd, IPPROTO_TCP, name, &v, sizeof(v)) ? -errno : 0;
}

static void say_cork(const char *step, int fd)
{
	int v = -1;
	socklen_t len = sizeof(v);

	if (getsockopt(fd, IPPROTO_TCP, TCP_CORK, &v, &len) < 0)
		bt_say("%s: -1 %s", step, bt_errname(errno));
	else
		bt_say("%s: %d", step, v);
}

/* "no echo yet" if nothing came back within HOLD_MS. */
static void say_held(const char *step, int fd)
{
	int r = bt_wait(fd, POLLIN, HOLD_MS);

	bt_say("%s: %s", step, r == 0 ? "no echo yet" : r > 0 ? "echo arrived" : bt_errname(-r));
}

/* Read n echoed bytes within ARRIVE_MS and compare them with out. */
static void say_echo(const char *step, int fd, size_t n)
{
	ssize_t got = read_for(fd, in, n, ARRIVE_MS);

	bt_say("%s: %zd bytes, equal: %d", step, got, got == (ssize_t)n && memcmp(in, out, n) == 0);
}

static int echo_conn(const char *step)
{
	int fd = bt_connect_peer(BT_PORT_ECHO);

	bt_ok(step, fd);
	return fd;
}

static void cork_option(void)
{
	int fd = bt_tcp_socket(0);

	say_cork("fresh socket cork", fd);
	bt_ok("set cork 1", set_int(fd, TCP_CORK, 1));
	say_cork("cork after set 1", fd);
	bt_ok("set cork 5", set_int(fd, TCP_CORK, 5));
	say_cork("cork after set 5", fd);
	bt_ok("set cork 0", set_int(fd, TCP_CORK, 0));
	say_cork("cork after set 0", fd);
	close(fd);
}

static void cork_small(void)
{
	int fd = echo_conn("cork connect");

	if (fd < 0)
		return;
	bt_ok("cork on", set_int(fd, TCP_CORK, 1));
	say_cork("cork reads", fd);
	bt_val("corked write", write(fd, out, 100));
	say_held("corked 100 bytes", fd);
	bt_ok("cork off", set_int(fd, TCP_CORK, 0));
	say_echo("after uncork", fd, 100);
	say_cork("cork reads", fd);
	close(fd);
}

static void msg_more(void)
{
	int fd = echo_conn("more connect");

	if (fd < 0)
		return;
	bt_val("send MSG_MORE", send(fd, out, 100, MSG_MORE));
	say_held("MSG_MORE 100 bytes", fd);
	bt_val("send without MSG_MORE", send(fd, out + 100, 1, 0));
	say_echo("after plain send", fd, 101);
	close(fd);
}

static void cork_big(void)
{
	int fd = echo_conn("big connect");

	if (fd < 0)
		return;
	bt_ok("cork on", set_int(fd, TCP_CORK, 1));
	bt_val("corked write", write(fd, out, BIG));
	/* Full segments leave at once.  Whether the partial tail is still
	 * held once they are acknowledged is not compared: lwIP sends a lone
	 * partial segment when an ACK leaves nothing in flight
	 * (docs/runtime.md, known gaps); it goes to stderr only. */
	ssize_t got = read_for(fd, in, 1000, 150);
	bt_say("got >= 1000 bytes: %d", got >= 1000);
	ssize_t more = read_for(fd, in + got, BIG - got, HOLD_MS);
	fprintf(stderr, "cork big: tail held: %d\n", got >= 0 && more >= 0 && got + more < BIG);
	bt_ok("cork off", set_int(fd, TCP_CORK, 0));
	if (got >= 0 && more >= 0) {
		ssize_t rest = read_for(fd, in + got + more, BIG - got - more, ARRIVE_MS);
		bt_say("all after uncork: %d equal: %d", rest >= 0 && got + more + rest == BIG,
		       memcmp(in, out, BIG) == 0);
	}
	close(fd);
}

static void cork_nodelay(void)
{
	int fd = echo_conn("nodelay connect");

	if (fd < 0)
		return;
	bt_ok("nodelay on", set_int(fd, TCP_NODELAY, 1));
	bt_ok("cork on", set_int(fd, TCP_CORK, 1));
	bt_val("corked write", write(fd, out, 100));
	say_held("cork wins over nodelay", fd);
	bt_ok("cork off", set_int(fd, TCP_CORK, 0));
	say_echo("after uncork", fd, 100);
	close(fd);
}

static void cork_sendfile(void)
{
	char path[] = "/tmp/bt_cork.XXXXXX";
	int file = mkstemp(path);
	int fd;

	if (file < 0 || write(file, out, 100) != 100) {
		bt_say("sendfile: no temporary file");
		return;
	}
	unlink(path);
	fd = echo_conn("sendfile connect");
	if (fd >= 0) {
		off_t off = 0;
		bt_ok("cork on", set_int(fd, TCP_CORK, 1));
		bt_val("corked sendfile", sendfile(fd, file, &off, 100));
		say_held("corked sendfile", fd);
		bt_ok("cork off", set_int(fd, TCP_CORK, 0));
		say_echo("after uncork", fd, 100);
		close(fd);
	}
	close(file);
}

static void cork_shutdown(void)
{
	int fd = echo_conn("shutdown connect");

	if (fd < 0)
		return;
	bt_ok("cork on", set_int(fd, TCP_CORK, 1));
	bt_val("corked write", write(fd, out, 100));
	/* The FIN carries the corked data out. */
	bt_ok("shutdown write", shutdown(fd, SHUT_WR));
	say_echo("after shutdown", fd, 100);
	bt_val("eof", read_for(fd, in, 1, ARRIVE_MS));
	close(fd);
}

int main(int argc, char **argv)
{
	bt_init(argc, argv, 30);
	bt_pattern(out, BIG, 777);
	cork_option();
	cork_small();
	msg_more();
	cork_big();
	cork_nodelay();
	cork_sendfile();
	cork_shutdown();
	return 0;
}
