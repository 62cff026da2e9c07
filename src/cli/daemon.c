/* `libretto up|down|status`: start, stop and ask librettod, the supervisor. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/kv.h"
#include "libretto/ctl.h"

extern char **environ;

/* How long `libretto up` waits for `librettod --daemon` to say it is ready. */
#define DAEMON_START_TIMEOUT_MS 30000
/* How long `libretto down` waits for librettod's process to exit. */
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

/*
 * Supervisor restart (tag l): what the state record of a librettod that
 * died says (docs/librettod.md, "Restart"): how many applications it
 * lists, and its netd's pid in *netd.  -1 when there is no record (or it
 * cannot be read: it is root's, mode 0600).
 */
static int daemon_record(pid_t *netd)
{
	char path[PATH_MAX], line[1024];
	const char *c = ctl_path(), *slash = strrchr(c, '/');
	int apps = 0;
	FILE *f;

	*netd = 0;
	snprintf(path, sizeof(path), "%.*s/state", slash ? (int)(slash - c) : 1, slash ? c : ".");
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		const char *v = strstr(line, "netd_pid=");

		if (!strncmp(line, "app=", 4))
			apps++;
		else if (v && (v == line || v[-1] == ' '))
			*netd = (pid_t)atoi(v + 9);
	}
	fclose(f);
	return apps;
}

int cmd_up(int argc, char **argv)
{
	static char reply[CTL_MSG_MAX];
	char daemon[PATH_MAX], host_ns[128], vf_list[1024];
	char state_dir[PATH_MAX], log_path[PATH_MAX + 16], pid_path[PATH_MAX + 16], *slash;
	const char *nic = NULL, *vfs = NULL, *netns = NULL;
	pid_t rec_netd = 0;
	int rec_apps = -1;
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
	rec_apps = daemon_record(&rec_netd);

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
	if (rec_apps >= 0)
		printf("It found the state record of a librettod that died (netd pid %d, %d "
		       "application%s): it takes back what still runs (`libretto ps`; the log's "
		       "recover: lines say what).\n", (int)rec_netd, rec_apps,
		       rec_apps == 1 ? "" : "s");
	printf("Next: `libretto run -- CMD` runs a program on the library OS.\n");
	return CLI_EXIT_OK;
}

const char cmd_down_usage[] =
	"usage: libretto down\n"
	"\n"
	"Ask librettod to shut down (it releases every NIC function and lease)\n"
	"and wait, at most 5 s, until its process has exited, so that what runs\n"
	"next (e.g. `libretto testbed down`) no longer finds it.  Exit status 1\n"
	"if it is still running after 5 s.  Succeeds when librettod is not running.\n";

/*
 * 1 if process pid has exited (a zombie counts as exited: it holds no
 * namespace, device or socket any more), 0 if it still runs, -errno.
 */
static int daemon_pid_exited(pid_t pid)
{
	char path[64], buf[512], *rp;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT || errno == ESRCH ? 1 : -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 1;
	buf[n] = '\0';
	/* "pid (comm) S ...": comm may hold anything, so look after its last ')'. */
	rp = strrchr(buf, ')');
	return rp && (rp[2] == 'Z' || rp[2] == 'X') ? 1 : 0;
}

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
	char pidtext[32] = "";
	pid_t pid = 0;
	int fd, n, e, pidfd = -1;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(cmd_down_usage, stdout);
		return CLI_EXIT_OK;
	}
	if (argc >= 2) {
		if (argv[1][0] == '-')
			return cli_usage_err("down", "unknown option %s", argv[1]);
		return cli_usage_err("down", "unexpected argument '%s'", argv[1]);
	}
	/*
	 * Learn librettod's pid first and hold a pidfd on it, so that the wait
	 * below is for that very process (its pid cannot be reused meanwhile).
	 */
	e = daemon_status_reply(reply, sizeof(reply), false);
	if (e == 0) {
		pid_t rec_netd;
		int rec_apps = daemon_record(&rec_netd);

		printf("librettod is not running: nothing to stop.\n");
		/* tag l: a librettod that died leaves netd serving on purpose. */
		if (rec_apps >= 0 && rec_netd > 0 && kill(rec_netd, 0) == 0)
			printf("Note: a librettod that died left netd (pid %d) and %d application%s "
			       "running; `libretto up` recovers them, and a `libretto down` after it "
			       "stops everything.\n", (int)rec_netd, rec_apps, rec_apps == 1 ? "" : "s");
		return CLI_EXIT_OK;
	}
	if (e < 0)
		return CLI_EXIT_FAIL;
	if (cli_reply_get(reply, "pid", pidtext, sizeof(pidtext)) == 0 && atoi(pidtext) > 0) {
		pid = (pid_t)atoi(pidtext);
		pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
		if (pidfd < 0 && errno != ESRCH)
			pidfd = -1;   /* no pidfd: poll /proc instead */
	}
	fd = cli_ctl_open(true);
	if (fd == -ENOENT || fd == -ECONNREFUSED) {
		if (pidfd >= 0)
			close(pidfd);
		printf("librettod is not running: nothing to stop.\n");
		return CLI_EXIT_OK;
	}
	if (fd < 0) {
		cli_err("cannot connect to librettod at %s: %s", ctl_path(), strerror(-fd));
		if (pidfd >= 0)
			close(pidfd);
		return CLI_EXIT_FAIL;
	}
	n = cli_ctl_call(fd, "shutdown\n", reply, sizeof(reply), NULL, NULL,
			 DAEMON_CALL_TIMEOUT_MS);
	close(fd);
	/* A daemon that closes the connection as it exits has done what was asked. */
	if (n < 0 && n != -EPIPE && n != -ECONNRESET) {
		cli_err("librettod did not answer `shutdown`: %s", strerror(-n));
		if (pidfd >= 0)
			close(pidfd);
		return CLI_EXIT_FAIL;
	}
	if (n > 0 && (e = cli_reply_errno(reply)) != 0) {
		char msg[512] = "no reason given";

		cli_reply_get(reply, "error", msg, sizeof(msg));
		cli_err("librettod refused to shut down: %s", msg);
		if (pidfd >= 0)
			close(pidfd);
		return CLI_EXIT_FAIL;
	}
	/*
	 * Done when the process has exited (a pidfd turns readable then), not
	 * merely when the socket is gone: librettod removes its socket before
	 * it finishes releasing and exiting.  A daemon that reported no pid is
	 * waited for by its socket alone.
	 */
	for (int waited = 0;; waited += 50) {
		bool gone;

		if (pidfd >= 0) {
			struct pollfd p = { .fd = pidfd, .events = POLLIN };

			gone = poll(&p, 1, 0) == 1;
		} else if (pid > 0) {
			gone = daemon_pid_exited(pid) != 0;
		} else {
			gone = daemon_gone();
		}
		if (gone)
			break;
		if (waited >= DAEMON_STOP_TIMEOUT_MS) {
			if (pid > 0)
				cli_err("librettod (pid %d) accepted `shutdown` but has not exited "
					"within %d s; see its log, or `kill -9 %d` if it hangs",
					(int)pid, DAEMON_STOP_TIMEOUT_MS / 1000, (int)pid);
			else
				cli_err("librettod did not stop within %d s: %s still answers",
					DAEMON_STOP_TIMEOUT_MS / 1000, ctl_path());
			if (pidfd >= 0)
				close(pidfd);
			return CLI_EXIT_FAIL;
		}
		daemon_sleep_ms(50);
	}
	if (pidfd >= 0)
		close(pidfd);
	if (pid > 0)
		printf("librettod (pid %d) stopped.\n", (int)pid);
	else
		printf("librettod stopped.\n");
	return CLI_EXIT_OK;
}

const char cmd_status_usage[] =
	"usage: libretto status [--json]\n"
	"\n"
	"Show librettod's status: its pid and namespace, the control socket, the\n"
	"NIC, the IP pool, the shared IP, which application holds each VF, and\n"
	"the network server libretto-netd: running, restarting or stopped, its\n"
	"pid, how often librettod restarted it, its last exit, why it is down.\n"
	"Exit status 1 when librettod is not running.\n"
	"\n"
	"  --json    one JSON object for scripts: every key of librettod's reply\n"
	"            (numbers as numbers), \"vfs\": [{\"name\":..,\"app\": id or null}],\n"
	"            and the network server's \"netd\" (running|restarting|stopped),\n"
	"            \"netd_pid\" (0 when not running), \"netd_restarts\",\n"
	"            \"netd_last_exit\", \"netd_error\" (why it is not running);\n"
	"            {\"running\":false,...} when librettod is not running\n";

/* Keys of the status reply that the summary lays out itself. */
static const char *const status_known[] = {
	"nic", "shared_ip", "pool", "prefix", "gateway", "vfs", "netns", "apps", "pid",
	"errno", "error", "netd", "netd_pid", "netd_restarts", "netd_last_exit", "netd_error",
	NULL,
};

static bool status_is_known(const char *key)
{
	for (int i = 0; status_known[i]; i++)
		if (strcmp(status_known[i], key) == 0)
			return true;
	return false;
}

static bool status_is_number(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/*
 * The name and pid of application id from librettod's ps reply (fetched
 * once), for the VF lines of the summary.  Leaves name "?" if unknown.
 */
static void status_app_name(unsigned long id, char *name, size_t ncap, char *pid, size_t pcap)
{
	static char ps[CTL_MSG_MAX];
	static int fetched;
	char want[32];
	int fd;

	snprintf(name, ncap, "?");
	snprintf(pid, pcap, "?");
	if (!fetched) {
		fetched = -1;
		fd = cli_ctl_open(true);
		if (fd >= 0) {
			if (cli_ctl_call(fd, "ps\n", ps, sizeof(ps), NULL, NULL,
					 DAEMON_CALL_TIMEOUT_MS) > 0)
				fetched = 1;
			close(fd);
		}
	}
	if (fetched != 1)
		return;
	snprintf(want, sizeof(want), "app=%lu ", id);
	for (const char *line = ps, *eol; *line; line = eol + 1) {
		struct kv kv;

		eol = strchr(line, '\n');
		if (!eol)
			break;
		if (strncmp(line, want, strlen(want)) != 0)
			continue;
		if (kv_parse(&kv, line, (size_t)(eol - line)) == 0) {
			if (kv_get(&kv, "name"))
				snprintf(name, ncap, "%s", kv_get(&kv, "name"));
			if (kv_get(&kv, "pid"))
				snprintf(pid, pcap, "%s", kv_get(&kv, "pid"));
			kv_free(&kv);
		}
		return;
	}
}

/* The status reply as a summary for people. */
static void status_print_text(const char *reply)
{
	char v[9][256], vfs[4096], *save = NULL, *tok;
	static const char *const keys[] = { "pid", "netns", "nic", "pool", "prefix", "gateway",
					    "shared_ip", "apps" };
	int nvfs = 0, nfree = 0;

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (cli_reply_get(reply, keys[i], v[i], sizeof(v[i])) < 0)
			snprintf(v[i], sizeof(v[i]), "?");
	if (cli_reply_get(reply, "vfs", vfs, sizeof(vfs)) < 0)
		vfs[0] = '\0';
	printf("librettod is running (pid %s)", v[0]);
	if (strcmp(v[1], "-") != 0 && strcmp(v[1], "?") != 0)
		printf(" in network namespace %s", v[1]);
	printf(".\n");
	printf("  %-15s %s\n", "control socket", ctl_path());
	printf("  %-15s %s\n", "NIC (PF)", v[2]);
	printf("  %-15s %s, prefix /%s, gateway %s\n", "IP pool", v[3], v[4], v[5]);
	printf("  %-15s %s (reserved for the network server)\n", "shared IP", v[6]);
	printf("  %-15s %s%s\n", "applications", v[7],
	       strcmp(v[7], "0") == 0 ? "" : " (`libretto ps` lists them with their traffic)");
	for (const char *p = vfs; *p; p++)
		nvfs += *p == ',';
	nvfs += vfs[0] ? 1 : 0;
	for (const char *p = strstr(vfs, ":free"); p; p = strstr(p + 1, ":free"))
		nfree++;
	printf("  %-15s %d, %d free\n", "VFs", nvfs, nfree);
	for (char *q = vfs; (tok = strtok_r(q, ",", &save)); q = NULL) {
		char *colon = strrchr(tok, ':');
		char name[80], pid[32];

		if (!colon)
			continue;
		*colon = '\0';
		if (strcmp(colon + 1, "free") == 0) {
			printf("    %-8s free\n", tok);
			continue;
		}
		status_app_name(strtoul(colon + 1, NULL, 10), name, sizeof(name), pid, sizeof(pid));
		printf("    %-8s leased by app %s (%s, pid %s)\n", tok, colon + 1, name, pid);
	}
	/* The network server (tag s): state, pid, restarts, why it is not running. */
	{
		char st[32], npid[32] = "?", nres[32] = "?", nexit[96] = "-", nerr[512] = "";

		if (cli_reply_get(reply, "netd", st, sizeof(st)) == 0) {
			cli_reply_get(reply, "netd_pid", npid, sizeof(npid));
			cli_reply_get(reply, "netd_restarts", nres, sizeof(nres));
			cli_reply_get(reply, "netd_last_exit", nexit, sizeof(nexit));
			cli_reply_get(reply, "netd_error", nerr, sizeof(nerr));
			if (strcmp(st, "running") == 0)
				printf("  %-15s running (pid %s), restarts %s", "netd", npid, nres);
			else
				printf("  %-15s %s, restarts %s", "netd", st, nres);
			if (strcmp(nexit, "-") != 0)
				printf(", last exit: %s", nexit);
			printf("\n");
			if (nerr[0])
				printf("  %-15s %s\n", "", nerr);
		}
	}
	/* Keys a newer librettod adds show up without a CLI change. */
	for (const char *line = reply, *eol; line && *line; line = eol ? eol + 1 : NULL) {
		const char *eq;
		char key[64];

		eol = strchr(line, '\n');
		eq = strchr(line, '=');
		if (!eq || (eol && eq > eol) || eq == line || (size_t)(eq - line) >= sizeof(key))
			continue;
		memcpy(key, line, (size_t)(eq - line));
		key[eq - line] = '\0';
		if (!status_is_known(key))
			printf("  %-15s %.*s\n", key, (int)(eol ? eol - eq - 1 : (long)strlen(eq + 1)),
			       eq + 1);
	}
}

/*
 * The status reply as one JSON object: every key (numbers as numbers), and
 * "vfs" as [{"name":"vf1","app":null},{"name":"vf2","app":3}].
 */
static void status_print_json(const char *reply)
{
	printf("{\"running\":true,\"control\":");
	cli_json_str(stdout, ctl_path());
	for (const char *line = reply, *eol; line && *line; line = eol ? eol + 1 : NULL) {
		char key[64], val[4096];
		const char *eq;
		size_t vlen;

		eol = strchr(line, '\n');
		eq = strchr(line, '=');
		if (!eq || (eol && eq > eol) || eq == line || (size_t)(eq - line) >= sizeof(key))
			continue;
		memcpy(key, line, (size_t)(eq - line));
		key[eq - line] = '\0';
		vlen = eol ? (size_t)(eol - eq - 1) : strlen(eq + 1);
		if (vlen >= sizeof(val))
			vlen = sizeof(val) - 1;
		memcpy(val, eq + 1, vlen);
		val[vlen] = '\0';
		if (strcmp(key, "errno") == 0 || strcmp(key, "error") == 0)
			continue;
		printf(",");
		cli_json_str(stdout, key);
		printf(":");
		if (strcmp(key, "vfs") == 0) {
			char *save = NULL, *tok;
			bool first = true;

			printf("[");
			for (char *q = val; (tok = strtok_r(q, ",", &save)); q = NULL) {
				char *colon = strrchr(tok, ':');

				if (!colon)
					continue;
				*colon = '\0';
				printf("%s{\"name\":", first ? "" : ",");
				cli_json_str(stdout, tok);
				if (status_is_number(colon + 1))
					printf(",\"app\":%s}", colon + 1);
				else
					printf(",\"app\":null}");
				first = false;
			}
			printf("]");
		} else if (status_is_number(val) && strlen(val) < 16) {
			printf("%s", val);
		} else {
			cli_json_str(stdout, val);
		}
	}
	printf("}\n");
}

int cmd_status(int argc, char **argv)
{
	static char reply[CTL_MSG_MAX];
	bool json = false;
	int c, err;

	c = cli_json_opts("status", cmd_status_usage, argc, argv, &json);
	if (c >= 0)
		return c;
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
	if (json)
		status_print_json(reply);
	else
		status_print_text(reply);
	return CLI_EXIT_OK;
}
