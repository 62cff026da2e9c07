/* Unit test: netd's TX validator against honest, malformed and spoofed frames. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netd/validate.h"
#include "netd_frames.h"

#include "check.h"


static const uint32_t PEER = FB_IP(10, 42, 0, 200);
static const uint32_t SHARED = FB_IP(10, 42, 0, 2);
static const uint32_t DEDIC = FB_IP(10, 42, 0, 9);
static const uint32_t OTHER = FB_IP(10, 42, 0, 3);   /* another application's */
static const uint8_t mac_evil[6] = { 0x02, 0xee, 0xee, 0xee, 0xee, 0xee };

/* The port table of the test: application 1 owns these. */
static bool owns(void *ctx, uint32_t app, uint32_t ip, uint8_t proto, uint16_t port)
{
	(void)ctx;
	if (app == 2)
		return ip == SHARED && proto == 17 && port == 7777;
	if (app != 1)
		return false;
	return (ip == SHARED && proto == 6 && port == 8080) ||
	       (ip == SHARED && proto == 17 && port == 5353) ||
	       (ip == DEDIC && proto == 6 && port == 9000);
}

static struct frag_table frags;

static struct validate_app app1(void)
{
	struct validate_app a = {
		.id = 1,
		.ips = { SHARED, DEDIC },
		.n_ips = 2,
		.owns_port = owns,
		.frags = &frags,
	};
	memcpy(a.mac, fb_mac_netd, 6);
	return a;
}

/* Validate an exact-size heap copy so that AddressSanitizer sees any overread. */
static enum validate_reason vf(const struct validate_app *a, const uint8_t *f, size_t len,
			       uint64_t now)
{
	uint8_t *c = malloc(len ? len : 1);
	enum validate_reason r;

	if (c == NULL)
		abort();
	memcpy(c, f, len);
	r = validate_frame(a, c, len, now, NULL);
	free(c);
	return r;
}

static void test_strings(void)
{
	for (unsigned r = 0; r < VALIDATE_REASON_COUNT; r++) {
		CHECK(strcmp(validate_reason_str(r), "?") != 0);
		for (unsigned q = 0; q < r; q++)
			CHECK(strcmp(validate_reason_str(r), validate_reason_str(q)) != 0);
	}
	CHECK(strcmp(validate_reason_str(VALIDATE_REASON_COUNT), "?") == 0);
	CHECK(strcmp(validate_reason_str(VALIDATE_OK), "ok") == 0);
}

static void test_desc(void)
{
	CHECK(validate_desc(0, 60, 4096, 2048) == VALIDATE_OK);
	CHECK(validate_desc(4096 - 60, 60, 4096, 2048) == VALIDATE_OK);
	CHECK(validate_desc(4096 - 59, 60, 4096, 2048) == VALIDATE_DESC_BOUNDS);
	CHECK(validate_desc(4097, 0, 4096, 2048) == VALIDATE_DESC_BOUNDS);
	CHECK(validate_desc(UINT64_MAX - 5, 100, 4096, 2048) == VALIDATE_DESC_BOUNDS);
	CHECK(validate_desc(100, UINT64_MAX - 50, 4096, 2048) == VALIDATE_DESC_BOUNDS);
	CHECK(validate_desc(UINT64_MAX, UINT64_MAX, UINT64_MAX, 2048) == VALIDATE_DESC_BOUNDS);
	CHECK(validate_desc(0, UINT64_MAX, UINT64_MAX, 2048) == VALIDATE_TOO_LONG);
	CHECK(validate_desc(0, 3000, 4096, 2048) == VALIDATE_TOO_LONG);
	CHECK(validate_desc(0, 13, 4096, 2048) == VALIDATE_TOO_SHORT);
	CHECK(validate_desc(0, 0, 4096, 2048) == VALIDATE_TOO_SHORT);
	CHECK(validate_desc(0, 14, 0, 2048) == VALIDATE_DESC_BOUNDS);

	/* validate_tx copies, then checks the copy. */
	struct validate_app a = app1();
	uint8_t *area = calloc(1, 8192), buf[2048];
	struct validate_info info;
	size_t n = fb_tcp(area + 1000, fb_mac_netd, 5, SHARED, PEER, 8080, 40000, 0x12, 10);

	CHECK(validate_tx(&a, area, 8192, 1000, n, buf, sizeof(buf), 0, &info) == VALIDATE_OK);
	CHECK(memcmp(buf, area + 1000, n) == 0);
	CHECK(info.src_ip == SHARED && info.src_port == 8080 && info.dst_port == 40000);
	CHECK(info.proto == 6 && info.ethertype == 0x0800 && !info.is_fragment);
	CHECK(validate_tx(&a, area, 8192, 8192 - n + 1, n, buf, sizeof(buf), 0, &info) ==
	      VALIDATE_DESC_BOUNDS);
	CHECK(validate_tx(&a, area, 8192, UINT64_MAX - 10, n, buf, sizeof(buf), 0, &info) ==
	      VALIDATE_DESC_BOUNDS);
	CHECK(validate_tx(&a, area, 8192, 1000, n, buf, n - 1, 0, &info) == VALIDATE_TOO_LONG);
	free(area);
}

static void test_honest(void)
{
	struct validate_app a = app1();
	uint8_t f[FB_MAX];
	size_t n;

	frag_init(&frags, 30000);
	for (unsigned ihl = 5; ihl <= 15; ihl++) {
		n = fb_tcp(f, fb_mac_netd, ihl, SHARED, PEER, 8080, 40000, 0x18, 100);
		CHECK(vf(&a, f, n, 0) == VALIDATE_OK);
	}
	n = fb_tcp(f, fb_mac_netd, 5, DEDIC, PEER, 9000, 40000, 0x02, 0);
	CHECK(vf(&a, f, n, 0) == VALIDATE_OK);
	n = fb_udp(f, fb_mac_netd, 5, SHARED, PEER, 5353, 53, 1472);
	CHECK(n == 1514 && vf(&a, f, n, 0) == VALIDATE_OK);
	n = fb_icmp(f, fb_mac_netd, SHARED, PEER, 8, 0, 56);
	CHECK(vf(&a, f, n, 0) == VALIDATE_OK);
	n = fb_icmp(f, fb_mac_netd, DEDIC, PEER, 0, 0, 56);
	CHECK(vf(&a, f, n, 0) == VALIDATE_OK);

	/* A short datagram padded to 60 bytes. */
	n = fb_udp(f, fb_mac_netd, 5, SHARED, PEER, 5353, 53, 2);
	memset(f + n, 0, 60 - n);
	CHECK(vf(&a, f, 60, 0) == VALIDATE_OK);
	CHECK(vf(&a, f, n, 0) == VALIDATE_OK);

	/* ARP request, reply, and an RFC 5227 probe. */
	n = fb_arp(f, fb_mac_bcast, fb_mac_netd, 1, fb_mac_netd, SHARED, PEER);
	CHECK(vf(&a, f, n, 0) == VALIDATE_OK);
	memset(f + n, 0, 60 - n);
	CHECK(vf(&a, f, 60, 0) == VALIDATE_OK);
	n = fb_arp(f, fb_mac_peer, fb_mac_netd, 2, fb_mac_netd, DEDIC, PEER);
	CHECK(vf(&a, f, n, 0) == VALIDATE_OK);
	n = fb_arp(f, fb_mac_bcast, fb_mac_netd, 1, fb_mac_netd, 0, DEDIC);
	CHECK(vf(&a, f, n, 0) == VALIDATE_OK);

	/* A larger MTU when configured. */
	n = fb_udp(f, fb_mac_netd, 5, SHARED, PEER, 5353, 53, 4000);
	CHECK(vf(&a, f, n, 0) == VALIDATE_TOO_LONG);
	a.mtu = 9000;
	CHECK(vf(&a, f, n, 0) == VALIDATE_OK);
}

static void test_spoofing(void)
{
	struct validate_app a = app1();
	uint8_t f[FB_MAX];
	size_t n;

	/* Ethernet source. */
	n = fb_tcp(f, mac_evil, 5, SHARED, PEER, 8080, 40000, 0x10, 0);
	CHECK(vf(&a, f, n, 0) == VALIDATE_SRC_MAC);
	/* Source IP: another application's, the peer's, 0.0.0.0, broadcast. */
	n = fb_tcp(f, fb_mac_netd, 5, OTHER, PEER, 8080, 40000, 0x10, 0);
	CHECK(vf(&a, f, n, 0) == VALIDATE_SRC_IP);
	n = fb_udp(f, fb_mac_netd, 5, PEER, SHARED, 5353, 53, 0);
	CHECK(vf(&a, f, n, 0) == VALIDATE_SRC_IP);
	n = fb_udp(f, fb_mac_netd, 5, 0, PEER, 5353, 53, 0);
	CHECK(vf(&a, f, n, 0) == VALIDATE_SRC_IP);
	n = fb_icmp(f, fb_mac_netd, 0xffffffffu, PEER, 8, 0, 8);
	CHECK(vf(&a, f, n, 0) == VALIDATE_SRC_IP);
	/* An application with no address table sends nothing over IP. */
	struct validate_app none = a;

	none.n_ips = 0;
	n = fb_icmp(f, fb_mac_netd, SHARED, PEER, 8, 0, 8);
	CHECK(vf(&none, f, n, 0) == VALIDATE_SRC_IP);

	/* Source ports: not owned, owned on the other IP, owned for the other proto, 0. */
	n = fb_tcp(f, fb_mac_netd, 5, SHARED, PEER, 8081, 40000, 0x10, 0);
	CHECK(vf(&a, f, n, 0) == VALIDATE_SRC_PORT);
	n = fb_tcp(f, fb_mac_netd, 5, SHARED, PEER, 9000, 40000, 0x10, 0);
	CHECK(vf(&a, f, n, 0) == VALIDATE_SRC_PORT);
	n = fb_udp(f, fb_mac_netd, 5, SHARED, PEER, 8080, 53, 4);
	CHECK(vf(&a, f, n, 0) == VALIDATE_SRC_PORT);
	n = fb_tcp(f, fb_mac_netd, 5, SHARED, PEER, 0, 40000, 0x10, 0);
	CHECK(vf(&a, f, n, 0) == VALIDATE_SRC_PORT);
	struct validate_app noports = a;

	noports.owns_port = NULL;
	n = fb_tcp(f, fb_mac_netd, 5, SHARED, PEER, 8080, 40000, 0x10, 0);
	CHECK(vf(&noports, f, n, 0) == VALIDATE_SRC_PORT);
	/* Another application id asks the table for its own ports. */
	struct validate_app two = a;

	two.id = 2;
	CHECK(vf(&two, f, n, 0) == VALIDATE_SRC_PORT);

	/* ARP spoofing. */
	n = fb_arp(f, fb_mac_bcast, mac_evil, 2, mac_evil, SHARED, PEER);
	CHECK(vf(&a, f, n, 0) == VALIDATE_SRC_MAC);
	n = fb_arp(f, fb_mac_bcast, fb_mac_netd, 2, mac_evil, SHARED, PEER);
	CHECK(vf(&a, f, n, 0) == VALIDATE_ARP_SENDER_MAC);
	n = fb_arp(f, fb_mac_bcast, fb_mac_netd, 2, fb_mac_netd, OTHER, PEER);
	CHECK(vf(&a, f, n, 0) == VALIDATE_ARP_SENDER_IP);
	n = fb_arp(f, fb_mac_bcast, fb_mac_netd, 1, fb_mac_netd, PEER, PEER);
	CHECK(vf(&a, f, n, 0) == VALIDATE_ARP_SENDER_IP);
	n = fb_arp(f, fb_mac_bcast, fb_mac_netd, 1, fb_mac_netd, 0, OTHER);
	CHECK(vf(&a, f, n, 0) == VALIDATE_ARP_SENDER_IP);
	n = fb_arp(f, fb_mac_bcast, fb_mac_netd, 2, fb_mac_netd, 0, SHARED);
	CHECK(vf(&a, f, n, 0) == VALIDATE_ARP_SENDER_IP);
	n = fb_arp(f, fb_mac_bcast, fb_mac_netd, 3, fb_mac_netd, SHARED, PEER);
	CHECK(vf(&a, f, n, 0) == VALIDATE_ARP_FORMAT);
	n = fb_arp(f, fb_mac_bcast, fb_mac_netd, 1, fb_mac_netd, SHARED, PEER);
	f[15] = 6;
	CHECK(vf(&a, f, n, 0) == VALIDATE_ARP_FORMAT);
	n = fb_arp(f, fb_mac_bcast, fb_mac_netd, 1, fb_mac_netd, SHARED, PEER);
	memset(f + n, 0, 100);
	CHECK(vf(&a, f, 61, 0) == VALIDATE_TOO_LONG);

	/* ICMP: allowed types only; errors must quote the application's own traffic. */
	n = fb_icmp(f, fb_mac_netd, SHARED, PEER, 5, 1, 28); /* redirect */
	CHECK(vf(&a, f, n, 0) == VALIDATE_ICMP);
	n = fb_icmp(f, fb_mac_netd, SHARED, PEER, 13, 0, 12); /* timestamp */
	CHECK(vf(&a, f, n, 0) == VALIDATE_ICMP);

	uint8_t quoted[FB_MAX], l4[FB_MAX];
	size_t qn;
	struct { uint32_t qdst; uint8_t proto; uint16_t qdport; enum validate_reason want; } q[] = {
		{ SHARED, 17, 5353, VALIDATE_OK },
		{ SHARED, 6, 8080, VALIDATE_OK },
		{ SHARED, 17, 5354, VALIDATE_ICMP },   /* another application's port */
		{ OTHER, 17, 5353, VALIDATE_ICMP },    /* another address */
		{ DEDIC, 6, 9000, VALIDATE_OK },
	};

	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		/* The datagram the peer sent to us, quoted: IP header + 8 bytes. */
		if (q[i].proto == 17)
			qn = fb_udp(quoted, fb_mac_peer, 5, PEER, q[i].qdst, 40000, q[i].qdport, 0);
		else
			qn = fb_tcp(quoted, fb_mac_peer, 5, PEER, q[i].qdst, 40000, q[i].qdport, 2, 0);
		(void)qn;
		memset(l4, 0, 8);
		l4[0] = 3;
		l4[1] = 3;
		memcpy(l4 + 8, quoted + 14, 28);
		n = fb_ip(f, fb_mac_peer, fb_mac_netd, 5, 1, SHARED, PEER, 1, 0, l4, 36);
		CHECK(vf(&a, f, n, 0) == q[i].want);
	}
	/* A quote cut short, and a quote with a bogus header length. */
	n = fb_ip(f, fb_mac_peer, fb_mac_netd, 5, 1, SHARED, PEER, 1, 0, l4, 8 + 20 + 3);
	CHECK(vf(&a, f, n, 0) == VALIDATE_ICMP);
	l4[8] = 0x4f;
	n = fb_ip(f, fb_mac_peer, fb_mac_netd, 5, 1, SHARED, PEER, 1, 0, l4, 36);
	CHECK(vf(&a, f, n, 0) == VALIDATE_ICMP);
	n = fb_icmp(f, fb_mac_netd, SHARED, PEER, 3, 3, 10);
	CHECK(vf(&a, f, n, 0) == VALIDATE_ICMP);

	/* Other protocols. */
	uint8_t gre[8] = { 0 };

	n = fb_ip(f, fb_mac_peer, fb_mac_netd, 5, 47, SHARED, PEER, 1, 0, gre, 8);
	CHECK(vf(&a, f, n, 0) == VALIDATE_PROTO);
}

static void test_malformed(void)
{
	struct validate_app a = app1();
	uint8_t f[FB_MAX];
	size_t n;
	static const uint16_t types[] = { 0x86dd, 0x8100, 0x88a8, 0x88cc, 0x0042 };

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		n = fb_tcp(f, fb_mac_netd, 5, SHARED, PEER, 8080, 40000, 0x10, 0);
		fb_w16(f + 12, types[i]);
		CHECK(vf(&a, f, n, 0) == VALIDATE_ETHERTYPE);
	}
	n = fb_tcp(f, fb_mac_netd, 5, SHARED, PEER, 8080, 40000, 0x10, 1500);
	CHECK(vf(&a, f, n, 0) == VALIDATE_TOO_LONG);
	CHECK(vf(&a, f, 13, 0) == VALIDATE_TOO_SHORT);
	CHECK(vf(&a, f, 14 + 19, 0) == VALIDATE_TOO_SHORT);
	CHECK(validate_frame(&a, NULL, 0, 0, NULL) == VALIDATE_TOO_SHORT);

	n = fb_tcp(f, fb_mac_netd, 5, SHARED, PEER, 8080, 40000, 0x10, 10);
	f[14] = 0x55;
	fb_ip_csum(f);
	CHECK(vf(&a, f, n, 0) == VALIDATE_IP_HEADER);
	for (unsigned ihl = 0; ihl < 5; ihl++) {
		n = fb_tcp(f, fb_mac_netd, 5, SHARED, PEER, 8080, 40000, 0x10, 10);
		f[14] = (uint8_t)(0x40 | ihl);
		CHECK(vf(&a, f, n, 0) == VALIDATE_IP_HEADER);
	}
	n = fb_tcp(f, fb_mac_netd, 5, SHARED, PEER, 8080, 40000, 0x10, 10);
	f[14 + 8]--;
	CHECK(vf(&a, f, n, 0) == VALIDATE_IP_CHECKSUM);
	/* Total length: longer than the frame, shorter than the frame (not padding). */
	n = fb_tcp(f, fb_mac_netd, 5, SHARED, PEER, 8080, 40000, 0x10, 100);
	fb_w16(f + 16, (uint16_t)(n - 14 + 1));
	fb_ip_csum(f);
	CHECK(vf(&a, f, n, 0) == VALIDATE_IP_HEADER);
	fb_w16(f + 16, (uint16_t)(n - 14 - 1));
	fb_ip_csum(f);
	CHECK(vf(&a, f, n, 0) == VALIDATE_IP_HEADER);
	fb_w16(f + 16, 10);
	fb_ip_csum(f);
	CHECK(vf(&a, f, n, 0) == VALIDATE_IP_HEADER);
	/* Transport header broken. */
	n = fb_tcp(f, fb_mac_netd, 5, SHARED, PEER, 8080, 40000, 0x10, 0);
	f[14 + 20 + 12] = 0xf0;
	CHECK(vf(&a, f, n, 0) == VALIDATE_L4_HEADER);
	n = fb_udp(f, fb_mac_netd, 5, SHARED, PEER, 5353, 53, 10);
	fb_w16(f + 14 + 20 + 4, 100);
	CHECK(vf(&a, f, n, 0) == VALIDATE_L4_HEADER);

	/* Every prefix of honest frames: refused (the lengths disagree), never overread. */
	uint8_t frames[4][FB_MAX];
	size_t lens[4];

	lens[0] = fb_tcp(frames[0], fb_mac_netd, 15, SHARED, PEER, 8080, 40000, 0x10, 30);
	lens[1] = fb_udp(frames[1], fb_mac_netd, 7, SHARED, PEER, 5353, 53, 30);
	lens[2] = fb_icmp(frames[2], fb_mac_netd, SHARED, PEER, 8, 0, 30);
	lens[3] = fb_arp(frames[3], fb_mac_bcast, fb_mac_netd, 1, fb_mac_netd, SHARED, PEER);
	for (int i = 0; i < 4; i++) {
		for (size_t l = 0; l < lens[i]; l++)
			CHECK(vf(&a, frames[i], l, 0) != VALIDATE_OK);
		CHECK(vf(&a, frames[i], lens[i], 0) == VALIDATE_OK);
	}
}

static void test_fragments(void)
{
	struct validate_app a = app1();
	uint8_t f[FB_MAX], l4[4096];
	size_t n;

	frag_init(&frags, 30000);
	fb_udp_hdr(l4, 5353, 53, 2000 - 8);

	/* A later fragment before its first: refused (the application sends in order). */
	n = fb_ip(f, fb_mac_peer, fb_mac_netd, 5, 17, SHARED, PEER, 0x500, 0x2000 | 100, l4, 16);
	CHECK(vf(&a, f, n, 1000) == VALIDATE_FRAG);

	/* First piece, with the port check. */
	n = fb_ip(f, fb_mac_peer, fb_mac_netd, 5, 17, SHARED, PEER, 0x501, 0x2000, l4, 1480);
	CHECK(vf(&a, f, n, 1000) == VALIDATE_OK);
	/* Last piece: allowed. */
	n = fb_ip(f, fb_mac_peer, fb_mac_netd, 5, 17, SHARED, PEER, 0x501, 185, l4 + 1480, 520);
	CHECK(vf(&a, f, n, 1001) == VALIDATE_OK);
	/* Overlapping the first piece's checked header: refused. */
	n = fb_ip(f, fb_mac_peer, fb_mac_netd, 5, 17, SHARED, PEER, 0x501, 1, l4, 100);
	CHECK(vf(&a, f, n, 1001) == VALIDATE_FRAG);
	/* Same id, another protocol or destination: no first piece for that. */
	n = fb_ip(f, fb_mac_peer, fb_mac_netd, 5, 6, SHARED, PEER, 0x501, 185, l4, 16);
	CHECK(vf(&a, f, n, 1001) == VALIDATE_FRAG);
	n = fb_ip(f, fb_mac_peer, fb_mac_netd, 5, 17, SHARED, OTHER, 0x501, 185, l4, 16);
	CHECK(vf(&a, f, n, 1001) == VALIDATE_FRAG);
	/* Another application cannot ride on application 1's first piece. */
	struct validate_app two = a;

	two.id = 2;
	two.ips[0] = SHARED;
	n = fb_ip(f, fb_mac_peer, fb_mac_netd, 5, 17, SHARED, PEER, 0x501, 185, l4 + 1480, 520);
	CHECK(vf(&two, f, n, 1001) == VALIDATE_FRAG);
	/* ...nor send a first piece with the same key while application 1's lives. */
	fb_udp_hdr(l4, 7777, 53, 2000 - 8);
	n = fb_ip(f, fb_mac_peer, fb_mac_netd, 5, 17, SHARED, PEER, 0x501, 0x2000, l4, 1480);
	CHECK(vf(&two, f, n, 1001) == VALIDATE_FRAG);
	n = fb_ip(f, fb_mac_peer, fb_mac_netd, 5, 17, SHARED, PEER, 0x601, 0x2000, l4, 1480);
	CHECK(vf(&two, f, n, 1001) == VALIDATE_OK);     /* another id is fine */
	fb_udp_hdr(l4, 5353, 53, 2000 - 8);
	n = fb_ip(f, fb_mac_peer, fb_mac_netd, 5, 17, SHARED, PEER, 0x501, 0x2000, l4, 1480);
	CHECK(vf(&a, f, n, 1001) == VALIDATE_OK);       /* its own retransmission too */
	/* ...nor may a later piece carry a spoofed source. */
	n = fb_ip(f, fb_mac_peer, fb_mac_netd, 5, 17, OTHER, PEER, 0x501, 185, l4 + 1480, 520);
	CHECK(vf(&a, f, n, 1001) == VALIDATE_SRC_IP);
	/* Expired 30 s after the last first piece (1001). */
	n = fb_ip(f, fb_mac_peer, fb_mac_netd, 5, 17, SHARED, PEER, 0x501, 185, l4 + 1480, 520);
	CHECK(vf(&a, f, n, 31001) == VALIDATE_FRAG);

	/* A first piece from a port the application does not own records nothing. */
	fb_udp_hdr(l4, 5354, 53, 2000 - 8);
	n = fb_ip(f, fb_mac_peer, fb_mac_netd, 5, 17, SHARED, PEER, 0x502, 0x2000, l4, 1480);
	CHECK(vf(&a, f, n, 2000) == VALIDATE_SRC_PORT);
	n = fb_ip(f, fb_mac_peer, fb_mac_netd, 5, 17, SHARED, PEER, 0x502, 185, l4 + 1480, 520);
	CHECK(vf(&a, f, n, 2000) == VALIDATE_FRAG);

	/* A tiny first piece, and fragmented ICMP errors. */
	fb_tcp_hdr(l4, 8080, 40000, 0x10, 100);
	n = fb_ip(f, fb_mac_peer, fb_mac_netd, 5, 6, SHARED, PEER, 0x503, 0x2000, l4, 8);
	CHECK(vf(&a, f, n, 2000) == VALIDATE_L4_HEADER);
	fb_icmp_hdr(l4, 3, 3, 100);
	n = fb_ip(f, fb_mac_peer, fb_mac_netd, 5, 1, SHARED, PEER, 0x504, 0x2000, l4, 64);
	CHECK(vf(&a, f, n, 2000) == VALIDATE_ICMP);
	/* A big ping is fine. */
	fb_icmp_hdr(l4, 8, 0, 3000);
	n = fb_ip(f, fb_mac_peer, fb_mac_netd, 5, 1, SHARED, PEER, 0x505, 0x2000, l4, 1480);
	CHECK(vf(&a, f, n, 2000) == VALIDATE_OK);
	n = fb_ip(f, fb_mac_peer, fb_mac_netd, 5, 1, SHARED, PEER, 0x505, 185, l4 + 1480, 1480);
	CHECK(vf(&a, f, n, 2000) == VALIDATE_OK);

	/* Without a table no fragment passes. */
	struct validate_app nofr = a;

	nofr.frags = NULL;
	fb_udp_hdr(l4, 5353, 53, 2000 - 8);
	n = fb_ip(f, fb_mac_peer, fb_mac_netd, 5, 17, SHARED, PEER, 0x506, 0x2000, l4, 1480);
	CHECK(vf(&nofr, f, n, 2000) == VALIDATE_FRAG);
	n = fb_ip(f, fb_mac_peer, fb_mac_netd, 5, 17, SHARED, PEER, 0x501, 185, l4 + 1480, 520);
	CHECK(vf(&nofr, f, n, 1001) == VALIDATE_FRAG);
}

int main(void)
{
	test_strings();
	test_desc();
	test_honest();
	test_spoofing();
	test_malformed();
	test_fragments();
	if (failures) {
		fprintf(stderr, "test_validate: %d failure(s)\n", failures);
		return 1;
	}
	return 0;
}
