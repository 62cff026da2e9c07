/* librettod's side of the control protocol text: request validation and
 * record formatting, pure functions with no I/O. */
#include "librettod/proto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "librettod/pool.h"

const char *proto_backend_name(enum proto_backend b)
{
	switch (b) {
	case PROTO_BACKEND_AFXDP:
		return "afxdp";
	case PROTO_BACKEND_AFPACKET:
		return "afpacket";
	case PROTO_BACKEND_AUTO:
		return "auto";
	}
	return "?";
}

static bool name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= PROTO_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || strchr("._+@:-", c)))
			return false;
	}
	return true;
}

int proto_parse_register(const struct kv *req, struct proto_register *out,
			 char *err, size_t errlen)
{
	const char *v;

	memset(out, 0, sizeof(*out));
	strcpy(out->name, "app");
	out->ip_auto = true;
	out->vf_auto = true;
	out->backend = PROTO_BACKEND_AFXDP;

	if ((v = kv_get(req, "name"))) {
		if (!name_valid(v)) {
			snprintf(err, errlen, "name= must be 1..%d characters of A-Z a-z 0-9 . _ + @ : -",
				 PROTO_NAME_MAX - 1);
			return -EINVAL;
		}
		strcpy(out->name, v);
	}
	if ((v = kv_get(req, "mode")) && strcmp(v, "direct") != 0) {
		snprintf(err, errlen, "mode=%.32s is not supported (only mode=direct)", v);
		return -ENOTSUP;
	}
	if ((v = kv_get(req, "ip")) && strcmp(v, "auto") != 0) {
		if (ip_parse(v, &out->ip) < 0) {
			snprintf(err, errlen, "ip=%.32s is not an IPv4 address (A.B.C.D or auto)", v);
			return -EINVAL;
		}
		out->ip_auto = false;
	}
	if ((v = kv_get(req, "vf")) && strcmp(v, "auto") != 0) {
		if (!ifname_valid(v)) {
			snprintf(err, errlen, "vf=%.32s is not a valid interface name", v);
			return -EINVAL;
		}
		strcpy(out->vf, v);
		out->vf_auto = false;
	}
	if ((v = kv_get(req, "backend"))) {
		if (!strcmp(v, "afxdp")) {
			out->backend = PROTO_BACKEND_AFXDP;
		} else if (!strcmp(v, "afpacket")) {
			out->backend = PROTO_BACKEND_AFPACKET;
		} else if (!strcmp(v, "auto")) {
			out->backend = PROTO_BACKEND_AUTO;
		} else {
			snprintf(err, errlen, "backend=%.32s is unknown (afxdp, afpacket or auto)", v);
			return -EINVAL;
		}
	}
	return 0;
}

int proto_fmt_ports(const struct region_port *ports, uint32_t nports,
		    char *buf, size_t len)
{
	size_t used = 0;
	int written = 0;

	if (len == 0)
		return -ENOSPC;
	buf[0] = '\0';
	if (nports > REGION_MAX_PORTS)
		nports = REGION_MAX_PORTS;
	for (uint32_t i = 0; i < nports; i++) {
		const struct region_port *pt = &ports[i];
		char item[24];
		int n;

		if (pt->state == 0)
			continue;
		if (pt->proto == REGION_PROTO_TCP)
			n = snprintf(item, sizeof(item), "%stcp:%u", written ? "," : "", pt->port);
		else if (pt->proto == REGION_PROTO_UDP)
			n = snprintf(item, sizeof(item), "%sudp:%u", written ? "," : "", pt->port);
		else
			n = snprintf(item, sizeof(item), "%sp%u:%u", written ? "," : "",
				     pt->proto, pt->port);
		if ((size_t)n >= len - used)
			return -ENOSPC;
		memcpy(buf + used, item, (size_t)n + 1);
		used += (size_t)n;
		written++;
	}
	if (!written) {
		if (len < 2)
			return -ENOSPC;
		strcpy(buf, "-");
	}
	return 0;
}

char *proto_fmt_mac(const uint8_t mac[6], char *buf)
{
	snprintf(buf, 18, "%02x:%02x:%02x:%02x:%02x:%02x",
		 mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
	return buf;
}
