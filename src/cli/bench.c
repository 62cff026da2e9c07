/* libretto bench: runs the benchmark suite by executing its runner script (bench/run.sh in the source tree). */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef LIBRETTO_SRCDIR
#define LIBRETTO_SRCDIR "."
#endif

const char cmd_bench_usage[] =
	"usage: libretto bench [--quick] [--out DIR] [--runs N] [--workloads LIST]\n"
	"       libretto bench timeline --event-at SECONDS --event CMD [--duration S]\n"
	"                               [--config linux|direct|indirect] [--out DIR]\n"
	"\n"
	"Measure unmodified servers (nginx, redis, memcached, iperf3) on the Linux\n"
	"kernel stack (netns libretto-linux), under `libretto run --mode direct` and\n"
	"under `libretto run --mode indirect` (through the network server), driven\n"
	"from netns libretto-peer.  Results (results.csv, report.md, PNG plots)\n"
	"go to bench/results/<UTC timestamp>/ under the current directory.\n"
	"\n"
	"  --quick           fewer workloads and connection counts, 1 s loads, 2 runs\n"
	"  --out DIR         write the results to DIR\n"
	"  --runs N          runs per configuration (default 3, --quick 2)\n"
	"  --workloads LIST  comma-separated: nginx,latency,sockperf,redis,\n"
	"                    memcached,iperf3,storage (fio on the kernel's ext4\n"
	"                    over a loop mount vs a direct and an indirect volume\n"
	"                    on the same image; bench/storage.sh)\n"
	"\n"
	"`timeline` counts the requests a peer client completes in 100 ms buckets\n"
	"while CMD runs at the given time.  CMD gets SERVER_PID, SERVER_IP,\n"
	"SERVER_NAME (the server's name under libretto, for `libretto switch`),\n"
	"LIBRETTO (the libretto command) and, for indirect, NETD_PID.\n"
	"\n"
	"Needs root.  The runner brings the testbed and librettod up if they are not,\n"
	"and takes down again what it brought up.  LIBRETTO_BENCH names another\n"
	"runner script.  See docs/performance.md.\n";

int cmd_bench(int argc, char **argv)
{
	char runner[PATH_MAX];
	char self[PATH_MAX];
	const char *env = getenv("LIBRETTO_BENCH");
	ssize_t n;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(cmd_bench_usage, stdout);
			return CLI_EXIT_OK;
		}
	}
	if (!cli_need_root("bench"))
		return CLI_EXIT_FAIL;
	if (env && *env) {
		if ((size_t)snprintf(runner, sizeof(runner), "%s", env) >= sizeof(runner))
			return cli_usage_err("bench", "LIBRETTO_BENCH is too long");
	} else {
		snprintf(runner, sizeof(runner), "%s/bench/run.sh", LIBRETTO_SRCDIR);
	}
	if (access(runner, X_OK) != 0) {
		cli_err("bench: no runner at %s: %s (set LIBRETTO_BENCH to bench/run.sh)", runner,
			strerror(errno));
		return CLI_EXIT_FAIL;
	}
	/* The runner drives this very CLI, not whichever libretto is on PATH. */
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		setenv("LIBRETTO", self, 1);
	}

	/* argv[0] becomes the runner's own name; the options follow unchanged. */
	char **args = calloc((size_t)argc + 2, sizeof(*args));
	if (!args) {
		cli_err("bench: out of memory");
		return CLI_EXIT_FAIL;
	}
	args[0] = (char *)"/bin/bash";
	args[1] = runner;
	for (int i = 1; i < argc; i++)
		args[i + 1] = argv[i];
	args[argc + 1] = NULL;
	execv(args[0], args);
	cli_err("bench: cannot run %s: %s", runner, strerror(errno));
	free(args);
	return CLI_EXIT_FAIL;
}
