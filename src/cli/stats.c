/* `libretto stats`: the network server's counters, global and per application. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/kv.h"
#include "libretto/ctl.h"

#define STATS_MAX_APPS 256

const char cmd_stats_usage[] =
	"usage: libretto stats [--json]\n"
	"\n"
	"Show the counters of libretto-netd, the network server that librettod\n"
	"runs on the PF: frames and bytes received and sent, frames dropped by\n"
	"reason (rx_malformed_<reason>, rx_not_ours, rx_no_port, ...), replies it\n"
	"made itself (arp_replies, echo_replies, rst_sent, unreach_sent), and per\n"
	"application behind it: rx/tx frames and bytes, rx_ring_full, rx_bad_fill,\n"
	"tx_drops and tx_drop_<reason>, tx_ring_full, wakeups, ring_errors.\n"
	"Counters start at 0 each time netd starts (netd_restarts tells how\n"
	"often librettod restarted it).  docs/netd.md explains each counter.\n"
	"Exit status 1 when librettod or netd is not running.\n"
	"\n"
	"Then, for every application that can switch modes (docs/switching.md),\n"
	"its mode, policy, how long it has been in that mode, why, how many\n"
	"switches it made and its packet rate, as `libretto ps` shows them.\n"
	"\n"
	"  --json    one JSON object: {\"netd_pid\":N,\"netd_restarts\":N,\n"
	"            \"global\":{counter:n,...},\"apps\":[{\"id\":N,counter:n,...}],\n"
	"            \"switching\":[{\"id\":N,\"name\":..,\"mode\":..,\"policy\":..,\n"
	"            \"mode_since_ms\":N,\"mode_why\":..,\"switches\":N,\"rate_pps\":N,\n"
	"            \"vf\":..}]}\n";

static bool stats_is_number(const char *s)
{
	if (!*s || strlen(s) > 20)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

static void stats_json_value(const char *v)
{
	if (stats_is_number(v))
		printf("%s", v);
	else
		cli_json_str(stdout, v);
}

/* One "k=v" line of the reply: key into key (cap), value pointer and length. */
static bool stats_line_kv(const char *line, size_t len, char *key, size_t cap, const char **val,
			  size_t *vlen)
{
	const char *eq = memchr(line, '=', len);

	if (!eq || eq == line || (size_t)(eq - line) >= cap)
		return false;
	memcpy(key, line, (size_t)(eq - line));
	key[eq - line] = '\0';
	*val = eq + 1;
	*vlen = len - (size_t)(eq - line) - 1;
	return true;
}

/*
 * Per-application records ("app=<id> k=v ..." of netd, "switch=<id> ..." of
 * librettod), keyed by idkey: a JSON array of objects with "id" first, or
 * one text line each.
 */
static void stats_rows(struct kv *rows, int n, const char *idkey, bool json)
{
	if (json)
		printf("[");
	for (int i = 0; i < n; i++) {
		if (json) {
			printf("%s{\"id\":", i ? "," : "");
			stats_json_value(kv_get(&rows[i], idkey));
		} else {
			printf("  app %s:", kv_get(&rows[i], idkey));
		}
		for (int k = 0; k < rows[i].n; k++) {
			if (!strcmp(rows[i].pair[k].key, idkey))
				continue;
			if (json) {
				printf(",");
				cli_json_str(stdout, rows[i].pair[k].key);
				printf(":");
				stats_json_value(rows[i].pair[k].value);
			} else {
				printf(" %s=%s", rows[i].pair[k].key, rows[i].pair[k].value);
			}
		}
		printf(json ? "}" : "\n");
	}
	if (json)
		printf("]");
}

int cmd_stats(int argc, char **argv)
{
	static char reply[CTL_MSG_MAX];
	static struct kv rows_apps[STATS_MAX_APPS], rows_sw[STATS_MAX_APPS];
	char pid[32] = "?", restarts[32] = "?";
	bool json = false, first = true;
	int c, fd, n, e, napps = 0, nsw = 0;

	c = cli_json_opts("stats", cmd_stats_usage, argc, argv, &json);
	if (c >= 0)
		return c;
	fd = cli_ctl_open(false);
	if (fd < 0)
		return CLI_EXIT_FAIL;
	n = cli_ctl_call(fd, "stats\n", reply, sizeof(reply), NULL, NULL, 5000);
	close(fd);
	if (n < 0) {
		cli_err("librettod did not answer `stats`: %s", strerror(-n));
		return CLI_EXIT_FAIL;
	}
	if ((e = cli_reply_errno(reply)) != 0) {
		char msg[512] = "malformed reply (no errno=)";

		cli_reply_get(reply, "error", msg, sizeof(msg));
		if (e == EINVAL && strstr(msg, "unknown command"))
			cli_err("this librettod does not know `stats` (an older version): %s", msg);
		else
			cli_err("%s", msg);
		return CLI_EXIT_FAIL;
	}
	cli_reply_get(reply, "netd_pid", pid, sizeof(pid));
	cli_reply_get(reply, "netd_restarts", restarts, sizeof(restarts));

	if (json) {
		printf("{\"netd_pid\":");
		stats_json_value(pid);
		printf(",\"netd_restarts\":");
		stats_json_value(restarts);
		printf(",\"global\":{");
	} else {
		printf("netd (pid %s, restarted %s times)\n", pid, restarts);
	}
	/* Global counters: one per line; applications: "app=" lines of their own. */
	for (const char *line = reply, *eol; line && *line; line = eol ? eol + 1 : NULL) {
		char key[64];
		const char *val;
		size_t len, vlen;

		eol = strchr(line, '\n');
		len = eol ? (size_t)(eol - line) : strlen(line);
		if (len >= 4 && strncmp(line, "app=", 4) == 0) {
			if (napps < STATS_MAX_APPS && kv_parse(&rows_apps[napps], line, len) == 0)
				napps++;
			continue;
		}
		if (len >= 7 && strncmp(line, "switch=", 7) == 0) {
			if (nsw < STATS_MAX_APPS && kv_parse(&rows_sw[nsw], line, len) == 0)
				nsw++;
			continue;
		}
		if (!stats_line_kv(line, len, key, sizeof(key), &val, &vlen))
			continue;
		if (!strcmp(key, "errno") || !strcmp(key, "error") || !strcmp(key, "apps") ||
		    !strcmp(key, "netd_pid") || !strcmp(key, "netd_restarts"))
			continue;
		if (json) {
			char v[64];

			snprintf(v, sizeof(v), "%.*s", (int)vlen, val);
			printf("%s", first ? "" : ",");
			cli_json_str(stdout, key);
			printf(":");
			stats_json_value(v);
		} else {
			printf("  %-20s %.*s\n", key, (int)vlen, val);
		}
		first = false;
	}
	if (json) {
		printf("},\"apps\":");
		stats_rows(rows_apps, napps, "app", true);
		printf(",\"switching\":");
		stats_rows(rows_sw, nsw, "switch", true);
		printf("}\n");
	} else {
		printf("applications behind netd: %d\n", napps);
		stats_rows(rows_apps, napps, "app", false);
		printf("switchable applications: %d\n", nsw);
		stats_rows(rows_sw, nsw, "switch", false);
	}
	for (int i = 0; i < napps; i++)
		kv_free(&rows_apps[i]);
	for (int i = 0; i < nsw; i++)
		kv_free(&rows_sw[i]);
	return CLI_EXIT_OK;
}
