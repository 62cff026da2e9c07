/* Unit test: netd's receive classifier and fragment-steering table on hand-built frames. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netd/classify.h"
#include "netd/frag.h"
#include "netd_frames.h"

#include "check.h"


static const uint32_t PEER = FB_IP(10, 42, 0, 200);
static const uint32_t SHARED = FB_IP(10, 42, 0, 2);

/*
 * Classify an exact-size heap copy of frame[0 .. len-1], so that AddressSanitizer
 * (make the build with -Db_sanitize=address) catches a read of even one byte
 * past len.
 */
static void classify_copy(const uint8_t *frame, size_t len, struct classify_verdict *v)
{
	uint8_t *c = malloc(len ? len : 1);

	if (c == NULL)
		abort();
	memcpy(c, frame, len);
	classify_frame(c, len, v);
	free(c);
}

/* Invariants that hold for every verdict, whatever the input. */
static void check_invariants(const struct classify_verdict *v, size_t len)
{
	CHECK(v->kind < CLASSIFY_KIND_COUNT);
	CHECK(v->reason < CLASSIFY_REASON_COUNT);
	CHECK((v->kind == CLASSIFY_MALFORMED) == (v->reason != CLASSIFY_R_NONE));
	if (v->kind != CLASSIFY_IPV4_TCP && v->kind != CLASSIFY_IPV4_UDP)
		CHECK(v->src_port == 0 && v->dst_port == 0);
	if (v->kind >= CLASSIFY_IPV4_TCP && v->kind <= CLASSIFY_IPV4_FRAGMENT) {
		CHECK(v->ip_hlen >= 20 && v->ip_hlen <= 60);
		CHECK(v->l4_off == 14 + v->ip_hlen);
		CHECK((size_t)v->l4_off + v->l4_len <= len);
		CHECK(v->ip_total_len == v->ip_hlen + v->l4_len);
	}
	if (v->kind == CLASSIFY_IPV4_FRAGMENT)
		CHECK(v->frag_off != 0 && (v->flags & CLASSIFY_F_FRAGMENT));
}

static void test_strings(void)
{
	for (unsigned k = 0; k < CLASSIFY_KIND_COUNT; k++)
		CHECK(classify_kind_str(k) != NULL && strcmp(classify_kind_str(k), "?") != 0);
	for (unsigned r = 0; r < CLASSIFY_REASON_COUNT; r++)
		CHECK(classify_reason_str(r) != NULL && strcmp(classify_reason_str(r), "?") != 0);
	CHECK(strcmp(classify_kind_str(CLASSIFY_KIND_COUNT), "?") == 0);
	CHECK(strcmp(classify_reason_str(999), "?") == 0);
}

static void test_arp(void)
{
	uint8_t f[FB_MAX];
	struct classify_verdict v;
	size_t n = fb_arp(f, fb_mac_bcast, fb_mac_peer, 1, fb_mac_peer, PEER, SHARED);

	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_ARP_REQUEST);
	CHECK(v.dst_class == CLASSIFY_MAC_BROADCAST);
	CHECK(v.ethertype == 0x0806);
	CHECK(v.arp_spa == PEER && v.arp_tpa == SHARED);
	CHECK(memcmp(v.arp_sha, fb_mac_peer, 6) == 0);

	n = fb_arp(f, fb_mac_netd, fb_mac_peer, 2, fb_mac_peer, PEER, SHARED);
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_ARP_REPLY && v.dst_class == CLASSIFY_MAC_UNICAST);

	n = fb_arp(f, fb_mac_netd, fb_mac_peer, 3, fb_mac_peer, PEER, SHARED);
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_ARP_OTHER && v.arp_op == 3);

	/* Padding to the Ethernet minimum is fine. */
	memset(f + n, 0, 60 - n);
	classify_copy(f, 60, &v);
	CHECK(v.kind == CLASSIFY_ARP_OTHER);

	/* Every truncation of a request is ARP_SHORT (or RUNT below 14 bytes). */
	n = fb_arp(f, fb_mac_bcast, fb_mac_peer, 1, fb_mac_peer, PEER, SHARED);
	for (size_t l = 0; l < n; l++) {
		classify_copy(f, l, &v);
		check_invariants(&v, l);
		CHECK(v.kind == CLASSIFY_MALFORMED);
		CHECK(v.reason == (l < 14 ? CLASSIFY_R_RUNT : CLASSIFY_R_ARP_SHORT));
	}

	/* Not Ethernet/IPv4: each of the four format fields. */
	for (int which = 0; which < 4; which++) {
		n = fb_arp(f, fb_mac_bcast, fb_mac_peer, 1, fb_mac_peer, PEER, SHARED);
		if (which == 0)
			f[15] = 6;               /* htype 6 (IEEE 802) */
		else if (which == 1)
			f[16] = 0x86, f[17] = 0xdd; /* ptype IPv6 */
		else if (which == 2)
			f[18] = 8;               /* hlen */
		else
			f[19] = 16;              /* plen */
		classify_copy(f, n, &v);
		CHECK(v.kind == CLASSIFY_MALFORMED && v.reason == CLASSIFY_R_ARP_FORMAT);
	}
}

static void test_ethertypes_and_macs(void)
{
	uint8_t f[FB_MAX];
	struct classify_verdict v;
	static const uint8_t mcast[6] = { 0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb };
	static const uint8_t v6mcast[6] = { 0x33, 0x33, 0x00, 0x00, 0x00, 0x01 };
	static const struct { uint16_t type; unsigned kind; } types[] = {
		{ 0x86dd, CLASSIFY_IPV6 },
		{ 0x8100, CLASSIFY_VLAN },
		{ 0x88a8, CLASSIFY_VLAN },
		{ 0x9100, CLASSIFY_VLAN },
		{ 0x88cc, CLASSIFY_OTHER_ETHERTYPE },   /* LLDP */
		{ 0x0042, CLASSIFY_OTHER_ETHERTYPE },   /* 802.3 length field */
		{ 0x8035, CLASSIFY_OTHER_ETHERTYPE },   /* RARP */
	};

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		memset(f, 0xab, 80);
		fb_eth(f, fb_mac_netd, fb_mac_peer, types[i].type);
		classify_copy(f, 80, &v);
		CHECK(v.kind == types[i].kind && v.ethertype == types[i].type);
		check_invariants(&v, 80);
		/* A bare header of any of them is not malformed: nothing inside is read. */
		classify_copy(f, 14, &v);
		CHECK(v.kind == types[i].kind);
	}

	fb_eth(f, mcast, fb_mac_peer, 0x86dd);
	classify_copy(f, 60, &v);
	CHECK(v.dst_class == CLASSIFY_MAC_MULTICAST);
	fb_eth(f, v6mcast, fb_mac_peer, 0x86dd);
	classify_copy(f, 60, &v);
	CHECK(v.dst_class == CLASSIFY_MAC_MULTICAST && v.kind == CLASSIFY_IPV6);

	/* A group address as source is invalid on any link. */
	size_t n = fb_udp(f, mcast, 5, PEER, SHARED, 5000, 53, 10);

	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_MALFORMED && v.reason == CLASSIFY_R_SRC_MAC);

	for (size_t l = 0; l < 14; l++) {
		classify_copy(f, l, &v);
		CHECK(v.kind == CLASSIFY_MALFORMED && v.reason == CLASSIFY_R_RUNT);
	}
	classify_frame(NULL, 0, &v);
	CHECK(v.kind == CLASSIFY_MALFORMED && v.reason == CLASSIFY_R_RUNT);
}

/* TCP, UDP and ICMP with every header length from 20 to 60 bytes. */
static void test_ip_options(void)
{
	uint8_t f[FB_MAX];
	struct classify_verdict v;

	for (unsigned ihl = 5; ihl <= 15; ihl++) {
		size_t n = fb_tcp(f, fb_mac_peer, ihl, PEER, SHARED, 40000, 8080,
				  CLASSIFY_TCP_SYN | CLASSIFY_TCP_ACK, 7);

		classify_copy(f, n, &v);
		check_invariants(&v, n);
		CHECK(v.kind == CLASSIFY_IPV4_TCP);
		CHECK(v.ip_hlen == ihl * 4 && v.l4_off == 14 + ihl * 4 && v.l4_len == 27);
		CHECK(!!(v.flags & CLASSIFY_F_OPTIONS) == (ihl > 5));
		CHECK(v.src_ip == PEER && v.dst_ip == SHARED && v.proto == 6);
		CHECK(v.src_port == 40000 && v.dst_port == 8080);
		CHECK(v.tcp_flags == (CLASSIFY_TCP_SYN | CLASSIFY_TCP_ACK));
		CHECK((v.flags & CLASSIFY_F_DF) && !(v.flags & CLASSIFY_F_FRAGMENT));

		n = fb_udp(f, fb_mac_peer, ihl, PEER, SHARED, 5353, 53, 3);
		classify_copy(f, n, &v);
		check_invariants(&v, n);
		CHECK(v.kind == CLASSIFY_IPV4_UDP && v.src_port == 5353 && v.dst_port == 53);
		CHECK(v.l4_off == 14 + ihl * 4 && v.l4_len == 11);

		/* Ethernet padding after a short datagram is ignored. */
		if (n < 60) {
			memset(f + n, 0xee, 60 - n);
			classify_copy(f, 60, &v);
			CHECK(v.kind == CLASSIFY_IPV4_UDP && v.l4_len == 11);
		}
	}

	size_t n = fb_icmp(f, fb_mac_peer, PEER, SHARED, 8, 0, 56);

	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_IPV4_ICMP_ECHO && v.icmp_type == 8 && v.src_port == 0);
	n = fb_icmp(f, fb_mac_peer, PEER, SHARED, 0, 0, 56);
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_IPV4_ICMP_OTHER && v.icmp_type == 0);
	n = fb_icmp(f, fb_mac_peer, PEER, SHARED, 3, 3, 28);
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_IPV4_ICMP_OTHER && v.icmp_type == 3 && v.icmp_code == 3);

	uint8_t gre[8] = { 0 };

	n = fb_ip(f, fb_mac_netd, fb_mac_peer, 7, 47, PEER, SHARED, 9, 0, gre, sizeof(gre));
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_IPV4_OTHER && v.proto == 47 && v.l4_off == 14 + 28);
	check_invariants(&v, n);
}

static void test_malformed_ip(void)
{
	uint8_t f[FB_MAX];
	struct classify_verdict v;
	size_t n = fb_udp(f, fb_mac_peer, 5, PEER, SHARED, 1000, 2000, 30);

	f[14] = 0x65; /* version 6 inside an IPv4 ethertype */
	fb_ip_csum(f);
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_MALFORMED && v.reason == CLASSIFY_R_IP_VERSION);

	for (unsigned ihl = 0; ihl < 5; ihl++) {
		n = fb_udp(f, fb_mac_peer, 5, PEER, SHARED, 1000, 2000, 30);
		f[14] = (uint8_t)(0x40 | ihl);
		classify_copy(f, n, &v);
		CHECK(v.kind == CLASSIFY_MALFORMED && v.reason == CLASSIFY_R_IP_IHL);
	}

	/* IHL 15 in a frame that has only 30 bytes of IP. */
	n = fb_udp(f, fb_mac_peer, 5, PEER, SHARED, 1000, 2000, 2);
	f[14] = 0x4f;
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_MALFORMED && v.reason == CLASSIFY_R_IP_HDR_TRUNC);

	n = fb_udp(f, fb_mac_peer, 5, PEER, SHARED, 1000, 2000, 30);
	f[14 + 8] ^= 1; /* TTL changed, checksum not updated */
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_MALFORMED && v.reason == CLASSIFY_R_IP_CHECKSUM);

	n = fb_udp(f, fb_mac_peer, 6, PEER, SHARED, 1000, 2000, 30);
	fb_w16(f + 16, 20); /* below the 24-byte header */
	fb_ip_csum(f);
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_MALFORMED && v.reason == CLASSIFY_R_IP_TOTLEN_SHORT);

	n = fb_udp(f, fb_mac_peer, 5, PEER, SHARED, 1000, 2000, 30);
	fb_w16(f + 16, (uint16_t)(n - 14 + 1)); /* one byte past the frame */
	fb_ip_csum(f);
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_MALFORMED && v.reason == CLASSIFY_R_IP_TOTLEN_LONG);
	fb_w16(f + 16, 0xffff);
	fb_ip_csum(f);
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_MALFORMED && v.reason == CLASSIFY_R_IP_TOTLEN_LONG);

	/*
	 * Every IHL against every total length in a 100-byte frame: whatever
	 * the verdict, the invariants hold and nothing is read past the end.
	 */
	for (unsigned ihl = 0; ihl < 16; ihl++) {
		for (unsigned tot = 0; tot < 120; tot++) {
			n = fb_tcp(f, fb_mac_peer, 5, PEER, SHARED, 1, 2, 0, 46);
			f[14] = (uint8_t)(0x40 | ihl);
			fb_w16(f + 16, (uint16_t)tot);
			if (ihl >= 5)
				fb_ip_csum(f);
			classify_copy(f, n, &v);
			check_invariants(&v, n);
			if (ihl < 5)
				CHECK(v.reason == CLASSIFY_R_IP_IHL);
			else if (tot < ihl * 4)
				CHECK(v.reason == CLASSIFY_R_IP_TOTLEN_SHORT);
			else if (tot > n - 14)
				CHECK(v.reason == CLASSIFY_R_IP_TOTLEN_LONG);
			else if (tot - ihl * 4 < 20)
				CHECK(v.kind == CLASSIFY_MALFORMED);
		}
	}

	/* Transport headers. */
	n = fb_tcp(f, fb_mac_peer, 5, PEER, SHARED, 1, 2, 0, 0);
	f[14 + 20 + 12] = 4 << 4;
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_MALFORMED && v.reason == CLASSIFY_R_TCP_DOFF);
	f[14 + 20 + 12] = 6 << 4; /* 24 bytes of header in a 20-byte segment */
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_MALFORMED && v.reason == CLASSIFY_R_TCP_DOFF);
	CHECK(v.src_port == 0 && v.dst_port == 0);

	n = fb_udp(f, fb_mac_peer, 5, PEER, SHARED, 1000, 2000, 30);
	fb_w16(f + 14 + 20 + 4, 37);
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_MALFORMED && v.reason == CLASSIFY_R_UDP_LEN);
	fb_w16(f + 14 + 20 + 4, 7);
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_MALFORMED && v.reason == CLASSIFY_R_UDP_LEN);

	/* IP payload shorter than the transport header. */
	uint8_t l4[8] = { 0 };

	n = fb_ip(f, fb_mac_netd, fb_mac_peer, 5, 6, PEER, SHARED, 1, 0, l4, 8);
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_MALFORMED && v.reason == CLASSIFY_R_L4_TRUNC);
	n = fb_ip(f, fb_mac_netd, fb_mac_peer, 5, 17, PEER, SHARED, 1, 0, l4, 7);
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_MALFORMED && v.reason == CLASSIFY_R_L4_TRUNC);
	n = fb_ip(f, fb_mac_netd, fb_mac_peer, 5, 1, PEER, SHARED, 1, 0, l4, 4);
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_MALFORMED && v.reason == CLASSIFY_R_L4_TRUNC);
}

/* Every prefix of every kind of valid frame: no overread, sane verdicts. */
static void test_truncation(void)
{
	static uint8_t frames[8][FB_MAX];
	uint8_t l4[200];
	struct classify_verdict v;
	size_t lens[8];
	int k = 0;

	lens[k] = fb_tcp(frames[k], fb_mac_peer, 15, PEER, SHARED, 1, 2, 0x12, 5), k++;
	lens[k] = fb_udp(frames[k], fb_mac_peer, 9, PEER, SHARED, 1, 2, 17), k++;
	lens[k] = fb_icmp(frames[k], fb_mac_peer, PEER, SHARED, 8, 0, 20), k++;
	lens[k] = fb_arp(frames[k], fb_mac_bcast, fb_mac_peer, 1, fb_mac_peer, PEER, SHARED), k++;
	memset(l4, 'f', sizeof(l4));
	lens[k] = fb_ip(frames[k], fb_mac_netd, fb_mac_peer, 6, 17, PEER, SHARED, 7, 0x2000 | 3,
			l4, 16), k++;
	fb_udp_hdr(l4, 9, 10, 100);
	lens[k] = fb_ip(frames[k], fb_mac_netd, fb_mac_peer, 5, 17, PEER, SHARED, 7, 0x2000,
			l4, 24), k++;

	for (int i = 0; i < k; i++) {
		for (size_t l = 0; l <= lens[i]; l++) {
			classify_copy(frames[i], l, &v);
			check_invariants(&v, l);
			if (l < lens[i] && i != 3)
				/* The total length no longer fits. */
				CHECK(v.kind == CLASSIFY_MALFORMED);
		}
		classify_copy(frames[i], lens[i], &v);
		CHECK(v.kind != CLASSIFY_MALFORMED);
	}
}

static void test_fragments(void)
{
	uint8_t f[FB_MAX], l4[2048];
	struct classify_verdict v;
	size_t n;

	/* A 1000-byte UDP datagram in three pieces: 0..511, 512..1023 (MF), 1024.. */
	fb_udp_hdr(l4, 5555, 53, 1000 - 8);
	n = fb_ip(f, fb_mac_netd, fb_mac_peer, 5, 17, PEER, SHARED, 0x77, 0x2000 | 0, l4, 512);
	classify_copy(f, n, &v);
	check_invariants(&v, n);
	CHECK(v.kind == CLASSIFY_IPV4_UDP && v.src_port == 5555 && v.dst_port == 53);
	CHECK((v.flags & CLASSIFY_F_FRAGMENT) && (v.flags & CLASSIFY_F_FIRST) &&
	      (v.flags & CLASSIFY_F_MF));
	CHECK(v.ip_id == 0x77 && v.frag_off == 0);

	n = fb_ip(f, fb_mac_netd, fb_mac_peer, 5, 17, PEER, SHARED, 0x77, 0x2000 | 64,
		  l4 + 512, 256);
	classify_copy(f, n, &v);
	check_invariants(&v, n);
	CHECK(v.kind == CLASSIFY_IPV4_FRAGMENT && v.frag_off == 512 && v.proto == 17);
	CHECK(v.src_port == 0 && v.dst_port == 0 && !(v.flags & CLASSIFY_F_FIRST));
	CHECK(v.flags & CLASSIFY_F_MF);

	n = fb_ip(f, fb_mac_netd, fb_mac_peer, 9, 17, PEER, SHARED, 0x77, 96, l4 + 768, 232);
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_IPV4_FRAGMENT && v.frag_off == 768 && !(v.flags & CLASSIFY_F_MF));
	CHECK(v.ip_hlen == 36 && v.l4_len == 232);

	/* A non-first fragment may hold anything, even what looks like a tiny header. */
	n = fb_ip(f, fb_mac_netd, fb_mac_peer, 5, 6, PEER, SHARED, 0x78, 200, l4, 3);
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_IPV4_FRAGMENT && v.src_port == 0);

	/* Tiny first fragment: TCP header split across pieces (RFC 1858). */
	fb_tcp_hdr(l4, 1, 2, 0x02, 100);
	n = fb_ip(f, fb_mac_netd, fb_mac_peer, 5, 6, PEER, SHARED, 0x79, 0x2000, l4, 8);
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_MALFORMED && v.reason == CLASSIFY_R_L4_TRUNC);
	CHECK(v.src_port == 0);

	/* Reassembly past 65535 bytes. */
	n = fb_ip(f, fb_mac_netd, fb_mac_peer, 5, 17, PEER, SHARED, 0x7a, 8191, l4, 16);
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_MALFORMED && v.reason == CLASSIFY_R_IP_FRAG);
	/* The largest legal last fragment ends exactly at 65535: 65504 + 20 + 11. */
	n = fb_ip(f, fb_mac_netd, fb_mac_peer, 5, 17, PEER, SHARED, 0x7a, 8188, l4, 11);
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_IPV4_FRAGMENT && v.frag_off == 65504);
	/* A non-last piece whose size is not a multiple of 8, or empty. */
	n = fb_ip(f, fb_mac_netd, fb_mac_peer, 5, 17, PEER, SHARED, 0x7b, 0x2000 | 8, l4, 12);
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_MALFORMED && v.reason == CLASSIFY_R_IP_FRAG);
	n = fb_ip(f, fb_mac_netd, fb_mac_peer, 5, 17, PEER, SHARED, 0x7b, 0x2000 | 8, l4, 0);
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_MALFORMED && v.reason == CLASSIFY_R_IP_FRAG);
	/* A fragmented UDP datagram's length field covers all pieces. */
	fb_udp_hdr(l4, 5555, 53, 1000);
	fb_w16(l4 + 4, 3008);
	n = fb_ip(f, fb_mac_netd, fb_mac_peer, 5, 17, PEER, SHARED, 0x7c, 0x2000, l4, 1000);
	classify_copy(f, n, &v);
	CHECK(v.kind == CLASSIFY_IPV4_UDP && (v.flags & CLASSIFY_F_FIRST));
}

static struct frag_key key_of(const struct classify_verdict *v)
{
	struct frag_key k = {
		.src_ip = v->src_ip, .dst_ip = v->dst_ip, .ip_id = v->ip_id, .proto = v->proto,
	};
	return k;
}

/* Steering later fragments, in and out of order, with expiry and a full table. */
static void test_frag_table(void)
{
	static struct frag_table t;
	uint8_t first[FB_MAX], later[FB_MAX], l4[2048];
	struct classify_verdict vf, vl;
	uint32_t app = 0;
	uint16_t end = 0;

	frag_init(&t, 30000);
	fb_udp_hdr(l4, 5555, 53, 1000);
	size_t nf = fb_ip(first, fb_mac_netd, fb_mac_peer, 5, 17, PEER, SHARED, 0x99, 0x2000,
			  l4, 512);
	size_t nl = fb_ip(later, fb_mac_netd, fb_mac_peer, 5, 17, PEER, SHARED, 0x99, 64,
			  l4 + 512, 496);

	classify_copy(first, nf, &vf);
	classify_copy(later, nl, &vl);
	CHECK(vf.kind == CLASSIFY_IPV4_UDP && vl.kind == CLASSIFY_IPV4_FRAGMENT);

	/* Out of order: the later piece arrives first and is a miss. */
	struct frag_key kl = key_of(&vl), kf = key_of(&vf);

	CHECK(frag_lookup(&t, &kl, 1000, &app, &end) == FRAG_MISS);
	frag_remember(&t, &kf, 7, vf.l4_len, 1000);
	CHECK(frag_lookup(&t, &kl, 1001, &app, &end) == FRAG_HIT && app == 7 && end == 512);
	CHECK(frag_count(&t, 1001) == 1);

	/* Another id, protocol or address is another datagram. */
	struct frag_key other = kl;

	other.ip_id++;
	CHECK(frag_lookup(&t, &other, 1001, &app, NULL) == FRAG_MISS);
	other = kl;
	other.proto = 6;
	CHECK(frag_lookup(&t, &other, 1001, &app, NULL) == FRAG_MISS);
	other = kl;
	other.src_ip++;
	CHECK(frag_lookup(&t, &other, 1001, &app, NULL) == FRAG_MISS);
	other = kl;
	other.dst_ip++;
	CHECK(frag_lookup(&t, &other, 1001, &app, NULL) == FRAG_MISS);

	/* Expiry at exactly 30 s; a clock that goes back expires too. */
	CHECK(frag_lookup(&t, &kl, 30999, &app, NULL) == FRAG_HIT);
	CHECK(frag_lookup(&t, &kl, 31000, &app, NULL) == FRAG_MISS);
	CHECK(frag_lookup(&t, &kl, 999, &app, NULL) == FRAG_MISS);
	CHECK(frag_count(&t, 31000) == 0);

	/* A retransmitted first fragment restarts the timer and may change owner. */
	frag_remember(&t, &kf, 8, 512, 40000);
	frag_remember(&t, &kf, 9, 512, 50000);
	CHECK(frag_lookup(&t, &kl, 79999, &app, NULL) == FRAG_HIT && app == 9);
	CHECK(frag_count(&t, 50000) == 1);

	/* Full table: the oldest goes, the others stay, the size stays bounded. */
	frag_init(&t, 30000);
	for (unsigned i = 0; i < FRAG_TABLE_SIZE; i++) {
		struct frag_key k = { .src_ip = PEER, .dst_ip = SHARED, .ip_id = (uint16_t)i,
				      .proto = 17 };

		frag_remember(&t, &k, i, 8, 100 + i);
	}
	CHECK(frag_count(&t, 500) == FRAG_TABLE_SIZE);
	struct frag_key k0 = { .src_ip = PEER, .dst_ip = SHARED, .ip_id = 0, .proto = 17 };
	struct frag_key k1 = k0, knew = k0;

	k1.ip_id = 1;
	knew.ip_id = 5000;
	frag_remember(&t, &knew, 5000, 8, 600);
	CHECK(frag_count(&t, 600) == FRAG_TABLE_SIZE);
	CHECK(frag_lookup(&t, &k0, 600, &app, NULL) == FRAG_MISS);
	CHECK(frag_lookup(&t, &k1, 600, &app, NULL) == FRAG_HIT && app == 1);
	CHECK(frag_lookup(&t, &knew, 600, &app, NULL) == FRAG_HIT && app == 5000);
	/* Expired entries are reused before live ones are evicted. */
	frag_remember(&t, &k0, 77, 8, 30101);
	CHECK(frag_lookup(&t, &k1, 30101, &app, NULL) == FRAG_MISS);
	CHECK(frag_lookup(&t, &k0, 30101, &app, NULL) == FRAG_HIT && app == 77);

	/* An application that dies takes its entries with it. */
	frag_forget_app(&t, 77);
	CHECK(frag_lookup(&t, &k0, 30101, &app, NULL) == FRAG_MISS);
	CHECK(frag_lookup(&t, &knew, 30101, &app, NULL) == FRAG_HIT);
}

int main(void)
{
	test_strings();
	test_arp();
	test_ethertypes_and_macs();
	test_ip_options();
	test_malformed_ip();
	test_truncation();
	test_fragments();
	test_frag_table();
	if (failures) {
		fprintf(stderr, "test_classify: %d failure(s)\n", failures);
		return 1;
	}
	return 0;
}
