/* libretto-netd's state, shared by its control side (main.c) and its data path (path.c). */
#ifndef NETD_SERVER_H
#define NETD_SERVER_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/porttab.h"
#include "libretto/netd.h"
#include "libretto/ring.h"
#include "netd/classify.h"
#include "netd/frag.h"
#include "netd/validate.h"
#include "netd/xsk.h"

/* Frames taken from one ring per pass, and per application per round. */
#define NETD_BATCH 64

/*
 * Counters of one application.  Written by the data path only; read by the
 * control side on the same thread, so plain integers.
 */
struct netd_app_stats {
	uint64_t rx_frames, rx_bytes;
	uint64_t tx_frames, tx_bytes;
	uint64_t rx_ring_full;  /* no fill frame lent, or rx ring full: dropped */
	uint64_t rx_bad_fill;   /* fill descriptor outside the frame area or too short */
	uint64_t tx_drops;      /* refused by the validator (sum of tx_drop[]) */
	uint64_t tx_drop[VALIDATE_REASON_COUNT];
	uint64_t tx_ring_full;  /* rounds cut short: no UMEM frame or XSK tx slot */
	uint64_t wakeups;       /* efd_app writes */
};

struct netd_app {
	bool used;
	uint32_t id;
	int region_fd, efd_netd, efd_app;
	void *mem;
	size_t maplen;
	struct ring_region_hdr hdr;  /* private checked copy */
	uint8_t *frames;
	struct ring_cons fill, tx;
	struct ring_prod rx, comp;
	uint32_t rx_unsubmitted;     /* reserved rx slots not yet published */
	struct validate_app va;
	struct netd_app_stats st;
};

/* Global counters: frames from the wire that reached no application. */
struct netd_stats {
	uint64_t rx_frames, rx_bytes;
	uint64_t rx_malformed[CLASSIFY_REASON_COUNT];
	uint64_t rx_not_ours;        /* unicast to an IP netd does not serve */
	uint64_t rx_no_port;         /* TCP/UDP to an unbound port */
	uint64_t rx_unsupported;     /* IPv6, VLAN, other ethertypes and protocols */
	uint64_t rx_frag_miss;       /* later fragment whose first one was not seen */
	uint64_t rx_bad_desc;        /* XSK rx descriptor outside the UMEM (kernel bug) */
	uint64_t arp_replies, echo_replies, rst_sent;
	uint64_t unreach_sent;       /* ICMP port unreachable for UDP to no owner */
	uint64_t icmp_ratelimited;   /* of those, suppressed by the rate limit */
	uint64_t reply_no_frame;     /* a reply dropped: no UMEM frame or tx slot */
	uint64_t tx_frames, tx_bytes;
	uint64_t sleeps;
	/* Each frame of rx_frames lands in exactly one of these three (netd.h). */
	uint64_t rx_delivered;       /* copied to at least one application */
	uint64_t rx_handled;         /* answered or consumed by netd alone */
	uint64_t rx_dropped;         /* every drop reason together */
	uint64_t adopt_reclaimed;    /* frames taken back when adopting used rings */
	uint64_t reap_probes;        /* SYNs sent to a dead application's peers */
	uint64_t reap_no_neigh;      /* peers whose MAC netd had not seen */
};

#define NETD_MAX_NEIGH 64

struct netd_nic {
	bool up;
	int xsk_fd, umem_fd;
	char ifname[IF_NAMESIZE];
	uint8_t mac[6];
	uint8_t *umem;
	size_t umem_size;
	uint32_t frame_size, nframes;
	struct xsk_q fill, comp, rx, tx;
	void *map[4];
	size_t maplen[4];
	uint64_t *free_frames;       /* UMEM frames netd may send from */
	uint32_t nfree;
	bool tx_kick;                /* tx entries submitted since the last kick */
	/* The NIC state memfd (netd.h "struct netd_shared"), NULL without one. */
	struct netd_shared *sh;
	size_t sh_len;
	int sh_fd;
	bool adopted;                /* the rings were used before us */
};

/* Record who holds UMEM frame addr (netd.h, enum netd_frame_state). */
static inline void netd_frame_mark(struct netd_nic *x, uint64_t addr, uint8_t st)
{
	if (x->sh != NULL && addr / x->frame_size < x->nframes)
		/* Relaxed: a successor reads the array only after this netd is
		 * dead or has answered `handover` (a full barrier). */
		__atomic_store_n(&x->sh->frame[addr / x->frame_size], st, __ATOMIC_RELAXED);
}

static inline uint8_t netd_frame_state(const struct netd_nic *x, uint64_t addr)
{
	if (x->sh == NULL || addr / x->frame_size >= x->nframes)
		return NETD_FRAME_UNKNOWN;
	return __atomic_load_n(&x->sh->frame[addr / x->frame_size], __ATOMIC_RELAXED);
}

struct netd {
	int ctl_fd, epfd;
	bool handed_over;            /* after `handover`: the rings are not ours */
	bool took_over;              /* `nic ... handover=1`: a predecessor handed over */
	bool held;                   /* `nic ... hold=1` until `start`: rings untouched */
	struct netd_nic nic;
	bool have_porttab;
	int porttab_fd;
	void *porttab_mem;
	size_t porttab_len;
	struct porttab pt;
	uint32_t ips[NETD_MAX_IPS];  /* fronted addresses, host order */
	unsigned n_ips;
	struct netd_app apps[NETD_MAX_APPS];
	unsigned rr;                 /* first application of the next TX round */
	struct frag_table rx_frags;  /* later RX fragments -> application */
	struct frag_table tx_frags;  /* one TX table for all applications (validate.h) */
	struct netd_stats st;
	uint64_t now_ms;
	uint32_t icmp_tokens;        /* ICMP error token bucket (path.c) */
	uint64_t icmp_tokens_ms;
	/* The MACs of the stations frames came from (learned on RX, for the
	 * reaper's probes); a small ring, newest over oldest. */
	struct {
		uint32_t ip;             /* host order; 0: empty */
		uint8_t mac[6];
	} neigh[NETD_MAX_NEIGH];
	unsigned neigh_next;
};

/*
 * Data path (path.c).  netd_poll() does one round: RX batch from the wire,
 * one TX batch per application in round-robin order, XSK completions; it
 * returns the number of frames it moved, 0 when idle.  netd_prepare_sleep()
 * sets NEED_WAKEUP where netd consumes and returns true if netd may block
 * (nothing arrived meanwhile); netd_end_sleep() clears the flags.
 */
int netd_poll(struct netd *n);
/*
 * Adopt XSK rings an earlier netd used (x mapped, x->sh the state region
 * with its magic, free_frames allocated and empty): rebuild the free list
 * from the state region and the rings' indices, top the fill ring up.
 * Returns the frames taken back from the dead netd's hands.
 */
uint32_t netd_nic_adopt(struct netd_nic *x);
/* Publish every ring index netd holds back (rx rings, the XSK tx ring). */
void netd_flush(struct netd *n);
/*
 * An application died with TCP connections open (librettod's `reap`, after
 * it removed the application's ports): send each peer a SYN on the
 * connection's 4-tuple (lip:lport -> rip:rport, host order).  An
 * established peer answers with a challenge ACK, which now reaches a port
 * nobody owns, so netd answers it with a RST carrying the peer's rcv_nxt
 * (reply_rst): the peer's connection ends as the kernel would end it.
 * Returns true if the probe went out (false: no MAC seen for rip yet, or
 * no frame to send from).
 */
bool netd_reap_probe(struct netd *n, uint32_t lip, uint16_t lport, uint32_t rip, uint16_t rport);
bool netd_prepare_sleep(struct netd *n);
void netd_end_sleep(struct netd *n);
/* Does the application own (proto, port) on ip?  The validator's callback. */
bool netd_owns_port(void *ctx, uint32_t app, uint32_t ip, uint8_t proto, uint16_t port);
/* Is ip an address netd fronts? */
bool netd_fronts(const struct netd *n, uint32_t ip);

#endif
