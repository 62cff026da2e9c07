/* librettod's side of the control protocol text: request validation and
 * record formatting, pure functions with no I/O. */
#ifndef LIBRETTOD_PROTO_H
#define LIBRETTOD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <net/if.h>

#include "common/kv.h"
#include "libretto/region.h"

enum proto_backend {
	PROTO_BACKEND_AFXDP,
	PROTO_BACKEND_AFPACKET,
	PROTO_BACKEND_AUTO,
};

const char *proto_backend_name(enum proto_backend b);

#define PROTO_NAME_MAX 64

/*
 * A validated "register" request.  Absent keys take these defaults: name
 * "app" (the daemon appends nothing; names need not be unique), mode=direct,
 * ip=auto, vf=auto, backend=afxdp (AF_PACKET only when asked for, or with
 * backend=auto when AF_XDP cannot be set up).  Unknown keys are ignored so
 * that newer clients can talk to this daemon.
 */
struct proto_register {
	char name[PROTO_NAME_MAX];
	bool ip_auto;
	uint32_t ip;                 /* host byte order, when !ip_auto */
	bool vf_auto;
	char vf[IF_NAMESIZE];        /* when !vf_auto */
	enum proto_backend backend;
};

/*
 * Validate the keys of a register request.  Returns 0, or -EINVAL with one
 * line of text in err naming the bad key (mode other than direct: -ENOTSUP).
 * Names are 1..63 bytes of [A-Za-z0-9._+@:-] so that they print safely on
 * one space-separated line.
 */
int proto_parse_register(const struct kv *req, struct proto_register *out,
			 char *err, size_t errlen);

/*
 * Format a region's port table as "tcp:80,udp:5201" (entries with state 0
 * are skipped; nports is clamped to REGION_MAX_PORTS; other protocols print
 * as "p<N>:port"), or "-" when no port is in use.  The ports array is a
 * snapshot the caller took.  Always NUL-terminates; returns -ENOSPC (with a
 * truncated but well-formed list) if buf was too small, else 0.
 */
int proto_fmt_ports(const struct region_port *ports, uint32_t nports,
		    char *buf, size_t len);

/* "02:4c:00:00:01:01" into buf (at least 18 bytes). Returns buf. */
char *proto_fmt_mac(const uint8_t mac[6], char *buf);

#endif
