/* `libretto testbed up|down|status|exec`: the embedded testbed of network namespaces (docs/testbed.md). */
#include "cli.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/kv.h"

#define TB_VFS_DEFAULT 4
#define TB_VFS_MAX 64
#define TB_MAX_LINKS 256

/* The three namespaces, in the order up creates them. */
enum tb_role { TB_PEER, TB_HOST, TB_LINUX, TB_NROLES };
static const char *const tb_role_name[TB_NROLES] = { "peer", "host", "linux" };

/* Names of everything the testbed makes; the namespace prefix is configurable for tests. */
struct tb {
	char ns[TB_NROLES][64];
	/* Probe results. */
	bool ns_exists[TB_NROLES];
	bool sw0, pf0, pf0_sw, wire0, wire0_sw, lnx0, lnx0_sw;
	bool vf[TB_VFS_MAX + 1], vf_sw[TB_VFS_MAX + 1];
	int nvfs; /* the highest N with vfN present */
	/* Links that exist but differ from the contract, as "name:config ". */
	struct kv_buf drift;
	char drift_mem[1024];
};

static int tb_init(struct tb *tb)
{
	const char *prefix = getenv("LIBRETTO_TESTBED_PREFIX");

	memset(tb, 0, sizeof(*tb));
	kv_buf_init(&tb->drift, tb->drift_mem, sizeof(tb->drift_mem));
	if (!prefix || !*prefix)
		prefix = "libretto";
	if (strlen(prefix) > 40) {
		cli_err("LIBRETTO_TESTBED_PREFIX is too long (40 characters at most)");
		return -EINVAL;
	}
	for (const char *p = prefix; *p; p++) {
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_') {
			cli_err("LIBRETTO_TESTBED_PREFIX may hold only letters, digits, '-' and '_'");
			return -EINVAL;
		}
	}
	for (int r = 0; r < TB_NROLES; r++)
		snprintf(tb->ns[r], sizeof(tb->ns[r]), "%s-%s", prefix, tb_role_name[r]);
	return 0;
}

static const struct cli_link *tb_find(const struct cli_link *l, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(l[i].name, name) == 0)
			return &l[i];
	return NULL;
}

static bool tb_has(const struct cli_link *l, int n, const char *name)
{
	return tb_find(l, n, name) != NULL;
}

/*
 * Note a link that exists but differs from the contract: not up, another
 * MAC (mac NULL: any), another IPv4 address (cidr NULL: none at all), or
 * another bridge (master: the bridge's ifindex, 0 for none), so that up
 * re-applies the configuration instead of calling the testbed complete.
 */
static void tb_check(struct tb *tb, const struct cli_link *links, int n, const char *name,
		     const char *mac, const char *cidr, int master)
{
	const struct cli_link *l = tb_find(links, n, name);
	char have[32], item[64];
	bool ok;

	if (!l)
		return;
	snprintf(have, sizeof(have), "%02x:%02x:%02x:%02x:%02x:%02x", l->mac[0], l->mac[1],
		 l->mac[2], l->mac[3], l->mac[4], l->mac[5]);
	ok = (l->flags & IFF_UP) && l->master == master;
	if (mac && (!l->has_mac || strcmp(have, mac) != 0))
		ok = false;
	if (cidr)
		ok = ok && l->naddr == 1 && strcmp(l->addr[0], cidr) == 0;
	else
		ok = ok && l->naddr == 0;
	if (ok)
		return;
	snprintf(item, sizeof(item), "%s:config ", name);
	kv_buf_raw(&tb->drift, item);
}

/* Look at what exists now.  Needs root (it enters the namespaces). */
static int tb_probe(struct tb *tb)
{
	static struct cli_link links[TB_MAX_LINKS];
	char name[IF_NAMESIZE + 8];
	int n, err;

	for (int r = 0; r < TB_NROLES; r++) {
		tb->ns_exists[r] = cli_netns_exists(tb->ns[r]);
		if (!tb->ns_exists[r])
			continue;
		err = cli_netns_enter(tb->ns[r]);
		if (err < 0) {
			cli_err("cannot enter network namespace %s: %s", tb->ns[r], strerror(-err));
			return err;
		}
		n = netinfo_links(links, TB_MAX_LINKS);
		err = cli_netns_leave();
		if (err < 0 || n < 0) {
			cli_err("cannot list the links of %s: %s", tb->ns[r],
				strerror(-(err < 0 ? err : n)));
			return err < 0 ? err : n;
		}
		switch (r) {
		case TB_PEER:
			tb->wire0 = tb_has(links, n, "wire0");
			tb_check(tb, links, n, "wire0", "02:4c:00:00:00:01", "10.42.0.1/24", 0);
			break;
		case TB_LINUX:
			tb->lnx0 = tb_has(links, n, "lnx0");
			tb_check(tb, links, n, "lnx0", "02:4c:00:00:02:01", "10.42.0.254/24", 0);
			break;
		case TB_HOST: {
			const struct cli_link *sw = tb_find(links, n, "sw0");
			int br = sw ? sw->index : -1;
			char mac[32];

			tb_check(tb, links, n, "sw0", NULL, NULL, 0);
			tb_check(tb, links, n, "pf0", "02:4c:00:00:01:00", NULL, 0);
			tb_check(tb, links, n, "pf0-sw", NULL, NULL, br);
			tb_check(tb, links, n, "wire0-sw", NULL, NULL, br);
			tb_check(tb, links, n, "lnx0-sw", NULL, NULL, br);
			tb->sw0 = tb_has(links, n, "sw0");
			tb->pf0 = tb_has(links, n, "pf0");
			tb->pf0_sw = tb_has(links, n, "pf0-sw");
			tb->wire0_sw = tb_has(links, n, "wire0-sw");
			tb->lnx0_sw = tb_has(links, n, "lnx0-sw");
			for (int k = 1; k <= TB_VFS_MAX; k++) {
				snprintf(name, sizeof(name), "vf%d", k);
				tb->vf[k] = tb_has(links, n, name);
				snprintf(name, sizeof(name), "vf%d-sw", k);
				tb->vf_sw[k] = tb_has(links, n, name);
				tb_check(tb, links, n, name, NULL, NULL, br);
				snprintf(name, sizeof(name), "vf%d", k);
				snprintf(mac, sizeof(mac), "02:4c:00:00:01:%02x", k);
				tb_check(tb, links, n, name, mac, NULL, 0);
				if (tb->vf[k])
					tb->nvfs = k;
			}
			break;
		}
		default:
			break;
		}
	}
	return 0;
}

static bool tb_any(const struct tb *tb)
{
	return tb->ns_exists[TB_PEER] || tb->ns_exists[TB_HOST] || tb->ns_exists[TB_LINUX];
}

/*
 * True if the testbed exists with exactly nvfs VFs and as the contract
 * configures it.  Otherwise the names of what is missing or changed are
 * appended to missing (which may be NULL), space separated.
 */
static bool tb_complete(const struct tb *tb, int nvfs, struct kv_buf *missing)
{
	struct kv_buf dummy;
	char mem[1];
	bool ok = true;

	if (!missing) {
		kv_buf_init(&dummy, mem, sizeof(mem));
		missing = &dummy;
	}
#define TB_NEED(cond, what) do { if (!(cond)) { ok = false; kv_buf_raw(missing, what " "); } } while (0)
	TB_NEED(tb->ns_exists[TB_PEER], "netns:peer");
	TB_NEED(tb->ns_exists[TB_HOST], "netns:host");
	TB_NEED(tb->ns_exists[TB_LINUX], "netns:linux");
	TB_NEED(tb->wire0, "wire0");
	TB_NEED(tb->sw0, "sw0");
	TB_NEED(tb->wire0_sw, "wire0-sw");
	TB_NEED(tb->pf0, "pf0");
	TB_NEED(tb->pf0_sw, "pf0-sw");
	TB_NEED(tb->lnx0_sw, "lnx0-sw");
	TB_NEED(tb->lnx0, "lnx0");
#undef TB_NEED
	if (tb->drift.len) {
		ok = false;
		kv_buf_raw(missing, tb->drift.p);
	}
	for (int k = 1; k <= TB_VFS_MAX; k++) {
		char name[32];

		if (k <= nvfs && (!tb->vf[k] || !tb->vf_sw[k])) {
			snprintf(name, sizeof(name), "vf%d ", k);
			kv_buf_raw(missing, name);
			ok = false;
		} else if (k > nvfs && (tb->vf[k] || tb->vf_sw[k])) {
			ok = false;
		}
	}
	if (missing->len && missing->p[missing->len - 1] == ' ')
		missing->p[--missing->len] = '\0';
	return ok;
}

/* Run one command (NULL-terminated arguments); 0, or -1 after reporting the failure. */
static int tb_cmd(const char *ns, int flags, ...)
{
	const char *argv[32];
	va_list ap;
	int n = 0;

	va_start(ap, flags);
	while (n < 31 && (argv[n] = va_arg(ap, const char *)))
		n++;
	va_end(ap);
	argv[n] = NULL;
	return cli_spawn(ns, argv, flags | CLI_SPAWN_REPORT) == 0 ? 0 : -1;
}

/* Probes may fail without it being an error: no report, no output. */
static int tb_cmd_quiet(const char *ns, ...)
{
	const char *argv[32];
	va_list ap;
	int n = 0;

	va_start(ap, ns);
	while (n < 31 && (argv[n] = va_arg(ap, const char *)))
		n++;
	va_end(ap);
	argv[n] = NULL;
	return cli_spawn(ns, argv, CLI_SPAWN_QUIET);
}

static bool tb_have_ipv6(void)
{
	return access("/proc/sys/net/ipv6", F_OK) == 0;
}

/* Offloads off so that every frame XDP sees is complete and at most MTU sized. */
static int tb_offloads_off(const char *ns, const char *dev)
{
	return tb_cmd(ns, CLI_SPAWN_NOSTDOUT, "ethtool", "-K", dev, "tx", "off", "tso", "off",
		      "gso", "off", "gro", "off", NULL);
}

/*
 * Make the veth pair NAME (in namespace ns, with mac) <-> NAME-sw (in the
 * host namespace) exist.  A lone half (only possible if somebody made a
 * same-named device by hand) is removed first.
 */
static int tb_veth(const struct tb *tb, const char *ns, const char *name, const char *mac,
		   bool have, bool have_sw)
{
	const char *host = tb->ns[TB_HOST];
	char sw[IF_NAMESIZE + 8];

	snprintf(sw, sizeof(sw), "%s-sw", name);
	if (have && have_sw)
		return 0;
	if (have && tb_cmd(ns, 0, "ip", "link", "del", "dev", name, NULL) < 0)
		return -1;
	if (have_sw && tb_cmd(host, 0, "ip", "link", "del", "dev", sw, NULL) < 0)
		return -1;
	if (strcmp(ns, host) == 0)
		return tb_cmd(NULL, 0, "ip", "-n", ns, "link", "add", name, "address", mac,
			      "type", "veth", "peer", "name", sw, NULL);
	return tb_cmd(NULL, 0, "ip", "-n", ns, "link", "add", name, "address", mac,
		      "type", "veth", "peer", "name", sw, "netns", host, NULL);
}

/* The host-side end: a bridge port with offloads off. */
static int tb_port(const struct tb *tb, const char *name)
{
	const char *host = tb->ns[TB_HOST];
	char sw[IF_NAMESIZE + 8];

	snprintf(sw, sizeof(sw), "%s-sw", name);
	if (tb_cmd(NULL, 0, "ip", "-n", host, "link", "set", "dev", sw, "master", "sw0", NULL) < 0 ||
	    tb_offloads_off(host, sw) < 0 ||
	    tb_cmd(NULL, 0, "ip", "-n", host, "link", "set", "dev", sw, "up", NULL) < 0)
		return -1;
	return 0;
}

/* A NIC function (pf0, vfN): the MAC of the contract, no IPv4, no IPv6, up. */
static int tb_function(const struct tb *tb, const char *name, const char *mac)
{
	const char *host = tb->ns[TB_HOST];
	char key[128];

	if (tb_cmd(NULL, 0, "ip", "-n", host, "link", "set", "dev", name, "address", mac, NULL) < 0)
		return -1;
	if (tb_have_ipv6()) {
		snprintf(key, sizeof(key), "net.ipv6.conf.%s.disable_ipv6=1", name);
		if (tb_cmd(host, CLI_SPAWN_NOSTDOUT, "sysctl", "-q", "-w", key, NULL) < 0)
			return -1;
	}
	if (tb_cmd(NULL, 0, "ip", "-n", host, "-4", "addr", "flush", "dev", name, NULL) < 0 ||
	    tb_cmd(NULL, 0, "ip", "-n", host, "link", "set", "dev", name, "up", NULL) < 0)
		return -1;
	return tb_port(tb, name);
}

/* An end with a kernel IPv4 address: wire0 in the peer, lnx0 in the linux namespace. */
static int tb_endpoint(const struct tb *tb, const char *ns, const char *name, const char *mac,
		       const char *cidr)
{
	if (tb_cmd(NULL, 0, "ip", "-n", ns, "link", "set", "dev", name, "address", mac, NULL) < 0 ||
	    tb_offloads_off(ns, name) < 0 ||
	    tb_cmd(NULL, 0, "ip", "-n", ns, "addr", "replace", cidr, "dev", name, NULL) < 0 ||
	    tb_cmd(NULL, 0, "ip", "-n", ns, "link", "set", "dev", name, "up", NULL) < 0)
		return -1;
	return tb_port(tb, name);
}

static int tb_namespace(const struct tb *tb, enum tb_role r)
{
	const char *ns = tb->ns[r];

	if (!tb->ns_exists[r] && tb_cmd(NULL, 0, "ip", "netns", "add", ns, NULL) < 0)
		return -1;
	/*
	 * IPv6 off before any device is made ("default"), and for any that
	 * exists ("all"): router solicitations and MLD reports would otherwise
	 * reach the applications' NIC functions as noise.
	 */
	if (tb_have_ipv6() &&
	    (tb_cmd(ns, CLI_SPAWN_NOSTDOUT, "sysctl", "-q", "-w",
		    "net.ipv6.conf.default.disable_ipv6=1", NULL) < 0 ||
	     tb_cmd(ns, CLI_SPAWN_NOSTDOUT, "sysctl", "-q", "-w",
		    "net.ipv6.conf.all.disable_ipv6=1", NULL) < 0))
		return -1;
	return tb_cmd(NULL, 0, "ip", "-n", ns, "link", "set", "dev", "lo", "up", NULL);
}

/* Bring everything to the contract with nvfs VFs, creating only what is missing. */
static int tb_converge(struct tb *tb, int nvfs)
{
	const char *host = tb->ns[TB_HOST];
	char name[32], mac[32];

	for (int r = 0; r < TB_NROLES; r++)
		if (tb_namespace(tb, (enum tb_role)r) < 0)
			return -1;
	if (!tb->sw0 &&
	    tb_cmd(NULL, 0, "ip", "-n", host, "link", "add", "sw0", "type", "bridge", NULL) < 0)
		return -1;
	if (tb_cmd(NULL, 0, "ip", "-n", host, "-4", "addr", "flush", "dev", "sw0", NULL) < 0 ||
	    tb_cmd(NULL, 0, "ip", "-n", host, "link", "set", "dev", "sw0", "up", NULL) < 0)
		return -1;

	if (tb_veth(tb, tb->ns[TB_PEER], "wire0", "02:4c:00:00:00:01", tb->wire0, tb->wire0_sw) < 0 ||
	    tb_endpoint(tb, tb->ns[TB_PEER], "wire0", "02:4c:00:00:00:01", "10.42.0.1/24") < 0)
		return -1;
	if (tb_veth(tb, host, "pf0", "02:4c:00:00:01:00", tb->pf0, tb->pf0_sw) < 0 ||
	    tb_function(tb, "pf0", "02:4c:00:00:01:00") < 0)
		return -1;
	for (int k = 1; k <= nvfs; k++) {
		snprintf(name, sizeof(name), "vf%d", k);
		snprintf(mac, sizeof(mac), "02:4c:00:00:01:%02x", k);
		if (tb_veth(tb, host, name, mac, tb->vf[k], tb->vf_sw[k]) < 0 ||
		    tb_function(tb, name, mac) < 0)
			return -1;
	}
	/* Deleting one end of a veth pair deletes the other. */
	for (int k = nvfs + 1; k <= TB_VFS_MAX; k++) {
		if (tb->vf[k]) {
			snprintf(name, sizeof(name), "vf%d", k);
			if (tb_cmd(NULL, 0, "ip", "-n", host, "link", "del", "dev", name, NULL) < 0)
				return -1;
		} else if (tb->vf_sw[k]) {
			snprintf(name, sizeof(name), "vf%d-sw", k);
			if (tb_cmd(NULL, 0, "ip", "-n", host, "link", "del", "dev", name, NULL) < 0)
				return -1;
		}
	}
	if (tb_veth(tb, tb->ns[TB_LINUX], "lnx0", "02:4c:00:00:02:01", tb->lnx0, tb->lnx0_sw) < 0 ||
	    tb_endpoint(tb, tb->ns[TB_LINUX], "lnx0", "02:4c:00:00:02:01", "10.42.0.254/24") < 0)
		return -1;
	return 0;
}

/* 1 if librettod answers and runs in our host namespace, 0 if not, -errno. */
static int tb_daemon_here(const struct tb *tb)
{
	char netns[128];
	int err = daemon_netns(netns, sizeof(netns));

	if (err <= 0)
		return err;
	return strcmp(netns, tb->ns[TB_HOST]) == 0;
}

static int tb_parse_vfs(const char *s, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < 1 || v > TB_VFS_MAX)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

static const struct option tb_up_opts[] = {
	{ "vfs", required_argument, NULL, 'n' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ 0 },
};

static const char tb_up_usage[] =
	"usage: libretto testbed up [--vfs N] [--verbose]\n"
	"\n"
	"Build the embedded testbed (docs/testbed.md): network namespaces\n"
	"libretto-peer (wire0 10.42.0.1/24), libretto-host (bridge sw0 with the\n"
	"ports of wire0, pf0, vf1..vfN and lnx0) and libretto-linux\n"
	"(lnx0 10.42.0.254/24).  pf0 and the VFs have no IP address.\n"
	"\n"
	"Idempotent: only what is missing is made.  Run again with another --vfs\n"
	"to add or remove VFs; without --vfs an existing testbed keeps its count.\n"
	"\n"
	"  --vfs N      number of VF netdevs, 1 to 64 (default 4)\n"
	"  --verbose    print every command before it runs\n"
	"\n"
	"Needs root.  LIBRETTO_TESTBED_PREFIX (default \"libretto\") renames the\n"
	"namespaces, for tests that must not disturb a testbed in use.\n";

static int tb_up(int argc, char **argv)
{
	struct tb tb;
	int c, nvfs = 0, here;
	bool explicit_vfs = false;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+:n:vh", tb_up_opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (tb_parse_vfs(optarg, &nvfs) < 0)
				return cli_usage_err("testbed up",
						     "--vfs wants a number from 1 to %d, not '%s'",
						     TB_VFS_MAX, optarg);
			explicit_vfs = true;
			break;
		case 'v':
			setenv("LIBRETTO_VERBOSE", "1", 1);
			break;
		case 'h':
			fputs(tb_up_usage, stdout);
			return CLI_EXIT_OK;
		default:
			return cli_bad_option("testbed up", c, argv);
		}
	}
	if (optind < argc)
		return cli_usage_err("testbed up", "unexpected argument '%s'", argv[optind]);
	if (!cli_need_root("libretto testbed up"))
		return CLI_EXIT_FAIL;
	if (tb_init(&tb) < 0 || tb_probe(&tb) < 0)
		return CLI_EXIT_FAIL;
	if (!explicit_vfs)
		nvfs = tb.nvfs ? tb.nvfs : TB_VFS_DEFAULT;
	if (tb_complete(&tb, nvfs, NULL)) {
		printf("The testbed is already up with %d VF%s: nothing to do.\n", nvfs,
		       nvfs == 1 ? "" : "s");
		return CLI_EXIT_OK;
	}
	here = tb_daemon_here(&tb);
	if (here > 0 && tb.nvfs > nvfs) {
		cli_err("librettod is running on the testbed and may be using vf%d..vf%d, which "
			"--vfs %d would remove. Stop it first: `libretto down`, then "
			"`libretto testbed up --vfs %d`, then `libretto up`.",
			nvfs + 1, tb.nvfs, nvfs, nvfs);
		return CLI_EXIT_FAIL;
	}
	if (tb_converge(&tb, nvfs) < 0) {
		cli_err("testbed up failed; what was made so far stays, "
			"`libretto testbed down` removes it");
		return CLI_EXIT_FAIL;
	}
	printf("The testbed is up with %d VF%s:\n", nvfs, nvfs == 1 ? "" : "s");
	printf("  %-16s wire0 10.42.0.1/24, the outside world (Linux stack)\n", tb.ns[TB_PEER]);
	printf("  %-16s bridge sw0, pf0 and vf1..vf%d without IP (librettod and apps run here)\n",
	       tb.ns[TB_HOST], nvfs);
	printf("  %-16s lnx0 10.42.0.254/24, the Linux-stack baseline\n", tb.ns[TB_LINUX]);
	if (here > 0)
		printf("librettod is running and does not know the new VFs: restart it "
		       "(`libretto down`, `libretto up`) to use them.\n");
	else
		printf("Next: `libretto up` starts librettod on it.\n");
	return CLI_EXIT_OK;
}

/* Warn about processes that still live in a namespace we are about to delete. */
static void tb_warn_users(const char *ns)
{
	char path[PATH_MAX];
	struct stat nst, pst;
	struct dirent *d;
	DIR *dir;
	int shown = 0;

	snprintf(path, sizeof(path), "/run/netns/%s", ns);
	if (stat(path, &nst) < 0)
		return;
	dir = opendir("/proc");
	if (!dir)
		return;
	while ((d = readdir(dir))) {
		char comm[64] = "?";
		FILE *f;

		if (!isdigit((unsigned char)d->d_name[0]))
			continue;
		snprintf(path, sizeof(path), "/proc/%s/ns/net", d->d_name);
		if (stat(path, &pst) < 0 || pst.st_ino != nst.st_ino || pst.st_dev != nst.st_dev)
			continue;
		snprintf(path, sizeof(path), "/proc/%s/comm", d->d_name);
		f = fopen(path, "re");
		if (f) {
			if (fgets(comm, sizeof(comm), f))
				comm[strcspn(comm, "\n")] = '\0';
			fclose(f);
		}
		if (shown++ < 8)
			cli_err("warning: process %s (%s) still runs in %s; its devices are removed "
				"but it keeps an empty namespace until it exits", d->d_name, comm, ns);
	}
	if (shown > 8)
		cli_err("warning: and %d more processes in %s", shown - 8, ns);
	closedir(dir);
}

static const struct option tb_down_opts[] = {
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ 0 },
};

static const char tb_down_usage[] =
	"usage: libretto testbed down [--verbose]\n"
	"\n"
	"Remove the testbed: the namespaces libretto-peer, libretto-host and\n"
	"libretto-linux and the links `testbed up` made in them.  Nothing else\n"
	"is touched.  Fine when nothing exists.  Refuses while librettod runs in\n"
	"the testbed (stop it with `libretto down`).  Needs root.\n"
	"\n"
	"  --verbose    print every command before it runs\n";

static int tb_down(int argc, char **argv)
{
	struct tb tb;
	char name[32];
	int c, here, failed = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+:vh", tb_down_opts, NULL)) != -1) {
		switch (c) {
		case 'v':
			setenv("LIBRETTO_VERBOSE", "1", 1);
			break;
		case 'h':
			fputs(tb_down_usage, stdout);
			return CLI_EXIT_OK;
		default:
			return cli_bad_option("testbed down", c, argv);
		}
	}
	if (optind < argc)
		return cli_usage_err("testbed down", "unexpected argument '%s'", argv[optind]);
	if (!cli_need_root("libretto testbed down"))
		return CLI_EXIT_FAIL;
	if (tb_init(&tb) < 0 || tb_probe(&tb) < 0)
		return CLI_EXIT_FAIL;
	if (!tb_any(&tb)) {
		printf("The testbed is not up: nothing to remove.\n");
		return CLI_EXIT_OK;
	}
	here = tb_daemon_here(&tb);
	if (here > 0) {
		cli_err("librettod is running in %s: stop it first with `libretto down`",
			tb.ns[TB_HOST]);
		return CLI_EXIT_FAIL;
	}
	for (int r = 0; r < TB_NROLES; r++)
		if (tb.ns_exists[r])
			tb_warn_users(tb.ns[r]);
	/*
	 * Delete the links by name before the namespaces: a namespace that a
	 * process still holds outlives `ip netns del`, and its devices with it.
	 * Deleting one end of a veth pair deletes both.
	 */
	if (tb.wire0)
		failed |= tb_cmd(NULL, 0, "ip", "-n", tb.ns[TB_PEER], "link", "del", "dev", "wire0", NULL);
	if (tb.lnx0)
		failed |= tb_cmd(NULL, 0, "ip", "-n", tb.ns[TB_LINUX], "link", "del", "dev", "lnx0", NULL);
	if (tb.ns_exists[TB_HOST]) {
		const char *host = tb.ns[TB_HOST];

		if (tb.pf0)
			failed |= tb_cmd(NULL, 0, "ip", "-n", host, "link", "del", "dev", "pf0", NULL);
		for (int k = 1; k <= TB_VFS_MAX; k++) {
			if (!tb.vf[k])
				continue;
			snprintf(name, sizeof(name), "vf%d", k);
			failed |= tb_cmd(NULL, 0, "ip", "-n", host, "link", "del", "dev", name, NULL);
		}
		/* Lone bridge-side halves, if any, then the bridge. */
		tb_cmd_quiet(NULL, "ip", "-n", host, "link", "del", "dev", "pf0-sw", NULL);
		tb_cmd_quiet(NULL, "ip", "-n", host, "link", "del", "dev", "wire0-sw", NULL);
		tb_cmd_quiet(NULL, "ip", "-n", host, "link", "del", "dev", "lnx0-sw", NULL);
		for (int k = 1; k <= TB_VFS_MAX; k++) {
			if (!tb.vf_sw[k] || tb.vf[k])
				continue;
			snprintf(name, sizeof(name), "vf%d-sw", k);
			tb_cmd_quiet(NULL, "ip", "-n", host, "link", "del", "dev", name, NULL);
		}
		if (tb.sw0)
			failed |= tb_cmd(NULL, 0, "ip", "-n", host, "link", "del", "dev", "sw0", NULL);
	}
	for (int r = 0; r < TB_NROLES; r++)
		if (tb.ns_exists[r])
			failed |= tb_cmd(NULL, 0, "ip", "netns", "del", tb.ns[r], NULL);
	if (failed) {
		cli_err("testbed down did not remove everything (see above)");
		return CLI_EXIT_FAIL;
	}
	printf("The testbed is down.\n");
	return CLI_EXIT_OK;
}

static const char tb_status_usage[] =
	"usage: libretto testbed status [--json]\n"
	"\n"
	"Show whether the testbed is up, and each namespace's links with their\n"
	"state, MAC, bridge and IPv4 addresses.  Needs root.\n"
	"\n"
	"  --json    one JSON object instead of text\n";

static const char *tb_link_state(const struct cli_link *l)
{
	if (!(l->flags & IFF_UP))
		return "down";
	return (l->flags & IFF_LOWER_UP) ? "up" : "no-carrier";
}

static const char *tb_master_name(const struct cli_link *links, int n, int master)
{
	for (int i = 0; i < n; i++)
		if (links[i].index == master)
			return links[i].name;
	return NULL;
}

static void tb_mac_str(const struct cli_link *l, char *out, size_t cap)
{
	if (!l->has_mac) {
		snprintf(out, cap, "-");
		return;
	}
	snprintf(out, cap, "%02x:%02x:%02x:%02x:%02x:%02x", l->mac[0], l->mac[1], l->mac[2],
		 l->mac[3], l->mac[4], l->mac[5]);
}

static int tb_status(int argc, char **argv)
{
	static struct cli_link links[TB_MAX_LINKS];
	char missing_mem[1024], mac[32];
	struct kv_buf missing;
	struct tb tb;
	bool json = false, complete;
	const char *state;
	int c;

	c = cli_json_opts("testbed status", tb_status_usage, argc, argv, &json);
	if (c >= 0)
		return c;
	if (!cli_need_root("libretto testbed status"))
		return CLI_EXIT_FAIL;
	if (tb_init(&tb) < 0 || tb_probe(&tb) < 0)
		return CLI_EXIT_FAIL;
	kv_buf_init(&missing, missing_mem, sizeof(missing_mem));
	complete = tb_complete(&tb, tb.nvfs ? tb.nvfs : TB_VFS_DEFAULT, &missing);
	state = complete ? "up" : tb_any(&tb) ? "incomplete" : "down";

	if (json) {
		printf("{\"state\":\"%s\",\"up\":%s,\"vfs\":%d,", state, complete ? "true" : "false",
		       tb.nvfs);
		printf("\"missing\":[");
		{
			struct kv kv;

			if (kv_parse(&kv, missing.p, missing.len) == 0) {
				for (int i = 0; i < kv.n; i++) {
					printf("%s", i ? "," : "");
					cli_json_str(stdout, kv.pair[i].key);
				}
				kv_free(&kv);
			}
		}
		printf("],\"peer_ip\":\"10.42.0.1\",\"linux_ip\":\"10.42.0.254\","
		       "\"shared_ip\":\"10.42.0.2\",\"pool\":\"10.42.0.10-10.42.0.99\",\"prefix\":24,");
		printf("\"namespaces\":[");
	} else {
		printf("testbed: %s", state);
		if (complete)
			printf(", %d VF%s", tb.nvfs, tb.nvfs == 1 ? "" : "s");
		else if (tb_any(&tb))
			printf(" (missing or changed: %s)", missing.len ? missing.p : "nothing; extra VFs");
		printf("\n");
	}
	for (int r = 0; r < TB_NROLES; r++) {
		int n = 0, err;

		if (tb.ns_exists[r]) {
			err = cli_netns_enter(tb.ns[r]);
			n = err < 0 ? err : netinfo_links(links, TB_MAX_LINKS);
			if (cli_netns_leave() < 0 || n < 0) {
				cli_err("cannot list the links of %s", tb.ns[r]);
				return CLI_EXIT_FAIL;
			}
		}
		if (json) {
			printf("%s{\"role\":\"%s\",\"name\":", r ? "," : "", tb_role_name[r]);
			cli_json_str(stdout, tb.ns[r]);
			printf(",\"exists\":%s,\"links\":[", tb.ns_exists[r] ? "true" : "false");
		} else {
			printf("\nnamespace %s%s\n", tb.ns[r], tb.ns_exists[r] ? "" : ": absent");
			if (n)
				printf("  %-10s %-6s %-11s %-17s %-6s %s\n", "LINK", "KIND", "STATE",
				       "MAC", "BRIDGE", "IPV4");
		}
		for (int i = 0; i < n; i++) {
			const struct cli_link *l = &links[i];
			const char *master = l->master ? tb_master_name(links, n, l->master) : NULL;

			tb_mac_str(l, mac, sizeof(mac));
			if (json) {
				printf("%s{\"name\":", i ? "," : "");
				cli_json_str(stdout, l->name);
				printf(",\"kind\":");
				cli_json_str(stdout, l->kind[0] ? l->kind : (l->flags & IFF_LOOPBACK)
					     ? "loopback" : "device");
				printf(",\"state\":\"%s\",\"up\":%s,\"carrier\":%s,\"operstate\":\"%s\","
				       "\"mtu\":%u,\"mac\":",
				       tb_link_state(l), (l->flags & IFF_UP) ? "true" : "false",
				       (l->flags & IFF_LOWER_UP) ? "true" : "false",
				       netinfo_operstate(l->operstate), l->mtu);
				if (l->has_mac)
					cli_json_str(stdout, mac);
				else
					printf("null");
				printf(",\"master\":");
				if (master)
					cli_json_str(stdout, master);
				else
					printf("null");
				printf(",\"ipv4\":[");
				for (int a = 0; a < l->naddr; a++) {
					printf("%s", a ? "," : "");
					cli_json_str(stdout, l->addr[a]);
				}
				printf("]}");
			} else {
				printf("  %-10s %-6s %-11s %-17s %-6s ", l->name,
				       l->kind[0] ? l->kind : (l->flags & IFF_LOOPBACK) ? "lo" : "-",
				       tb_link_state(l), mac, master ? master : "-");
				for (int a = 0; a < l->naddr; a++)
					printf("%s%s", a ? "," : "", l->addr[a]);
				printf("%s\n", l->naddr ? "" : "-");
			}
		}
		if (json)
			printf("]}");
	}
	if (json)
		printf("]}\n");
	return CLI_EXIT_OK;
}

static const char tb_exec_usage[] =
	"usage: libretto testbed exec peer|host|linux [--] CMD [ARGS...]\n"
	"\n"
	"Run CMD inside one of the testbed's network namespaces: peer (the outside\n"
	"world, 10.42.0.1), host (where librettod and the applications live) or\n"
	"linux (the Linux-stack baseline, 10.42.0.254).  CMD replaces libretto\n"
	"(same pid); its exit status is libretto's.  Needs root.\n";

/*
 * Give CMD a /sys that shows the namespace's devices, as `ip netns exec`
 * does.  Best effort: the network namespace is what matters, and tools that
 * do not read /sys work without it.
 */
static void tb_exec_sysfs(void)
{
	if (unshare(CLONE_NEWNS) < 0)
		return;
	if (mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) < 0)
		return;
	if (umount2("/sys", MNT_DETACH) < 0)
		return;
	mount("sysfs", "/sys", "sysfs", 0, NULL);
}

static int tb_exec(int argc, char **argv)
{
	struct tb tb;
	int role = -1, first = 2, err;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(tb_exec_usage, stdout);
		return CLI_EXIT_OK;
	}
	if (argc < 2)
		return cli_usage_err("testbed exec", "name a namespace: peer, host or linux");
	for (int r = 0; r < TB_NROLES; r++)
		if (strcmp(argv[1], tb_role_name[r]) == 0)
			role = r;
	if (role < 0)
		return cli_usage_err("testbed exec", "unknown namespace '%s' (peer, host or linux)",
				     argv[1]);
	if (first < argc && (strcmp(argv[first], "--help") == 0 || strcmp(argv[first], "-h") == 0)) {
		fputs(tb_exec_usage, stdout);
		return CLI_EXIT_OK;
	}
	if (first < argc && strcmp(argv[first], "--") == 0)
		first++;
	if (first >= argc)
		return cli_usage_err("testbed exec", "name the command to run");
	if (!cli_need_root("libretto testbed exec"))
		return CLI_EXIT_FAIL;
	if (tb_init(&tb) < 0)
		return CLI_EXIT_FAIL;
	if (!cli_netns_exists(tb.ns[role])) {
		cli_err("the testbed is not up (no namespace %s): run `libretto testbed up` first",
			tb.ns[role]);
		return CLI_EXIT_FAIL;
	}
	err = cli_netns_enter(tb.ns[role]);
	if (err < 0) {
		cli_err("cannot enter network namespace %s: %s", tb.ns[role], strerror(-err));
		return CLI_EXIT_FAIL;
	}
	tb_exec_sysfs();
	execvp(argv[first], &argv[first]);
	err = errno;
	cli_err("cannot run %s: %s", argv[first], strerror(err));
	return err == ENOENT ? 127 : 126;
}

static const struct cli_cmd tb_cmds[] = {
	{ "up", tb_up, "build the testbed (idempotent)", tb_up_usage },
	{ "down", tb_down, "remove the testbed", tb_down_usage },
	{ "status", tb_status, "show the testbed's namespaces and links", tb_status_usage },
	{ "exec", tb_exec, "run a command in the peer, host or linux namespace", tb_exec_usage },
};
#define TB_NCMDS (sizeof(tb_cmds) / sizeof(tb_cmds[0]))

const char cmd_testbed_usage[] =
	"usage: libretto testbed up|down|status|exec ...\n"
	"\n"
	"The embedded testbed: network namespaces, veth pairs and a bridge that\n"
	"play a NIC with SR-IOV functions, a Linux peer and a Linux baseline.\n"
	"See docs/testbed.md.\n"
	"\n";

int testbed_help(const char *name)
{
	if (!name) {
		fputs(cmd_testbed_usage, stdout);
		for (size_t i = 0; i < TB_NCMDS; i++)
			printf("  %-8s %s\n", tb_cmds[i].name, tb_cmds[i].summary);
		printf("\n`libretto help testbed CMD` tells more about each.\n");
		return CLI_EXIT_OK;
	}
	for (size_t i = 0; i < TB_NCMDS; i++) {
		if (strcmp(tb_cmds[i].name, name) == 0) {
			fputs(tb_cmds[i].usage, stdout);
			return CLI_EXIT_OK;
		}
	}
	cli_err("unknown testbed command '%s'; see `libretto help testbed`", name);
	return CLI_EXIT_USAGE;
}

int cmd_testbed(int argc, char **argv)
{
	if (argc < 2) {
		cli_err("testbed: name a command: up, down, status or exec; see `libretto help testbed`");
		return CLI_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0)
		return testbed_help(argc > 2 ? argv[2] : NULL);
	for (size_t i = 0; i < TB_NCMDS; i++)
		if (strcmp(tb_cmds[i].name, argv[1]) == 0)
			return tb_cmds[i].fn(argc - 1, argv + 1);
	cli_err("unknown testbed command '%s'; see `libretto help testbed`", argv[1]);
	return CLI_EXIT_USAGE;
}

int testbed_vf_list(char *host_ns, size_t ns_cap, char *list, size_t cap)
{
	struct tb tb;
	struct kv_buf b;
	int err;

	err = tb_init(&tb);
	if (err < 0)
		return err;
	snprintf(host_ns, ns_cap, "%s", tb.ns[TB_HOST]);
	err = tb_probe(&tb);
	if (err < 0)
		return err;
	if (!tb.ns_exists[TB_HOST] || !tb.pf0)
		return -ENOENT;
	if (!tb.nvfs)
		return -ENODEV;
	kv_buf_init(&b, list, cap);
	for (int k = 1; k <= tb.nvfs; k++) {
		char name[32];

		if (!tb.vf[k])
			continue;
		snprintf(name, sizeof(name), "%svf%d", b.len ? "," : "", k);
		kv_buf_raw(&b, name);
	}
	return kv_buf_ok(&b) ? tb.nvfs : -ENAMETOOLONG;
}
