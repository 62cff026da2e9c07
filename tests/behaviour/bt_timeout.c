/* Behaviour: SO_RCVTIMEO and SO_SNDTIMEO, on TCP and UDP; timed waits of poll. */
#include "bt.h"

#include <time.h>

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Elapsed times are printed only as "within bounds", never as numbers. */
static void bounds(const char *step, long t0, long lo, long hi)
{
	long d = now_ms() - t0;

	bt_say("%s waited within [%ld, %ld] ms: %d", step, lo, hi, d >= lo && d <= hi);
	if (d < lo || d > hi)
		fprintf(stderr, "%s: waited %ld ms\n", step, d);
}

int main(int argc, char **argv)
{
	struct timeval tv = { .tv_sec = 0, .tv_usec = 300000 }, got;
	socklen_t len = sizeof(got);
	char buf[4096];
	long t0;
	int fd, u;

	bt_init(argc, argv, 30);

	fd = bt_connect_peer(BT_PORT_ECHO);
	bt_ok("connect", fd);
	bt_ok("SO_RCVTIMEO 300ms", setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)));
	bt_ok("get SO_RCVTIMEO", getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &got, &len));
	bt_say("SO_RCVTIMEO readback: %ld.%06ld", (long)got.tv_sec, (long)got.tv_usec);
	t0 = now_ms();
	bt_val("recv idle", recv(fd, buf, sizeof(buf), 0));
	bounds("recv idle", t0, 250, 2000);
	t0 = now_ms();
	bt_val("read idle", read(fd, buf, sizeof(buf)));
	bounds("read idle", t0, 250, 2000);

	/* Data already there is returned at once. */
	bt_val("send", send(fd, "abc", 3, 0));
	bt_wait(fd, POLLIN, 5000);
	bt_val("recv with data", recv(fd, buf, sizeof(buf), 0));
	/* MSG_WAITALL cannot be satisfied: the timeout returns what there is. */
	bt_val("send", send(fd, "abc", 3, 0));
	t0 = now_ms();
	bt_val("recv MSG_WAITALL short", recv(fd, buf, 10, MSG_WAITALL));
	bounds("recv MSG_WAITALL short", t0, 250, 2000);

	close(fd);

	/* SO_SNDTIMEO: the hold service never reads, so blocking sends stall
	 * once both sides' buffers are full and then time out. */
	fd = bt_connect_peer(BT_PORT_HOLD);
	bt_ok("hold connect", fd);
	bt_ok("SO_SNDTIMEO 300ms", setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)));
	{
		static char big[1 << 14];
		ssize_t r = 0;
		int rounds = 0;
		t0 = now_ms();
		while (rounds++ < 2000 && now_ms() - t0 < 10000 &&
		       (r = send(fd, big, sizeof(big), MSG_NOSIGNAL)) > 0)
			;
		bt_say("blocking sends end with: %s", r < 0 ? bt_errname(errno) : "no timeout");
		fprintf(stderr, "sndtimeo: %d sends, %ld ms\n", rounds, now_ms() - t0);
		t0 = now_ms();
		r = send(fd, big, sizeof(big), MSG_NOSIGNAL);
		bt_say("next blocking send: %s", r < 0 ? bt_errname(errno) : "progress");
		bounds("next blocking send", t0, 250, 2000);
		bt_ok("MSG_DONTWAIT send", send(fd, big, sizeof(big), MSG_NOSIGNAL | MSG_DONTWAIT));
	}
	close(fd);

	/* A timeout of zero means wait for ever; we only check it is accepted. */
	fd = bt_tcp_socket(0);
	tv.tv_usec = 0;
	bt_ok("SO_RCVTIMEO 0", setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)));
	tv.tv_usec = 2000000;
	bt_ok("SO_RCVTIMEO bad usec", setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)));
	bt_ok("SO_RCVTIMEO short optlen", setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, 4));
	close(fd);

	/* UDP: recvfrom with a timeout and nothing sent. */
	u = socket(AF_INET, SOCK_DGRAM, 0);
	tv.tv_sec = 0;
	tv.tv_usec = 200000;
	bt_ok("udp SO_RCVTIMEO", setsockopt(u, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)));
	t0 = now_ms();
	bt_val("udp recvfrom idle", recvfrom(u, buf, sizeof(buf), 0, NULL, NULL));
	bounds("udp recvfrom idle", t0, 150, 2000);
	close(u);

	/* poll with a timeout and nothing ready. */
	fd = bt_connect_peer(BT_PORT_ECHO);
	t0 = now_ms();
	bt_val("poll idle 200ms", bt_wait(fd, POLLIN, 200));
	bounds("poll idle", t0, 150, 2000);
	close(fd);
	return 0;
}
