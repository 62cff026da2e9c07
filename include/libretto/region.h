/* The per-application shared region: counters the runtime publishes. */
#ifndef LIBRETTO_REGION_H
#define LIBRETTO_REGION_H

#include <stddef.h>
#include <stdint.h>

/*
 * librettod creates one memfd of LIBRETTO_REGION_SIZE bytes per application
 * and hands it over at register time.  The runtime is the only writer; it
 * updates counters with relaxed atomic stores (single writer per field, under
 * the stack lock), librettod reads them with relaxed atomic loads for `ps`.
 * Nothing here is trusted by librettod beyond display: every value read is
 * clamped (nports <= REGION_MAX_PORTS).
 *
 * The network-server issue extends this region with the app<->netd rings; the
 * header stays at offset 0 and keeps its layout.
 */
#define LIBRETTO_REGION_MAGIC 0x4c425452u /* "LBTR" */
#define LIBRETTO_REGION_VERSION 1
#define LIBRETTO_REGION_SIZE 65536
#define REGION_MAX_PORTS 64
#define REGION_MAX_CONNS 2048

#define REGION_PROTO_TCP 6
#define REGION_PROTO_UDP 17

struct region_port {
	uint16_t port;  /* host byte order */
	uint8_t proto;  /* REGION_PROTO_* */
	uint8_t state;  /* 0 free, 1 bound, 2 listening */
};

/*
 * One TCP connection of the application, listed so that librettod can reset
 * its peer if the application dies without closing it (kill -9, a crash):
 * no process is then left to send a FIN or RST.  The runtime fills the
 * other fields first and stores valid = REGION_CONN_VALID last with release
 * ordering; it clears valid (release) before the slot is reused, so an entry
 * cut short by the death is recognisable.  librettod reads the table only
 * after the application is gone and treats every field as hostile.
 */
#define REGION_CONN_VALID 0x434f4e4eu /* "CONN" */

struct region_conn {
	uint32_t local_ip;    /* network byte order */
	uint32_t remote_ip;   /* network byte order */
	uint16_t local_port;  /* host byte order */
	uint16_t remote_port; /* host byte order */
	uint32_t valid;       /* REGION_CONN_VALID, or 0 for a free slot */
};

struct libretto_region {
	uint32_t magic;
	uint32_t version;
	uint64_t rx_packets;
	uint64_t rx_bytes;
	uint64_t tx_packets;
	uint64_t tx_bytes;
	uint64_t rx_drops;   /* frames the runtime could not take (no memory, bad) */
	uint64_t tx_drops;   /* frames the NIC did not accept */
	uint32_t nports;     /* valid entries in ports[] */
	uint32_t pad;
	struct region_port ports[REGION_MAX_PORTS];
	/*
	 * The pid of the process that started the stack on this lease (0:
	 * none yet).  A forked child and its parent both hold the lease; the
	 * first to need the stack claims the NIC with a compare-and-swap from
	 * 0, and the other one's sockets then fail (the NIC is that pid's).
	 * Written by the runtime only, once.
	 */
	uint32_t owner_pid;
	uint32_t pad2;
	/*
	 * The established (or closing) TCP connections, maintained by the
	 * socket layer under the stack lock: slots [0, conn_hwm) have been
	 * used at least once (conn_hwm <= REGION_MAX_CONNS, only grows);
	 * conn_overflow counts connections that found the table full and are
	 * not listed.
	 */
	uint32_t conn_hwm;
	uint32_t pad3;
	uint64_t conn_overflow;
	struct region_conn conns[REGION_MAX_CONNS];
};

_Static_assert(offsetof(struct libretto_region, rx_packets) == 8, "region ABI");
_Static_assert(offsetof(struct libretto_region, nports) == 56, "region ABI");
_Static_assert(offsetof(struct libretto_region, ports) == 64, "region ABI");
_Static_assert(offsetof(struct libretto_region, owner_pid) == 320, "region ABI");
_Static_assert(offsetof(struct libretto_region, conn_hwm) == 328, "region ABI");
_Static_assert(offsetof(struct libretto_region, conn_overflow) == 336, "region ABI");
_Static_assert(offsetof(struct libretto_region, conns) == 344, "region ABI");
_Static_assert(sizeof(struct region_conn) == 16, "region ABI");
_Static_assert(sizeof(struct libretto_region) <= LIBRETTO_REGION_SIZE, "region ABI");

#endif
