/* `libretto run`: lease a NIC function from librettod and exec a program with the library OS preloaded. */
#include "cli.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/kv.h"
#include "libretto/ctl.h"

/* Opening AF_XDP on a VF attaches an XDP program; give it time on a loaded machine. */
#define RUN_REGISTER_TIMEOUT_MS 30000
#define RUN_NAME_MAX 63
/* Volumes (issue 8): how many one program may have, and their environment. */
#define RUN_MAX_VOLUMES 8
#define RUN_VOLUMES_ENV "LIBRETTO_VOLUMES"

static const struct option run_opts[] = {
	{ "mode", required_argument, NULL, 'm' },
	{ "name", required_argument, NULL, 'n' },
	{ "ip", required_argument, NULL, 'i' },
	{ "vf", required_argument, NULL, 'v' },
	{ "backend", required_argument, NULL, 'b' },
	{ "print-lease", no_argument, NULL, 'P' },
	{ "auto-high", required_argument, NULL, 'H' },
	{ "auto-low", required_argument, NULL, 'L' },
	{ "auto-dwell", required_argument, NULL, 'D' },
	{ "volume", required_argument, NULL, 'V' },
	{ "storage", required_argument, NULL, 'S' },
	{ "help", no_argument, NULL, 'h' },
	{ 0 },
};

const char cmd_run_usage[] =
	"usage: libretto run [OPTIONS] -- CMD [ARGS...]\n"
	"\n"
	"Run an unmodified program on the library OS: its TCP/IP runs in its own\n"
	"process (lwIP in the preloaded libretto.so) over a NIC function (VF) that\n"
	"librettod hands it.  The program runs in librettod's network namespace\n"
	"(libretto-host on the testbed) with the same pid libretto had.\n"
	"Loopback and destinations off the NIC's subnet stay on the kernel stack.\n"
	"libretto prints nothing on stdout; its exit status is CMD's (127: CMD\n"
	"not found, 126: not executable, 1: librettod refused, with its reason).\n"
	"\n"
	"The lease: the VF and IP belong to the program, and to any child that\n"
	"inherits its descriptors, until the last of them exits; then librettod\n"
	"takes them back at once.\n"
	"\n"
	"  --mode direct     the program owns a VF (the default)\n"
	"  --mode indirect   the program's frames go through the network server\n"
	"                    (libretto-netd) on the PF; --ip shared (the default in\n"
	"                    this mode) shares librettod's shared IP with other\n"
	"                    programs, told apart by their ports\n"
	"  --mode auto       start indirect on a dedicated IP; librettod gives the\n"
	"                    program a VF (direct mode) while its packet rate stays\n"
	"                    above --auto-high, and takes it back while the rate\n"
	"                    stays below --auto-low (both for --auto-dwell), or when\n"
	"                    a busier auto program needs it.  Connections stay up\n"
	"                    across every switch (docs/switching.md)\n"
	"  --auto-high PPS   packets/s (received + sent) above which an auto program\n"
	"                    wants a VF (default: librettod's, 20000)\n"
	"  --auto-low PPS    packets/s below which it gives its VF back (default 5000)\n"
	"  --auto-dwell MS   how long a rate must last, and the least time between\n"
	"                    two switches (default 2000)\n"
	"  --name NAME       the name `libretto ps` shows (default: CMD's basename)\n"
	"  --ip A.B.C.D      the program's address, inside librettod's pool (see\n"
	"                    `libretto status`; the testbed's is 10.42.0.10-10.42.0.99)\n"
	"                    and not leased to another program (default: the lowest\n"
	"                    free pool address)\n"
	"  --vf NAME         the VF to use, e.g. vf1 (default: the first free VF whose\n"
	"                    queue is not busy).  A VF released a moment ago is waited\n"
	"                    for, up to 2 s, while the kernel frees its queue\n"
	"  --backend afxdp|afpacket|auto\n"
	"                    afxdp (default): AF_XDP, fail if it cannot be set up;\n"
	"                    afpacket: AF_PACKET (slower, works without XDP);\n"
	"                    auto: AF_XDP, else AF_PACKET with a note on stderr\n"
	"  --print-lease     print the lease handed to the runtime on stderr\n"
	"  --volume IMAGE[:MOUNTPOINT]\n"
	"                    give the program the ext4 volume in IMAGE (see `libretto\n"
	"                    volume create`): its file calls under MOUNTPOINT (an\n"
	"                    absolute path, default /data) go to that file system,\n"
	"                    every other path stays on the kernel's.  Repeatable, at\n"
	"                    most 8, at distinct mount points\n"
	"  --storage direct|indirect\n"
	"                    direct (the default): the program runs ext4 in its own\n"
	"                    process and owns the image exclusively (a second program\n"
	"                    asking for it is refused: \"in use by app N\"); indirect:\n"
	"                    the storage server libretto-fsd runs it and serves the\n"
	"                    same volume to several programs at once\n"
	"\n"
	"Volumes are released with the lease.  With a volume, the program's\n"
	"environment holds LIBRETTO_VOLUMES and the descriptors it names\n"
	"(docs/storage.md); the image stays a valid ext4 (`libretto volume check`).\n"
	"\n"
	"A program on a dedicated IP (every direct one; indirect and auto ones with\n"
	"--ip A.B.C.D or, for auto, the default pool address) can be moved between\n"
	"direct and indirect mode while it runs: `libretto switch NAME MODE`.\n"
	"\n"
	"Needs `libretto up` first, and root to enter librettod's namespace unless\n"
	"already inside it.  The runtime is libretto.so next to libretto (or\n"
	"$LIBRETTO_RUNTIME).\n";

static bool run_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > RUN_NAME_MAX)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("._+@:-", *s))
			return false;
	return true;
}

/* CMD's basename made into a valid name: other characters become '_'. */
static void run_default_name(const char *cmd, char *out, size_t cap)
{
	const char *base = strrchr(cmd, '/');
	size_t i;

	base = base && base[1] ? base + 1 : cmd;
	for (i = 0; base[i] && i < cap - 1 && i < RUN_NAME_MAX; i++)
		out[i] = (isalnum((unsigned char)base[i]) || strchr("._+@:-", base[i]))
			 ? base[i] : '_';
	out[i] = '\0';
	if (i == 0)
		snprintf(out, cap, "app");
}

/* NULL (not given) or a decimal count librettod will range-check. */
static bool run_count_ok(const char *s)
{
	return !s || (*s && strspn(s, "0123456789") == strlen(s) && strlen(s) <= 9);
}

static bool run_ifname_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= IF_NAMESIZE)
		return false;
	for (; *s; s++)
		if (isspace((unsigned char)*s) || *s == '/' || *s == '=' || *s == ',')
			return false;
	return true;
}

static bool run_fd_name_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && *s != '_')
			return false;
	return true;
}

/*
 * Check, as a shell would before running it, that cmd names an executable
 * file (searched in $PATH unless it holds a '/').  Returns 0, or prints the
 * shell's message and returns the shell's status: 127 not found, 126 not
 * executable.  Checking first means a typo never leases a VF.
 */
static int run_check_cmd(const char *cmd)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];
	struct stat st;
	int denied = 0;

	if (!*cmd) {
		cli_err("'': command not found");
		return 127;
	}
	if (strchr(cmd, '/')) {
		if (stat(cmd, &st) < 0) {
			cli_err("%s: %s", cmd, strerror(errno));
			return errno == ENOENT || errno == ENOTDIR ? 127 : 126;
		}
		if (S_ISDIR(st.st_mode)) {
			cli_err("%s: Is a directory", cmd);
			return 126;
		}
		if (access(cmd, X_OK) < 0) {
			cli_err("%s: %s", cmd, strerror(errno));
			return 126;
		}
		return 0;
	}
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	for (const char *p = path, *end;; p = end + 1) {
		size_t len;

		end = strchr(p, ':');
		len = end ? (size_t)(end - p) : strlen(p);
		if ((size_t)snprintf(buf, sizeof(buf), "%.*s%s%s", (int)len, p, len ? "/" : "",
				     cmd) < sizeof(buf) &&
		    stat(buf, &st) == 0 && !S_ISDIR(st.st_mode)) {
			if (access(buf, X_OK) == 0)
				return 0;
			denied = errno;
		}
		if (!end)
			break;
	}
	if (denied) {
		cli_err("%s: %s", cmd, strerror(denied));
		return 126;
	}
	cli_err("%s: command not found", cmd);
	return 127;
}

static void run_close_fds(const int *fds, int n)
{
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

/* Clear FD_CLOEXEC: the program exec'd next must keep the descriptor. */
static int run_keep_fd(int fd)
{
	int fl = fcntl(fd, F_GETFD);

	if (fl < 0 || fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC) < 0)
		return -errno;
	return 0;
}

/*
 * Build LIBRETTO_LEASE: the reply's key=value lines joined by spaces, then
 * "<name>_fd=N" for each received descriptor and "ctl_fd=N".
 */
static int run_lease(const char *reply, const int *fds, int nfds, int ctl, char *out,
		     size_t cap)
{
	char names[256], item[1024], *save = NULL, *tok;
	struct kv_buf b;
	int i = 0;

	kv_buf_init(&b, out, cap);
	for (const char *line = reply, *eol; line && *line; line = eol ? eol + 1 : NULL) {
		size_t len;

		eol = strchr(line, '\n');
		len = eol ? (size_t)(eol - line) : strlen(line);
		if (!len || !memchr(line, '=', len))
			continue;
		if (len >= sizeof(item) || memchr(line, ' ', len))
			return -EPROTO;
		memcpy(item, line, len);
		item[len] = '\0';
		kv_buf_raw(&b, b.len ? " " : "");
		kv_buf_raw(&b, item);
	}
	if (cli_reply_get(reply, "fds", names, sizeof(names)) < 0)
		names[0] = '\0';
	for (char *p = names; (tok = strtok_r(p, ",", &save)); p = NULL) {
		if (i == nfds || !run_fd_name_ok(tok))
			return -EPROTO;
		snprintf(item, sizeof(item), " %s_fd=%d", tok, fds[i++]);
		kv_buf_raw(&b, item);
	}
	if (i != nfds)
		return -EPROTO;
	snprintf(item, sizeof(item), " ctl_fd=%d", ctl);
	kv_buf_raw(&b, item);
	return kv_buf_ok(&b) ? 0 : -ENOSPC;
}

/* One --volume: the image (its real path once resolved) and the mount point. */
struct run_volume {
	const char *spec;
	char image[PATH_MAX];
	char mount[PATH_MAX];
};

/*
 * Split IMAGE[:MOUNTPOINT] at the last ":/" (an image path may hold ':'),
 * resolve IMAGE and trim the mount point's trailing slashes.  0, or prints
 * why and returns the exit status.
 */
static int run_volume_parse(const char *spec, struct run_volume *v)
{
	const char *colon = NULL;
	char img[PATH_MAX];
	size_t ilen, n;

	for (const char *p = strstr(spec, ":/"); p; p = strstr(p + 1, ":/"))
		colon = p;
	ilen = colon ? (size_t)(colon - spec) : strlen(spec);
	if (ilen == 0 || ilen >= sizeof(v->image))
		return cli_usage_err("run", "--volume wants IMAGE[:MOUNTPOINT], not '%s'", spec);
	v->spec = spec;
	snprintf(v->mount, sizeof(v->mount), "%s", colon ? colon + 1 : "/data");
	n = strlen(v->mount);
	while (n > 1 && v->mount[n - 1] == '/')
		v->mount[--n] = '\0';
	if (strcmp(v->mount, "/") == 0)
		return cli_usage_err("run", "--volume %s: the mount point cannot be /", spec);
	snprintf(img, sizeof(img), "%.*s", (int)ilen, spec);
	if (!realpath(img, v->image)) {
		if (errno == ENOENT && !colon && strchr(spec, ':'))
			return cli_usage_err("run", "--volume %s: no such image, and a mount point "
					     "after ':' must be absolute", spec);
		cli_err("volume %s: %s", img, strerror(errno));
		return CLI_EXIT_FAIL;
	}
	return 0;
}

/*
 * Ask librettod for volume v on the lease connection ctl and append its
 * LIBRETTO_VOLUMES entry to b: mount=,storage=,image=, the reply's other
 * keys, then fd=N (one descriptor) or fds=N.N.N.  The received
 * descriptors are kept open across exec and stored in fds[*nfds...].
 * 0, or prints "volume IMAGE: <why>" and returns -errno.
 */
static int run_volume_attach(int ctl, const struct run_volume *v, const char *storage,
			     struct kv_buf *b, int *fds, int *nfds)
{
	static char reply[CTL_MSG_MAX];
	char req[2 * PATH_MAX + 64], item[1024];
	int got[CTL_MAX_FDS], ngot = CTL_MAX_FDS, n, err;

	snprintf(req, sizeof(req), "volume\nimage=%s\nmount=%s\nstorage=%s\n", v->image,
		 v->mount, storage);
	n = cli_ctl_call(ctl, req, reply, sizeof(reply), got, &ngot, RUN_REGISTER_TIMEOUT_MS);
	if (n < 0) {
		cli_err("volume %s: librettod did not answer: %s", v->image, strerror(-n));
		return n;
	}
	err = cli_reply_errno(reply);
	if (err != 0) {
		char msg[1024] = "no reason given";

		if (err < 0)
			snprintf(msg, sizeof(msg), "malformed reply (no errno=)");
		else
			cli_reply_get(reply, "error", msg, sizeof(msg));
		/* librettod's sentences about a volume name it already. */
		if (!strncmp(msg, "volume ", 7) && !strncmp(msg + 7, v->image, strlen(v->image)))
			cli_err("%s", msg);
		else
			cli_err("volume %s: %s", v->image, msg);
		run_close_fds(got, ngot);
		return err < 0 ? err : -err;
	}
	kv_buf_raw(b, b->len ? ";" : "");
	snprintf(item, sizeof(item), "mount=%s,storage=%s,image=", v->mount, storage);
	kv_buf_raw(b, item);
	kv_buf_raw(b, v->image);
	if (ngot < 1 || (!strcmp(storage, "direct") && ngot != 1)) {
		cli_err("volume %s: librettod sent %d descriptors", v->image, ngot);
		run_close_fds(got, ngot);
		return -EPROTO;
	}
	/* Every key but errno and fds goes into the entry as it came. */
	for (const char *line = reply; *line; ) {
		size_t len = strcspn(line, "\n");

		if (len && memchr(line, '=', len) && strncmp(line, "errno=", 6) != 0 &&
		    strncmp(line, "error=", 6) != 0 && strncmp(line, "fds=", 4) != 0) {
			if (len >= sizeof(item) - 1 || memchr(line, ',', len) ||
			    memchr(line, ';', len)) {
				cli_err("volume %s: librettod's reply cannot be passed on: '%.*s'",
					v->image, (int)len, line);
				run_close_fds(got, ngot);
				return -EPROTO;
			}
			snprintf(item, sizeof(item), ",%.*s", (int)len, line);
			kv_buf_raw(b, item);
		}
		line += len;
		if (*line)
			line++;
	}
	kv_buf_raw(b, !strcmp(storage, "direct") ? ",fd=" : ",fds=");
	for (int i = 0; i < ngot; i++) {
		if (run_keep_fd(got[i]) < 0) {
			cli_err("volume %s: cannot keep its descriptor open: %s", v->image,
				strerror(errno));
			run_close_fds(got + i, ngot - i);
			return -EIO;
		}
		fds[(*nfds)++] = got[i];
		snprintf(item, sizeof(item), "%s%d", i ? "." : "", got[i]);
		kv_buf_raw(b, item);
	}
	return 0;
}

int cmd_run(int argc, char **argv)
{
	static char reply[CTL_MSG_MAX], lease[CTL_MSG_MAX + 512];
	static char volenv[RUN_MAX_VOLUMES * (2 * PATH_MAX + 256)];
	static struct run_volume vols[RUN_MAX_VOLUMES];
	int vfds[RUN_MAX_VOLUMES * CTL_MAX_FDS], nvfds = 0, nvols = 0;
	const char *storage = NULL;
	struct kv_buf vb;
	const char *mode = "direct", *name = NULL, *ip = "auto", *vf = "auto";
	const char *backend = "afxdp", *old_preload;
	const char *auto_high = NULL, *auto_low = NULL, *auto_dwell = NULL;
	char runtime[PATH_MAX], netns[128], defname[RUN_NAME_MAX + 1], req[512];
	char *preload;
	int fds[CTL_MAX_FDS], nfds = CTL_MAX_FDS;
	bool print_lease = false;
	int c, err, ctl, n;
	struct in_addr ia;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+:m:n:i:v:b:PhH:L:D:V:S:", run_opts, NULL)) != -1) {
		switch (c) {
		case 'V':
			if (nvols == RUN_MAX_VOLUMES)
				return cli_usage_err("run", "at most %d --volume", RUN_MAX_VOLUMES);
			vols[nvols++].spec = optarg;
			break;
		case 'S':
			storage = optarg;
			break;
		case 'H':
			auto_high = optarg;
			break;
		case 'L':
			auto_low = optarg;
			break;
		case 'D':
			auto_dwell = optarg;
			break;
		case 'm':
			mode = optarg;
			break;
		case 'n':
			name = optarg;
			break;
		case 'i':
			ip = optarg;
			break;
		case 'v':
			vf = optarg;
			break;
		case 'b':
			backend = optarg;
			break;
		case 'P':
			print_lease = true;
			break;
		case 'h':
			fputs(cmd_run_usage, stdout);
			return CLI_EXIT_OK;
		default:
			return cli_bad_option("run", c, argv);
		}
	}
	if (optind >= argc)
		return cli_usage_err("run", "name the program to run: libretto run [OPTIONS] -- CMD [ARGS...]");
	if ((auto_high || auto_low || auto_dwell) && strcmp(mode, "auto") != 0)
		return cli_usage_err("run", "--auto-high, --auto-low and --auto-dwell need --mode auto");
	if (!run_count_ok(auto_high) || !run_count_ok(auto_low) || !run_count_ok(auto_dwell))
		return cli_usage_err("run", "--auto-high, --auto-low and --auto-dwell want a whole "
				     "number of at most 9 digits");
	if (strcmp(mode, "direct") != 0 && strcmp(mode, "indirect") != 0 &&
	    strcmp(mode, "auto") != 0)
		return cli_usage_err("run", "unknown mode '%s' (direct, indirect or auto)", mode);
	if (strcmp(backend, "afxdp") != 0 && strcmp(backend, "afpacket") != 0 &&
	    strcmp(backend, "auto") != 0)
		return cli_usage_err("run", "unknown backend '%s' (afxdp, afpacket or auto)", backend);
	if (name && !run_name_ok(name))
		return cli_usage_err("run", "--name wants 1 to %d characters from A-Z a-z 0-9 . _ + @ : -",
				     RUN_NAME_MAX);
	if (!name) {
		run_default_name(argv[optind], defname, sizeof(defname));
		name = defname;
	}
	if (strcmp(mode, "indirect") == 0 && strcmp(ip, "auto") == 0)
		ip = "shared";
	if (strcmp(ip, "shared") == 0 && strcmp(mode, "indirect") != 0)
		return cli_usage_err("run", "--ip shared needs --mode indirect (auto needs an IP of "
				     "its own)");
	if (strcmp(ip, "auto") != 0 && strcmp(ip, "shared") != 0 && inet_pton(AF_INET, ip, &ia) != 1)
		return cli_usage_err("run", "--ip wants an IPv4 address like 10.42.0.10, not '%s'", ip);
	if (strcmp(vf, "auto") != 0 && !run_ifname_ok(vf))
		return cli_usage_err("run", "--vf wants an interface name like vf1, not '%s'", vf);
	if (storage && strcmp(storage, "direct") != 0 && strcmp(storage, "indirect") != 0)
		return cli_usage_err("run", "unknown storage '%s' (direct or indirect)", storage);
	if (storage && !nvols)
		return cli_usage_err("run", "--storage goes with --volume IMAGE[:MOUNTPOINT]");
	if (!storage)
		storage = "direct";
	err = run_check_cmd(argv[optind]);
	if (err)
		return err;
	/* Resolve every image before leasing anything: a typo costs no VF. */
	for (int i = 0; i < nvols; i++) {
		err = run_volume_parse(vols[i].spec, &vols[i]);
		if (err)
			return err;
	}

	if (cli_find_runtime(runtime, sizeof(runtime)) < 0)
		return CLI_EXIT_FAIL;
	if (strpbrk(runtime, " :\t\n")) {
		/* ld.so splits LD_PRELOAD at spaces and colons. */
		cli_err("the runtime's path %s holds a space or a colon, which LD_PRELOAD cannot "
			"carry; move it or set LIBRETTO_RUNTIME", runtime);
		return CLI_EXIT_FAIL;
	}

	/* Enter librettod's namespace before leasing, so a refusal leaves nothing held. */
	err = daemon_netns(netns, sizeof(netns));
	if (err == 0) {
		cli_err("librettod is not running: run `libretto up` first");
		return CLI_EXIT_FAIL;
	}
	if (err < 0) {
		cli_err("cannot ask librettod for its status at %s: %s", ctl_path(), strerror(-err));
		return CLI_EXIT_FAIL;
	}
	if (netns[0] && strcmp(netns, "-") != 0) {
		err = cli_netns_is_current(netns);
		if (err == -ENOENT) {
			cli_err("librettod runs in network namespace %s, which no longer exists "
				"(was the testbed removed under it?): run `libretto down`, then "
				"`libretto testbed up` and `libretto up`", netns);
			return CLI_EXIT_FAIL;
		}
		if (err < 0) {
			cli_err("librettod runs in network namespace %s, which cannot be checked: %s",
				netns, strerror(-err));
			return CLI_EXIT_FAIL;
		}
		if (err == 0) {
			if (geteuid() != 0) {
				cli_err("librettod runs in network namespace %s and entering it needs "
					"root: run `sudo libretto run ...` (or start libretto inside %s, "
					"e.g. under `sudo libretto testbed exec host -- ...`)", netns, netns);
				return CLI_EXIT_FAIL;
			}
			err = cli_netns_enter(netns);
			if (err < 0) {
				cli_err("cannot enter network namespace %s: %s", netns, strerror(-err));
				return CLI_EXIT_FAIL;
			}
		}
	}

	ctl = cli_ctl_open(false);
	if (ctl < 0)
		return CLI_EXIT_FAIL;
	if (strcmp(mode, "indirect") == 0)
		snprintf(req, sizeof(req), "register\nname=%s\nmode=indirect\nip=%s\n", name, ip);
	else if (strcmp(mode, "auto") == 0)
		snprintf(req, sizeof(req), "register\nname=%s\nmode=auto\nip=%s\n%s%s%s%s%s%s%s%s%s",
			 name, ip, auto_high ? "auto_high=" : "", auto_high ? auto_high : "",
			 auto_high ? "\n" : "", auto_low ? "auto_low=" : "", auto_low ? auto_low : "",
			 auto_low ? "\n" : "", auto_dwell ? "auto_dwell_ms=" : "",
			 auto_dwell ? auto_dwell : "", auto_dwell ? "\n" : "");
	else
		snprintf(req, sizeof(req), "register\nname=%s\nmode=direct\nip=%s\nvf=%s\n"
			 "backend=%s\n", name, ip, vf, backend);
	n = cli_ctl_call(ctl, req, reply, sizeof(reply), fds, &nfds, RUN_REGISTER_TIMEOUT_MS);
	if (n < 0) {
		cli_err("librettod did not answer `register`: %s", strerror(-n));
		return CLI_EXIT_FAIL;
	}
	err = cli_reply_errno(reply);
	if (err != 0) {
		char msg[1024] = "no reason given";

		cli_reply_get(reply, "error", msg, sizeof(msg));
		if (err < 0)
			snprintf(msg, sizeof(msg), "malformed reply (no errno=)");
		cli_err("%s", msg);
		run_close_fds(fds, nfds);
		return CLI_EXIT_FAIL;
	}
	if (strcmp(backend, "auto") == 0) {
		char got[32] = "", why[128] = "";

		cli_reply_get(reply, "backend", got, sizeof(got));
		cli_reply_get(reply, "fallback_reason", why, sizeof(why));
		if (strcmp(got, "afpacket") == 0) {
			char vfname[IF_NAMESIZE + 8] = "the VF";

			cli_reply_get(reply, "vf", vfname, sizeof(vfname));
			cli_err("AF_XDP could not be set up on %s (%s); using AF_PACKET, which is "
				"slower (librettod's log has the details)", vfname,
				why[0] ? why : "no reason given");
		}
	}

	for (int i = 0; i < nfds; i++) {
		if (run_keep_fd(fds[i]) < 0) {
			cli_err("cannot keep the leased descriptors open: %s", strerror(errno));
			return CLI_EXIT_FAIL;
		}
	}
	if (run_keep_fd(ctl) < 0) {
		cli_err("cannot keep the lease connection open: %s", strerror(errno));
		return CLI_EXIT_FAIL;
	}
	/* The volumes, on the lease; a refusal closes it, which releases those granted. */
	kv_buf_init(&vb, volenv, sizeof(volenv));
	for (int i = 0; i < nvols; i++) {
		if (run_volume_attach(ctl, &vols[i], storage, &vb, vfds, &nvfds) < 0) {
			close(ctl);
			run_close_fds(fds, nfds);
			run_close_fds(vfds, nvfds);
			return CLI_EXIT_FAIL;
		}
	}
	if (!kv_buf_ok(&vb)) {
		cli_err("the volumes' environment is too long");
		return CLI_EXIT_FAIL;
	}
	err = run_lease(reply, fds, nfds, ctl, lease, sizeof(lease));
	if (err < 0) {
		cli_err("librettod's register reply cannot be passed on (%s): fds= names %s",
			err == -ENOSPC ? "too long" : "malformed",
			err == -ENOSPC ? "fit" : "must match the descriptors received");
		return CLI_EXIT_FAIL;
	}
	if (print_lease) {
		fprintf(stderr, "%s=%s\n", LIBRETTO_LEASE_ENV, lease);
		if (nvols)
			fprintf(stderr, "%s=%s\n", RUN_VOLUMES_ENV, volenv);
	}

	old_preload = getenv("LD_PRELOAD");
	if (old_preload && *old_preload) {
		preload = malloc(strlen(runtime) + strlen(old_preload) + 2);
		if (!preload) {
			cli_err("out of memory");
			return CLI_EXIT_FAIL;
		}
		sprintf(preload, "%s:%s", runtime, old_preload);
	} else {
		preload = runtime;
	}
	/*
	 * An inherited LIBRETTO_VOLUMES (libretto run under a program that has
	 * volumes) names its parent's descriptors, not this program's.
	 */
	if ((nvols ? setenv(RUN_VOLUMES_ENV, volenv, 1) : unsetenv(RUN_VOLUMES_ENV)) < 0 ||
	    setenv(LIBRETTO_LEASE_ENV, lease, 1) < 0 || setenv("LD_PRELOAD", preload, 1) < 0) {
		cli_err("cannot set the environment: %s", strerror(errno));
		return CLI_EXIT_FAIL;
	}
	fflush(stderr);
	execvp(argv[optind], &argv[optind]);
	err = errno;
	/* Give the lease back before anything else, so the VF is free at once. */
	close(ctl);
	run_close_fds(fds, nfds);
	run_close_fds(vfds, nvfds);
	cli_err("%s: %s", argv[optind], err == ENOENT && !strchr(argv[optind], '/') ?
		"command not found" : strerror(err));
	return err == ENOENT ? 127 : 126;
}
