/* netd's receive classifier: bounds-checked parsing of Ethernet, ARP and IPv4 headers. */
#include "netd/classify.h"

#include <string.h>

#define ETH_HLEN 14
#define ARP_LEN 28
#define IP_MIN_HLEN 20

/*
 * Every multi-byte read goes through these helpers with an offset that the
 * caller has already proved to be inside the frame, so the proofs are local
 * and easy to audit: each `if (len < ...)` sits right above the reads it
 * guards.
 */
static inline uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t rd32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	       ((uint32_t)p[2] << 8) | p[3];
}

uint16_t classify_csum_fold(const uint8_t *buf, size_t len)
{
	uint64_t sum = 0;
	size_t i;

	for (i = 0; i + 1 < len; i += 2)
		sum += rd16(buf + i);
	if (len & 1)
		sum += (uint32_t)buf[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

static void malformed(struct classify_verdict *v, enum classify_reason r)
{
	v->kind = CLASSIFY_MALFORMED;
	v->reason = (uint8_t)r;
}

static void classify_arp(const uint8_t *a, size_t alen, struct classify_verdict *v)
{
	if (alen < ARP_LEN) {
		malformed(v, CLASSIFY_R_ARP_SHORT);
		return;
	}
	/* Only Ethernet hardware addresses for IPv4 are meaningful to netd. */
	if (rd16(a) != 1 || rd16(a + 2) != 0x0800 || a[4] != 6 || a[5] != 4) {
		malformed(v, CLASSIFY_R_ARP_FORMAT);
		return;
	}
	v->arp_op = rd16(a + 6);
	memcpy(v->arp_sha, a + 8, 6);
	v->arp_spa = rd32(a + 14);
	v->arp_tpa = rd32(a + 24);
	if (v->arp_op == 1)
		v->kind = CLASSIFY_ARP_REQUEST;
	else if (v->arp_op == 2)
		v->kind = CLASSIFY_ARP_REPLY;
	else
		v->kind = CLASSIFY_ARP_OTHER;
}

/* The transport header of an unfragmented datagram or of a first fragment. */
static void classify_l4(const uint8_t *l4, size_t l4len, struct classify_verdict *v)
{
	int fragmented = (v->flags & CLASSIFY_F_FRAGMENT) != 0;

	switch (v->proto) {
	case 6: {
		if (l4len < 20) {
			malformed(v, CLASSIFY_R_L4_TRUNC);
			return;
		}
		size_t doff = (size_t)(l4[12] >> 4) * 4;

		if (doff < 20 || doff > l4len) {
			malformed(v, CLASSIFY_R_TCP_DOFF);
			return;
		}
		v->src_port = rd16(l4);
		v->dst_port = rd16(l4 + 2);
		v->tcp_flags = l4[13] & 0x3f;
		v->kind = CLASSIFY_IPV4_TCP;
		return;
	}
	case 17: {
		if (l4len < 8) {
			malformed(v, CLASSIFY_R_L4_TRUNC);
			return;
		}
		uint16_t ulen = rd16(l4 + 4);

		/* A fragmented datagram's UDP length covers all the pieces. */
		if (ulen < 8 || (!fragmented && ulen != l4len)) {
			malformed(v, CLASSIFY_R_UDP_LEN);
			return;
		}
		v->src_port = rd16(l4);
		v->dst_port = rd16(l4 + 2);
		v->kind = CLASSIFY_IPV4_UDP;
		return;
	}
	case 1:
		/* Every ICMP message has at least type, code, checksum and 4 more bytes. */
		if (l4len < 8) {
			malformed(v, CLASSIFY_R_L4_TRUNC);
			return;
		}
		v->icmp_type = l4[0];
		v->icmp_code = l4[1];
		v->kind = v->icmp_type == 8 ? CLASSIFY_IPV4_ICMP_ECHO : CLASSIFY_IPV4_ICMP_OTHER;
		return;
	default:
		v->kind = CLASSIFY_IPV4_OTHER;
		return;
	}
}

static void classify_ipv4(const uint8_t *ip, size_t iplen, struct classify_verdict *v)
{
	if (iplen < IP_MIN_HLEN) {
		malformed(v, CLASSIFY_R_IP_SHORT);
		return;
	}
	if ((ip[0] >> 4) != 4) {
		malformed(v, CLASSIFY_R_IP_VERSION);
		return;
	}
	size_t hlen = (size_t)(ip[0] & 0x0f) * 4;

	if (hlen < IP_MIN_HLEN) {
		malformed(v, CLASSIFY_R_IP_IHL);
		return;
	}
	if (hlen > iplen) {
		malformed(v, CLASSIFY_R_IP_HDR_TRUNC);
		return;
	}
	v->ip_hlen = (uint8_t)hlen;
	if (hlen > IP_MIN_HLEN)
		v->flags |= CLASSIFY_F_OPTIONS;
	v->ip_total_len = rd16(ip + 2);
	v->ip_id = rd16(ip + 4);
	uint16_t fo = rd16(ip + 6);

	v->frag_off = (uint16_t)((fo & 0x1fff) * 8);
	if (fo & 0x2000)
		v->flags |= CLASSIFY_F_MF;
	if (fo & 0x4000)
		v->flags |= CLASSIFY_F_DF;
	v->proto = ip[9];
	v->src_ip = rd32(ip + 12);
	v->dst_ip = rd32(ip + 16);
	if (classify_csum_fold(ip, hlen) != 0xffff) {
		malformed(v, CLASSIFY_R_IP_CHECKSUM);
		return;
	}
	if (v->ip_total_len < hlen) {
		malformed(v, CLASSIFY_R_IP_TOTLEN_SHORT);
		return;
	}
	if (v->ip_total_len > iplen) {
		malformed(v, CLASSIFY_R_IP_TOTLEN_LONG);
		return;
	}
	v->l4_off = (uint16_t)(ETH_HLEN + hlen);
	v->l4_len = (uint16_t)(v->ip_total_len - hlen);

	if ((v->flags & CLASSIFY_F_MF) || v->frag_off != 0) {
		v->flags |= CLASSIFY_F_FRAGMENT;
		/*
		 * A reassembled datagram cannot exceed 65535 bytes, and every
		 * piece but the last carries a non-zero multiple of 8 bytes;
		 * anything else is a reassembly attack, not traffic.
		 */
		if ((uint32_t)v->frag_off + hlen + v->l4_len > 65535) {
			malformed(v, CLASSIFY_R_IP_FRAG);
			return;
		}
		if ((v->flags & CLASSIFY_F_MF) && (v->l4_len == 0 || (v->l4_len & 7))) {
			malformed(v, CLASSIFY_R_IP_FRAG);
			return;
		}
		if (v->frag_off != 0) {
			v->kind = CLASSIFY_IPV4_FRAGMENT;
			return;
		}
		v->flags |= CLASSIFY_F_FIRST;
	}
	classify_l4(ip + hlen, v->l4_len, v);
}

void classify_frame(const uint8_t *frame, size_t len, struct classify_verdict *v)
{
	memset(v, 0, sizeof(*v));
	if (frame == NULL || len < ETH_HLEN) {
		malformed(v, CLASSIFY_R_RUNT);
		return;
	}

	if (frame[0] & 1) {
		static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

		v->dst_class = memcmp(frame, bcast, 6) == 0 ? CLASSIFY_MAC_BROADCAST
							     : CLASSIFY_MAC_MULTICAST;
	}
	v->ethertype = rd16(frame + 12);
	if (frame[6] & 1) {
		malformed(v, CLASSIFY_R_SRC_MAC);
		return;
	}

	const uint8_t *p = frame + ETH_HLEN;
	size_t plen = len - ETH_HLEN;

	switch (v->ethertype) {
	case 0x0806:
		classify_arp(p, plen, v);
		return;
	case 0x0800:
		classify_ipv4(p, plen, v);
		return;
	case 0x86dd:
		v->kind = CLASSIFY_IPV6;
		return;
	case 0x8100: /* 802.1Q */
	case 0x88a8: /* 802.1ad */
	case 0x9100: /* pre-standard QinQ */
		v->kind = CLASSIFY_VLAN;
		return;
	default:
		v->kind = CLASSIFY_OTHER_ETHERTYPE;
		return;
	}
}

const char *classify_kind_str(unsigned kind)
{
	static const char *const names[CLASSIFY_KIND_COUNT] = {
		[CLASSIFY_MALFORMED] = "malformed",
		[CLASSIFY_ARP_REQUEST] = "arp_request",
		[CLASSIFY_ARP_REPLY] = "arp_reply",
		[CLASSIFY_ARP_OTHER] = "arp_other",
		[CLASSIFY_IPV4_TCP] = "tcp",
		[CLASSIFY_IPV4_UDP] = "udp",
		[CLASSIFY_IPV4_ICMP_ECHO] = "icmp_echo",
		[CLASSIFY_IPV4_ICMP_OTHER] = "icmp_other",
		[CLASSIFY_IPV4_OTHER] = "ipv4_other",
		[CLASSIFY_IPV4_FRAGMENT] = "ipv4_fragment",
		[CLASSIFY_IPV6] = "ipv6",
		[CLASSIFY_VLAN] = "vlan",
		[CLASSIFY_OTHER_ETHERTYPE] = "other_ethertype",
	};

	return kind < CLASSIFY_KIND_COUNT ? names[kind] : "?";
}

const char *classify_reason_str(unsigned reason)
{
	static const char *const names[CLASSIFY_REASON_COUNT] = {
		[CLASSIFY_R_NONE] = "none",
		[CLASSIFY_R_RUNT] = "runt",
		[CLASSIFY_R_SRC_MAC] = "src_mac_multicast",
		[CLASSIFY_R_ARP_SHORT] = "arp_short",
		[CLASSIFY_R_ARP_FORMAT] = "arp_format",
		[CLASSIFY_R_IP_SHORT] = "ip_short",
		[CLASSIFY_R_IP_VERSION] = "ip_version",
		[CLASSIFY_R_IP_IHL] = "ip_ihl",
		[CLASSIFY_R_IP_HDR_TRUNC] = "ip_hdr_trunc",
		[CLASSIFY_R_IP_CHECKSUM] = "ip_checksum",
		[CLASSIFY_R_IP_TOTLEN_SHORT] = "ip_totlen_short",
		[CLASSIFY_R_IP_TOTLEN_LONG] = "ip_totlen_long",
		[CLASSIFY_R_IP_FRAG] = "ip_frag",
		[CLASSIFY_R_L4_TRUNC] = "l4_trunc",
		[CLASSIFY_R_TCP_DOFF] = "tcp_doff",
		[CLASSIFY_R_UDP_LEN] = "udp_len",
	};

	return reason < CLASSIFY_REASON_COUNT ? names[reason] : "?";
}
