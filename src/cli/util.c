/* Helpers shared by the libretto subcommands: messages, namespaces, spawning, control calls. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/kv.h"
#include "libretto/ctl.h"

extern char **environ;

void cli_err(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", cli_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_usage_err(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s %s: ", cli_prog, cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry `%s help %s`.\n", cli_prog, cmd);
	return CLI_EXIT_USAGE;
}

int cli_bad_option(const char *cmd, int c, char **argv)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "?";

	if (c == ':')
		return cli_usage_err(cmd, "option %s needs a value", arg);
	if (optopt && (optopt < 0x80) && !(arg[0] == '-' && arg[1] == '-'))
		return cli_usage_err(cmd, "unknown option -%c", optopt);
	return cli_usage_err(cmd, "unknown option %s", arg);
}

bool cli_need_root(const char *what)
{
	if (geteuid() == 0)
		return true;
	cli_err("%s needs root (it manages network namespaces and devices): "
		"run it again with sudo", what);
	return false;
}

/* The directory of the running executable, without a trailing slash. */
static int cli_exe_dir(char *out, size_t cap)
{
	char buf[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	char *slash;

	if (n < 0)
		return -errno;
	buf[n] = '\0';
	slash = strrchr(buf, '/');
	if (!slash)
		return -EINVAL;
	*slash = '\0';
	if ((size_t)snprintf(out, cap, "%s", buf) >= cap)
		return -ENAMETOOLONG;
	return 0;
}

/*
 * Try each candidate in turn: the first that exists (and is executable when
 * exec is set) is resolved to an absolute path in out.  On failure the list
 * of places looked at is printed, so the user knows what to fix.
 */
static int cli_find_first(const char *what, const char *const *cand, int ncand, bool exec,
			  const char *env, char *out, size_t cap)
{
	char real[PATH_MAX];

	for (int i = 0; i < ncand; i++) {
		if (access(cand[i], exec ? X_OK : R_OK) != 0)
			continue;
		if (!realpath(cand[i], real))
			continue;
		if ((size_t)snprintf(out, cap, "%s", real) >= cap)
			return -ENAMETOOLONG;
		return 0;
	}
	cli_err("cannot find %s; looked at:", what);
	for (int i = 0; i < ncand; i++)
		fprintf(stderr, "  %s\n", cand[i]);
	fprintf(stderr, "Set %s to say where it is.\n", env);
	return -ENOENT;
}

/*
 * A directory of the install layout (a Meson dir option: relative to the
 * prefix, or absolute), as seen from the executable's directory: the prefix
 * is bindir's depth above it, so an installed tree can move as a whole.
 */
static void cli_install_path(const char *exe_dir, const char *dir, const char *file,
			     char *out, size_t cap)
{
	char up[256] = "";
	const char *b = LIBRETTO_BINDIR;
	bool in_word = false;

	if (dir[0] == '/' || b[0] == '/') {
		if (dir[0] == '/')
			snprintf(out, cap, "%s/%s", dir, file);
		else
			snprintf(out, cap, "%s/%s/%s", LIBRETTO_PREFIX, dir, file);
		return;
	}
	for (; *b; b++) {
		if (*b != '/' && !in_word)
			strncat(up, "../", sizeof(up) - strlen(up) - 1);
		in_word = *b != '/';
	}
	snprintf(out, cap, "%s/%s%s/%s", exe_dir, up, dir, file);
}

int cli_find_librettod(char *out, size_t cap)
{
	const char *env = getenv("LIBRETTO_LIBEXEC_DIR");
	char dir[PATH_MAX], c[6][PATH_MAX + 64];
	const char *cand[6];
	int n = 0;

	if (env && *env) {
		snprintf(c[n], sizeof(c[n]), "%s/librettod", env);
		cand[n] = c[n], n++;
		return cli_find_first("librettod", cand, n, true, "LIBRETTO_LIBEXEC_DIR", out, cap);
	}
	if (cli_exe_dir(dir, sizeof(dir)) == 0) {
		/* The build tree first: src/cli/libretto next to src/librettod/. */
		snprintf(c[n], sizeof(c[n]), "%s/../librettod/librettod", dir);
		cand[n] = c[n], n++;
		/* Installed: librettod goes to bindir, next to libretto. */
		snprintf(c[n], sizeof(c[n]), "%s/librettod", dir);
		cand[n] = c[n], n++;
		cli_install_path(dir, LIBRETTO_SBINDIR, "librettod", c[n], sizeof(c[n]));
		cand[n] = c[n], n++;
		cli_install_path(dir, LIBRETTO_LIBEXECDIR, "libretto/librettod", c[n], sizeof(c[n]));
		cand[n] = c[n], n++;
	}
	return cli_find_first("librettod", cand, n, true, "LIBRETTO_LIBEXEC_DIR", out, cap);
}

int cli_find_runtime(char *out, size_t cap)
{
	const char *env = getenv("LIBRETTO_RUNTIME");
	char dir[PATH_MAX], c[4][PATH_MAX + 64];
	const char *cand[4];
	struct stat st;
	int n = 0;

	if (env && *env) {
		/* Either the library itself or the directory that holds it. */
		if (stat(env, &st) == 0 && S_ISDIR(st.st_mode))
			snprintf(c[n], sizeof(c[n]), "%s/libretto.so", env);
		else
			snprintf(c[n], sizeof(c[n]), "%s", env);
		cand[n] = c[n], n++;
		return cli_find_first("libretto.so", cand, n, false, "LIBRETTO_RUNTIME", out, cap);
	}
	if (cli_exe_dir(dir, sizeof(dir)) == 0) {
		snprintf(c[n], sizeof(c[n]), "%s/../runtime/libretto.so", dir);
		cand[n] = c[n], n++;
		/* Installed: meson installs the runtime to libdir/libretto/. */
		cli_install_path(dir, LIBRETTO_LIBDIR, "libretto/libretto.so", c[n], sizeof(c[n]));
		cand[n] = c[n], n++;
		snprintf(c[n], sizeof(c[n]), "%s/../lib/libretto/libretto.so", dir);
		cand[n] = c[n], n++;
	}
	return cli_find_first("libretto.so", cand, n, false, "LIBRETTO_RUNTIME", out, cap);
}

static int cli_orig_netns = -1;

static int cli_netns_path(const char *name, char *out, size_t cap)
{
	if (!*name || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return -EINVAL;
	if ((size_t)snprintf(out, cap, "/run/netns/%s", name) >= cap)
		return -ENAMETOOLONG;
	return 0;
}

bool cli_netns_exists(const char *name)
{
	char path[PATH_MAX];
	struct stat st;

	return cli_netns_path(name, path, sizeof(path)) == 0 && stat(path, &st) == 0;
}

int cli_netns_enter(const char *name)
{
	char path[PATH_MAX];
	int fd, err;

	err = cli_netns_path(name, path, sizeof(path));
	if (err < 0)
		return err;
	if (cli_orig_netns < 0) {
		cli_orig_netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
		if (cli_orig_netns < 0)
			return -errno;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	err = setns(fd, CLONE_NEWNET) < 0 ? -errno : 0;
	close(fd);
	return err;
}

int cli_netns_leave(void)
{
	if (cli_orig_netns < 0)
		return 0;
	return setns(cli_orig_netns, CLONE_NEWNET) < 0 ? -errno : 0;
}

int cli_netns_is_current(const char *name)
{
	char path[PATH_MAX];
	struct stat a, b;
	int err = cli_netns_path(name, path, sizeof(path));

	if (err < 0)
		return err;
	if (stat(path, &a) < 0 || stat("/proc/self/ns/net", &b) < 0)
		return -errno;
	return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static void cli_print_argv(FILE *f, const char *netns, const char *const argv[])
{
	if (netns)
		fprintf(f, "[netns %s] ", netns);
	for (int i = 0; argv[i]; i++)
		fprintf(f, "%s%s", i ? " " : "", argv[i]);
	fputc('\n', f);
}

int cli_spawn(const char *netns, const char *const argv[], int flags)
{
	posix_spawn_file_actions_t fa;
	int err, status;
	pid_t pid;

	if (getenv("LIBRETTO_VERBOSE")) {
		fputs("+ ", stderr);
		cli_print_argv(stderr, netns, argv);
	}
	if (posix_spawn_file_actions_init(&fa) != 0)
		return -ENOMEM;
	if (flags & (CLI_SPAWN_QUIET | CLI_SPAWN_NOSTDOUT))
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	if (flags & CLI_SPAWN_QUIET)
		posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	/*
	 * The child inherits the namespace we are in when it is spawned, so we
	 * step into the target namespace around posix_spawnp() only.
	 */
	if (netns) {
		err = cli_netns_enter(netns);
		if (err < 0) {
			posix_spawn_file_actions_destroy(&fa);
			if (flags & CLI_SPAWN_REPORT)
				cli_err("cannot enter network namespace %s: %s", netns, strerror(-err));
			return err;
		}
	}
	err = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
	if (netns && cli_netns_leave() < 0) {
		/* Continuing in the wrong namespace would change the wrong devices. */
		cli_err("cannot return to the original network namespace: %s", strerror(errno));
		exit(CLI_EXIT_FAIL);
	}
	posix_spawn_file_actions_destroy(&fa);
	if (err) {
		if (flags & CLI_SPAWN_REPORT)
			cli_err("cannot run %s: %s (is it installed? scripts/deps.sh installs it)",
				argv[0], strerror(err));
		return -err;
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (WIFEXITED(status))
		err = WEXITSTATUS(status);
	else
		err = 128 + WTERMSIG(status);
	if (err && (flags & CLI_SPAWN_REPORT)) {
		fprintf(stderr, "%s: this command failed (exit status %d): ", cli_prog, err);
		cli_print_argv(stderr, netns, argv);
	}
	return err;
}

int cli_ctl_call(int sock, const char *req, char *reply, size_t cap, int *fds, int *nfds,
		 int timeout_ms)
{
	struct pollfd p = { .fd = sock, .events = POLLIN };
	int err, n;

	err = ctl_send(sock, req, strlen(req), NULL, 0);
	if (err < 0)
		return err;
	do
		n = poll(&p, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n == 0)
		return -ETIMEDOUT;
	n = ctl_recv(sock, reply, cap, fds, nfds);
	if (n == 0)
		return -EPIPE;
	return n;
}

int cli_ctl_open(bool quiet)
{
	int fd = ctl_connect();

	if (fd >= 0 || quiet)
		return fd;
	if (fd == -ENOENT || fd == -ECONNREFUSED)
		cli_err("librettod is not running: run `libretto up` first");
	else
		cli_err("cannot connect to librettod at %s: %s", ctl_path(), strerror(-fd));
	return fd;
}

int cli_reply_get(const char *reply, const char *key, char *out, size_t cap)
{
	size_t klen = strlen(key);
	const char *p = reply;

	while (p && *p) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);

		if (len > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
			size_t vlen = len - klen - 1;

			if (cap) {
				if (vlen >= cap)
					vlen = cap - 1;
				memcpy(out, p + klen + 1, vlen);
				out[vlen] = '\0';
			}
			return 0;
		}
		p = eol ? eol + 1 : NULL;
	}
	return -ENOENT;
}

int cli_reply_errno(const char *reply)
{
	char v[32], *end;
	long e;

	if (cli_reply_get(reply, "errno", v, sizeof(v)) < 0 || !v[0])
		return -EPROTO;
	e = strtol(v, &end, 10);
	if (*end || e < 0 || e > 4095)
		return -EPROTO;
	return (int)e;
}

void cli_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

static const struct option cli_json_optv[] = {
	{ "json", no_argument, NULL, 'j' },
	{ "help", no_argument, NULL, 'h' },
	{ 0 },
};

int cli_json_opts(const char *cmd, const char *usage, int argc, char **argv, bool *json)
{
	int c;

	*json = false;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+:jh", cli_json_optv, NULL)) != -1) {
		switch (c) {
		case 'j':
			*json = true;
			break;
		case 'h':
			fputs(usage, stdout);
			return CLI_EXIT_OK;
		default:
			return cli_bad_option(cmd, c, argv);
		}
	}
	if (optind < argc)
		return cli_usage_err(cmd, "unexpected argument '%s'", argv[optind]);
	return -1;
}
