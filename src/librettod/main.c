/* librettod, the supervisor: options, start-up checks, daemonizing. */
#include "librettod/librettod.h"
#include "librettod/fsd_sup.h"   /* tag v3 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "common/kv.h"
#include "libretto/ctl.h"
#include "librettod/pool.h"

#define DEFAULT_NETNS "libretto-host"
#define DEFAULT_NIC "pf0"
#define DEFAULT_SHARED_IP "10.42.0.2"
#define DEFAULT_POOL "10.42.0.10-10.42.0.99"
#define DEFAULT_PREFIX 24
#define DEFAULT_LOG LIBRETTO_CONTROL_DIR "/librettod.log"
#define DEFAULT_PIDFILE LIBRETTO_CONTROL_DIR "/librettod.pid"
#define DEFAULT_AUTO_CONF "/etc/libretto/auto.conf"
/* The auto policy's defaults: packets/s (rx + tx) and ms. */
#define DEFAULT_AUTO_HIGH 20000
#define DEFAULT_AUTO_LOW 5000
#define DEFAULT_AUTO_DWELL_MS 2000

static void usage(FILE *f)
{
	fprintf(f,
"Usage: librettod [OPTION]...\n"
"The LibrettOS supervisor: leases NIC functions (VFs), IP addresses and\n"
"shared regions to applications over a control socket.\n"
"\n"
"  --netns NAME      enter the network namespace /run/netns/NAME at start;\n"
"                    default: " DEFAULT_NETNS " (the testbed) when --nic is not\n"
"                    given, else the current namespace\n"
"  --nic PF          the physical function; default: " DEFAULT_NIC " (the testbed)\n"
"  --vfs LIST        comma-separated VF interfaces to lease; default: every\n"
"                    interface named vf<N> in the namespace, by N\n"
"  --shared-ip A     the shared IP (for the network server); default " DEFAULT_SHARED_IP "\n"
"  --pool A-B        dedicated application IPs; default " DEFAULT_POOL "\n"
"  --prefix N        prefix length of the subnet; default %d\n"
"  --gateway A       default gateway handed to applications; default: none\n"
"  --control PATH    control socket; default $LIBRETTO_CONTROL or\n"
"                    " LIBRETTO_CONTROL_PATH "\n"
"  --daemon          run in the background; the command returns once the\n"
"                    control socket listens (exit 0) or with the error (exit 1)\n"
"  --log FILE        with --daemon, stdout and stderr go to FILE;\n"
"                    default " DEFAULT_LOG "\n"
"  --pidfile FILE    write the daemon's pid to FILE (removed at exit);\n"
"                    default with --daemon: " DEFAULT_PIDFILE ", without: none\n"
"  --auto-high PPS, --auto-low PPS, --auto-dwell MS\n"
"                    defaults of the auto policy for `libretto run --mode auto`\n"
"                    (packets/s received + sent above which an application\n"
"                    wants a VF, below which it gives it back, and how long a\n"
"                    rate must last); default 20000, 5000, 2000, or the values\n"
"                    of the config file\n"
"  --auto-config FILE  read high=, low=, dwell_ms= lines from FILE; default\n"
"                    $LIBRETTO_AUTO_CONF, else " DEFAULT_AUTO_CONF " if it\n"
"                    exists.  The command line wins over the file\n"
"  -h, --help        show this help\n"
"\n"
"The control socket is mode 0666: any local user may lease a VF.  Only root or\n"
"librettod's own user may shut it down.  SIGTERM or SIGINT, like the shutdown\n"
"command, releases every lease, removes the socket and the pidfile, exits 0.\n"
"Events are logged with UTC timestamps on stderr (the log file with --daemon).\n"
"See docs/librettod.md.\n", DEFAULT_PREFIX);
}

/* The write end of the pipe to the waiting parent under --daemon, or -1. */
static int report_fd = -1;
static bool daemonized;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* A start-up failure: say it where the user will see it, and exit 1. */
static void die(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (daemonized)
		ld_log("error: %s", msg);
	else
		fprintf(stderr, "librettod: %s\n", msg);
	if (report_fd >= 0) {
		ssize_t n = write(report_fd, msg, strlen(msg));

		(void)n;
		close(report_fd);
	}
	exit(1);
}

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("librettod: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'librettod --help'.\n", stderr);
	exit(2);
}

/* A count option or config value: 1..max, else 0 (the caller complains). */
static unsigned parse_count(const char *s, unsigned max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v == 0 || v > max || *s == '-')
		return 0;
	return (unsigned)v;
}

/*
 * The auto policy's defaults from a config file (high=, low=, dwell_ms=,
 * # comments).  Values the command line gave stay.  A file named
 * explicitly must exist; the default one may not.
 */
static void auto_config_read(const char *path, bool must, struct ld_config *cfg,
			     const struct ld_config *given)
{
	char line[256];
	int no = 0;
	FILE *f = fopen(path, "re");

	if (!f) {
		if (must || errno != ENOENT)
			usage_error("--auto-config: cannot read %s: %s", path, strerror(errno));
		return;
	}
	while (fgets(line, sizeof(line), f)) {
		char *v, *k = line + strspn(line, " \t");
		unsigned *dst = NULL, given_v = 0, max = 100000000;

		no++;
		k[strcspn(k, "\r\n#")] = '\0';
		if (!*k)
			continue;
		v = strchr(k, '=');
		if (!v)
			usage_error("%s:%d: expected key=value", path, no);
		*v++ = '\0';
		k[strcspn(k, " \t")] = '\0';
		v += strspn(v, " \t");
		v[strcspn(v, " \t")] = '\0';
		if (!strcmp(k, "high")) {
			dst = &cfg->auto_high;
			given_v = given->auto_high;
		} else if (!strcmp(k, "low")) {
			dst = &cfg->auto_low;
			given_v = given->auto_low;
		} else if (!strcmp(k, "dwell_ms")) {
			dst = &cfg->auto_dwell_ms;
			given_v = given->auto_dwell_ms;
			max = 3600000;
		} else {
			usage_error("%s:%d: unknown key '%s' (high, low, dwell_ms)", path, no, k);
		}
		if (!parse_count(v, max))
			usage_error("%s:%d: %s=%s is not a number in 1..%u", path, no, k, v, max);
		if (!given_v)
			*dst = parse_count(v, max);
	}
	fclose(f);
}

static void parse_args(int argc, char **argv, struct ld_config *cfg)
{
	enum { O_NETNS = 256, O_NIC, O_VFS, O_SHARED, O_POOL, O_PREFIX, O_GW, O_CONTROL,
	       O_DAEMON, O_LOG, O_PIDFILE, O_AUTO_HIGH, O_AUTO_LOW, O_AUTO_DWELL, O_AUTO_CONF };
	static const struct option opts[] = {
		{ "netns", required_argument, NULL, O_NETNS },
		{ "nic", required_argument, NULL, O_NIC },
		{ "vfs", required_argument, NULL, O_VFS },
		{ "shared-ip", required_argument, NULL, O_SHARED },
		{ "pool", required_argument, NULL, O_POOL },
		{ "prefix", required_argument, NULL, O_PREFIX },
		{ "gateway", required_argument, NULL, O_GW },
		{ "control", required_argument, NULL, O_CONTROL },
		{ "daemon", no_argument, NULL, O_DAEMON },
		{ "log", required_argument, NULL, O_LOG },
		{ "pidfile", required_argument, NULL, O_PIDFILE },
		{ "auto-high", required_argument, NULL, O_AUTO_HIGH },
		{ "auto-low", required_argument, NULL, O_AUTO_LOW },
		{ "auto-dwell", required_argument, NULL, O_AUTO_DWELL },
		{ "auto-config", required_argument, NULL, O_AUTO_CONF },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *netns = NULL, *nic = NULL, *pidfile = NULL, *auto_conf = NULL;
	struct ld_config given;
	char err[256];
	int c;

	memset(cfg, 0, sizeof(*cfg));
	ip_parse(DEFAULT_SHARED_IP, &cfg->shared_ip);
	ip_range_parse(DEFAULT_POOL, &cfg->pool_first, &cfg->pool_last);
	cfg->prefix = DEFAULT_PREFIX;
	cfg->control = ctl_path();
	cfg->log_path = DEFAULT_LOG;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case O_NETNS:
			if (!*optarg || strchr(optarg, '/') || !strcmp(optarg, ".") ||
			    !strcmp(optarg, ".."))
				usage_error("--netns: '%s' is not a namespace name", optarg);
			netns = optarg;
			break;
		case O_NIC:
			if (!ifname_valid(optarg))
				usage_error("--nic: '%s' is not a valid interface name", optarg);
			nic = optarg;
			break;
		case O_VFS:
			vf_names_free(cfg->vfs, cfg->nvfs);
			if (vf_list_parse(optarg, &cfg->vfs, &cfg->nvfs, err, sizeof(err)))
				usage_error("--vfs: %s", err);
			cfg->vfs_given = true;
			break;
		case O_SHARED:
			if (ip_parse(optarg, &cfg->shared_ip))
				usage_error("--shared-ip: '%s' is not an IPv4 address", optarg);
			break;
		case O_POOL:
			if (ip_range_parse(optarg, &cfg->pool_first, &cfg->pool_last))
				usage_error("--pool: '%s' is not A.B.C.D-A.B.C.D with first <= last",
					    optarg);
			break;
		case O_PREFIX: {
			char *end;
			long v;

			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || v < 1 || v > 32)
				usage_error("--prefix: '%s' is not a prefix length 1..32", optarg);
			cfg->prefix = (int)v;
			break;
		}
		case O_GW:
			if (ip_parse(optarg, &cfg->gateway))
				usage_error("--gateway: '%s' is not an IPv4 address", optarg);
			cfg->has_gateway = true;
			break;
		case O_CONTROL:
			if (optarg[0] != '/')
				usage_error("--control: give an absolute path ('%s')", optarg);
			cfg->control = optarg;
			break;
		case O_DAEMON:
			cfg->daemon = true;
			break;
		case O_LOG:
			cfg->log_path = optarg;
			break;
		case O_PIDFILE:
			pidfile = optarg;
			break;
		case O_AUTO_HIGH:
			if (!(cfg->auto_high = parse_count(optarg, 100000000)))
				usage_error("--auto-high: '%s' is not a rate in 1..100000000", optarg);
			break;
		case O_AUTO_LOW:
			if (!(cfg->auto_low = parse_count(optarg, 100000000)))
				usage_error("--auto-low: '%s' is not a rate in 1..100000000", optarg);
			break;
		case O_AUTO_DWELL:
			if (!(cfg->auto_dwell_ms = parse_count(optarg, 3600000)))
				usage_error("--auto-dwell: '%s' is not a time in 1..3600000 ms", optarg);
			break;
		case O_AUTO_CONF:
			auto_conf = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			fputs("Try 'librettod --help'.\n", stderr);
			exit(2);
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	given = *cfg;
	if (auto_conf)
		auto_config_read(auto_conf, true, cfg, &given);
	else if (getenv("LIBRETTO_AUTO_CONF") && *getenv("LIBRETTO_AUTO_CONF"))
		auto_config_read(getenv("LIBRETTO_AUTO_CONF"), true, cfg, &given);
	else
		auto_config_read(DEFAULT_AUTO_CONF, false, cfg, &given);
	if (!cfg->auto_high)
		cfg->auto_high = DEFAULT_AUTO_HIGH;
	if (!cfg->auto_low)
		cfg->auto_low = DEFAULT_AUTO_LOW;
	if (!cfg->auto_dwell_ms)
		cfg->auto_dwell_ms = DEFAULT_AUTO_DWELL_MS;
	if (cfg->auto_low >= cfg->auto_high)
		usage_error("the auto policy's low threshold (%u) must be below its high one (%u)",
			    cfg->auto_low, cfg->auto_high);

	/* Without --nic the testbed is meant: its PF in its host namespace. */
	cfg->nic = nic ? nic : DEFAULT_NIC;
	cfg->netns = netns ? netns : nic ? NULL : DEFAULT_NETNS;
	cfg->pidfile = pidfile ? pidfile : cfg->daemon ? DEFAULT_PIDFILE : NULL;
	if (ip_plan_check(cfg->pool_first, cfg->pool_last, cfg->prefix, cfg->shared_ip,
			  cfg->has_gateway, cfg->gateway, err, sizeof(err)))
		usage_error("%s", err);
}

static void enter_netns(const char *name)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "/run/netns/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			die("network namespace %s does not exist (%s); start the testbed with "
			    "`libretto testbed up`, or name another one with --netns or a real "
			    "NIC with --nic", name, path);
		die("cannot open %s: %s", path, strerror(errno));
	}
	if (setns(fd, CLONE_NEWNET) < 0)
		die("cannot enter network namespace %s: %s%s", name, strerror(errno),
		    errno == EPERM ? " (librettod must run as root)" : "");
	close(fd);
}

/* Without --vfs: every vf<N> interface of the namespace, by N. */
static void discover_vfs(struct ld_config *cfg)
{
	struct if_nameindex *ifs = if_nameindex(), *i;
	int n = 0;

	if (!ifs)
		die("cannot list network interfaces: %s", strerror(errno));
	for (i = ifs; i->if_index; i++)
		n += vf_name_number(i->if_name) >= 0;
	cfg->vfs = calloc(n ? (size_t)n : 1, sizeof(char *));
	if (!cfg->vfs)
		die("out of memory");
	for (i = ifs; i->if_index; i++) {
		if (vf_name_number(i->if_name) < 0)
			continue;
		cfg->vfs[cfg->nvfs] = strdup(i->if_name);
		if (!cfg->vfs[cfg->nvfs])
			die("out of memory");
		cfg->nvfs++;
	}
	if_freenameindex(ifs);
	vf_names_sort(cfg->vfs, cfg->nvfs);
}

static void check_devices(struct ld_config *cfg)
{
	char where[300];
	uint8_t mac[6];
	int idx, err;

	if (cfg->netns)
		snprintf(where, sizeof(where), "network namespace %s", cfg->netns);
	else
		snprintf(where, sizeof(where), "the current network namespace");
	err = dev_ifinfo(cfg->nic, &idx, mac);
	if (err)
		die("NIC %s: %s in %s%s", cfg->nic,
		    err == -ENODEV ? "no such interface" : strerror(-err), where,
		    cfg->netns && !strcmp(cfg->netns, DEFAULT_NETNS) ?
		    " (is the testbed up? `libretto testbed up`)" : "");
	if (!cfg->vfs_given)
		discover_vfs(cfg);
	if (cfg->nvfs == 0)
		die("no VF interfaces (named vf<N>) found in %s; name them with --vfs",
		    where);
	for (int i = 0; i < cfg->nvfs; i++) {
		if (!strcmp(cfg->vfs[i], cfg->nic))
			die("%s is both the NIC (--nic) and a VF (--vfs)", cfg->nic);
		err = dev_ifinfo(cfg->vfs[i], &idx, mac);
		if (err)
			die("VF %s: %s in %s", cfg->vfs[i],
			    err == -ENODEV ? "no such interface" : strerror(-err), where);
	}
}

static int mkdir_parent(const char *path)
{
	char dir[PATH_MAX];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static void write_pidfile(const char *path)
{
	char buf[32];
	int fd, n, err;

	err = mkdir_parent(path);
	if (err)
		die("cannot create the directory of %s: %s", path, strerror(-err));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		die("cannot write the pidfile %s: %s", path, strerror(errno));
	n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (write(fd, buf, (size_t)n) != n)
		die("cannot write the pidfile %s: %s", path, strerror(errno));
	close(fd);
}

/* Remove the pidfile only if it is still ours (a newer daemon may own it). */
static void remove_pidfile(const char *path)
{
	char buf[32];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	if (atoi(buf) == (int)getpid())
		unlink(path);
}

/*
 * --daemon: the parent waits on a pipe until the child reports "OK" (the
 * control socket listens) or an error message, so that `librettod --daemon`
 * fails visibly instead of dying in the background.
 */
static void daemonize(const struct ld_config *cfg)
{
	int pfd[2], fd, err;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid > 0) {
		char msg[1100];
		size_t got = 0;
		ssize_t n;

		close(pfd[1]);
		while (got < sizeof(msg) - 1 &&
		       ((n = read(pfd[0], msg + got, sizeof(msg) - 1 - got)) > 0 ||
			(n < 0 && errno == EINTR)))
			if (n > 0)
				got += (size_t)n;
		msg[got] = '\0';
		if (!strcmp(msg, "OK"))
			exit(0);
		if (got)
			fprintf(stderr, "librettod: %s\n", msg);
		else
			fprintf(stderr, "librettod: the daemon exited during start-up (see %s)\n",
				cfg->log_path);
		exit(1);
	}
	close(pfd[0]);
	report_fd = pfd[1];
	if (setsid() < 0)
		die("setsid: %s", strerror(errno));
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || dup2(fd, STDIN_FILENO) < 0)
		die("cannot redirect stdin to /dev/null: %s", strerror(errno));
	close(fd);
	err = mkdir_parent(cfg->log_path);
	if (err)
		die("cannot create the directory of the log %s: %s", cfg->log_path, strerror(-err));
	fd = open(cfg->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		die("cannot open the log %s: %s", cfg->log_path, strerror(errno));
	if (dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
		die("cannot redirect output to %s: %s", cfg->log_path, strerror(errno));
	close(fd);
	daemonized = true;
}

int main(int argc, char **argv)
{
	struct ld_config cfg;
	char err[512], a[16], z[16], vfs[256];
	size_t used = 0;
	int listen_fd, rc;

	parse_args(argc, argv, &cfg);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	if (cfg.daemon)
		daemonize(&cfg);

	if (cfg.netns)
		enter_netns(cfg.netns);
	check_devices(&cfg);
	dev_global_init();
	listen_fd = server_listen(cfg.control, err, sizeof(err));
	if (listen_fd < 0)
		die("%s", err);
	if (cfg.pidfile)
		write_pidfile(cfg.pidfile);
	/*
	 * tag l: an earlier librettod that died may have left netd and
	 * applications running (its state record says so): adopt that netd
	 * rather than start another on the same PF.
	 */
	persist_init(cfg.control);
	if (persist_load() == 0) {
		const struct persist_rec *rec = persist_loaded();

		ld_log("recover: found the state record %s of librettod pid=%d: netd pid=%d, "
		       "%d application%s", persist_path(), (int)rec->librettod_pid,
		       (int)rec->netd_pid, rec->napps, rec->napps == 1 ? "" : "s");
		if (rec->netd_pid > 0 && proc_same(rec->netd_pid, rec->netd_start) &&
		    netd_sup_adopt(&cfg, rec->netd_pid) < 0) {
			/* It holds the PF's queue: it must go before a new one can bind. */
			ld_log("recover: killing netd pid=%d, which cannot be adopted",
			       (int)rec->netd_pid);
			kill(rec->netd_pid, SIGKILL);
		}
	}
	/* tag s: the network server; librettod serves direct mode even without it. */
	if (netd_sup_pid() == 0)
		netd_sup_start(&cfg);
	/* tag v3: the storage server, for indirect volumes (issue 8). */
	fsd_sup_start(&cfg);

	vfs[0] = '\0';
	for (int i = 0; i < cfg.nvfs && used < sizeof(vfs); i++) {
		int n = snprintf(vfs + used, sizeof(vfs) - used, "%s%s", i ? "," : "", cfg.vfs[i]);

		if (n > 0)
			used += (size_t)n;
	}
	ld_log("started pid=%d netns=%s nic=%s vfs=%s pool=%s-%s control=%s auto_high=%u "
	       "auto_low=%u auto_dwell_ms=%u", (int)getpid(), cfg.netns ? cfg.netns : "-", cfg.nic,
	       vfs, ip_fmt(cfg.pool_first, a), ip_fmt(cfg.pool_last, z), cfg.control, cfg.auto_high,
	       cfg.auto_low, cfg.auto_dwell_ms);
	if (report_fd >= 0) {
		ssize_t n = write(report_fd, "OK", 2);

		(void)n;
		close(report_fd);
		report_fd = -1;
	}

	rc = server_run(&cfg, listen_fd);
	if (cfg.pidfile)
		remove_pidfile(cfg.pidfile);
	vf_names_free(cfg.vfs, cfg.nvfs);
	return rc ? 1 : 0;
}
