/* Behaviour: a prefork server: two children accept on the inherited listener and echo, the parent accepts nothing. */
#include "bt_fork.h"

/*
 * The children serve every connection the peer opens: 8 one after the
 * other and 12 more over 4 concurrent callbacks.  Which child serves which
 * connection is up to the stack, so nothing about it is printed; each child
 * counts what it served and the parent prints the sum.  A connection that
 * carries exactly one byte tells the child that serves it to stop; the peer
 * opens two of them one after the other, so each child gets one (the first
 * child to get one exits and no longer accepts).
 *
 * A second listener checks that a listening socket lives as long as any
 * process holds it: the parent closes its copy right after forking one
 * child; the child serves three connections and a stop; once it exited,
 * the port refuses connections.
 */

#define NCHILD 2
#define NSEQ 8
#define NCONC 4
#define PER_CONC 3
#define SEQ_BYTES 5000
#define CONC_BYTES 20000

/* A child's life: accept and echo until a stop connection; exit with the count served. */
static void child_main(int l)
{
	int served = 0;

	fk_child_init();
	for (;;) {
		int c = accept(l, NULL, NULL);
		ssize_t n;

		if (c < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "bt_fork_prefork child %d: accept: %s\n", getpid(), bt_errname(errno));
			_exit(FK_CHILD_FAILED);
		}
		n = fk_echo_until_eof(c);
		close(c);
		if (n < 0) {
			fprintf(stderr, "bt_fork_prefork child %d: echo: %s\n", getpid(), bt_errname((int)-n));
			_exit(FK_CHILD_FAILED + 1);
		}
		if (n == 1)
			_exit(served);
		if (n != SEQ_BYTES && n != CONC_BYTES) {
			fprintf(stderr, "bt_fork_prefork child %d: echoed %zd bytes\n", getpid(), n);
			_exit(FK_CHILD_FAILED + 2);
		}
		served++;
	}
}

int main(int argc, char **argv)
{
	pid_t kids[NCHILD];
	int l, seq, conc[NCONC], stop, total = 0, normal = 0;
	char step[64];

	bt_init(argc, argv, 60);
	l = bt_listen_self(0, 32);
	bt_ok("listen", l);
	for (int i = 0; i < NCHILD; i++) {
		kids[i] = fork();
		if (kids[i] == 0)
			child_main(l);
		snprintf(step, sizeof(step), "fork child %d", i);
		bt_ok(step, kids[i]);
	}

	/* The callbacks open after the fork, so the children do not inherit
	 * the control connections; the parent only reads the reports. */
	seq = bt_callback(bt_local_port(l), NSEQ, SEQ_BYTES, 0);
	bt_ok("sequential callback request", seq);
	for (int i = 0; i < NCONC; i++) {
		conc[i] = bt_callback(bt_local_port(l), PER_CONC, CONC_BYTES, 0);
		snprintf(step, sizeof(step), "concurrent callback request %d", i);
		bt_ok(step, conc[i]);
	}
	fk_report("sequential", seq, NSEQ, SEQ_BYTES, fk_expect_fnv(SEQ_BYTES, ""));
	for (int i = 0; i < NCONC; i++) {
		snprintf(step, sizeof(step), "concurrent %d", i);
		fk_report(step, conc[i], PER_CONC, CONC_BYTES, fk_expect_fnv(CONC_BYTES, ""));
	}

	stop = bt_callback(bt_local_port(l), NCHILD, 1, 0);
	bt_ok("stop callback request", stop);
	fk_report("stop", stop, NCHILD, 1, fk_expect_fnv(1, ""));

	for (int i = 0; i < NCHILD; i++) {
		int st = fk_wait_quiet(kids[i]);

		if (st >= 0 && st < FK_CHILD_FAILED) {
			normal++;
			total += st;
		} else {
			/* Which child failed is nondeterministic, how is not. */
			if (st >= 0)
				bt_say("a child failed: exit %d", st);
			else
				bt_say("a child failed: signal %s", sigabbrev_np(-1 - st));
		}
	}
	bt_say("children exited normally: %d of %d", normal, NCHILD);
	bt_say("connections served by the children: %d of %d", total, NSEQ + NCONC * PER_CONC);
	/* The parent still owns a working listener once the children are gone. */
	seq = bt_callback(bt_local_port(l), 1, SEQ_BYTES, 0);
	bt_ok("last callback request", seq);
	int c = accept(l, NULL, NULL);
	bt_ok("parent accept after the children", c);
	bt_val("parent echo", fk_echo_until_eof(c));
	close(c);
	fk_report("last", seq, 1, SEQ_BYTES, fk_expect_fnv(SEQ_BYTES, ""));
	close(l);

	/* The listener held by the child alone. */
	l = bt_listen_self(0, 8);
	bt_ok("second listen", l);
	uint16_t port = bt_local_port(l);
	pid_t only = fork();
	if (only == 0)
		child_main(l);
	bt_ok("fork the only acceptor", only);
	bt_ok("parent closes its listener", close(l));
	seq = bt_callback(port, 3, SEQ_BYTES, 0);
	bt_ok("callback to the child's listener", seq);
	fk_report("child's listener", seq, 3, SEQ_BYTES, fk_expect_fnv(SEQ_BYTES, ""));
	stop = bt_callback(port, 1, 1, 0);
	bt_ok("stop callback request", stop);
	fk_report("stop the only acceptor", stop, 1, 1, fk_expect_fnv(1, ""));
	fk_wait("the only acceptor", only);
	/* Nobody holds the listener now: the port refuses. */
	seq = bt_callback(port, 1, 10, 0);
	bt_ok("callback after the last close", seq);
	fk_report("after the last close", seq, 1, 10, fk_expect_fnv(10, ""));
	return 0;
}
