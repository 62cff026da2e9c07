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

int cmd_stats(int argc, char **argv)
{
	static char reply[CTL_MSG_MAX];
	static struct kv apps[STATS_MAX_APPS], sw[STATS_MAX_APPS];
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
			if (napps < STATS_MAX_APPS && kv_parse(&apps[napps], line, len) == 0)
				napps++;
			continue;
		}
		if (len >= 7 && strncmp(line, "switch=", 7) == 0) {
			if (nsw < STATS_MAX_APPS && kv_parse(&sw[nsw], line, len) == 0)
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
		printf("},\"apps\":[");
		for (int i = 0; i < napps; i++) {
			printf("%s{\"id\":", i ? "," : "");
			stats_json_value(kv_get(&apps[i], "app"));
			for (int k = 0; k < apps[i].n; k++) {
				if (!strcmp(apps[i].pair[k].key, "app"))
					continue;
				printf(",");
				cli_json_str(stdout, apps[i].pair[k].key);
				printf(":");
				stats_json_value(apps[i].pair[k].value);
			}
			printf("}");
		}
		printf("],\"switching\":[");
		for (int i = 0; i < nsw; i++) {
			printf("%s{\"id\":", i ? "," : "");
			stats_json_value(kv_get(&sw[i], "switch"));
			for (int k = 0; k < sw[i].n; k++) {
				if (!strcmp(sw[i].pair[k].key, "switch"))
					continue;
				printf(",");
				cli_json_str(stdout, sw[i].pair[k].key);
				printf(":");
				stats_json_value(sw[i].pair[k].value);
			}
			printf("}");
		}
		printf("]}\n");
	} else {
		printf("applications behind netd: %d\n", napps);
		for (int i = 0; i < napps; i++) {
			printf("  app %s:", kv_get(&apps[i], "app"));
			for (int k = 0; k < apps[i].n; k++)
				if (strcmp(apps[i].pair[k].key, "app"))
					printf(" %s=%s", apps[i].pair[k].key, apps[i].pair[k].value);
			printf("\n");
		}
		printf("switchable applications: %d\n", nsw);
		for (int i = 0; i < nsw; i++) {
			printf("  app %s:", kv_get(&sw[i], "switch"));
			for (int k = 0; k < sw[i].n; k++)
				if (strcmp(sw[i].pair[k].key, "switch"))
					printf(" %s=%s", sw[i].pair[k].key, sw[i].pair[k].value);
			printf("\n");
		}
	}
	for (int i = 0; i < napps; i++)
		kv_free(&apps[i]);
	for (int i = 0; i < nsw; i++)
		kv_free(&sw[i]);
	return CLI_EXIT_OK;
}
