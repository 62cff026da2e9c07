/* `libretto switch`: move a running application between direct and indirect mode. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/kv.h"
#include "libretto/ctl.h"

/* How long --wait (the default) waits for the application to say it switched. */
#define SWITCH_WAIT_MS 10000

static const struct option switch_opts[] = {
	{ "no-wait", no_argument, NULL, 'n' },
	{ "help", no_argument, NULL, 'h' },
	{ 0 },
};

const char cmd_switch_usage[] =
	"usage: libretto switch [--no-wait] APP direct|indirect|auto\n"
	"\n"
	"Move a running application (APP: its name or id, as `libretto ps` shows)\n"
	"between direct mode (its own VF) and indirect mode (its frames through the\n"
	"network server) while its connections stay up: the library OS opens the new\n"
	"path, swaps it in under its TCP/IP stack, announces the new MAC with\n"
	"gratuitous ARP, and keeps receiving on the old path until the peers' frames\n"
	"stop arriving there (docs/switching.md).\n"
	"\n"
	"  direct, indirect   move it there and pin it (an auto application stops\n"
	"                     following the policy)\n"
	"  auto               hand it (back) to librettod's policy, which moves it by\n"
	"                     its packet rate (see `libretto run --mode auto`)\n"
	"  --no-wait          return once librettod has sent the order; by default\n"
	"                     wait (at most 10 s) until the application reports the\n"
	"                     new path carries its traffic\n"
	"\n"
	"Only applications on a dedicated IP can switch (not --ip shared).  Direct\n"
	"mode needs a free VF.  Exit status: 0 switched, 1 refused or failed (the\n"
	"reason on stderr), 2 usage.\n";

/*
 * The ps record of the application whose id is ref (or, with names, whose
 * name is ref: the newest of that name, as librettod picks), parsed into
 * kv (the caller frees it).  0, -ENOENT, -ECONNREFUSED when librettod is
 * not running (said on stderr unless quiet), or -errno when it does not
 * answer.
 */
static int switch_ps_find(const char *ref, bool names, bool quiet, struct kv *kv)
{
	static char reply[CTL_MSG_MAX];
	int fd, n, found = -ENOENT;

	fd = cli_ctl_open(quiet);
	if (fd < 0)
		return -ECONNREFUSED;	/* said by cli_ctl_open unless quiet */
	n = cli_ctl_call(fd, "ps\n", reply, sizeof(reply), NULL, NULL, 5000);
	close(fd);
	if (n < 0)
		return n;
	for (const char *line = reply, *eol; line && *line; line = eol ? eol + 1 : NULL) {
		struct kv row;
		const char *id, *name;
		size_t len;

		eol = strchr(line, '\n');
		len = eol ? (size_t)(eol - line) : strlen(line);
		if (strncmp(line, "app=", 4) != 0 || kv_parse(&row, line, len) < 0)
			continue;
		id = kv_get(&row, "app");
		name = kv_get(&row, "name");
		if ((id && !strcmp(id, ref)) || (names && name && !strcmp(name, ref))) {
			if (found == 0)
				kv_free(kv);
			*kv = row;    /* the list is oldest first: keep the last */
			found = 0;
		} else {
			kv_free(&row);
		}
	}
	return found;
}

int cmd_switch(int argc, char **argv)
{
	static char reply[4096];
	const char *app, *mode;
	char req[256], id[32], msg[700] = "malformed reply (no errno=)";
	bool wait = true;
	int c, fd, n, e;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+:h", switch_opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			wait = false;
			break;
		case 'h':
			fputs(cmd_switch_usage, stdout);
			return CLI_EXIT_OK;
		default:
			return cli_bad_option("switch", c, argv);
		}
	}
	if (argc - optind != 2)
		return cli_usage_err("switch", "name the application and the mode: libretto switch "
				     "APP direct|indirect|auto");
	app = argv[optind];
	mode = argv[optind + 1];
	if (strcmp(mode, "direct") && strcmp(mode, "indirect") && strcmp(mode, "auto"))
		return cli_usage_err("switch", "unknown mode '%s' (direct, indirect or auto)", mode);
	{
		struct kv row;

		e = switch_ps_find(app, true, false, &row);
		if (e == -ENOENT) {
			cli_err("no application '%s' (`libretto ps` lists them)", app);
			return CLI_EXIT_FAIL;
		}
		if (e < 0) {
			if (e != -ECONNREFUSED)
				cli_err("librettod did not answer `ps`: %s", strerror(-e));
			return CLI_EXIT_FAIL;
		}
		snprintf(id, sizeof(id), "%s", kv_get(&row, "app"));
		kv_free(&row);
	}
	fd = cli_ctl_open(false);
	if (fd < 0)
		return CLI_EXIT_FAIL;
	snprintf(req, sizeof(req), "switch\napp=%s\nmode=%s\n", id, mode);
	n = cli_ctl_call(fd, req, reply, sizeof(reply), NULL, NULL, 5000);
	close(fd);
	if (n < 0) {
		cli_err("librettod did not answer `switch`: %s", strerror(-n));
		return CLI_EXIT_FAIL;
	}
	if ((e = cli_reply_errno(reply)) != 0) {
		cli_reply_get(reply, "error", msg, sizeof(msg));
		if (e == EALREADY)
			return CLI_EXIT_OK;   /* already there: nothing to do */
		cli_err("%s", msg);
		return CLI_EXIT_FAIL;
	}
	if (!wait || !strcmp(mode, "auto"))
		return CLI_EXIT_OK;
	for (int waited = 0; waited < SWITCH_WAIT_MS; waited += 20) {
		struct kv kv;
		const struct timespec step = { 0, 20 * 1000000L };

		e = switch_ps_find(id, false, true, &kv);
		if (e == -ENOENT) {
			cli_err("app=%s is gone (it exited during the switch)", id);
			return CLI_EXIT_FAIL;
		}
		if (e == 0) {
			const char *m = kv_get(&kv, "mode"), *sw = kv_get(&kv, "switching");
			const char *why = kv_get(&kv, "mode_why");
			bool done = m && !strcmp(m, mode) && sw && strncmp(sw, "to-", 3) != 0;
			bool failed = sw && !strcmp(sw, "-") && m && strcmp(m, mode) &&
				      why && !strcmp(why, "switch-failed");

			kv_free(&kv);
			if (done)
				return CLI_EXIT_OK;
			if (failed) {
				cli_err("app=%s could not open its new path; it stays in %s mode "
					"(librettod's log says why)", id, m);
				return CLI_EXIT_FAIL;
			}
		}
		nanosleep(&step, NULL);
	}
	cli_err("app=%s did not report the switch within %d s", id, SWITCH_WAIT_MS / 1000);
	return CLI_EXIT_FAIL;
}
