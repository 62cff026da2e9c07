/* libretto: the command users type.  Dispatches to one subcommand from the table below. */
#include "cli.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

const char *cli_prog = "libretto";

static int cmd_help(int argc, char **argv);

static const char cmd_help_usage[] =
	"usage: libretto help [COMMAND [SUBCOMMAND]]\n"
	"\n"
	"Show the list of commands, or what one command does and its options.\n";

static const struct cli_cmd cli_cmds[] = {
	{ "testbed", cmd_testbed, "build, inspect or remove the embedded testbed", cmd_testbed_usage },
	{ "up", cmd_up, "start librettod, the supervisor", cmd_up_usage },
	{ "down", cmd_down, "stop librettod", cmd_down_usage },
	{ "status", cmd_status, "show librettod's NIC, addresses and VFs", cmd_status_usage },
	{ "run", cmd_run, "run a program on the library OS", cmd_run_usage },
	{ "ps", cmd_ps, "list the applications and their traffic", cmd_ps_usage },
	{ "stats", cmd_stats, "show the network server's counters", cmd_stats_usage },
	{ "switch", cmd_switch, "move an application between direct and indirect", cmd_switch_usage },
	{ "netd", cmd_netd, "restart or upgrade the network server live", cmd_netd_usage },
	{ "fsd", cmd_fsd, "restart the storage server live", cmd_fsd_usage },
	{ "volume", cmd_volume, "make, check and list volume images (storage)", cmd_volume_usage },
	{ "bench", cmd_bench, "measure servers on linux and under libretto", cmd_bench_usage },
	{ "help", cmd_help, "show help for a command", cmd_help_usage },
};
#define CLI_NCMDS (sizeof(cli_cmds) / sizeof(cli_cmds[0]))

static void cli_main_usage(FILE *f)
{
	fprintf(f,
		"usage: libretto COMMAND [ARGS...]\n"
		"\n"
		"LibrettOS on Linux: unmodified programs run their own TCP/IP stack\n"
		"in their process, over a NIC function handed to them by librettod.\n"
		"\n"
		"Commands:\n");
	for (size_t i = 0; i < CLI_NCMDS; i++)
		fprintf(f, "  %-8s %s\n", cli_cmds[i].name, cli_cmds[i].summary);
	fprintf(f,
		"\n"
		"A first session (as root):\n"
		"  libretto testbed up\n"
		"  libretto up\n"
		"  libretto run -- python3 -m http.server 8080 --bind 0.0.0.0 &\n"
		"  libretto ps\n"
		"  libretto testbed exec peer -- curl http://10.42.0.10:8080/\n"
		"\n"
		"`run` needs `up` first; `up` without --nic needs `testbed up`.  A program\n"
		"under `run` keeps its VF and IP until it (and any child that inherited\n"
		"them) exits.  --mode indirect goes through the network server instead\n"
		"of a VF; `libretto switch` moves a running program between the two, and\n"
		"--mode auto lets librettod do it by load.\n"
		"Exit status: 0 success, 1 failure (reason on stderr), 2 bad command line;\n"
		"`run` and `testbed exec` exit with the program's status.\n"
		"\n"
		"`libretto help COMMAND` or `libretto COMMAND --help` tells more.\n"
		"--version prints the version.  See docs/cli.md.\n");
}

static const struct cli_cmd *cli_find(const char *name)
{
	for (size_t i = 0; i < CLI_NCMDS; i++)
		if (strcmp(cli_cmds[i].name, name) == 0)
			return &cli_cmds[i];
	return NULL;
}

static int cmd_help(int argc, char **argv)
{
	const struct cli_cmd *cmd;

	if (argc < 2) {
		cli_main_usage(stdout);
		return CLI_EXIT_OK;
	}
	cmd = cli_find(argv[1]);
	if (!cmd) {
		cli_err("unknown command '%s'; `libretto --help` lists them", argv[1]);
		return CLI_EXIT_USAGE;
	}
	if (cmd->fn == cmd_testbed)
		return testbed_help(argc > 2 ? argv[2] : NULL);
	if (cmd->fn == cmd_volume)
		return volume_help(argc > 2 ? argv[2] : NULL);
	if (argc > 2) {
		cli_err("%s has no subcommands; see `libretto help %s`", argv[1], argv[1]);
		return CLI_EXIT_USAGE;
	}
	if (cmd->fn == cmd_help)
		fputs(cmd_help_usage, stdout);
	else
		fputs(cmd->usage, stdout);
	return CLI_EXIT_OK;
}

/*
 * Descriptors received from librettod must never land on 0, 1 or 2, where
 * the program we exec would take them for its standard streams.
 */
static void cli_std_fds(void)
{
	for (int fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) < 0)
			open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
}

int main(int argc, char **argv)
{
	const struct cli_cmd *cmd;

	cli_std_fds();
	if (argc < 2) {
		cli_main_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		cli_main_usage(stdout);
		return CLI_EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
		printf("libretto %s\n", LIBRETTO_VERSION);
		return CLI_EXIT_OK;
	}
	cmd = cli_find(argv[1]);
	if (!cmd) {
		if (argv[1][0] == '-')
			cli_err("unknown option %s; `libretto --help` lists the commands", argv[1]);
		else
			cli_err("unknown command '%s'; `libretto --help` lists the commands", argv[1]);
		return CLI_EXIT_USAGE;
	}
	return cmd->fn(argc - 1, argv + 1);
}
