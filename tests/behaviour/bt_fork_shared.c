/* Behaviour: one connection used by parent and child: both write, the connection lives until the last holder closes it. */
#include "bt_fork.h"

/*
 * Five cases, the ordering between the processes fixed by pipes so that
 * the byte stream the peer sees is deterministic:
 *  1. the child writes a line and _exits without closing; the parent then
 *     writes a line and closes: the peer sees both lines, then EOF;
 *  2. the parent writes a line and closes first; the child then writes a
 *     line and closes: the connection outlived the parent's close;
 *  3. the writes alternate parent, child, parent;
 *  4. the child does a round trip on the parent's outgoing connection to
 *     the peer's echo service (reads the inherited socket), and the parent
 *     does one after it;
 *  5. the same, but the child then blocks in read on the connection and is
 *     killed by SIGKILL there (a crashing worker): the parent's connection
 *     goes on.
 */

/* Block until the other process writes a byte on fd (or closes it). */
static int sync_wait(int fd)
{
	char b;
	ssize_t r;

	do
		r = read(fd, &b, 1);
	while (r < 0 && errno == EINTR);
	return r == 1 ? 0 : -1;
}

static void sync_post(int fd)
{
	if (write(fd, "x", 1) != 1)
		fprintf(stderr, "bt_fork_shared: sync write: %s\n", bt_errname(errno));
}

/* The peer connects back and sends nothing; returns the accepted connection, the control one in *ctl. */
static int accept_one(const char *name, int l, int *ctl)
{
	char s[96];
	int c;

	*ctl = bt_callback(bt_local_port(l), 1, 0, 0);
	snprintf(s, sizeof(s), "%s: callback request", name);
	bt_ok(s, *ctl);
	c = accept(l, NULL, NULL);
	snprintf(s, sizeof(s), "%s: accept", name);
	bt_ok(s, c);
	return c;
}

/*
 * After a wrong checksum: if the peer got the n (2 or 3) lines complete
 * but in another order, say which order (lines numbered from 1 as meant).
 */
static void name_order(const char *step, const char *const *lines, int n)
{
	static const int orders[][3] = { { 0, 1, 2 }, { 0, 2, 1 }, { 1, 0, 2 }, { 1, 2, 0 }, { 2, 0, 1 }, { 2, 1, 0 } };

	for (size_t i = 0; i < sizeof(orders) / sizeof(orders[0]); i++) {
		char all[96] = "";

		if (n == 2 && orders[i][2] != 2)
			continue;
		for (int k = 0; k < n; k++)
			strncat(all, lines[orders[i][k]], sizeof(all) - strlen(all) - 1);
		if (fk_expect_fnv(0, all) != fk_last_fnv)
			continue;
		if (n == 2)
			bt_say("%s: the peer got the lines in the order %d %d", step, orders[i][0] + 1,
			       orders[i][1] + 1);
		else
			bt_say("%s: the peer got the lines in the order %d %d %d", step, orders[i][0] + 1,
			       orders[i][1] + 1, orders[i][2] + 1);
	}
}

static int put(int fd, const char *line)
{
	return bt_write_all(fd, line, strlen(line));
}

int main(int argc, char **argv)
{
	int l, c, e, ctl, p2c[2], c2p[2];
	pid_t pid;

	bt_init(argc, argv, 60);
	l = bt_listen_self(0, 16);
	bt_ok("listen", l);

	/* 1: the child first, then the parent. */
	c = accept_one("child then parent", l, &ctl);
	pid = fork();
	if (pid == 0) {
		fk_child_init();
		_exit(put(c, "child line\n") ? FK_CHILD_FAILED : 0);
	}
	bt_ok("child then parent: fork", pid);
	fk_wait("child then parent: child", pid);
	bt_ok("child then parent: parent write", put(c, "parent line\n"));
	bt_ok("child then parent: parent close", close(c));
	if (!fk_report("child then parent", ctl, 1, 23, fk_expect_fnv(0, "child line\nparent line\n"))) {
		static const char *const lines[] = { "child line\n", "parent line\n" };
		name_order("child then parent", lines, 2);
	}

	/* 2: the parent writes and closes first. */
	c = accept_one("parent then child", l, &ctl);
	if (pipe(p2c) < 0)
		return 1;
	pid = fork();
	if (pid == 0) {
		fk_child_init();
		close(p2c[1]);
		if (sync_wait(p2c[0]) < 0)
			_exit(FK_CHILD_FAILED);
		_exit(put(c, "child line\n") || close(c) ? FK_CHILD_FAILED + 1 : 0);
	}
	bt_ok("parent then child: fork", pid);
	close(p2c[0]);
	bt_ok("parent then child: parent write", put(c, "parent line\n"));
	bt_ok("parent then child: parent close", close(c));
	sync_post(p2c[1]);
	close(p2c[1]);
	fk_wait("parent then child: child", pid);
	if (!fk_report("parent then child", ctl, 1, 23, fk_expect_fnv(0, "parent line\nchild line\n"))) {
		static const char *const lines[] = { "parent line\n", "child line\n" };
		name_order("parent then child", lines, 2);
	}

	/* 3: alternating writes. */
	c = accept_one("alternating", l, &ctl);
	if (pipe(p2c) < 0 || pipe(c2p) < 0)
		return 1;
	pid = fork();
	if (pid == 0) {
		fk_child_init();
		close(p2c[1]);
		close(c2p[0]);
		if (sync_wait(p2c[0]) < 0 || put(c, "two: child\n"))
			_exit(FK_CHILD_FAILED);
		sync_post(c2p[1]);
		_exit(close(c) ? FK_CHILD_FAILED + 1 : 0);
	}
	bt_ok("alternating: fork", pid);
	close(p2c[0]);
	close(c2p[1]);
	bt_ok("alternating: parent write one", put(c, "one: parent\n"));
	sync_post(p2c[1]);
	bt_ok("alternating: child wrote", sync_wait(c2p[0]));
	bt_ok("alternating: parent write three", put(c, "three: parent\n"));
	close(p2c[1]);
	close(c2p[0]);
	fk_wait("alternating: child", pid);
	bt_ok("alternating: parent close", close(c));
	if (!fk_report("alternating", ctl, 1, 37, fk_expect_fnv(0, "one: parent\ntwo: child\nthree: parent\n"))) {
		static const char *const lines[] = { "one: parent\n", "two: child\n", "three: parent\n" };
		name_order("alternating", lines, 3);
	}

	/* 4: the child reads and writes an inherited outgoing connection. */
	e = bt_connect_peer(BT_PORT_ECHO);
	bt_ok("outgoing: connect echo", e);
	fk_echo_round("outgoing: parent before the child", e, 0);
	pid = fork();
	if (pid == 0) {
		char back[32];

		fk_child_init();
		if (put(e, "from the child\n"))
			_exit(FK_CHILD_FAILED);
		if (bt_read_full(e, back, 15) != 15 || memcmp(back, "from the child\n", 15))
			_exit(FK_CHILD_FAILED + 1);
		_exit(0);
	}
	bt_ok("outgoing: fork", pid);
	fk_wait("outgoing: child round trip", pid);
	fk_echo_round("outgoing: parent after the child", e, 1);

	/* 5: a child killed while it blocks in read on the shared connection. */
	if (pipe(c2p) < 0)
		return 1;
	pid = fork();
	if (pid == 0) {
		char back[32];

		fk_child_init();
		close(c2p[0]);
		if (put(e, "from the child\n"))
			_exit(FK_CHILD_FAILED);
		if (bt_read_full(e, back, 15) != 15 || memcmp(back, "from the child\n", 15))
			_exit(FK_CHILD_FAILED + 1);
		sync_post(c2p[1]);
		/* Nothing more comes: this read lasts until the SIGKILL. */
		if (read(e, back, sizeof(back)) < 0)
			_exit(FK_CHILD_FAILED + 2);
		_exit(FK_CHILD_FAILED + 3);
	}
	bt_ok("killed child: fork", pid);
	close(c2p[1]);
	bt_ok("killed child: its round trip", sync_wait(c2p[0]));
	close(c2p[0]);
	usleep(100000);
	bt_ok("killed child: SIGKILL", kill(pid, SIGKILL));
	fk_wait("killed child", pid);
	fk_echo_round("outgoing: parent after the killed child", e, 2);
	{
		char buf[16];
		bt_ok("outgoing: shutdown", shutdown(e, SHUT_WR));
		bt_val("outgoing: read at the end", bt_read_full(e, buf, sizeof(buf)));
	}
	close(e);
	close(l);
	return 0;
}
