/* Behaviour: a BGSAVE-like child: it closes (or just drops by _exit) every inherited socket; the parent's sockets are unaffected. */
#include "bt_fork.h"

/*
 * The parent holds its listener, an outgoing connection to the peer's echo
 * service, an accepted connection half read and half echoed, and the
 * callback's control connection.  A forked child closes all of them and
 * sleeps 300 ms (the snapshot) while the parent keeps echoing on both
 * connections; after the child exited, the connections still echo, the
 * accepted one ends with a clean EOF at the peer, and the listener accepts
 * a new connection.  The second round does the same with a child that
 * leaves by _exit() without closing anything.
 */

#define BYTES 30000
#define BEFORE 10000

/* Accept one fresh connection from the peer on l, echo it, check the peer's view. */
static void fresh_accept(const char *step, int l)
{
	char s[160];
	int ctl = bt_callback(bt_local_port(l), 1, 1000, 0);
	int c;

	snprintf(s, sizeof(s), "%s: callback request", step);
	bt_ok(s, ctl);
	c = accept(l, NULL, NULL);
	snprintf(s, sizeof(s), "%s: accept", step);
	if (bt_ok(s, c) >= 0) {
		snprintf(s, sizeof(s), "%s: echo", step);
		bt_val(s, fk_echo_until_eof(c));
		close(c);
	}
	fk_report(step, ctl, 1, 1000, fk_expect_fnv(1000, ""));
}

static void one_round(const char *name, int l, int e, int closes)
{
	char s[96];
	int ctl, a;
	pid_t pid;

	ctl = bt_callback(bt_local_port(l), 1, BYTES, 0);
	snprintf(s, sizeof(s), "%s: callback request", name);
	bt_ok(s, ctl);
	a = accept(l, NULL, NULL);
	snprintf(s, sizeof(s), "%s: accept", name);
	bt_ok(s, a);
	snprintf(s, sizeof(s), "%s: echo before fork", name);
	bt_val(s, fk_echo_n(a, BEFORE));

	pid = fork();
	if (pid == 0) {
		fk_child_init();
		if (closes) {
			close(l);
			close(e);
			close(a);
			close(ctl);
			usleep(300000);
		} else {
			usleep(100000);
		}
		_exit(0);
	}
	snprintf(s, sizeof(s), "%s: fork", name);
	bt_ok(s, pid);

	/* While the child lives (300 ms, or 100 ms), the parent keeps using
	 * both connections. */
	for (int i = 0; i < 3; i++) {
		usleep(closes ? 50000 : 20000);
		snprintf(s, sizeof(s), "%s: outgoing during the child", name);
		fk_echo_round(s, e, i);
	}
	snprintf(s, sizeof(s), "%s: accepted echo during the child", name);
	bt_val(s, fk_echo_n(a, (BYTES - BEFORE) / 2));

	snprintf(s, sizeof(s), "%s: child", name);
	fk_wait(s, pid);

	snprintf(s, sizeof(s), "%s: outgoing after the child", name);
	fk_echo_round(s, e, 3);
	snprintf(s, sizeof(s), "%s: accepted echo after the child", name);
	bt_val(s, fk_echo_until_eof(a));
	snprintf(s, sizeof(s), "%s: close accepted", name);
	bt_ok(s, close(a));
	fk_report(name, ctl, 1, BYTES, fk_expect_fnv(BYTES, ""));
	snprintf(s, sizeof(s), "%s: new connection", name);
	fresh_accept(s, l);
}

int main(int argc, char **argv)
{
	int l, e;
	char buf[16];

	bt_init(argc, argv, 60);
	l = bt_listen_self(0, 16);
	bt_ok("listen", l);
	e = bt_connect_peer(BT_PORT_ECHO);
	bt_ok("connect echo", e);
	fk_echo_round("outgoing before any fork", e, 0);

	one_round("closing child", l, e, 1);
	one_round("exiting child", l, e, 0);

	/* The outgoing connection ends cleanly: our FIN, the peer's FIN. */
	bt_ok("shutdown outgoing", shutdown(e, SHUT_WR));
	bt_val("outgoing read at the end", bt_read_full(e, buf, sizeof(buf)));
	close(e);
	close(l);
	return 0;
}
