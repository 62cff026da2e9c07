/* Hand-built Ethernet/ARP/IPv4 frames for the netd classifier and validator tests. */
#ifndef TESTS_NETD_FRAMES_H
#define TESTS_NETD_FRAMES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/*
 * Every builder writes into a caller buffer of at least FB_MAX bytes and
 * returns the frame length.  Addresses and ports are host byte order, as in
 * the verdicts.  IP headers get a valid checksum unless a test breaks it on
 * purpose with fb_ip_csum() after editing.
 */
#define FB_MAX 16384

static const uint8_t fb_mac_netd[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };
static const uint8_t fb_mac_peer[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x02 };
static const uint8_t fb_mac_bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static inline void fb_w16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void fb_w32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline size_t fb_eth(uint8_t *f, const uint8_t *dst, const uint8_t *src, uint16_t type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	fb_w16(f + 12, type);
	return 14;
}

/* Recompute the header checksum of the IPv4 header at f + 14. */
static inline void fb_ip_csum(uint8_t *f)
{
	uint8_t *ip = f + 14;
	size_t hlen = (size_t)(ip[0] & 0x0f) * 4;
	uint32_t sum = 0;

	ip[10] = ip[11] = 0;
	for (size_t i = 0; i + 1 < hlen; i += 2)
		sum += (uint32_t)(ip[i] << 8 | ip[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	fb_w16(ip + 10, (uint16_t)~sum);
}

/*
 * An IPv4 frame: IHL ihl (options filled with NOPs and a final EOL),
 * fragment field frag (flags and offset/8 as on the wire), payload l4 of
 * l4len bytes.  The total length is exact.
 */
static inline size_t fb_ip(uint8_t *f, const uint8_t *dst_mac, const uint8_t *src_mac,
			   unsigned ihl, uint8_t proto, uint32_t src, uint32_t dst,
			   uint16_t id, uint16_t frag, const uint8_t *l4, size_t l4len)
{
	size_t o = fb_eth(f, dst_mac, src_mac, 0x0800);
	uint8_t *ip = f + o;
	size_t hlen = ihl * 4;

	memset(ip, 0, hlen);
	ip[0] = (uint8_t)(0x40 | ihl);
	fb_w16(ip + 2, (uint16_t)(hlen + l4len));
	fb_w16(ip + 4, id);
	fb_w16(ip + 6, frag);
	ip[8] = 64;
	ip[9] = proto;
	fb_w32(ip + 12, src);
	fb_w32(ip + 16, dst);
	for (size_t i = 20; i < hlen; i++)
		ip[i] = i + 1 == hlen ? 0 : 1;
	memcpy(ip + hlen, l4, l4len);
	fb_ip_csum(f);
	return o + hlen + l4len;
}

/* A TCP header (20 bytes, no options) plus paylen bytes of 'x' into l4. */
static inline size_t fb_tcp_hdr(uint8_t *l4, uint16_t sport, uint16_t dport, uint8_t flags,
				size_t paylen)
{
	memset(l4, 0, 20);
	fb_w16(l4, sport);
	fb_w16(l4 + 2, dport);
	l4[12] = 5 << 4;
	l4[13] = flags;
	fb_w16(l4 + 14, 65535);
	memset(l4 + 20, 'x', paylen);
	return 20 + paylen;
}

static inline size_t fb_udp_hdr(uint8_t *l4, uint16_t sport, uint16_t dport, size_t paylen)
{
	fb_w16(l4, sport);
	fb_w16(l4 + 2, dport);
	fb_w16(l4 + 4, (uint16_t)(8 + paylen));
	fb_w16(l4 + 6, 0);
	memset(l4 + 8, 'u', paylen);
	return 8 + paylen;
}

static inline size_t fb_icmp_hdr(uint8_t *l4, uint8_t type, uint8_t code, size_t paylen)
{
	memset(l4, 0, 8);
	l4[0] = type;
	l4[1] = code;
	fb_w16(l4 + 4, 0x1234);
	fb_w16(l4 + 6, 1);
	memset(l4 + 8, 'p', paylen);
	return 8 + paylen;
}

static inline size_t fb_tcp(uint8_t *f, const uint8_t *src_mac, unsigned ihl, uint32_t src,
			    uint32_t dst, uint16_t sport, uint16_t dport, uint8_t flags,
			    size_t paylen)
{
	uint8_t l4[FB_MAX / 2];
	size_t n = fb_tcp_hdr(l4, sport, dport, flags, paylen);

	return fb_ip(f, fb_mac_peer, src_mac, ihl, 6, src, dst, 0x4242, 0x4000, l4, n);
}

static inline size_t fb_udp(uint8_t *f, const uint8_t *src_mac, unsigned ihl, uint32_t src,
			    uint32_t dst, uint16_t sport, uint16_t dport, size_t paylen)
{
	uint8_t l4[FB_MAX / 2];
	size_t n = fb_udp_hdr(l4, sport, dport, paylen);

	return fb_ip(f, fb_mac_peer, src_mac, ihl, 17, src, dst, 0x4243, 0, l4, n);
}

static inline size_t fb_icmp(uint8_t *f, const uint8_t *src_mac, uint32_t src, uint32_t dst,
			     uint8_t type, uint8_t code, size_t paylen)
{
	uint8_t l4[FB_MAX / 2];
	size_t n = fb_icmp_hdr(l4, type, code, paylen);

	return fb_ip(f, fb_mac_peer, src_mac, 5, 1, src, dst, 0x4244, 0, l4, n);
}

static inline size_t fb_arp(uint8_t *f, const uint8_t *dst_mac, const uint8_t *src_mac,
			    uint16_t op, const uint8_t *sha, uint32_t spa, uint32_t tpa)
{
	size_t o = fb_eth(f, dst_mac, src_mac, 0x0806);
	uint8_t *a = f + o;

	fb_w16(a, 1);
	fb_w16(a + 2, 0x0800);
	a[4] = 6;
	a[5] = 4;
	fb_w16(a + 6, op);
	memcpy(a + 8, sha, 6);
	fb_w32(a + 14, spa);
	memset(a + 18, 0, 6);
	fb_w32(a + 24, tpa);
	return o + 28;
}

#define FB_IP(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (uint32_t)(d))

#endif
