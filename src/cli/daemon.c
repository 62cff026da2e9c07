/* `libretto up|down|status`: start, stop and ask librettod, the supervisor. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/kv.h"
#include "libretto/ctl.h"

extern char **environ;

/* How long `libretto up` waits for `librettod --daemon` to say it is ready. */
#define DAEMON_START_TIMEOUT_MS 30000
/* How long `libretto down` waits for the control socket to go away. */
#define DAEMON_STOP_TIMEOUT_MS 5000
#define DAEMON_CALL_TIMEOUT_MS 5000

static void daemon_sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/*
 * Ask librettod for its status.  Returns 1 with the reply in reply, 0 if
 * nothing listens on the control socket, or -errno (reported unless quiet).
 */
static int daemon_status_reply(char *reply, size_t cap, bool quiet)
{
	int fd, n;

	fd = cli_ctl_open(true);
	if (fd == -ENOENT || fd == -ECONNREFUSED)
		return 0;
	if (fd < 0) {
		if (!quiet)
			cli_err("cannot connect to librettod at %s: %s", ctl_path(), strerror(-fd));
		return fd;
	}
	n = cli_ctl_call(fd, "status\n", reply, cap, NULL, NULL, DAEMON_CALL_TIMEOUT_MS);
	close(fd);
	if (n < 0) {
		if (!quiet)
			cli_err("librettod at %s did not answer `status`: %s", ctl_path(),
				strerror(-n));
		return n;
	}
	return 1;
}

int daemon_netns(char *out, size_t cap)
{
	static char reply[CTL_MSG_MAX];
	int err = daemon_status_reply(reply, sizeof(reply), true);

	if (err <= 0)
		return err;
	if (cli_reply_get(reply, "netns", out, cap) < 0 && cap)
		out[0] = '\0';
	return 1;
}

static const struct option up_opts[] = {
	{ "nic", required_argument, NULL, 'n' },
	{ "vfs", required_argument, NULL, 'V' },
	{ "foreground", no_argument, NULL, 'f' },
	{ "help", no_argument, NULL, 'h' },
	{ 0 },
};

const char cmd_up_usage[] =
	"usage: libretto up [--nic PF] [--vfs LIST] [--foreground]\n"
	"\n"
	"Start librettod, the supervisor that hands NIC functions to applications.\n"
	"Without --nic it runs on the testbed (`libretto testbed up` first): in\n"
	"the namespace libretto-host, with pf0 and the testbed's VFs.  Returns once\n"
	"librettod answers on its control socket (/run/librettos/control.sock, or\n"
	"$LIBRETTO_CONTROL).  If librettod already runs, says so and succeeds.\n"
	"\n"
	"  --nic PF        the physical function (a netdev in this namespace)\n"
	"  --vfs LIST      the VF netdevs to hand out, comma separated\n"
	"                  (default on the testbed: all of its VFs)\n"
	"  --foreground    run librettod in the foreground, logging to stderr\n"
	"\n"
	"Needs root.  librettod is found next to libretto (or in\n"
	"$LIBRETTO_LIBEXEC_DIR).\n";

int cmd_up(int argc, char **argv)
{
	static char reply[CTL_MSG_MAX];
	char daemon[PATH_MAX], host_ns[128], vf_list[1024];
	char state_dir[PATH_MAX], log_path[PATH_MAX + 16], pid_path[PATH_MAX + 16], *slash;
	const char *nic = NULL, *vfs = NULL, *netns = NULL;
	const char *dargv[24];
	bool foreground = false;
	int c, n = 0, err, status;
	pid_t pid;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+:n:V:fh", up_opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			nic = optarg;
			break;
		case 'V':
			vfs = optarg;
			break;
		case 'f':
			foreground = true;
			break;
		case 'h':
			fputs(cmd_up_usage, stdout);
			return CLI_EXIT_OK;
		default:
			return cli_bad_option("up", c, argv);
		}
	}
	if (optind < argc)
		return cli_usage_err("up", "unexpected argument '%s'", argv[optind]);
	if ((nic && !*nic) || (vfs && !*vfs))
		return cli_usage_err("up", "--nic and --vfs need a non-empty value");
	err = daemon_status_reply(reply, sizeof(reply), false);
	if (err < 0)
		return CLI_EXIT_FAIL;
	if (err > 0) {
		char dnic[64] = "?", dns[128] = "";

		cli_reply_get(reply, "nic", dnic, sizeof(dnic));
		cli_reply_get(reply, "netns", dns, sizeof(dns));
		printf("librettod is already running (nic %s%s%s, control socket %s): "
		       "nothing to do.\n", dnic, dns[0] ? " in netns " : "", dns, ctl_path());
		return CLI_EXIT_OK;
	}
	if (!cli_need_root("libretto up"))
		return CLI_EXIT_FAIL;

	if (!nic) {
		err = testbed_vf_list(host_ns, sizeof(host_ns), vf_list, sizeof(vf_list));
		if (err == -ENOENT) {
			cli_err("the testbed is not up: run `libretto testbed up` first, "
				"or name a NIC with --nic");
			return CLI_EXIT_FAIL;
		}
		if (err == -ENODEV) {
			cli_err("the testbed in %s has no VF: run `libretto testbed up` to repair it",
				host_ns);
			return CLI_EXIT_FAIL;
		}
		if (err < 0)
			return CLI_EXIT_FAIL;
		nic = "pf0";
		netns = host_ns;
		if (!vfs)
			vfs = vf_list;
	}
	if (cli_find_librettod(daemon, sizeof(daemon)) < 0)
		return CLI_EXIT_FAIL;
	snprintf(state_dir, sizeof(state_dir), "%s", ctl_path());
	slash = strrchr(state_dir, '/');
	if (slash && slash != state_dir)
		*slash = '\0';
	else
		snprintf(state_dir, sizeof(state_dir), "%s", slash ? "/" : ".");

	dargv[n++] = daemon;
	if (!foreground)
		dargv[n++] = "--daemon";
	if (netns) {
		dargv[n++] = "--netns";
		dargv[n++] = netns;
	}
	dargv[n++] = "--nic";
	dargv[n++] = nic;
	if (vfs) {
		dargv[n++] = "--vfs";
		dargv[n++] = vfs;
	}
	dargv[n++] = "--control";
	dargv[n++] = ctl_path();
	/*
	 * librettod keeps its log and pidfile in /run/librettos; a daemon on
	 * another control socket keeps them beside that socket instead, so
	 * that two instances never share them.
	 */
	if (strcmp(state_dir, LIBRETTO_CONTROL_DIR) != 0) {
		snprintf(log_path, sizeof(log_path), "%s/librettod.log", state_dir);
		snprintf(pid_path, sizeof(pid_path), "%s/librettod.pid", state_dir);
		dargv[n++] = "--log";
		dargv[n++] = log_path;
		dargv[n++] = "--pidfile";
		dargv[n++] = pid_path;
	} else {
		snprintf(log_path, sizeof(log_path), "%s/librettod.log", state_dir);
	}
	dargv[n] = NULL;
	if (getenv("LIBRETTO_VERBOSE")) {
		fputs("+", stderr);
		for (int i = 0; dargv[i]; i++)
			fprintf(stderr, " %s", dargv[i]);
		fputc('\n', stderr);
	}

	if (foreground) {
		execv(daemon, (char *const *)dargv);
		cli_err("cannot run %s: %s", daemon, strerror(errno));
		return CLI_EXIT_FAIL;
	}

	err = posix_spawn(&pid, daemon, NULL, NULL, (char *const *)dargv, environ);
	if (err) {
		cli_err("cannot run %s: %s", daemon, strerror(err));
		return CLI_EXIT_FAIL;
	}
	/* librettod --daemon exits once the daemon is ready, or with the reason it is not. */
	for (int waited = 0;; waited += 20) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			break;
		if (r < 0 && errno != EINTR) {
			cli_err("waiting for librettod: %s", strerror(errno));
			return CLI_EXIT_FAIL;
		}
		if (waited >= DAEMON_START_TIMEOUT_MS) {
			cli_err("librettod did not report ready within %d s; stopping it",
				DAEMON_START_TIMEOUT_MS / 1000);
			kill(pid, SIGTERM);
			waitpid(pid, &status, 0);
			return CLI_EXIT_FAIL;
		}
		daemon_sleep_ms(20);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		if (WIFEXITED(status))
			cli_err("librettod failed to start (exit status %d); its reason is above",
				WEXITSTATUS(status));
		else
			cli_err("librettod died while starting (signal %d)", WTERMSIG(status));
		return CLI_EXIT_FAIL;
	}
	err = daemon_status_reply(reply, sizeof(reply), false);
	if (err <= 0) {
		if (err == 0)
			cli_err("librettod said it was ready but nothing answers on %s", ctl_path());
		return CLI_EXIT_FAIL;
	}
	printf("librettod is running: nic %s%s%s, VFs %s, control socket %s.\n", nic,
	       netns ? " in netns " : "", netns ? netns : "", vfs ? vfs : "(librettod's choice)",
	       ctl_path());
	printf("Its log is %s.\n", log_path);
	printf("Next: `libretto run -- CMD` runs a program on the library OS.\n");
	return CLI_EXIT_OK;
}

const char cmd_down_usage[] =
	"usage: libretto down\n"
	"\n"
	"Ask librettod to shut down (it releases every NIC function and lease)\n"
	"and wait, at most 5 s, until its control socket is gone.  Succeeds when\n"
	"librettod is not running.\n";

/* True once nothing listens on the control socket any more. */
static bool daemon_gone(void)
{
	struct stat st;
	int fd;

	if (stat(ctl_path(), &st) < 0 && errno == ENOENT)
		return true;
	fd = cli_ctl_open(true);
	if (fd >= 0) {
		close(fd);
		return false;
	}
	return fd == -ECONNREFUSED || fd == -ENOENT;
}

int cmd_down(int argc, char **argv)
{
	static char reply[CTL_MSG_MAX];
	int fd, n, e;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(cmd_down_usage, stdout);
		return CLI_EXIT_OK;
	}
	if (argc >= 2) {
		if (argv[1][0] == '-')
			return cli_usage_err("down", "unknown option %s", argv[1]);
		return cli_usage_err("down", "unexpected argument '%s'", argv[1]);
	}
	fd = cli_ctl_open(true);
	if (fd == -ENOENT || fd == -ECONNREFUSED) {
		printf("librettod is not running: nothing to stop.\n");
		return CLI_EXIT_OK;
	}
	if (fd < 0) {
		cli_err("cannot connect to librettod at %s: %s", ctl_path(), strerror(-fd));
		return CLI_EXIT_FAIL;
	}
	n = cli_ctl_call(fd, "shutdown\n", reply, sizeof(reply), NULL, NULL,
			 DAEMON_CALL_TIMEOUT_MS);
	close(fd);
	/* A daemon that closes the connection as it exits has done what was asked. */
	if (n < 0 && n != -EPIPE && n != -ECONNRESET) {
		cli_err("librettod did not answer `shutdown`: %s", strerror(-n));
		return CLI_EXIT_FAIL;
	}
	if (n > 0 && (e = cli_reply_errno(reply)) != 0) {
		char msg[512] = "no reason given";

		cli_reply_get(reply, "error", msg, sizeof(msg));
		cli_err("librettod refused to shut down: %s", msg);
		return CLI_EXIT_FAIL;
	}
	for (int waited = 0; !daemon_gone(); waited += 50) {
		if (waited >= DAEMON_STOP_TIMEOUT_MS) {
			cli_err("librettod did not stop within %d s: %s still answers",
				DAEMON_STOP_TIMEOUT_MS / 1000, ctl_path());
			return CLI_EXIT_FAIL;
		}
		daemon_sleep_ms(50);
	}
	printf("librettod stopped.\n");
	return CLI_EXIT_OK;
}

static const struct option status_opts[] = {
	{ "json", no_argument, NULL, 'j' },
	{ "help", no_argument, NULL, 'h' },
	{ 0 },
};

const char cmd_status_usage[] =
	"usage: libretto status [--json]\n"
	"\n"
	"Show librettod's status: its NIC and namespace, the shared IP, the IP\n"
	"pool and which VF each application holds.  Exit status 1 when librettod\n"
	"is not running.\n"
	"\n"
	"  --json    one JSON object instead of text\n";

int cmd_status(int argc, char **argv)
{
	static char reply[CTL_MSG_MAX];
	bool json = false;
	int c, err;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+:jh", status_opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(cmd_status_usage, stdout);
			return CLI_EXIT_OK;
		default:
			return cli_bad_option("status", c, argv);
		}
	}
	if (optind < argc)
		return cli_usage_err("status", "unexpected argument '%s'", argv[optind]);
	err = daemon_status_reply(reply, sizeof(reply), false);
	if (err < 0)
		return CLI_EXIT_FAIL;
	if (err == 0) {
		if (json)
			printf("{\"running\":false,\"control\":\"%s\"}\n", ctl_path());
		else
			cli_err("librettod is not running: run `libretto up` first");
		return CLI_EXIT_FAIL;
	}
	if ((err = cli_reply_errno(reply)) != 0) {
		char msg[512] = "no reason given";

		cli_reply_get(reply, "error", msg, sizeof(msg));
		cli_err("librettod: %s", msg);
		return CLI_EXIT_FAIL;
	}
	if (json) {
		printf("{\"running\":true,\"control\":");
		cli_json_str(stdout, ctl_path());
	} else {
		printf("librettod: running\n  %-10s %s\n", "control", ctl_path());
	}
	/* Print every key the daemon reports, so new keys show without a CLI change. */
	for (char *line = reply, *eol; line && *line; line = eol ? eol + 1 : NULL) {
		char *eq;

		eol = strchr(line, '\n');
		if (eol)
			*eol = '\0';
		eq = strchr(line, '=');
		if (!eq || eq == line)
			continue;
		*eq = '\0';
		if (strcmp(line, "errno") == 0 || strcmp(line, "error") == 0)
			continue;
		if (json) {
			printf(",");
			cli_json_str(stdout, line);
			printf(":");
			cli_json_str(stdout, eq + 1);
		} else {
			printf("  %-10s %s\n", line, eq + 1);
		}
	}
	if (json)
		printf("}\n");
	return CLI_EXIT_OK;
}
