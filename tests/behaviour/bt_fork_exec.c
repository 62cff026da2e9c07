/* Behaviour: children that exec (fork+exec, posix_spawn, vfork+exec) with the parent's sockets inherited; the parent's sockets are unaffected. */
#include "bt_fork.h"

#include <spawn.h>

/*
 * The sockets are not close-on-exec, so each exec'd program starts with
 * them open: /bin/true ends at once, /bin/sleep holds them for 300 ms
 * while the parent keeps using its connections, and one posix_spawn closes
 * two of them through its file actions before the exec.  After each child,
 * the parent's outgoing connection echoes, its accepted connection echoes
 * on, and at the end the listener accepts a new connection.
 */

extern char **environ;

#define BYTES 30000
#define STEP 4000

static int l, e, a;
static int round_no = 1;

/* After each child: one round trip on both of the parent's connections. */
static void check_connections(const char *after)
{
	char s[96];

	snprintf(s, sizeof(s), "outgoing after %s", after);
	fk_echo_round(s, e, round_no++);
	snprintf(s, sizeof(s), "accepted echo after %s", after);
	bt_val(s, fk_echo_n(a, STEP));
}

static pid_t spawn(const char *step, const posix_spawn_file_actions_t *fa, char *const argv[])
{
	pid_t pid = -1;
	int r = posix_spawn(&pid, argv[0], fa, NULL, argv, environ);

	if (r) {
		bt_say("%s: %s", step, bt_errname(r));
		return -1;
	}
	bt_say("%s: ok", step);
	return pid;
}

int main(int argc, char **argv)
{
	char *true_argv[] = { "/bin/true", NULL };
	char *sleep_argv[] = { "/bin/sleep", "0.3", NULL };
	posix_spawn_file_actions_t fa;
	int ctl, c;
	pid_t pid;

	bt_init(argc, argv, 60);
	l = bt_listen_self(0, 16);
	bt_ok("listen", l);
	e = bt_connect_peer(BT_PORT_ECHO);
	bt_ok("connect echo", e);
	ctl = bt_callback(bt_local_port(l), 1, BYTES, 0);
	bt_ok("callback request", ctl);
	a = accept(l, NULL, NULL);
	bt_ok("accept", a);
	bt_val("accepted echo before any child", fk_echo_n(a, STEP));
	fk_echo_round("outgoing before any child", e, 0);

	/* fork, then exec in the child. */
	pid = fork();
	if (pid == 0) {
		execv(true_argv[0], true_argv);
		_exit(127);
	}
	bt_ok("fork for exec", pid);
	fk_wait("fork+exec /bin/true", pid);
	check_connections("fork+exec");

	/* posix_spawn, which may use clone(CLONE_VM|CLONE_VFORK) inside. */
	pid = spawn("posix_spawn /bin/true", NULL, true_argv);
	fk_wait("posix_spawn /bin/true", pid);
	check_connections("posix_spawn");

	/* vfork: the child shares our memory until it execs. */
	pid = vfork();
	if (pid == 0) {
		execv(true_argv[0], true_argv);
		_exit(127);
	}
	bt_ok("vfork", pid);
	fk_wait("vfork+exec /bin/true", pid);
	check_connections("vfork+exec");

	/* A spawned program that lives while the parent uses its sockets. */
	pid = spawn("posix_spawn /bin/sleep", NULL, sleep_argv);
	fk_echo_round("outgoing while /bin/sleep runs", e, round_no++);
	bt_val("accepted echo while /bin/sleep runs", fk_echo_n(a, STEP));
	fk_wait("posix_spawn /bin/sleep", pid);
	check_connections("/bin/sleep");

	/* posix_spawn that closes the listener and the accepted connection
	 * in the child before the exec. */
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addclose(&fa, l);
	posix_spawn_file_actions_addclose(&fa, a);
	pid = spawn("posix_spawn with close actions", &fa, sleep_argv);
	posix_spawn_file_actions_destroy(&fa);
	fk_echo_round("outgoing while the closing spawn runs", e, round_no++);
	fk_wait("posix_spawn with close actions", pid);
	check_connections("the closing spawn");

	/* The accepted connection: the rest, then a clean end at the peer. */
	bt_val("accepted echo of the rest", fk_echo_until_eof(a));
	bt_ok("close accepted", close(a));
	fk_report("accepted", ctl, 1, BYTES, fk_expect_fnv(BYTES, ""));

	/* The listener still accepts. */
	ctl = bt_callback(bt_local_port(l), 1, 1000, 0);
	bt_ok("last callback request", ctl);
	c = accept(l, NULL, NULL);
	bt_ok("last accept", c);
	bt_val("last echo", fk_echo_until_eof(c));
	close(c);
	fk_report("last", ctl, 1, 1000, fk_expect_fnv(1000, ""));

	{
		char buf[16];
		bt_ok("shutdown outgoing", shutdown(e, SHUT_WR));
		bt_val("outgoing read at the end", bt_read_full(e, buf, sizeof(buf)));
	}
	close(e);
	close(l);
	return 0;
}
