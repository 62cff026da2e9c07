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
#define LIBRETTO_REGION_SIZE 4096
#define REGION_MAX_PORTS 64

#define REGION_PROTO_TCP 6
#define REGION_PROTO_UDP 17

struct region_port {
	uint16_t port;  /* host byte order */
	uint8_t proto;  /* REGION_PROTO_* */
	uint8_t state;  /* 0 free, 1 bound, 2 listening */
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
};

_Static_assert(offsetof(struct libretto_region, rx_packets) == 8, "region ABI");
_Static_assert(offsetof(struct libretto_region, nports) == 56, "region ABI");
_Static_assert(offsetof(struct libretto_region, ports) == 64, "region ABI");
_Static_assert(sizeof(struct libretto_region) <= LIBRETTO_REGION_SIZE, "region ABI");

#endif
