/*
 * One-shot generator of the seed corpora of fuzz_classify and fuzz_validate:
 * a few valid frames of every kind, written as binary files.
 *   cc -Iinclude -Isrc -Itests/unit tests/fuzz/gen_netd_seeds.c -o /tmp/gen \
 *     && /tmp/gen tests/fuzz/seeds
 * The validate seeds start with the harness's 9-byte prefix (options,
 * offset, length) describing the whole frame.
 */
#include <stdio.h>
#include <stdlib.h>

#include "netd_frames.h"

#define SHARED FB_IP(10, 42, 0, 2)
#define DEDIC FB_IP(10, 42, 0, 9)
#define PEER FB_IP(10, 42, 0, 200)

static void put(const char *dir, const char *sub, const char *name, const uint8_t *pre,
		size_t prelen, const uint8_t *f, size_t n)
{
	char path[512];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
	fp = fopen(path, "wb");
	if (fp == NULL || fwrite(pre, 1, prelen, fp) != prelen || fwrite(f, 1, n, fp) != n) {
		perror(path);
		exit(1);
	}
	fclose(fp);
}

/* The classify seed is the frame as received; the validate seed as an app sends it. */
static void both(const char *dir, const char *name, const uint8_t *rx, size_t rxn,
		 const uint8_t *tx, size_t txn)
{
	uint8_t pre[9] = { 0 };

	put(dir, "classify", name, pre, 0, rx, rxn);
	fb_w32(pre + 1, 0);
	fb_w32(pre + 5, (uint32_t)txn);
	put(dir, "validate", name, pre, sizeof(pre), tx, txn);
}

int main(int argc, char **argv)
{
	static uint8_t rx[FB_MAX], tx[FB_MAX], l4[FB_MAX];
	const char *dir = argc > 1 ? argv[1] : "tests/fuzz/seeds";
	size_t r, t;

	r = fb_tcp(rx, fb_mac_peer, 5, PEER, SHARED, 40000, 8080, 0x02, 0);
	t = fb_tcp(tx, fb_mac_netd, 5, SHARED, PEER, 3333, 40000, 0x12, 0);
	both(dir, "tcp_syn", rx, r, tx, t);
	r = fb_tcp(rx, fb_mac_peer, 15, PEER, SHARED, 40000, 8080, 0x18, 64);
	t = fb_tcp(tx, fb_mac_netd, 15, DEDIC, PEER, 80, 40000, 0x18, 64);
	both(dir, "tcp_options", rx, r, tx, t);
	r = fb_udp(rx, fb_mac_peer, 5, PEER, SHARED, 5353, 53, 32);
	t = fb_udp(tx, fb_mac_netd, 6, SHARED, PEER, 5355, 5353, 32);
	both(dir, "udp", rx, r, tx, t);
	r = fb_icmp(rx, fb_mac_peer, PEER, SHARED, 8, 0, 56);
	t = fb_icmp(tx, fb_mac_netd, SHARED, PEER, 0, 0, 56);
	both(dir, "icmp_echo", rx, r, tx, t);
	r = fb_arp(rx, fb_mac_bcast, fb_mac_peer, 1, fb_mac_peer, PEER, SHARED);
	t = fb_arp(tx, fb_mac_peer, fb_mac_netd, 2, fb_mac_netd, SHARED, PEER);
	both(dir, "arp", rx, r, tx, t);

	/* A port-unreachable error quoting a datagram sent to the application. */
	uint8_t quoted[FB_MAX];

	fb_udp(quoted, fb_mac_peer, 5, PEER, SHARED, 40000, 6, 0);
	fb_icmp_hdr(l4, 3, 3, 0);
	memcpy(l4 + 8, quoted + 14, 28);
	r = fb_ip(rx, fb_mac_netd, fb_mac_peer, 5, 1, PEER, SHARED, 1, 0, l4, 36);
	t = fb_ip(tx, fb_mac_peer, fb_mac_netd, 5, 1, SHARED, PEER, 1, 0, l4, 36);
	both(dir, "icmp_unreach", rx, r, tx, t);

	/* First and later fragments of a UDP datagram. */
	fb_udp_hdr(l4, 6, 53, 2000);
	r = fb_ip(rx, fb_mac_netd, fb_mac_peer, 5, 17, PEER, SHARED, 0x55, 0x2000, l4, 1480);
	t = fb_ip(tx, fb_mac_peer, fb_mac_netd, 5, 17, SHARED, PEER, 0x55, 0x2000, l4, 1480);
	both(dir, "frag_first", rx, r, tx, t);
	r = fb_ip(rx, fb_mac_netd, fb_mac_peer, 5, 17, PEER, SHARED, 0x55, 185, l4 + 1480, 528);
	t = fb_ip(tx, fb_mac_peer, fb_mac_netd, 5, 17, SHARED, PEER, 0x55, 185, l4 + 1480, 528);
	both(dir, "frag_last", rx, r, tx, t);

	memset(rx, 0, 64);
	fb_eth(rx, fb_mac_netd, fb_mac_peer, 0x86dd);
	both(dir, "ipv6", rx, 64, rx, 64);
	fb_eth(rx, fb_mac_netd, fb_mac_peer, 0x8100);
	both(dir, "vlan", rx, 64, rx, 64);
	return 0;
}
