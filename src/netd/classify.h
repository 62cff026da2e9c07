/* netd's receive classifier: one pure pass over an untrusted Ethernet frame. */
#ifndef NETD_CLASSIFY_H
#define NETD_CLASSIFY_H

#include <stddef.h>
#include <stdint.h>

/*
 * Contract.  classify_frame() reads only frame[0 .. len-1], never more, even
 * when the headers inside claim otherwise; it does not allocate, print, lock
 * or keep state, so it may run on any thread on any bytes.  The frame is
 * netd's own copy (an RX buffer of the NIC ring that nobody else writes while
 * it is classified).
 *
 * Byte order.  IPv4 addresses, ports, ids and lengths in the verdict are in
 * host byte order (the same as librettod's pools); MAC addresses are the six
 * wire bytes.
 *
 * What is malformed.  A frame is CLASSIFY_MALFORMED, with a reason, when its
 * headers cannot be trusted for steering: too short for the header its
 * ethertype announces, an IPv4 header that is not version 4, an IHL below 5
 * or beyond the frame, a header checksum that does not verify (a corrupted
 * header's destination fields must not steer a frame), a total length below
 * the header or beyond the frame, a fragment that would end past 65535, or a
 * first piece (unfragmented datagram or first fragment) too short to hold
 * its whole TCP, UDP or ICMP header (the "tiny fragment" attack of RFC 1858).
 * Trailing bytes after the IP total length are Ethernet padding and allowed.
 */

enum classify_kind {
	CLASSIFY_MALFORMED = 0,     /* see reason */
	CLASSIFY_ARP_REQUEST,
	CLASSIFY_ARP_REPLY,
	CLASSIFY_ARP_OTHER,         /* well-formed Ethernet/IPv4 ARP, other opcode */
	CLASSIFY_IPV4_TCP,          /* unfragmented or first fragment: ports valid */
	CLASSIFY_IPV4_UDP,          /* unfragmented or first fragment: ports valid */
	CLASSIFY_IPV4_ICMP_ECHO,    /* echo request (type 8) */
	CLASSIFY_IPV4_ICMP_OTHER,   /* any other ICMP type */
	CLASSIFY_IPV4_OTHER,        /* another protocol number: see proto */
	CLASSIFY_IPV4_FRAGMENT,     /* non-first fragment: no ports, see frag.h */
	CLASSIFY_IPV6,              /* not served yet: header not parsed */
	CLASSIFY_VLAN,              /* 802.1Q/802.1ad tagged: dropped by netd */
	CLASSIFY_OTHER_ETHERTYPE,   /* anything else, 802.3 length frames included */
	CLASSIFY_KIND_COUNT
};

enum classify_reason {
	CLASSIFY_R_NONE = 0,        /* not malformed */
	CLASSIFY_R_RUNT,            /* shorter than an Ethernet header */
	CLASSIFY_R_SRC_MAC,         /* group (multicast) source MAC: invalid */
	CLASSIFY_R_ARP_SHORT,       /* fewer than 28 bytes of ARP */
	CLASSIFY_R_ARP_FORMAT,      /* not Ethernet/IPv4 ARP (htype/ptype/hlen/plen) */
	CLASSIFY_R_IP_SHORT,        /* fewer than 20 bytes after the Ethernet header */
	CLASSIFY_R_IP_VERSION,      /* version field is not 4 */
	CLASSIFY_R_IP_IHL,          /* IHL below 5 */
	CLASSIFY_R_IP_HDR_TRUNC,    /* IHL*4 bytes are not all in the frame */
	CLASSIFY_R_IP_CHECKSUM,     /* header checksum does not verify */
	CLASSIFY_R_IP_TOTLEN_SHORT, /* total length below the header length */
	CLASSIFY_R_IP_TOTLEN_LONG,  /* total length beyond the frame */
	CLASSIFY_R_IP_FRAG,         /* fragment ends past 65535, or empty non-last fragment */
	CLASSIFY_R_L4_TRUNC,        /* first piece too short for its TCP/UDP/ICMP header */
	CLASSIFY_R_TCP_DOFF,        /* TCP data offset below 5 or beyond the piece */
	CLASSIFY_R_UDP_LEN,         /* UDP length below 8, or != IP payload when unfragmented */
	CLASSIFY_REASON_COUNT
};

enum classify_mac_class {
	CLASSIFY_MAC_UNICAST = 0,
	CLASSIFY_MAC_BROADCAST,
	CLASSIFY_MAC_MULTICAST,     /* group bit set, not all-ones */
};

/* Bits of classify_verdict.flags. */
#define CLASSIFY_F_FRAGMENT 0x01u   /* MF set or offset != 0 */
#define CLASSIFY_F_FIRST    0x02u   /* first fragment (offset 0, MF set) */
#define CLASSIFY_F_MF       0x04u   /* more fragments */
#define CLASSIFY_F_DF       0x08u   /* don't fragment */
#define CLASSIFY_F_OPTIONS  0x10u   /* IHL > 5: the header carries options */

/* TCP flag bits as in the header's 13th byte. */
#define CLASSIFY_TCP_FIN 0x01u
#define CLASSIFY_TCP_SYN 0x02u
#define CLASSIFY_TCP_RST 0x04u
#define CLASSIFY_TCP_PSH 0x08u
#define CLASSIFY_TCP_ACK 0x10u
#define CLASSIFY_TCP_URG 0x20u

/*
 * The verdict.  Fields are meaningful only for the kinds named beside them
 * and are zero otherwise, so a caller never sees stale values.
 */
struct classify_verdict {
	uint8_t kind;            /* enum classify_kind */
	uint8_t reason;          /* enum classify_reason, CLASSIFY_R_NONE unless MALFORMED */
	uint8_t dst_class;       /* enum classify_mac_class (every frame with >= 14 bytes) */
	uint8_t flags;           /* CLASSIFY_F_* (IPv4) */
	uint16_t ethertype;      /* every frame with >= 14 bytes */

	/* IPv4 (TCP, UDP, ICMP, OTHER, FRAGMENT; also MALFORMED past the IP header checks) */
	uint8_t proto;
	uint8_t ip_hlen;         /* IHL * 4: 20 .. 60 */
	uint16_t ip_total_len;   /* total length field, <= len - 14 once checked */
	uint16_t ip_id;
	uint16_t frag_off;       /* fragment offset in bytes (field * 8) */
	uint32_t src_ip, dst_ip;
	uint16_t l4_off;         /* offset of the IP payload in the frame: 14 + ip_hlen */
	uint16_t l4_len;         /* IP payload bytes in this piece: total - hlen */

	/* TCP and UDP, unfragmented or first fragment only */
	uint16_t src_port, dst_port;
	uint8_t tcp_flags;       /* TCP only */

	/* ICMP (ECHO, ICMP_OTHER) */
	uint8_t icmp_type, icmp_code;

	/* ARP (REQUEST, REPLY, OTHER) */
	uint16_t arp_op;
	uint8_t arp_sha[6];      /* sender MAC */
	uint32_t arp_spa;        /* sender IP */
	uint32_t arp_tpa;        /* target IP */
};

/* Classify frame[0 .. len-1] into *v (fully overwritten). Never fails. */
void classify_frame(const uint8_t *frame, size_t len, struct classify_verdict *v);

/* Short constant names for logs and counters; "?" for out-of-range values. */
const char *classify_kind_str(unsigned kind);
const char *classify_reason_str(unsigned reason);

/* The Internet checksum (RFC 1071) of buf[0 .. len-1], folded, not inverted. */
uint16_t classify_csum_fold(const uint8_t *buf, size_t len);

#endif
