/* `libretto netd restart|upgrade` and `libretto fsd restart`: replace a server without losing a frame or a request. */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "libretto/ctl.h"

const char cmd_netd_usage[] =
	"usage: libretto netd restart\n"
	"       libretto netd upgrade [PATH]\n"
	"\n"
	"Replace libretto-netd, the network server, while the applications behind\n"
	"it keep every connection.  librettod starts the new netd beside the old\n"
	"one; the old one finishes its round, publishes every ring index and stops\n"
	"touching the rings; the new one takes over the same AF_XDP socket, UMEM,\n"
	"port table and application rings, exactly where the old one stopped; then\n"
	"the old one exits.  No frame is lost: they wait on the rings meanwhile.\n"
	"\n"
	"  restart        the same binary again\n"
	"  upgrade PATH   the binary at PATH (default: the one librettod runs),\n"
	"                 which speaks the same protocol (include/libretto/netd.h)\n"
	"\n"
	"The new process is started before the old one stops: if it does not\n"
	"start, the running netd goes on untouched; if it fails after the\n"
	"handover, the previous binary is started again.  Either way the command\n"
	"fails with the reason.  `libretto status` and `libretto stats` show the\n"
	"upgrades, the last event and its outage (netd_last_gap_ms).  Needs root.\n";

/* Send req (a `netd` or `fsd` command) to librettod and print its message= or the error. */
static int server_call(const char *server, const char *op, const char *req)
{
	char reply[CTL_MSG_MAX], msg[512];
	int fd, n, e;

	fd = cli_ctl_open(false);
	if (fd < 0)
		return CLI_EXIT_FAIL;
	n = cli_ctl_call(fd, req, reply, sizeof(reply), NULL, NULL, 10000);
	close(fd);
	if (n < 0) {
		cli_err("librettod did not answer `%s %s`: %s", server, op, strerror(-n));
		return CLI_EXIT_FAIL;
	}
	if ((e = cli_reply_errno(reply)) != 0) {
		snprintf(msg, sizeof(msg), "malformed reply (no errno=)");
		cli_reply_get(reply, "error", msg, sizeof(msg));
		if (e == EINVAL && strstr(msg, "unknown command"))
			cli_err("this librettod does not know `%s` (an older version): %s", server, msg);
		else
			cli_err("%s %s: %s", server, op, msg);
		return CLI_EXIT_FAIL;
	}
	msg[0] = '\0';
	cli_reply_get(reply, "message", msg, sizeof(msg));
	printf("%s\n", msg[0] ? msg : "done");
	return CLI_EXIT_OK;
}

int cmd_netd(int argc, char **argv)
{
	char req[PATH_MAX + 64], path[PATH_MAX];
	const char *op;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(cmd_netd_usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
	}
	op = argv[1];
	if (!strcmp(op, "restart")) {
		if (argc != 2)
			return cli_usage_err("netd", "restart takes no argument");
		snprintf(req, sizeof(req), "netd\nop=restart\n");
	} else if (!strcmp(op, "upgrade")) {
		if (argc > 3)
			return cli_usage_err("netd", "upgrade takes at most one PATH");
		if (argc == 3) {
			/* librettod runs elsewhere: it needs an absolute path. */
			if (realpath(argv[2], path) == NULL) {
				cli_err("netd upgrade: %s: %s", argv[2], strerror(errno));
				return CLI_EXIT_FAIL;
			}
			if (access(path, X_OK) < 0) {
				cli_err("netd upgrade: %s is not executable: %s", path, strerror(errno));
				return CLI_EXIT_FAIL;
			}
			if (strpbrk(path, " \n")) {
				cli_err("netd upgrade: the path may not contain spaces or newlines");
				return CLI_EXIT_FAIL;
			}
			snprintf(req, sizeof(req), "netd\nop=upgrade\npath=%s\n", path);
		} else {
			snprintf(req, sizeof(req), "netd\nop=upgrade\n");
		}
	} else {
		return cli_usage_err("netd", "unknown subcommand '%s' (restart, upgrade)", op);
	}
	return server_call("netd", op, req);
}

const char cmd_fsd_usage[] =
	"usage: libretto fsd restart\n"
	"\n"
	"Replace libretto-fsd, the storage server, while the applications on\n"
	"indirect volumes keep running.  librettod asks fsd to stop (it commits\n"
	"and unmounts every volume cleanly), starts a new fsd, and hands it every\n"
	"volume and session again; requests in flight wait in their slots and the\n"
	"new fsd answers them.  `libretto status` shows fsd_restarts.  Needs root.\n";

int cmd_fsd(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(cmd_fsd_usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
	}
	if (strcmp(argv[1], "restart"))
		return cli_usage_err("fsd", "unknown subcommand '%s' (restart)", argv[1]);
	if (argc != 2)
		return cli_usage_err("fsd", "restart takes no argument");
	return server_call("fsd", "restart", "fsd\nop=restart\n");
}
