/* Behaviour: fork per connection: the parent accepts, forks, closes its copy at once; the child echoes and closes. */
#include "bt_fork.h"

/*
 * The child waits 100 ms after the echo and then sends a trailer line
 * before it closes.  The peer must see the echo, the trailer and only then
 * EOF: a FIN (or RST) sent when the parent closed its copy would end the
 * peer's read early or make it fail.  Seven connections: three one after
 * the other, and two concurrent callbacks of two each.
 */

#define NCONN 7
#define BYTES 3000
#define TRAILER "bye from the child\n"

static void child_main(int l, int c)
{
	ssize_t n;

	fk_child_init();
	close(l);
	n = fk_echo_until_eof(c);
	usleep(100000);
	if (n == BYTES && bt_write_all(c, TRAILER, strlen(TRAILER)) < 0)
		n = -1;
	close(c);
	_exit(n == BYTES ? 0 : FK_CHILD_FAILED);
}

int main(int argc, char **argv)
{
	pid_t kids[NCONN];
	int l, ctl[3];
	char step[64];
	uint64_t want = fk_expect_fnv(BYTES, TRAILER);

	bt_init(argc, argv, 60);
	l = bt_listen_self(0, 16);
	bt_ok("listen", l);
	for (int i = 0; i < NCONN; i++)
		kids[i] = -1;
	ctl[0] = bt_callback(bt_local_port(l), 3, BYTES, 0);
	bt_ok("sequential callback request", ctl[0]);
	ctl[1] = bt_callback(bt_local_port(l), 2, BYTES, 0);
	bt_ok("concurrent callback request 1", ctl[1]);
	ctl[2] = bt_callback(bt_local_port(l), 2, BYTES, 0);
	bt_ok("concurrent callback request 2", ctl[2]);

	for (int i = 0; i < NCONN; i++) {
		int c = accept(l, NULL, NULL);

		snprintf(step, sizeof(step), "accept %d", i);
		if (bt_ok(step, c) < 0)
			break;
		kids[i] = fork();
		if (kids[i] == 0)
			child_main(l, c);
		snprintf(step, sizeof(step), "fork %d", i);
		bt_ok(step, kids[i]);
		snprintf(step, sizeof(step), "parent close %d", i);
		bt_ok(step, close(c));
	}

	fk_report("sequential", ctl[0], 3, BYTES + strlen(TRAILER), want);
	fk_report("concurrent 1", ctl[1], 2, BYTES + strlen(TRAILER), want);
	fk_report("concurrent 2", ctl[2], 2, BYTES + strlen(TRAILER), want);
	for (int i = 0; i < NCONN; i++) {
		snprintf(step, sizeof(step), "child %d", i);
		fk_wait(step, kids[i]);
	}

	/* The parent's listener still works after all the children exited. */
	ctl[0] = bt_callback(bt_local_port(l), 1, 1000, 0);
	bt_ok("last callback request", ctl[0]);
	int c = accept(l, NULL, NULL);
	bt_ok("parent accept", c);
	bt_val("parent echo", fk_echo_until_eof(c));
	close(c);
	fk_report("last", ctl[0], 1, 1000, fk_expect_fnv(1000, ""));
	close(l);
	return 0;
}
