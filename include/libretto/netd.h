/* The supervisor <-> libretto-netd control protocol (issue 4, DESIGN.md section 4). */
#ifndef LIBRETTO_NETD_H
#define LIBRETTO_NETD_H

#include <stddef.h>
#include <stdint.h>

/*
 * Transport.  The supervisor (librettod, or a test harness) creates a
 * SOCK_SEQPACKET socketpair, starts libretto-netd with one end inherited and
 * names it with `--control-fd N`.  Messages use the same format as the
 * control protocol (ctl.h): one message is one request or one reply, text of
 * at most NETD_MSG_MAX bytes, one "key=value" per line, the first line of a
 * request is the command name alone; descriptors travel as SCM_RIGHTS
 * (ctl_send()/ctl_recv() in src/common/kv.h), in the order each command
 * lists them.  Values never contain spaces or newlines.
 *
 * netd answers every request with exactly one reply, in order, ending with
 * the line "errno=N" (0 on success, a positive errno value otherwise),
 * preceded by "error=<word>" when N != 0 (a short token naming the check
 * that failed, e.g. "error=region_unsealed").  A request that fails changes
 * nothing.  Descriptors received with a failed request are closed by netd.
 * EOF on the control socket makes netd release everything and exit 0, as
 * "quit" does: netd never outlives its supervisor.  (librettod hands netd a
 * copy of its own end as descriptor 4, which netd never touches, so that no
 * EOF comes when librettod dies: netd serves on, and a restarted librettod
 * takes the channel back from it with pidfd_getfd(); docs/librettod.md,
 * "Restart".)
 *
 * Addresses are dotted quads, MACs are "xx:xx:xx:xx:xx:xx", numbers decimal.
 *
 * Commands:
 *
 *   nic        keys: ifname=, mac=, umem_size=, frame_size=, ring_size=
 *              fds:  xsk, umem [, state]
 *              The AF_XDP socket, already bound (with XDP_USE_NEED_WAKEUP)
 *              to the PF's queue 0 with its UMEM registered, and the UMEM's
 *              memfd.  The supervisor must not touch the four rings
 *              afterwards: netd maps them from the socket and owns every
 *              UMEM frame (it posts half of them to the fill ring, keeps the
 *              rest for transmission).  frame_size a power of two in
 *              [2048, 65536], ring_size a power of two, umem_size a multiple
 *              of frame_size.  mac= is the source MAC of everything netd
 *              sends and the only one applications may use.  Once only.
 *              With the optional third descriptor, the NIC state memfd
 *              (struct netd_shared below, made by the supervisor and kept
 *              across netd processes), netd records there which UMEM frames
 *              it owns and beats a heartbeat; and then the rings may have
 *              been used by an earlier netd: netd ADOPTS them (restart after
 *              a crash, live upgrade) instead of refusing them, taking back
 *              every frame that is on no ring and not in the kernel's hands.
 *              Reply: adopted=0|1, reclaimed= (frames taken back).
 *              Optional keys: hold=1: netd touches no ring (moves no frame)
 *              until `start`, so that the supervisor can give it the port
 *              table, the addresses and every application first (otherwise
 *              a SYN for an application not yet added would be answered
 *              with a RST); handover=1: the predecessor handed over cleanly
 *              (`handover`), so app_add does not bump the generation.
 *   start      no keys.  End of hold=1: netd starts moving frames.
 *   porttab    keys: size=   fds: table
 *              The port table memfd (src/common/porttab.h); netd maps it
 *              READ-ONLY and looks every received TCP/UDP destination and
 *              every transmitted source port up in it.  Once only.
 *   ip         keys: addr=   (not "ip=": the command line itself is key "ip")
 *              An address netd fronts (the shared IP): it answers ARP for it
 *              and ICMP echo requests to it.  Up to NETD_MAX_IPS.
 *   app_add    keys: id= (non-zero, the port table's app_id),
 *                    ips=A.B.C.D[,A.B.C.D...] (at most 4)
 *              fds:  region, efd_netd, efd_app
 *              The application's ring region (include/libretto/ring.h),
 *              which must be a memfd sealed against shrinking (F_SEAL_SHRINK;
 *              otherwise the application could truncate it and crash netd
 *              with SIGBUS), and its two doorbells, which must be
 *              eventfds.  netd never reads efd_netd (it waits for it
 *              edge-triggered, so the application cannot block netd by
 *              draining it) and sets O_NONBLOCK on efd_app (shared with
 *              the application, which therefore waits for it with poll()
 *              before reading, as ring.h's sleeper protocol does anyway).
 *              netd answers ARP for the application's addresses too (they
 *              share netd's MAC) and copies ARP requests and replies for
 *              them to the application; ICMP echo to an address netd does
 *              not front goes to the application that has it.  TCP/UDP
 *              reach the application only if the port table names it AND
 *              the destination is among its ips= (a wildcard bind covers
 *              only those).  netd bumps the region's generation and sets
 *              RING_REGION_F_NETD_UP.  Up to NETD_MAX_APPS.
 *   app_del    keys: id=
 *              netd stops using the region and closes the three descriptors.
 *   reap       keys: conns=LIP:LPORT-RIP:RPORT[,...] (dotted quads)
 *              An application died with these TCP connections open, and the
 *              supervisor has removed its ports from the table: netd sends
 *              each peer a SYN on the 4-tuple (to the MAC it last saw the
 *              peer's address send from); an established peer answers with
 *              a challenge ACK, which reaches a port nobody owns and gets
 *              netd's RST with the peer's own rcv_nxt.  Reply: conns=,
 *              probes= (sent; a peer netd never heard from is skipped).
 *   stats      no keys.  Reply: global counters (see docs/netd.md), then
 *              "apps=N" and one line per application:
 *              "app=<id> rx_frames= rx_bytes= tx_frames= tx_bytes=
 *               rx_ring_full= rx_bad_fill= tx_drops= tx_drop_<reason>=...
 *               tx_ring_full= wakeups= ring_errors="
 *              (one line, space separated; tx_drop_<reason> only for
 *              reasons that occurred, names from validate_reason_str()).
 *   handover   no keys.  Live upgrade: netd finishes the round it is in,
 *              publishes every ring index (application rx/comp, XSK fill and
 *              tx), stops touching any ring and answers with its final
 *              counters (as `stats`).  Afterwards it serves only `stats`
 *              and `quit`; a successor started with the same descriptors
 *              adopts the rings exactly (nothing is in netd's hands).
 *   quit       reply errno=0, then netd exits 0.
 *
 * Counter identity (checked by the tests): every frame taken from the XSK
 * rx ring is counted in rx_frames and in exactly one of rx_delivered (to at
 * least one application), rx_handled (answered or consumed by netd alone:
 * ARP and echo for fronted addresses) and rx_dropped (every drop reason).
 */

/*
 * The NIC state memfd (optional third descriptor of `nic`).  The supervisor
 * creates it once, zeroed, of netd_shared_size(nframes) bytes, and hands the
 * same one to every netd it starts on the same XSK.  netd writes it; the
 * supervisor reads heartbeat (hang detection).
 *
 *  - heartbeat: incremented by netd on every turn of its loop, and at least
 *    every NETD_HEARTBEAT_MS while it sleeps (its sleep is bounded by that),
 *    so a heartbeat that has not moved for a second means a hung netd, not
 *    an idle one.
 *  - frame[i]: who holds UMEM frame i (NETD_FRAME_*).  netd marks a frame
 *    TXQ when it writes it on the XSK tx ring, TX once it has published the
 *    ring's producer (before it kicks the kernel, which in copy mode takes
 *    frames only on that kick), FREE when it comes back on the completion
 *    ring or is freed, RX while it circulates between the fill ring, the rx
 *    ring and netd's rx batch.  A successor uses it with
 *    the four rings' indices to find the frames the dead netd held.
 */
#define NETD_SHARED_MAGIC 0x4454454eu /* "NETD" */
#define NETD_HEARTBEAT_MS 100

enum netd_frame_state {
	NETD_FRAME_UNKNOWN = 0,
	NETD_FRAME_FREE = 1,
	NETD_FRAME_RX = 2,
	NETD_FRAME_TX = 3,
	NETD_FRAME_TXQ = 4,      /* written on the tx ring, producer not yet published */
};

struct netd_shared {
	uint32_t magic;          /* written by netd at first use */
	uint32_t nframes;        /* UMEM frames described in frame[] */
	uint64_t heartbeat;      /* atomic, netd writes, the supervisor reads */
	uint32_t pid;            /* netd process writing it (diagnostics) */
	uint32_t reserved[11];
	uint8_t frame[];         /* nframes bytes, enum netd_frame_state */
};

_Static_assert(sizeof(struct netd_shared) == 64, "netd_shared ABI");

static inline size_t netd_shared_size(uint32_t nframes)
{
	return (sizeof(struct netd_shared) + nframes + 4095) & ~(size_t)4095;
}

#define NETD_MSG_MAX 65536
#define NETD_MAX_APPS 64
#define NETD_MAX_IPS 8
#define NETD_APP_MAX_IPS 4

#endif
