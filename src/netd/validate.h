/* netd's TX validator: may this application put this frame on the wire? */
#ifndef NETD_VALIDATE_H
#define NETD_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netd/frag.h"

/*
 * Every byte an application wrote is hostile, and the application can keep
 * writing its frame area while netd looks at it.  So validation is two steps:
 *
 *   1. validate_desc() checks the descriptor {offset, len} the application
 *      put in its TX ring against the size of its own frame area (64-bit
 *      arithmetic, no overflow) and against netd's buffer size;
 *   2. netd copies area[offset .. offset+len-1] into a buffer of its own and
 *      validate_frame() parses that copy, which nobody else can change.
 *
 * validate_tx() does both and the copy in between; a caller that copies
 * anyway (to the NIC's UMEM) can call the two steps itself.  After an OK,
 * netd must send its copy, never re-read the application's area.
 *
 * The rules (a frame must pass all of them):
 *   - Ethernet: 14 <= len <= 14 + mtu (mtu 1500 unless set); source MAC is
 *     netd's (indirect applications share it); ethertype IPv4 or ARP.
 *     VLAN tags, IPv6 (not served yet) and anything else are refused.
 *   - ARP: Ethernet/IPv4 format, request or reply, at most 60 bytes;
 *     sender MAC is netd's (and equals the Ethernet source); sender IP is
 *     one of the application's, or 0.0.0.0 in a request whose target is one
 *     of the application's (an RFC 5227 probe).  No ARP spoofing.
 *   - IPv4: version 4, IHL >= 5 and inside the frame, total length >= the
 *     header and equal to the frame's payload (trailing bytes are allowed
 *     only as padding of a minimum-size 60-byte frame); header checksum
 *     always verified (lwIP computes it in software; 20-60 bytes cost
 *     nothing next to the copy, and a bad header caught here points at a
 *     corrupt ring instead of vanishing at the first router);
 *     source IP is one of the application's.  Transport checksums are not
 *     verified: the peer drops bad ones, and no other application is hurt.
 *   - TCP and UDP, unfragmented or first fragment: the whole transport header
 *     is in this piece (no tiny fragments); TCP data offset sane, UDP length
 *     sane; the source port is non-zero and owned by the application on that
 *     source IP (owns_port).
 *   - ICMP: header in the piece; types echo reply (0), echo request (8),
 *     destination unreachable (3), time exceeded (11) and parameter problem
 *     (12) only.  The three error types must be unfragmented and quote a
 *     datagram that was sent to the application: quoted destination IP is the
 *     application's, and for a quoted TCP/UDP header the quoted destination
 *     port is owned by the application; otherwise an application could make a
 *     peer tear down another application's connections.
 *   - Other IP protocols are refused.
 *   - Fragments: a first fragment is checked like a whole datagram (ports
 *     included) and, when accepted, recorded in the TX fragment table
 *     (app->frags) as (src, dst, proto, id) with the payload length
 *     it carried.  A non-first fragment is accepted only if its source IP is
 *     the application's and the same key is in that table for it (not expired) and
 *     it starts at or after the end of the first fragment, so it cannot
 *     overlap and rewrite the checked transport header at the peer's
 *     reassembly.  Without a table (frags NULL) every fragment is refused.
 *     netd should give all applications ONE table: then a first fragment
 *     whose (src, dst, proto, id) is live for another application is
 *     refused too, so two applications on the shared IP can never have
 *     pieces of their datagrams mixed at the peer's reassembly.  The price:
 *     256 entries shared by all, so a heavy fragmenter can evict the entries
 *     of others (their later fragments are then refused: lost datagrams,
 *     never crossed ones, as long as an entry outlives the peer's
 *     reassembly timer; an evicted entry's key becomes free early, which is
 *     the remaining gap).
 *
 * validate_frame() reads only buf[0 .. len-1]; it does not allocate, print,
 * or block.  Its only side effect is recording accepted first fragments in
 * app->frags.  Not thread-safe on one table: the netd thread that owns the
 * table validates every frame that uses it.
 */

enum validate_reason {
	VALIDATE_OK = 0,
	VALIDATE_DESC_BOUNDS,     /* offset/len outside the frame area, or overflow */
	VALIDATE_TOO_SHORT,       /* shorter than the headers it needs */
	VALIDATE_TOO_LONG,        /* longer than 14 + MTU, or than netd's buffer */
	VALIDATE_SRC_MAC,         /* Ethernet source is not netd's MAC */
	VALIDATE_ETHERTYPE,       /* not IPv4 or ARP (VLAN, IPv6, others) */
	VALIDATE_ARP_FORMAT,      /* not Ethernet/IPv4 ARP, or opcode not 1/2 */
	VALIDATE_ARP_SENDER_MAC,  /* ARP sender MAC is not netd's */
	VALIDATE_ARP_SENDER_IP,   /* ARP sender IP is not the application's */
	VALIDATE_IP_HEADER,       /* version, IHL or total length wrong */
	VALIDATE_IP_CHECKSUM,     /* IPv4 header checksum does not verify */
	VALIDATE_SRC_IP,          /* IPv4 source is not the application's */
	VALIDATE_PROTO,           /* IP protocol not allowed */
	VALIDATE_L4_HEADER,       /* transport header truncated or inconsistent */
	VALIDATE_SRC_PORT,        /* TCP/UDP source port not owned by the application */
	VALIDATE_ICMP,            /* ICMP type refused, or an error quoting others' traffic */
	VALIDATE_FRAG,            /* fragment without its first piece, overlapping, or too long */
	VALIDATE_REASON_COUNT
};

/* Constant short name of a reason ("ok", "desc_bounds", ...); "?" if unknown. */
const char *validate_reason_str(unsigned reason);

#define VALIDATE_MAX_IPS 4

struct validate_app {
	uint32_t id;                     /* passed to owns_port and stored in frags */
	uint8_t mac[6];                  /* netd's MAC: the only allowed source */
	uint32_t ips[VALIDATE_MAX_IPS];  /* the application's IPv4 addresses, host order */
	unsigned n_ips;                  /* 0..VALIDATE_MAX_IPS */
	uint16_t mtu;                    /* IP MTU; 0 means 1500 */
	/*
	 * Does application `app` own (proto, port) on `ip` (host byte
	 * order)?  True only for an owned port; netd answers from the
	 * supervisor's read-only port table.  NULL: no port is owned.
	 */
	bool (*owns_port)(void *ctx, uint32_t app, uint32_t ip, uint8_t proto, uint16_t port);
	void *owns_port_ctx;
	struct frag_table *frags;        /* TX fragments, one for all apps; NULL: none */
};

/* What an accepted frame is, for netd's counters. */
struct validate_info {
	uint16_t ethertype;
	uint8_t proto;          /* IPv4 only */
	uint8_t is_fragment;    /* any IPv4 fragment */
	uint32_t src_ip, dst_ip;
	uint16_t src_port, dst_port; /* TCP/UDP, first piece only */
};

/*
 * Step 1: is [offset, offset+len) inside an area of area_size bytes, and does
 * len fit in a buffer of buf_size bytes?  VALIDATE_OK, VALIDATE_DESC_BOUNDS,
 * VALIDATE_TOO_SHORT (len < 14) or VALIDATE_TOO_LONG (len > buf_size).
 */
enum validate_reason validate_desc(uint64_t offset, uint64_t len, uint64_t area_size,
				   size_t buf_size);

/*
 * Step 2: check the frame in netd's own copy buf[0 .. len-1] against the
 * rules above.  now_ms is the clock of app->frags.  info may be NULL; it is
 * filled (zeroed first) as far as parsing got.
 */
enum validate_reason validate_frame(const struct validate_app *app, const uint8_t *buf,
				    size_t len, uint64_t now_ms, struct validate_info *info);

/*
 * Both steps: bounds-check the descriptor against area[0 .. area_size-1],
 * copy the frame into buf (buf_size bytes, netd's), validate the copy.  On
 * VALIDATE_OK the frame to send is buf[0 .. len-1].
 */
enum validate_reason validate_tx(const struct validate_app *app, const uint8_t *area,
				 uint64_t area_size, uint64_t offset, uint64_t len,
				 uint8_t *buf, size_t buf_size, uint64_t now_ms,
				 struct validate_info *info);

#endif
