/* Behaviour: blocking and non-blocking accept of connections the peer opens back to us. */
#include "bt.h"

#include <fcntl.h>

/* Serve one accepted connection: read until EOF, answer with the count. */
static void serve(const char *step, int c)
{
	uint64_t h = BT_FNV_INIT;
	ssize_t n = bt_drain(c, &h);
	char reply[64];

	bt_val(step, n);
	snprintf(reply, sizeof(reply), "got %zd fnv %016llx", n, (unsigned long long)h);
	bt_ok("reply", bt_write_all(c, reply, strlen(reply)));
	close(c);
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa;
	socklen_t len;
	int l, c, ctl, fl;

	bt_init(argc, argv, 30);
	l = bt_listen_self(0, 16);
	bt_ok("listen", l);

	/* Blocking accept: the peer connects 200 ms after our request, so
	 * accept() really sleeps first. */
	ctl = bt_callback(bt_local_port(l), 1, 1000, 200);
	bt_ok("callback request", ctl);
	len = sizeof(sa);
	c = accept(l, (struct sockaddr *)&sa, &len);
	bt_ok("blocking accept", c);
	bt_say("accepted from: %s port %s", bt_addr_class(&sa), sa.sin_port ? "nonzero" : "zero");
	fl = fcntl(c, F_GETFL);
	bt_say("accepted O_NONBLOCK: %d", !!(fl & O_NONBLOCK));
	serve("blocking read", c);
	bt_callback_report("blocking", ctl);

	/* Non-blocking accept: EAGAIN before the peer connects, then poll. */
	fl = fcntl(l, F_GETFL);
	bt_ok("set O_NONBLOCK", fcntl(l, F_SETFL, fl | O_NONBLOCK));
	bt_ok("nb accept empty", accept(l, NULL, NULL));
	bt_say("poll idle listener: %s", bt_poll_events((short)bt_wait(l, POLLIN | POLLOUT, 0)));
	ctl = bt_callback(bt_local_port(l), 1, 70000, 0);
	bt_ok("callback request", ctl);
	bt_say("poll listener: %s", bt_poll_events((short)bt_wait(l, POLLIN, 5000)));
	c = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	bt_ok("nb accept4", c);
	bt_say("accept4 O_NONBLOCK: %d FD_CLOEXEC: %d", !!(fcntl(c, F_GETFL) & O_NONBLOCK),
	       !!(fcntl(c, F_GETFD) & FD_CLOEXEC));
	/* The accepted socket is non-blocking: switch it back for serve(). */
	fcntl(c, F_SETFL, fcntl(c, F_GETFL) & ~O_NONBLOCK);
	serve("nb read", c);
	bt_callback_report("nb", ctl);
	bt_ok("nb accept drained", accept(l, NULL, NULL));

	/* Several queued connections are accepted in order of arrival. */
	fcntl(l, F_SETFL, fl);
	ctl = bt_callback(bt_local_port(l), 3, 10, 0);
	for (int i = 0; i < 3; i++) {
		c = accept(l, NULL, NULL);
		bt_ok("queued accept", c);
		if (c >= 0)
			serve("queued read", c);
	}
	bt_callback_report("queued", ctl);

	/* Accept on a socket that is not listening. */
	c = bt_tcp_socket(0);
	bt_ok("accept unlistened", accept(c, NULL, NULL));
	close(c);
	close(l);
	return 0;
}
