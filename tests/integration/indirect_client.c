/* A synthetic indirect-mode application for tests: registers with librettod, claims a UDP port and echoes datagrams through netd's rings. */
/*
 * Usage: indirect_client --name NAME --port P [--ip shared|A.B.C.D]
 *                        [--count N] [--timeout SECONDS] [--busy-port Q]
 *
 * It does what the runtime's shm backend would, without lwIP: `register
 * mode=indirect` on the control socket (LIBRETTO_CONTROL), map the ring
 * region, lend netd the first half of the frames on the fill ring, `port
 * op=add proto=udp port=P`, then answer each UDP datagram to port P with
 * the same bytes swapped end for end (MACs, IPs, ports: the checksums stay
 * valid, a ones' complement sum does not depend on the order), sent from
 * the mac= of the reply.  With --busy-port Q it also asks for udp port Q
 * and prints what librettod answered ("busy errno=N error=...").
 *
 * stdout, one line each: "ready id=N ip=A mac=M" once the port is claimed,
 * "got PORT PAYLOAD" per datagram echoed, "other ..." per frame that was
 * not a UDP datagram to port P (ARP copies are normal), "done echoed=N".
 * Exit 0 once N datagrams were echoed, 1 on an error or the timeout.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "common/kv.h"
#include "libretto/ctl.h"
#include "libretto/ring.h"

static char reply[CTL_MSG_MAX];

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The value of key in a reply, copied to out ("" if absent). */
static void reply_get(const char *text, const char *key, char *out, size_t len)
{
	size_t kl = strlen(key);
	const char *p = text;

	out[0] = '\0';
	while (p && *p) {
		if (!strncmp(p, key, kl) && p[kl] == '=') {
			size_t n = strcspn(p + kl + 1, "\n");

			if (n >= len)
				n = len - 1;
			memcpy(out, p + kl + 1, n);
			out[n] = '\0';
			return;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
}

static int reply_errno(const char *text)
{
	char v[16];

	reply_get(text, "errno", v, sizeof(v));
	return v[0] ? atoi(v) : -1;
}

/* One request on the lease connection; the reply's errno (or -1). */
static int call(int ctl, const char *req, int *fds, int *nfds)
{
	int n;

	if (ctl_send(ctl, req, strlen(req), NULL, 0) < 0)
		return -1;
	n = ctl_recv(ctl, reply, sizeof(reply), fds, nfds);
	if (n <= 0)
		return -1;
	return reply_errno(reply);
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];

	if (sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
		return -1;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	return 0;
}

static void bell(int efd)
{
	uint64_t one = 1;

	/* A full counter means a wake-up is pending anyway. */
	if (write(efd, &one, sizeof(one)) < 0) {
	}
}

/*
 * If the frame is IPv4/UDP to port, swap it in place into its answer and
 * return the payload's offset (its length in *plen); else -1.
 */
static int udp_echo(uint8_t *f, uint32_t len, uint16_t port, const uint8_t mac[6],
		    uint32_t *plen)
{
	uint8_t tmp[6], *ip, *udp;
	uint32_t ihl, ulen;

	if (len < 14 + 20 + 8 || f[12] != 0x08 || f[13] != 0x00)
		return -1;
	ip = f + 14;
	ihl = (uint32_t)(ip[0] & 0x0f) * 4;
	if ((ip[0] >> 4) != 4 || ihl < 20 || ip[9] != 17 || len < 14 + ihl + 8)
		return -1;
	udp = ip + ihl;
	if ((uint16_t)(udp[2] << 8 | udp[3]) != port)
		return -1;
	ulen = (uint32_t)(udp[4] << 8 | udp[5]);
	if (ulen < 8 || 14 + ihl + ulen > len)
		return -1;
	memcpy(f, f + 6, 6);            /* the sender becomes the destination */
	memcpy(f + 6, mac, 6);
	memcpy(tmp, ip + 12, 4);
	memcpy(ip + 12, ip + 16, 4);
	memcpy(ip + 16, tmp, 4);
	memcpy(tmp, udp, 2);
	memcpy(udp, udp + 2, 2);
	memcpy(udp + 2, tmp, 2);
	*plen = ulen - 8;
	return (int)(14 + ihl + 8);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "port", required_argument, NULL, 'p' },
		{ "ip", required_argument, NULL, 'i' },
		{ "count", required_argument, NULL, 'c' },
		{ "timeout", required_argument, NULL, 't' },
		{ "busy-port", required_argument, NULL, 'b' },
		{ NULL, 0, NULL, 0 },
	};
	const char *name = "ind", *iparg = "shared";
	unsigned port = 0, busy = 0, count = 1, timeout_s = 20, echoed = 0;
	int fds[CTL_MAX_FDS], nfds = CTL_MAX_FDS, ctl, c, e;
	int ring_fd = -1, efd_netd = -1, efd_app = -1;
	char req[256], v[512], names[128], mac_s[32], ip_s[32], id_s[16];
	struct ring_region_hdr hdr;
	struct ring_prod fill, tx;
	struct ring_cons rx, comp;
	uint64_t *txfree, deadline;
	uint32_t ntxfree = 0, nfill, idx, gen;
	uint8_t mac[6], *frames;
	struct stat st;
	void *mem;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'n': name = optarg; break;
		case 'p': port = (unsigned)atoi(optarg); break;
		case 'i': iparg = optarg; break;
		case 'c': count = (unsigned)atoi(optarg); break;
		case 't': timeout_s = (unsigned)atoi(optarg); break;
		case 'b': busy = (unsigned)atoi(optarg); break;
		default:
			fprintf(stderr, "indirect_client: bad option\n");
			return 2;
		}
	}
	if (port == 0 || port > 65535 || timeout_s == 0 || timeout_s > 300) {
		fprintf(stderr, "indirect_client: --port 1..65535 and --timeout 1..300 wanted\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	deadline = now_ms() + (uint64_t)timeout_s * 1000;

	ctl = ctl_connect();
	if (ctl < 0) {
		fprintf(stderr, "indirect_client: cannot connect to %s: %s\n", ctl_path(),
			strerror(-ctl));
		return 1;
	}
	snprintf(req, sizeof(req), "register\nname=%s\nmode=indirect\nip=%s\n", name, iparg);
	e = call(ctl, req, fds, &nfds);
	if (e != 0) {
		reply_get(reply, "error", v, sizeof(v));
		fprintf(stderr, "indirect_client: register refused: errno=%d %s\n", e, v);
		return 1;
	}
	reply_get(reply, "fds", names, sizeof(names));
	reply_get(reply, "mac", mac_s, sizeof(mac_s));
	reply_get(reply, "ip", ip_s, sizeof(ip_s));
	reply_get(reply, "id", id_s, sizeof(id_s));
	reply_get(reply, "backend", v, sizeof(v));
	if (strcmp(names, "ring,efd_netd,efd_app,region") != 0 || nfds != 4 ||
	    strcmp(v, "shm") != 0 || parse_mac(mac_s, mac) < 0) {
		fprintf(stderr, "indirect_client: unexpected register reply (fds=%s, %d "
			"descriptors, backend=%s, mac=%s):\n%s", names, nfds, v, mac_s, reply);
		return 1;
	}
	ring_fd = fds[0];
	efd_netd = fds[1];
	efd_app = fds[2];

	if (fstat(ring_fd, &st) < 0)
		return 1;
	mem = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, ring_fd, 0);
	if (mem == MAP_FAILED || ring_region_check(mem, (size_t)st.st_size, &hdr) < 0) {
		fprintf(stderr, "indirect_client: the ring region is not usable\n");
		return 1;
	}
	if (ring_prod_attach(&fill, mem, &hdr, RING_FILL) < 0 ||
	    ring_prod_attach(&tx, mem, &hdr, RING_TX) < 0 ||
	    ring_cons_attach(&rx, mem, &hdr, RING_RX) < 0 ||
	    ring_cons_attach(&comp, mem, &hdr, RING_COMP) < 0) {
		fprintf(stderr, "indirect_client: the ring indices are inconsistent\n");
		return 1;
	}
	frames = ring_frames(mem, &hdr);
	/* First half of the frames to the fill ring, the second half for tx. */
	nfill = hdr.nframes / 2;
	if (nfill > hdr.ring_size)
		nfill = hdr.ring_size;
	txfree = calloc(hdr.nframes, sizeof(*txfree));
	if (!txfree)
		return 1;
	for (uint32_t i = nfill; i < hdr.nframes; i++)
		txfree[ntxfree++] = (uint64_t)i * hdr.frame_size;
	if (ring_prod_reserve(&fill, nfill, &idx) != nfill)
		return 1;
	for (uint32_t i = 0; i < nfill; i++) {
		struct ring_desc *d = ring_prod_desc(&fill, idx + i);

		d->offset = (uint64_t)i * hdr.frame_size;
		d->len = hdr.frame_size;
		d->flags = 0;
	}
	ring_prod_submit(&fill, nfill);
	bell(efd_netd);
	gen = ring_region_generation(mem);

	snprintf(req, sizeof(req), "port\nop=add\nproto=udp\nport=%u\nip=any\n", port);
	e = call(ctl, req, NULL, NULL);
	if (e != 0) {
		reply_get(reply, "error", v, sizeof(v));
		fprintf(stderr, "indirect_client: port udp:%u refused: errno=%d %s\n", port, e, v);
		return 1;
	}
	if (busy) {
		snprintf(req, sizeof(req), "port\nop=add\nproto=udp\nport=%u\nip=any\n", busy);
		e = call(ctl, req, NULL, NULL);
		reply_get(reply, "error", v, sizeof(v));
		printf("busy errno=%d error=%s\n", e, v);
	}
	printf("ready id=%s ip=%s mac=%s\n", id_s, ip_s, mac_s);

	while (echoed < count) {
		uint64_t now = now_ms();
		struct pollfd p = { .fd = efd_app, .events = POLLIN };
		uint32_t n, got;

		if (now >= deadline) {
			fprintf(stderr, "indirect_client: timeout after %u echoes\n", echoed);
			return 1;
		}
		/*
		 * A new netd (librettod restarted it and handed our region back)
		 * lost the fill frames its predecessor held: lend the receive
		 * frames again.  A frame still in the ring is then lent twice,
		 * harmless at a test's rate.
		 */
		if (ring_region_generation(mem) != gen) {
			uint32_t k = ring_prod_reserve(&fill, nfill, &idx);

			gen = ring_region_generation(mem);
			for (uint32_t i = 0; i < k; i++) {
				struct ring_desc *d = ring_prod_desc(&fill, idx + i);

				d->offset = (uint64_t)i * hdr.frame_size;
				d->len = hdr.frame_size;
				d->flags = 0;
			}
			ring_prod_submit(&fill, k);
			bell(efd_netd);
			printf("resync generation=%u refilled=%u\n", gen, k);
		}
		/* Completed transmissions give their frames back. */
		n = ring_cons_peek(&comp, hdr.ring_size, &idx);
		for (uint32_t i = 0; i < n; i++) {
			struct ring_desc d;

			ring_cons_read(&comp, idx + i, &d);
			if (d.offset < hdr.frames_len && ntxfree < hdr.nframes)
				txfree[ntxfree++] = d.offset & ~(uint64_t)(hdr.frame_size - 1);
		}
		if (n)
			ring_cons_release(&comp, n);

		if (ring_cons_prepare_sleep(&rx) == 0) {
			/* Bounded sleep: also watches the deadline. */
			if (poll(&p, 1, 200) > 0) {
				uint64_t cnt;

				if (read(efd_app, &cnt, sizeof(cnt)) < 0) {
				}
			}
			ring_cons_end_sleep(&rx);
			continue;
		}
		ring_cons_end_sleep(&rx);
		got = ring_cons_peek(&rx, 64, &idx);
		for (uint32_t i = 0; i < got; i++) {
			struct ring_desc d, *t;
			uint32_t plen = 0, tidx;
			uint8_t *f;
			int off;

			ring_cons_read(&rx, idx + i, &d);
			if (!ring_desc_valid(&hdr, &d)) {
				printf("other bad-descriptor\n");
				continue;
			}
			f = frames + d.offset;
			off = udp_echo(f, d.len, (uint16_t)port, mac, &plen);
			if (off < 0) {
				printf("other len=%u ethertype=%02x%02x\n", d.len, f[12], f[13]);
			} else if (ntxfree == 0 || ring_prod_reserve(&tx, 1, &tidx) != 1) {
				printf("other no-tx-room\n");
			} else {
				uint64_t to = txfree[--ntxfree];

				printf("got %u %.*s\n", port, (int)(plen > 200 ? 200 : plen), f + off);
				memcpy(frames + to, f, d.len);
				t = ring_prod_desc(&tx, tidx);
				t->offset = to;
				t->len = d.len;
				t->flags = 0;
				ring_prod_submit(&tx, 1);
				if (ring_prod_needs_wakeup(&tx))
					bell(efd_netd);
				echoed++;
			}
			/* The receive frame goes straight back to the fill ring. */
			if (ring_prod_reserve(&fill, 1, &tidx) == 1) {
				t = ring_prod_desc(&fill, tidx);
				t->offset = d.offset & ~(uint64_t)(hdr.frame_size - 1);
				t->len = hdr.frame_size;
				t->flags = 0;
				ring_prod_submit(&fill, 1);
			}
		}
		if (got) {
			ring_cons_release(&rx, got);
			if (ring_prod_needs_wakeup(&fill))
				bell(efd_netd);
		}
	}
	/* Let netd send the last answer before the lease goes with our exit. */
	for (int i = 0; i < 20; i++) {
		if (ring_cons_avail(&comp, 1) > 0 || __atomic_load_n(tx.consumer, __ATOMIC_ACQUIRE) == tx.prod)
			break;
		usleep(10000);
	}
	printf("done echoed=%u\n", echoed);
	return 0;
}
