/* Fragment steering: which application gets the later fragments of a datagram. */
#ifndef NETD_FRAG_H
#define NETD_FRAG_H

#include <stdint.h>

/*
 * Only the first fragment of an IPv4 datagram carries the ports that name its
 * application; the others carry (src ip, dst ip, proto, ip id) and nothing
 * more.  netd remembers that key -> application when it steers a first
 * fragment and looks later fragments up here.
 *
 * The table is a fixed array of FRAG_TABLE_SIZE entries, no allocation, no
 * locking (one netd thread owns it).  An entry lives for the timeout given to
 * frag_init() from the moment its first fragment was remembered (RFC 791's
 * reassembly timer; 30 s is the usual value), measured on a clock the caller
 * supplies in milliseconds (CLOCK_MONOTONIC), so tests can drive time.  When
 * the table is full, the entry remembered longest ago is replaced: an
 * attacker flooding first fragments can evict honest entries, which costs the
 * honest datagram (UDP loses it, TCP retransmits) and never misdelivers.
 * A lookup is a linear scan of 256 small entries: fragments are rare, and the
 * simple loop is easy to prove.
 *
 * Later fragments whose first fragment has not been seen (reordering, or a
 * first fragment that was dropped) get FRAG_MISS.  The caller decides: netd
 * may park a few of them in a small bounded queue and retry the lookup after
 * each frag_remember(), or drop them; the datagram is then lost as on any
 * lossy link.  Nothing here queues frames.
 *
 * The same table serves the TX validator (validate.h): there it records the
 * first fragments an application sent, so that its later fragments are
 * allowed and nobody else's are.  first_end is the number of IP payload
 * bytes the first fragment carried; a later fragment that starts before it
 * would overlap the checked headers.
 */

#define FRAG_TABLE_SIZE 256

struct frag_key {
	uint32_t src_ip, dst_ip;   /* host byte order */
	uint16_t ip_id;
	uint8_t proto;
};

struct frag_entry {
	struct frag_key key;
	uint8_t used;
	uint16_t first_end;        /* IP payload bytes of the first fragment */
	uint32_t app;
	uint64_t born_ms;
};

struct frag_table {
	uint64_t timeout_ms;
	struct frag_entry e[FRAG_TABLE_SIZE];
};

enum frag_result {
	FRAG_HIT = 0,
	FRAG_MISS = 1,             /* never seen, or expired: queue briefly or drop */
};

/* Empty the table; entries expire timeout_ms after they are remembered. */
void frag_init(struct frag_table *t, uint64_t timeout_ms);

/*
 * Remember that the datagram `key` belongs to `app`.  An existing entry for
 * the key is overwritten (a retransmitted first fragment restarts its timer).
 */
void frag_remember(struct frag_table *t, const struct frag_key *key, uint32_t app,
		   uint16_t first_end, uint64_t now_ms);

/* FRAG_HIT with *app (and *first_end if not NULL) set, or FRAG_MISS. */
enum frag_result frag_lookup(const struct frag_table *t, const struct frag_key *key,
			     uint64_t now_ms, uint32_t *app, uint16_t *first_end);

/* Drop every entry of `app` (the application died or was disconnected). */
void frag_forget_app(struct frag_table *t, uint32_t app);

/* Number of live (not expired) entries at now_ms. */
unsigned frag_count(const struct frag_table *t, uint64_t now_ms);

#endif
