/* `libretto ps`: the applications librettod knows, with their NIC function and traffic. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/kv.h"
#include "libretto/ctl.h"

#define PS_MAX_APPS 1024

/* The table's columns and the reply keys they show. */
static const struct ps_col {
	const char *head;
	const char *key;
	bool number;
} ps_cols[] = {
	{ "NAME", "name", false },
	{ "PID", "pid", true },
	{ "ALIVE", "alive", false },
	{ "HOLDERS", "holders", false },
	{ "MODE", "mode", false },
	{ "IP", "ip", false },
	{ "MAC", "mac", false },
	{ "VF", "vf", false },
	{ "BACKEND", "backend", false },
	{ "POLICY", "policy", false },
	{ "SWITCHING", "switching", false },
	{ "IN-MODE-MS", "mode_since_ms", true },
	{ "WHY", "mode_why", false },
	{ "SWITCHES", "switches", true },
	{ "PPS", "rate_pps", true },
	{ "PORTS", "ports", false },
	{ "RX-PKTS", "rx_packets", true },
	{ "RX-BYTES", "rx_bytes", true },
	{ "TX-PKTS", "tx_packets", true },
	{ "TX-BYTES", "tx_bytes", true },
};
#define PS_NCOLS (sizeof(ps_cols) / sizeof(ps_cols[0]))

const char cmd_ps_usage[] =
	"usage: libretto ps [--json]\n"
	"\n"
	"List the applications that hold a lease from librettod, oldest first.\n"
	"\n"
	"  NAME      --name given to `libretto run` (default: the program's name)\n"
	"  PID       the process that registered (the program `libretto run` became)\n"
	"  ALIVE     whether that process still runs.  \"no\" with the row still\n"
	"            listed means another process holds the lease: the program\n"
	"            forked (e.g. daemonized) and a child inherited its lease.\n"
	"            The lease ends when every holder has exited.\n"
	"  HOLDERS   the pids that hold the lease now, comma separated (at most 8;\n"
	"            \"-\": none left, the release is under way; \"?\": unknown)\n"
	"  MODE      direct: the program owns the VF; indirect: its frames go\n"
	"            through the network server (libretto-netd)\n"
	"  IP, MAC   the program's address and the MAC it sends from (its VF's, or\n"
	"            netd's in indirect mode)\n"
	"  VF        the NIC function it holds (\"-\": none; during a switch the\n"
	"            one being opened or drained)\n"
	"  BACKEND   afxdp, afpacket (direct) or shm (indirect)\n"
	"  POLICY    auto: librettod moves it by its packet rate; manual: it can be\n"
	"            moved with `libretto switch`; fixed: it cannot (shared IP)\n"
	"  SWITCHING to-direct, to-indirect: ordered, not yet done; draining: done,\n"
	"            the old path still receives; queued-*: waits for the last\n"
	"            switch to drain or for a VF's queue; \"-\": none under way\n"
	"  IN-MODE-MS  how long it has been in its mode\n"
	"  WHY       why it is in its mode: started, command:pid=N,\n"
	"            policy:RATE>=high=N, policy:RATE<=low=N, arbitration:...,\n"
	"            vf-link-down:vfN, runtime:nic-error, switch-failed\n"
	"  SWITCHES  how many switches it has made\n"
	"  PPS       its packet rate (received + sent per second) as the policy sees\n"
	"            it, for switchable programs\n"
	"  PORTS     the TCP/UDP ports its sockets use (\"-\": none yet)\n"
	"  RX-PKTS, RX-BYTES, TX-PKTS, TX-BYTES\n"
	"            frames received and sent, as the library OS counts them\n"
	"\n"
	"With no application, prints the header and \"(no applications)\".\n"
	"\n"
	"  --json    one JSON object {\"apps\": [...], \"truncated\": N} instead of the table\n";

static const char *ps_value(const struct kv *kv, const char *key)
{
	const char *v = kv_get(kv, key);

	return v && *v ? v : "-";
}

static bool ps_is_number(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* True for "12,345": the holders list as librettod sends it. */
static bool ps_pid_list(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if ((*s < '0' || *s > '9') && *s != ',')
			return false;
	return true;
}

static void ps_json_app(const struct kv *kv, bool first)
{
	const char *v;

	printf("%s{\"id\":", first ? "" : ",");
	v = ps_value(kv, "app");
	if (ps_is_number(v))
		printf("%s", v);
	else
		cli_json_str(stdout, v);
	for (size_t c = 0; c < PS_NCOLS; c++) {
		const char *key = ps_cols[c].key;

		v = ps_value(kv, key);
		printf(",");
		cli_json_str(stdout, key);
		printf(":");
		if (strcmp(key, "alive") == 0) {
			printf("%s", strcmp(v, "1") == 0 ? "true" : "false");
		} else if (strcmp(key, "holders") == 0 && strcmp(v, "-") != 0 &&
			   !ps_pid_list(v)) {
			/* An older librettod, or one that could not tell: unknown. */
			printf("null");
		} else if (strcmp(key, "ports") == 0 || strcmp(key, "holders") == 0) {
			bool numbers = strcmp(key, "holders") == 0;
			char *copy = strdup(v), *save = NULL, *tok;
			bool f = true;

			printf("[");
			for (char *p = copy; copy && strcmp(v, "-") != 0 &&
			     (tok = strtok_r(p, ",", &save)); p = NULL) {
				printf("%s", f ? "" : ",");
				if (numbers)
					printf("%s", tok);
				else
					cli_json_str(stdout, tok);
				f = false;
			}
			printf("]");
			free(copy);
		} else if (ps_cols[c].number && ps_is_number(v)) {
			printf("%s", v);
		} else {
			cli_json_str(stdout, v);
		}
	}
	printf("}");
}

int cmd_ps(int argc, char **argv)
{
	static char reply[CTL_MSG_MAX];
	static struct kv apps[PS_MAX_APPS];
	size_t width[PS_NCOLS];
	char trunc[32] = "";
	bool json = false;
	int c, fd, n, e, napps = 0;

	c = cli_json_opts("ps", cmd_ps_usage, argc, argv, &json);
	if (c >= 0)
		return c;

	fd = cli_ctl_open(false);
	if (fd < 0)
		return CLI_EXIT_FAIL;
	n = cli_ctl_call(fd, "ps\n", reply, sizeof(reply), NULL, NULL, 5000);
	close(fd);
	if (n < 0) {
		cli_err("librettod did not answer `ps`: %s", strerror(-n));
		return CLI_EXIT_FAIL;
	}
	if ((e = cli_reply_errno(reply)) != 0) {
		char msg[512] = "malformed reply (no errno=)";

		cli_reply_get(reply, "error", msg, sizeof(msg));
		cli_err("librettod: %s", msg);
		return CLI_EXIT_FAIL;
	}
	cli_reply_get(reply, "truncated", trunc, sizeof(trunc));

	/* One application per "app=" line; each line is its own key=value record. */
	for (const char *line = reply, *eol; line && *line; line = eol ? eol + 1 : NULL) {
		size_t len;

		eol = strchr(line, '\n');
		len = eol ? (size_t)(eol - line) : strlen(line);
		if (len < 4 || strncmp(line, "app=", 4) != 0 || napps == PS_MAX_APPS)
			continue;
		if (kv_parse(&apps[napps], line, len) == 0)
			napps++;
	}

	if (json) {
		printf("{\"apps\":[");
		for (int i = 0; i < napps; i++)
			ps_json_app(&apps[i], i == 0);
		printf("],\"truncated\":%s}\n", ps_is_number(trunc) ? trunc : "0");
	} else {
		for (size_t col = 0; col < PS_NCOLS; col++) {
			width[col] = strlen(ps_cols[col].head);
			for (int i = 0; i < napps; i++) {
				size_t l = strlen(ps_value(&apps[i], ps_cols[col].key));

				if (l > width[col])
					width[col] = l;
			}
		}
		for (size_t col = 0; col < PS_NCOLS; col++) {
			if (ps_cols[col].number)
				printf("%s%*s", col ? "  " : "", (int)width[col], ps_cols[col].head);
			else
				printf("%s%-*s", col ? "  " : "",
				       col + 1 < PS_NCOLS ? (int)width[col] : 0, ps_cols[col].head);
		}
		printf("\n");
		for (int i = 0; i < napps; i++) {
			for (size_t col = 0; col < PS_NCOLS; col++) {
				const char *v = ps_value(&apps[i], ps_cols[col].key);

				if (strcmp(ps_cols[col].key, "alive") == 0)
					v = strcmp(v, "1") == 0 ? "yes" : "no";
				if (ps_cols[col].number)
					printf("%s%*s", col ? "  " : "", (int)width[col], v);
				else
					printf("%s%-*s", col ? "  " : "",
					       col + 1 < PS_NCOLS ? (int)width[col] : 0, v);
			}
			printf("\n");
		}
		if (napps == 0)
			printf("(no applications: `libretto run -- CMD` starts one)\n");
		if (ps_is_number(trunc) && strcmp(trunc, "0") != 0)
			printf("(%s more applications did not fit in librettod's reply)\n", trunc);
	}
	for (int i = 0; i < napps; i++)
		kv_free(&apps[i]);
	return CLI_EXIT_OK;
}
