/* Shared pieces of the libretto command: the subcommand table and the helpers its files use. */
#ifndef LIBRETTO_CLI_H
#define LIBRETTO_CLI_H

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>

/* glibc's net/if.h stops before the RFC 2863 flags; linux/if.h clashes with it. */
#ifndef IFF_LOWER_UP
#define IFF_LOWER_UP 0x10000
#endif

/*
 * Exit statuses of every subcommand: 0 success, 1 the operation failed,
 * 2 the command line was wrong (unknown command or option, bad value).
 */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

/*
 * One subcommand.  fn receives argv with argv[0] = the subcommand's name and
 * returns an exit status.  summary is the one line shown by `libretto --help`;
 * usage is the whole text printed by `libretto help NAME` and `NAME --help`.
 */
struct cli_cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
	const char *usage;
};

/* main.c */
extern const char *cli_prog;

/* testbed.c */
int cmd_testbed(int argc, char **argv);
extern const char cmd_testbed_usage[];
/* Print the testbed's subcommand help (name NULL: the list); exit status. */
int testbed_help(const char *name);

/*
 * The testbed as `libretto up` sees it: the host namespace's name, and the
 * VFs present as "vf1,vf2,...".  Returns the number of VFs, -ENOENT when the
 * testbed is not up, -ENODEV when it has no VF, or -errno.  Needs root.
 */
int testbed_vf_list(char *host_ns, size_t ns_cap, char *list, size_t cap);

/* daemon.c */
/*
 * 1 if librettod answers (the namespace it runs in, from its status reply,
 * in out; "" if it names none), 0 if it is not running, -errno otherwise.
 */
int daemon_netns(char *out, size_t cap);
int cmd_up(int argc, char **argv);
int cmd_down(int argc, char **argv);
int cmd_status(int argc, char **argv);
extern const char cmd_up_usage[], cmd_down_usage[], cmd_status_usage[];

/* run.c */
int cmd_run(int argc, char **argv);
extern const char cmd_run_usage[];

/* ps.c */
int cmd_ps(int argc, char **argv);
extern const char cmd_ps_usage[];

/* stats.c (tag s): netd's counters through librettod */
int cmd_stats(int argc, char **argv);
extern const char cmd_stats_usage[];

/* netd.c (tag r): live restart and upgrade of the network server */
int cmd_netd(int argc, char **argv);
int cmd_fsd(int argc, char **argv);
extern const char cmd_fsd_usage[];
extern const char cmd_netd_usage[];

/* switch.c: move an application between direct and indirect mode */
int cmd_switch(int argc, char **argv);
extern const char cmd_switch_usage[];

/* volume.c (issue 8, tag v5): make, check and list volume images */
int cmd_volume(int argc, char **argv);
extern const char cmd_volume_usage[];
/* Print the volume subcommands' help (name NULL: the overview); exit status. */
int volume_help(const char *name);

/* bench.c */
int cmd_bench(int argc, char **argv);
extern const char cmd_bench_usage[];

/* util.c: diagnostics.  Both print "libretto: " + message + newline on stderr. */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A command-line error for subcommand cmd: message, hint, returns CLI_EXIT_USAGE. */
int cli_usage_err(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * Report what getopt_long() returned for a bad option ('?' or ':', with
 * optstring starting "+:") and return CLI_EXIT_USAGE.
 */
int cli_bad_option(const char *cmd, int c, char **argv);
/*
 * The options of a command that takes only --json and --help and no
 * arguments (ps, status, testbed status).  Sets *json; returns -1 to go on,
 * or the exit status to return (help printed, or a usage error).
 */
int cli_json_opts(const char *cmd, const char *usage, int argc, char **argv, bool *json);

/* util.c: privilege.  Returns true if root; otherwise prints why `what` needs it. */
bool cli_need_root(const char *what);

/* util.c: paths of the other programs, found as docs/cli.md describes. */
int cli_find_librettod(char *out, size_t cap);
int cli_find_runtime(char *out, size_t cap);

/*
 * util.c: network namespaces by name (/run/netns/NAME, as `ip netns` makes
 * them).  cli_netns_enter() moves the calling (single-threaded) process into
 * it, cli_netns_leave() back into the namespace it started in.  Both return
 * 0 or -errno.  cli_netns_exists() tells whether the name is mounted.
 */
bool cli_netns_exists(const char *name);
int cli_netns_enter(const char *name);
int cli_netns_leave(void);
/* 1 if the calling process is in namespace name, 0 if not, -errno. */
int cli_netns_is_current(const char *name);

/*
 * util.c: run argv (no shell) inside netns (NULL: the current one), wait for
 * it and return its exit status (0..255, 128+signal), or -errno if it could
 * not be started.  Flags: CLI_SPAWN_QUIET discards stdout and stderr (for
 * probes), CLI_SPAWN_NOSTDOUT discards stdout only.  With CLI_SPAWN_REPORT a
 * failure is reported on stderr with the whole command line.  LIBRETTO_VERBOSE
 * in the environment echoes every command before it runs.
 */
#define CLI_SPAWN_QUIET 1
#define CLI_SPAWN_NOSTDOUT 2
#define CLI_SPAWN_REPORT 4
int cli_spawn(const char *netns, const char *const argv[], int flags);

/*
 * util.c: one request/reply exchange with librettod.  req is the request
 * text; the reply is NUL-terminated in reply (cap bytes), received
 * descriptors (O_CLOEXEC) are stored in fds (*nfds in: room, out: count; both
 * may be NULL).  Waits at most timeout_ms for the reply.  Returns the reply
 * length, -EPIPE when librettod closed the connection without answering, or
 * -errno.
 */
int cli_ctl_call(int sock, const char *req, char *reply, size_t cap, int *fds, int *nfds,
		 int timeout_ms);
/* Connect; on failure print the standard "not running" message. Returns fd or -errno. */
int cli_ctl_open(bool quiet);
/*
 * The value of the line "key=..." in a reply, up to the end of the line,
 * copied into out (truncated to cap).  Returns 0 or -ENOENT.
 */
int cli_reply_get(const char *reply, const char *key, char *out, size_t cap);
/* The reply's errno= value (0 success), or -EPROTO if the reply lacks it. */
int cli_reply_errno(const char *reply);

/* util.c: JSON output. */
void cli_json_str(FILE *f, const char *s);

/* netinfo.c: the links and IPv4 addresses of the current network namespace. */
struct cli_link {
	int index;
	int master;
	unsigned int flags;
	unsigned int mtu;
	unsigned char operstate;
	bool has_mac;
	unsigned char mac[6];
	char name[IF_NAMESIZE];
	char kind[16];
	int naddr;
	char addr[4][INET_ADDRSTRLEN + 4];
};
/* Fill up to max links; returns how many, or -errno. */
int netinfo_links(struct cli_link *out, int max);
const char *netinfo_operstate(unsigned char op);

#endif
