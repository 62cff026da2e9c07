/* The in-process TCP/IP stack: lwIP's start, its one netif, and the progress thread. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/futex.h>

#include <lwip/tcpip.h>
#include <lwip/netif.h>
#include <lwip/pbuf.h>
#include <lwip/etharp.h>
#include <lwip/timeouts.h>
#include <lwip/tcp.h>
#include <lwip/priv/tcp_priv.h>
#include <netif/ethernet.h>

#include "common/kv.h"
#include "libretto/ctl.h"
#include "ipx/real.h"
#include "nic/nic.h"
#include "stack/stack.h"
#include "stack/stack_int.h"

/* Frames taken from the NIC per lock hold. */
#define STACK_RX_BATCH 64
/* How long the progress thread spins before it sleeps, right after traffic
 * and when the link has been quiet for a while. */
#define STACK_SPIN_BUSY_NS 50000
#define STACK_SPIN_IDLE_NS 5000
#define STACK_BUSY_WINDOW_NS 10000000
/* The progress thread's sleep bound, so it notices shutdown. */
#define STACK_SLEEP_MS 100
/* How long the progress thread stands aside at a time while application
 * threads poll the NIC themselves (stack_poller_*), and while one sleeps
 * with the NIC in its wait set (then it only checks that frames do not
 * wait unseen). */
#define STACK_PARK_MS 1
#define STACK_COVER_MS 10
/* Ethernet header plus one VLAN tag: the longest frame is mtu + this. */
#define STACK_L2_MAX 18
#define STACK_ETH_HLEN 14

/* Where the lazy start stands (stack.start_state). */
enum stack_start_state {
	STACK_NOT_STARTED = 0,   /* lease held, nothing started yet */
	STACK_RUNNING,           /* stack_start() succeeded */
	STACK_FAILED,            /* stack_start() failed: sockets get ENETDOWN */
};

struct stack {
	/* stack_start() succeeded (release store once everything is up, so a
	 * thread that sees it also sees the netif and the NIC). */
	atomic_bool active;
	bool leased;             /* stack_init() took a lease */
	pid_t lease_pid;         /* the process that took it (librettod's pid for the app) */
	atomic_int start_state;  /* enum stack_start_state */
	/* Serializes stack_start(); also taken around fork() so a child never
	 * copies a half-started stack. */
	pthread_mutex_t start_lock;
	bool fork_locked;        /* the fork handlers took the stack's locks */
	/* False in a child after fork(): the rings are MADV_DONTFORK, so the
	 * child must not touch the NIC; its lwIP copy sends nothing. */
	atomic_bool nic_ok;
	atomic_bool stopping;    /* the process is exiting */
	struct stack_lease lease;
	struct nic nic;
	struct netif netif;
	struct libretto_region *region;
	/* Serializes the NIC's receive side; taken before the core lock. */
	pthread_mutex_t rx_lock;
	sem_t tcpip_ready;
	/* Port references behind each region entry (SO_REUSEPORT and dup'ed
	 * binds share one entry); under the core lock. */
	unsigned port_refs[REGION_MAX_PORTS];
	bool rx_error_reported;  /* under rx_lock */

	/* Mode switching (docs/switching.md); the progress thread alone
	 * writes these, except where noted. */
	bool switchable;         /* the lease says switchable=1: claim ports in both modes */
	struct nic old_nic;      /* the old path while it drains (ops NULL: none); under rx_lock */
	int cur_fds[CTL_MAX_FDS], ncur_fds;   /* the current path's private descriptors */
	int old_fds[CTL_MAX_FDS], nold_fds;
	uint64_t switch_ns;      /* when the last swap happened */
	atomic_uint_least64_t old_last_rx_ns;  /* last frame from the old path */
	uint64_t garp_next_ns;   /* next gratuitous ARP while draining */
	int garp_count;
	char mode[16];           /* "direct" or "indirect" */
	atomic_bool path_failed; /* the current path reported an error (rx thread) */
	bool want_sent;          /* switch_want sent for this path */
	bool ctl_dead;           /* librettod closed the lease connection */
	/* Supervisor restart (tag l): re-attaching to the lease after EOF. */
	uint64_t reattach_until_ns;   /* 0: not trying */
	uint64_t reattach_next_ns;    /* next connection attempt */
	uint64_t reattach_sent_ns;    /* when the pending request went out */
	int reattach_fd;              /* the pending connection, -1 none */
	pid_t ctl_hold_ppid;     /* a keeper: not ours while this parent lives */
	bool keeper_drained;     /* a keeper dropped the old path: tell librettod */
	uint64_t ctl_next_ns;    /* next look at the lease connection under load */
	/* An order read by a thread that waited for a reply; under the core lock. */
	struct {
		bool pending;
		char text[2048];
		int fds[CTL_MAX_FDS], nfds;
	} order;
	/*
	 * Application threads that poll the NIC themselves (stack_poller_*):
	 * poll_gen counts their polls, sleeps their hand-overs before a kernel
	 * sleep.  parked (a futex word, 1 or 0): the progress thread stands
	 * aside, woken by a hand-over.  nic_sleepers: threads asleep in the
	 * kernel with the NIC's wait descriptor in their wait set.  See
	 * stack_progress_park().
	 */
	atomic_uint poll_gen;
	atomic_uint sleeps;
	atomic_int parked;
	atomic_int nic_sleepers;
	/* Doorbells rung after the unlock (stack_unlock_batch), on a NIC that
	 * a switch may have made the old path meanwhile: its close waits. */
	atomic_int kicks_in_flight;
};

static struct stack stack = {
	.rx_lock = PTHREAD_MUTEX_INITIALIZER,
	.start_lock = PTHREAD_MUTEX_INITIALIZER,
};

static inline bool stack_is_active(void)
{
	return atomic_load_explicit(&stack.active, memory_order_acquire);
}

bool stack_active(void)
{
	return stack_is_active();
}

bool stack_lease_pending(void)
{
	return stack.leased &&
	       atomic_load_explicit(&stack.start_state, memory_order_acquire) == STACK_NOT_STARTED;
}

/*
 * The stack lock is lwIP's core lock.  Before stack_init() (and without a
 * lease) lwIP's mutex does not exist, and there is nothing to protect.
 *
 * Transmit batching: while one of our threads holds the lock, the backend
 * may queue frames without a doorbell each (nic->defer_kick), and we ring it
 * once, right after letting go: on veth the doorbell (sendto on the XSK)
 * runs the peer's whole receive path, tens of microseconds that another
 * thread would otherwise wait for the lock (kick() needs no lock, nic.h).
 * The copy of the NIC taken under the lock is the one the frames went to;
 * a switch that makes it the old path meanwhile closes it only after
 * kicks_in_flight drops (stack_switch_close_old).  lwIP's own thread
 * (timers) takes the lock with LOCK_TCPIP_CORE directly, finds defer_kick
 * false, and kicks per frame.
 */
static inline void stack_lock_batch(void)
{
	ipx_sig_lock_depth++;	/* signals: handlers wait for the unlock */
	LOCK_TCPIP_CORE();
	stack.nic.defer_kick = true;
}

static inline void stack_unlock_batch(void)
{
	struct nic n;
	bool kick = false;

	stack.nic.defer_kick = false;
	if (atomic_load_explicit(&stack.nic_ok, memory_order_relaxed)) {
		n = stack.nic;
		kick = true;
		atomic_fetch_add(&stack.kicks_in_flight, 1);
	}
	UNLOCK_TCPIP_CORE();
	if (kick) {
		nic_kick(&n);
		atomic_fetch_sub(&stack.kicks_in_flight, 1);
	}
	if (ipx_sig_lock_depth > 0 && --ipx_sig_lock_depth == 0 && ipx_sig_deferred)
		ipx_sig_release();
}

void stack_lock(void)
{
	if (stack_is_active())
		stack_lock_batch();
}

void stack_unlock(void)
{
	if (stack_is_active())
		stack_unlock_batch();
}

struct libretto_region *stack_region(void)
{
	return stack.region;
}

int stack_ctl_fd(void)
{
	return stack.leased ? stack.lease.ctl_fd : -1;
}

struct in_addr stack_ip(void)
{
	return stack.lease.ip;
}

struct in_addr stack_netmask(void)
{
	return stack.lease.netmask;
}

bool stack_routes(struct in_addr dst)
{
	uint32_t a = ntohl(dst.s_addr);

	if (!stack_is_active())
		return false;
	/* "This network", loopback, multicast and limited broadcast never go
	 * out of the NIC as unicast traffic of ours. */
	if ((a >> 24) == 0 || (a >> 24) == 127 || (a >> 28) == 14 || a == 0xffffffffu)
		return false;
	if ((dst.s_addr & stack.lease.netmask.s_addr) ==
	    (stack.lease.ip.s_addr & stack.lease.netmask.s_addr))
		return true;
	return stack.lease.gw.s_addr != 0;
}

/* Counters have one writer at a time (region.h): a relaxed store of the
 * incremented value is enough for librettod's relaxed loads. */
static inline void region_add(uint64_t *field, uint64_t n)
{
	__atomic_store_n(field, *field + n, __ATOMIC_RELAXED);
}

void stack_port_add(uint8_t proto, uint16_t port, uint8_t state)
{
	struct libretto_region *r = stack.region;
	uint32_t n;

	if (!r)
		return;
	n = r->nports;
	for (uint32_t i = 0; i < n; i++) {
		if (r->ports[i].proto == proto && r->ports[i].port == port) {
			stack.port_refs[i]++;
			if (state > r->ports[i].state)
				__atomic_store_n(&r->ports[i].state, state, __ATOMIC_RELAXED);
			return;
		}
	}
	if (n == REGION_MAX_PORTS)
		return; /* `libretto ps` shows the first REGION_MAX_PORTS */
	r->ports[n].port = port;
	r->ports[n].proto = proto;
	r->ports[n].state = state;
	stack.port_refs[n] = 1;
	/* Release: the entry is written before a reader can count it. */
	__atomic_store_n(&r->nports, n + 1, __ATOMIC_RELEASE);
}

void stack_port_del(uint8_t proto, uint16_t port)
{
	struct libretto_region *r = stack.region;
	uint32_t n;

	if (!r)
		return;
	n = r->nports;
	for (uint32_t i = 0; i < n; i++) {
		if (r->ports[i].proto != proto || r->ports[i].port != port)
			continue;
		if (--stack.port_refs[i] > 0)
			return;
		/* Shrink first, then move the last entry into the hole: a reader
		 * may see the moved entry twice or miss it once, never garbage. */
		__atomic_store_n(&r->nports, n - 1, __ATOMIC_RELEASE);
		if (i != n - 1) {
			r->ports[i] = r->ports[n - 1];
			stack.port_refs[i] = stack.port_refs[n - 1];
		}
		memset(&r->ports[n - 1], 0, sizeof(r->ports[n - 1]));
		stack.port_refs[n - 1] = 0;
		return;
	}
}

/* lwIP's linkoutput: runs under the core lock, from whichever thread made
 * lwIP send (an application thread, the progress thread, lwIP's timers). */
static err_t stack_linkoutput(struct netif *netif, struct pbuf *p)
{
	struct iovec iov[16];
	unsigned char flat[2048];
	int n = 0, err;

	if (!atomic_load_explicit(&stack.nic_ok, memory_order_relaxed))
		return ERR_IF;
	for (struct pbuf *q = p; q; q = q->next) {
		if (n == (int)(sizeof(iov) / sizeof(iov[0]))) {
			/* Rare: a long chain.  Flatten it rather than fail. */
			err = -EMSGSIZE;
			if (p->tot_len > sizeof(flat))
				goto drop;
			pbuf_copy_partial(p, flat, p->tot_len, 0);
			iov[0].iov_base = flat;
			iov[0].iov_len = p->tot_len;
			n = 1;
			break;
		}
		iov[n].iov_base = q->payload;
		iov[n].iov_len = q->len;
		n++;
	}
	err = nic_tx(&stack.nic, iov, n);
	if (err < 0)
		goto drop;
	if (stack.region) {
		region_add(&stack.region->tx_packets, 1);
		region_add(&stack.region->tx_bytes, p->tot_len);
	}
	return ERR_OK;
drop:
	if (stack.region)
		region_add(&stack.region->tx_drops, 1);
	/* A full ring is a NIC dropping a frame: TCP retransmits, UDP loses
	 * it, as on Linux.  Any other failure is the device going away. */
	return err == -EAGAIN ? ERR_OK : ERR_IF;
}

static err_t stack_netif_init(struct netif *netif)
{
	netif->name[0] = 'l';
	netif->name[1] = 'b';
	netif->mtu = (u16_t)stack.nic.mtu;
	netif->hwaddr_len = ETH_HWADDR_LEN;
	memcpy(netif->hwaddr, stack.nic.mac, ETH_HWADDR_LEN);
	netif->flags = NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET | NETIF_FLAG_BROADCAST;
	netif->output = etharp_output;
	netif->linkoutput = stack_linkoutput;
	return ERR_OK;
}

/* Received frames, copied into pbufs without the core lock, fed to lwIP
 * under it in one hold. */
struct rx_batch {
	struct pbuf *p[STACK_RX_BATCH];
	int n;
	uint64_t bytes;
	uint64_t drops;
	/* The path the frames come from: during a switch the old one still
	 * receives frames addressed to its own MAC, not to the netif's. */
	const struct nic *nic;
};

static void stack_rx_frame(void *arg, const void *frame, size_t len)
{
	struct rx_batch *b = arg;
	const uint8_t *dst = frame;
	struct pbuf *p;

	if (len < STACK_ETH_HLEN || len > b->nic->mtu + STACK_L2_MAX) {
		b->drops++;
		return;
	}
	/* Unicast for another station (a bridge flooding, a promiscuous
	 * port): a NIC filters these in hardware, so do we, silently.  The
	 * MAC is the receiving path's: after a switch the peer sends to the
	 * old MAC until it takes the gratuitous ARP, and the old path drains
	 * exactly those frames. */
	if (!(dst[0] & 1) && memcmp(dst, b->nic->mac, 6) != 0)
		return;
	/*
	 * One copy, from the ring into a pbuf; this is the place for custom
	 * pbufs that lend the ring frame to lwIP instead (DESIGN.md section
	 * 9).  pbuf_alloc() needs no core lock (lwIP's pools are malloc).
	 *
	 * PBUF_RAM, never PBUF_POOL: Debian's liblwip 2.1.3 is inconsistent
	 * there (pbuf_alloc() fills pool pbufs up to 1536 bytes, but the pool
	 * allocates 616-byte elements), so a full-size frame in a pool pbuf
	 * overruns the heap.
	 */
	p = pbuf_alloc(PBUF_RAW, (u16_t)len, PBUF_RAM);
	if (!p) {
		b->drops++;
		return;
	}
	pbuf_take(p, frame, (u16_t)len);
	b->p[b->n++] = p;
	b->bytes += len;
}

/*
 * A new connection's SYN for a 4-tuple lwIP still holds in TIME_WAIT.  When
 * we closed first (an HTTP server closing after its response), the client
 * has no TIME_WAIT of its own and reuses its ports as soon as they wrap;
 * lwIP answers such a SYN with an ACK for the old connection and ignores
 * the client's RST, so the client retries for seconds.  Linux accepts a
 * SYN whose sequence number is beyond what the old connection received
 * (RFC 1122 4.2.2.13) and so do we: the TIME_WAIT pcb goes (no segment is
 * sent for it) and lwIP sees the SYN as new.  Under the core lock.
 */
/*
 * TIME_WAIT pcbs are bounded: Debian's lwIP allocates pcbs with malloc
 * (MEMP_MEM_MALLOC, so MEMP_NUM_TCP_PCB does not limit them) and keeps each
 * for 2 MSL = 2 minutes, and it walks the whole list for every segment of
 * a new connection.  A server closing thousands of connections a second
 * would grow it without end; like Linux's tcp_max_tw_buckets we drop the
 * oldest beyond a bound.  Under the core lock; called for each SYN.
 */
#define STACK_MAX_TIME_WAIT 4096

static void stack_tw_trim(void)
{
	for (int round = 0; round < 4; round++) {
		struct tcp_pcb *oldest = NULL;
		u32_t age = 0;
		int n = 0;

		for (struct tcp_pcb *pcb = tcp_tw_pcbs; pcb != NULL; pcb = pcb->next) {
			n++;
			if (oldest == NULL || (u32_t)(tcp_ticks - pcb->tmr) >= age) {
				oldest = pcb;
				age = (u32_t)(tcp_ticks - pcb->tmr);
			}
		}
		if (n <= STACK_MAX_TIME_WAIT || oldest == NULL)
			return;
		tcp_abort(oldest);
	}
}

static void stack_tw_recycle(struct pbuf *p)
{
	const uint8_t *f = p->payload;
	unsigned ihl;
	uint32_t src, dst, seq;
	uint16_t sport, dport;

	if (p->len != p->tot_len || p->len < 14 + 20 + 20 || f[12] != 0x08 || f[13] != 0x00)
		return;
	f += 14;
	ihl = (f[0] & 0x0fu) * 4u;
	if ((f[0] >> 4) != 4 || ihl < 20 || f[9] != IPPROTO_TCP ||
	    (f[6] & 0x3f) != 0 || f[7] != 0 ||	/* fragments: not here */
	    p->len < 14 + ihl + 20)
		return;
	const uint8_t *t = f + ihl;

	if ((t[13] & (TCP_SYN | TCP_ACK | TCP_RST)) != TCP_SYN)
		return;
	memcpy(&src, f + 12, 4);
	memcpy(&dst, f + 16, 4);
	sport = (uint16_t)(t[0] << 8 | t[1]);
	dport = (uint16_t)(t[2] << 8 | t[3]);
	seq = (uint32_t)t[4] << 24 | (uint32_t)t[5] << 16 | (uint32_t)t[6] << 8 | t[7];
	stack_tw_trim();
	for (struct tcp_pcb *pcb = tcp_tw_pcbs; pcb != NULL; pcb = pcb->next) {
		if (pcb->local_port != dport || pcb->remote_port != sport ||
		    ip_2_ip4(&pcb->remote_ip)->addr != src || ip_2_ip4(&pcb->local_ip)->addr != dst)
			continue;
		if (TCP_SEQ_GT(seq, pcb->rcv_nxt))
			tcp_abort(pcb);
		return;
	}
}

static uint64_t now_ns(void);

/* One batch from n (the current path, or the old one while it drains):
 * the caller holds rx_lock, not the core lock. */
static int stack_rx_batch(struct nic *n, int budget)
{
	struct rx_batch b;
	int got;

	b.n = 0;
	b.bytes = 0;
	b.drops = 0;
	b.nic = n;
	if (budget > STACK_RX_BATCH)
		budget = STACK_RX_BATCH;
	got = nic_rx(n, budget, stack_rx_frame, &b);
	if (got < 0 && n == &stack.nic) {
		if (!stack.rx_error_reported) {
			stack.rx_error_reported = true;
			fprintf(stderr, "libretto: receive from the NIC failed: %s\n",
				strerror(-got));
		}
		atomic_store(&stack.path_failed, true);
	}
	if (b.n > 0) {
		stack_lock_batch();
		for (int i = 0; i < b.n; i++) {
			if (tcp_tw_pcbs != NULL)
				stack_tw_recycle(b.p[i]);
			if (stack.netif.input(b.p[i], &stack.netif) != ERR_OK)
				pbuf_free(b.p[i]);
		}
		stack_unlock_batch();
	}
	if (stack.region) {
		if (b.n) {
			region_add(&stack.region->rx_packets, (uint64_t)b.n);
			region_add(&stack.region->rx_bytes, b.bytes);
		}
		if (b.drops)
			region_add(&stack.region->rx_drops, b.drops);
	}
	/* Frames taken from the NIC, whether lwIP wanted them or not. */
	return got;
}

/* Receive up to budget frames.  wait: take the receive lock even if
 * another thread holds it (the progress thread: rather than spin while an
 * application thread receives, it queues behind it). */
static int stack_poll_rx(int budget, bool wait)
{
	int done = 0;

	if (!stack_is_active() || !atomic_load_explicit(&stack.nic_ok, memory_order_relaxed))
		return 0;
	if (wait)
		pthread_mutex_lock(&stack.rx_lock);
	else if (pthread_mutex_trylock(&stack.rx_lock) != 0)
		return 0; /* somebody else is receiving: they deliver the frames */
	while (done < budget) {
		int n = stack_rx_batch(&stack.nic, budget - done);

		if (n <= 0)
			break;
		done += n;
	}
	if (stack.old_nic.ops != NULL) {
		/* A switch's old path: what the peer still sends there. */
		int n = stack_rx_batch(&stack.old_nic, STACK_RX_BATCH);

		if (n > 0) {
			atomic_store_explicit(&stack.old_last_rx_ns, now_ns(), memory_order_relaxed);
			done += n;
		}
	}
	pthread_mutex_unlock(&stack.rx_lock);
	return done;
}

int stack_poll(int budget)
{
	return stack_poll_rx(budget, false);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * The progress thread: deliver frames while they come, spin a little when
 * they stop (longer right after traffic: the next request of a busy
 * connection is usually microseconds away), then sleep on the NIC's wait
 * descriptor.  It holds a lock only while delivering a batch, never while
 * sleeping, so exit() in another thread never waits on it.
 */
static void stack_claims_gc(void);
static void stack_switch_service(bool readable);

/*
 * The progress thread stands aside while application threads poll.
 *
 * A thread in one of the runtime's waits (epoll_wait, poll, a blocking
 * socket call) runs the stack itself before it sleeps, and a busy server
 * is in such a wait most of the time.  If the progress thread polled the
 * NIC too, the two would fight over the receive and stack locks (futex
 * wake-ups on every contended hold) and the progress thread's spinning
 * would take a CPU from the application and from the clients sharing the
 * machine.  So the application's waits count their polls (poll_gen) and
 * the progress thread, seeing the count move, parks for STACK_PARK_MS and
 * looks again.  Before a waiting thread sleeps in the kernel (on its
 * doorbell, without the NIC), it hands the NIC back: sleeps++ and, if the
 * progress thread is parked, a futex wake.  Parked, the progress thread
 * still looks at librettod's orders (stack_switch_service) every period.
 *
 * Better still, a waiting thread sleeps with the NIC's wait descriptor in
 * its own wait set (stack_wait_fd, stack_poller_nic_sleep): a frame then
 * wakes it directly, not the progress thread that would wake it in turn,
 * one cross-thread hop less per request.  While such a sleeper exists the
 * progress thread parks STACK_COVER_MS at a time, and takes over if it ever
 * finds frames waiting that nobody took for a whole period (a sleeper
 * that was cancelled or jumped out of its wait leaves the count high).
 *
 * The count is a hint that cannot get stuck: a thread that stops polling
 * for any reason (it computes, it blocks in a call we do not interpose, a
 * signal handler jumps out of a wait) stops moving it, and the progress
 * thread takes over within two park periods.  That bound is also the
 * longest a frame waits when the application leaves its wait loop without
 * sleeping, as a NAPI poll would hold it.
 */
void stack_poller_note(void)
{
	atomic_fetch_add_explicit(&stack.poll_gen, 1, memory_order_relaxed);
}

void stack_poller_sleep(void)
{
	/* seq_cst, pairs with stack_progress_park(): it stores parked and then
	 * loads sleeps, we store sleeps and then load parked; so either it
	 * sees our hand-over and does not park, or we see it parked and wake
	 * it.  The plain load first keeps the exchange (a write to a line the
	 * progress thread reads) off the common path. */
	atomic_fetch_add(&stack.sleeps, 1);
	if (atomic_load(&stack.parked) && atomic_exchange(&stack.parked, 0))
		syscall(SYS_futex, &stack.parked, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

int stack_wait_fd(void)
{
	int fd = -1;

	if (!stack_is_active() || !atomic_load_explicit(&stack.nic_ok, memory_order_relaxed))
		return -1;
	/* The receive lock keeps a switch from swapping the NIC under us; if
	 * somebody holds it, the caller just hands over instead. */
	if (pthread_mutex_trylock(&stack.rx_lock) != 0)
		return -1;
	if (stack.old_nic.ops == NULL && atomic_load_explicit(&stack.nic_ok, memory_order_relaxed)) {
		int n = 0;

		/*
		 * Arm it: a backend may signal its descriptor only after a
		 * receive that found nothing (the shm rings' sleeper protocol,
		 * ring.h: rx() asks netd for a doorbell then).  Frames taken
		 * here reach their sockets, whose waiters the caller's sleep
		 * watches.  Still more coming: no sleep on it now.
		 */
		for (int i = 0; i < 4; i++)
			if ((n = stack_rx_batch(&stack.nic, STACK_RX_BATCH)) <= 0)
				break;
		if (n == 0)
			fd = nic_wait_fd(&stack.nic);
	}
	pthread_mutex_unlock(&stack.rx_lock);
	return fd;
}

void stack_poller_nic_sleep(bool begin)
{
	if (begin) {
		atomic_fetch_add(&stack.nic_sleepers, 1);
	} else {
		atomic_fetch_sub(&stack.nic_sleepers, 1);
		/* Awake and about to receive: the progress thread stays aside. */
		atomic_fetch_add_explicit(&stack.poll_gen, 1, memory_order_relaxed);
	}
}

/* Park once if application threads poll or sleep on the NIC (see above);
 * false when the progress thread must run the NIC now.  gen and sleeps:
 * what it saw at its last look. */
static bool stack_progress_park(unsigned *gen, unsigned *sleeps)
{
	struct timespec period = { 0, STACK_PARK_MS * 1000000L };
	unsigned g, z;
	bool run;

	if (stack.old_nic.ops != NULL)
		return false;	/* a switch drains its old path: stay on duty */
	atomic_store(&stack.parked, 1);
	z = atomic_load(&stack.sleeps);
	g = atomic_load_explicit(&stack.poll_gen, memory_order_relaxed);
	if (atomic_load(&stack.nic_sleepers) > 0) {
		/* Covered; but nobody received for a whole period: look once
		 * (a trylock), which also re-arms a backend's doorbell, and
		 * take over if frames were waiting unseen. */
		run = g == *gen && stack_poll_rx(STACK_RX_BATCH, false) > 0;
		period.tv_nsec = STACK_COVER_MS * 1000000L;
	} else {
		/* A hand-over since the last look, or nobody polled. */
		run = z != *sleeps || g == *gen;
	}
	*gen = g;
	*sleeps = z;
	if (run) {
		atomic_store(&stack.parked, 0);
		return false;
	}
	/* Returns at once if a hand-over cleared parked meanwhile. */
	syscall(SYS_futex, &stack.parked, FUTEX_WAIT_PRIVATE, 1, &period, NULL, 0);
	atomic_store(&stack.parked, 0);
	return true;
}

static void *stack_progress_main(void *arg)
{
	const struct timespec backoff = { 0, 10000000 };
	uint64_t last_rx = 0;
	unsigned seen_gen = 0, seen_sleeps = 0;
	bool warned = false;

	while (!atomic_load_explicit(&stack.stopping, memory_order_relaxed)) {
		struct pollfd pfds[3];
		uint64_t t0, spin;
		int n;

		stack_claims_gc();
		stack_switch_service(false);
		if (stack_progress_park(&seen_gen, &seen_sleeps))
			continue;
		n = stack_poll_rx(STACK_RX_BATCH, true);
		if (n > 0) {
			last_rx = now_ns();
			continue;
		}
		nic_kick(&stack.nic);
		t0 = now_ns();
		spin = t0 - last_rx < STACK_BUSY_WINDOW_NS ? STACK_SPIN_BUSY_NS : STACK_SPIN_IDLE_NS;
		/* An application thread that starts polling ends the spin. */
		while (n == 0 && now_ns() - t0 < spin &&
		       atomic_load_explicit(&stack.poll_gen, memory_order_relaxed) == seen_gen)
			n = stack_poll(STACK_RX_BATCH);
		if (n > 0) {
			last_rx = now_ns();
			continue;
		}
		pfds[0].fd = nic_wait_fd(&stack.nic);
		pfds[0].events = POLLIN;
		pfds[0].revents = 0;
		/* librettod's orders, and the old path while a switch drains. */
		pfds[1].fd = stack.ctl_dead ? -1 : stack.lease.ctl_fd;
		pfds[1].events = POLLIN;
		pfds[1].revents = 0;
		pfds[2].fd = stack.old_nic.ops ? nic_wait_fd(&stack.old_nic) : -1;
		pfds[2].events = POLLIN;
		pfds[2].revents = 0;
		n = real.poll(pfds, 3, STACK_SLEEP_MS);
		if (n > 0 && pfds[1].revents)
			stack_switch_service(true);
		if ((n < 0 && errno != EINTR && errno != ENOMEM) ||
		    (n > 0 && (pfds[0].revents & (POLLERR | POLLNVAL)))) {
			/*
			 * A socket error (the next rx() reads and clears it),
			 * the link going down, or worse.  Keep receiving, but
			 * never spin on a descriptor that stays in error.
			 */
			if (!warned) {
				warned = true;
				fprintf(stderr, "libretto: the NIC's wait descriptor reports %s; "
					"retrying\n", n < 0 ? strerror(errno) :
					(pfds[0].revents & POLLNVAL) ? "that it is closed" : "an error");
			}
			if (n > 0)
				atomic_store(&stack.path_failed, true);
			nanosleep(&backoff, NULL);
		}
	}
	return NULL;
}

static void stack_tcpip_ready(void *arg)
{
	pthread_setname_np(pthread_self(), "libretto-tcpip");
	sem_post(&stack.tcpip_ready);
}

/*
 * fork(): the child gets one thread and copies of every lock.  Taking the
 * start lock (no half-started stack is copied), then, if the stack runs,
 * the receive and core locks around fork() makes them free (and lwIP's
 * state consistent) in the child; the child then stops using the NIC, whose
 * rings are not mapped there.  The handlers are registered by stack_init(),
 * before the interposition layer registers its own, so its lock is taken
 * first (prepare handlers run in reverse order of registration).
 */
static void stack_atfork_prepare(void)
{
	pthread_mutex_lock(&stack.start_lock);
	stack.fork_locked = stack_is_active();
	if (stack.fork_locked) {
		pthread_mutex_lock(&stack.rx_lock);
		LOCK_TCPIP_CORE();
	}
}

static void stack_atfork_parent(void)
{
	if (stack.fork_locked) {
		UNLOCK_TCPIP_CORE();
		pthread_mutex_unlock(&stack.rx_lock);
	}
	pthread_mutex_unlock(&stack.start_lock);
}

static void stack_atfork_child(void)
{
	/* The other threads did not come along: nobody sleeps on the NIC
	 * here, whatever the parent's count said (a keeper's progress thread
	 * would otherwise stand aside for sleepers that do not exist). */
	atomic_store(&stack.nic_sleepers, 0);
	atomic_store(&stack.parked, 0);
	if (stack.fork_locked) {
		atomic_store(&stack.nic_ok, false);
		UNLOCK_TCPIP_CORE();
		pthread_mutex_unlock(&stack.rx_lock);
	}
	pthread_mutex_unlock(&stack.start_lock);
}

/* At exit, the progress thread stops at its next turn; nobody waits for it
 * (it may be asleep for up to STACK_SLEEP_MS) and nothing here takes a
 * lock it could hold. */
__attribute__((destructor)) static void stack_fini(void)
{
	atomic_store(&stack.stopping, true);
}

static int stack_map_region(int fd)
{
	struct libretto_region *r;
	struct stat st;

	if (fstat(fd, &st) < 0 || st.st_size < LIBRETTO_REGION_SIZE) {
		fprintf(stderr, "libretto: bad lease: region_fd is not a %d-byte region\n",
			LIBRETTO_REGION_SIZE);
		return -EINVAL;
	}
	r = mmap(NULL, LIBRETTO_REGION_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (r == MAP_FAILED) {
		int err = -errno;

		fprintf(stderr, "libretto: cannot map the counters region: %s\n", strerror(-err));
		return err;
	}
	if (r->magic != LIBRETTO_REGION_MAGIC || r->version != LIBRETTO_REGION_VERSION) {
		fprintf(stderr, "libretto: bad lease: counters region has magic %#x version %u, "
			"want %#x version %u\n", r->magic, r->version,
			LIBRETTO_REGION_MAGIC, LIBRETTO_REGION_VERSION);
		munmap(r, LIBRETTO_REGION_SIZE);
		return -EINVAL;
	}
	stack.region = r;
	return 0;
}

/*
 * lwIP draws its first ephemeral port from LWIP_RAND(), which Debian's build
 * defines as rand(): unseeded, every process would start at the same port,
 * so a restarted program reuses the 4-tuples of its previous life while the
 * peer may still hold them in TIME_WAIT.  lwip_init() runs in this thread
 * inside tcpip_init(), so give it a private, randomly seeded rand() state
 * for that call and put the application's state back afterwards: the
 * program's own rand() sequence is not disturbed.
 */
static void stack_seeded_lwip_init(void)
{
	static char state[64];
	unsigned seed = 0;
	char *app_state;

	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed))
		seed = (unsigned)getpid() ^ (unsigned)time(NULL);
	app_state = initstate(seed, state, sizeof(state));
	tcpip_init(stack_tcpip_ready, NULL);
	if (app_state)
		setstate(app_state);
}

/*
 * lwIP's and our threads start with every signal blocked (they inherit the
 * creator's mask): they must never run an application's signal handler,
 * which may call into the stack while they hold its lock.
 */
static int stack_start_lwip(void)
{
	sigset_t all, old;

	if (sem_init(&stack.tcpip_ready, 0, 0) < 0)
		return -errno;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	stack_seeded_lwip_init();
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	while (sem_wait(&stack.tcpip_ready) < 0 && errno == EINTR)
		;
	sem_destroy(&stack.tcpip_ready);
	return 0;
}

static int stack_start_progress(void)
{
	sigset_t all, old;
	pthread_attr_t attr;
	pthread_t tid;
	int err;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	err = pthread_create(&tid, &attr, stack_progress_main, NULL);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		fprintf(stderr, "libretto: cannot start the progress thread: %s\n", strerror(err));
		return -err;
	}
	pthread_setname_np(tid, "libretto-rx");
	return 0;
}

/* The one netif, up, with link, default route; going up sends the
 * gratuitous ARP that tells the segment our MAC. */
static int stack_add_netif(void)
{
	ip4_addr_t ip, mask, gw;
	struct netif *ok;

	ip.addr = stack.lease.ip.s_addr;
	mask.addr = stack.lease.netmask.s_addr;
	gw.addr = stack.lease.gw.s_addr;
	LOCK_TCPIP_CORE();
	ok = netif_add(&stack.netif, &ip, &mask, &gw, NULL, stack_netif_init, ethernet_input);
	if (ok) {
		netif_set_default(&stack.netif);
		netif_set_link_up(&stack.netif);
		netif_set_up(&stack.netif);
	}
	UNLOCK_TCPIP_CORE();
	if (!ok) {
		fprintf(stderr, "libretto: lwIP refused the interface\n");
		return -EINVAL;
	}
	return 0;
}

/*
 * The constructor's part: everything that can be checked without starting
 * anything.  A bad lease ends the process (runtime.c), so a program started
 * with a lease never silently runs on the kernel stack; the NIC and lwIP
 * wait for stack_start().
 */
int stack_init(void)
{
	int err;

	err = stack_lease_read(&stack.lease);
	if (err < 0)
		return err;
	/* Before lwIP runs a single instruction. */
	err = stack_symcheck();
	if (err < 0)
		goto fail;
	err = stack_lease_move_fds(&stack.lease);
	if (err < 0)
		goto fail;
	err = stack_map_region(stack.lease.region_fd);
	if (err < 0)
		goto fail;
	err = pthread_atfork(stack_atfork_prepare, stack_atfork_parent, stack_atfork_child);
	if (err) {
		fprintf(stderr, "libretto: cannot register the fork handlers: %s\n", strerror(err));
		err = -err;
		goto fail;
	}
	stack.leased = true;
	stack.lease_pid = getpid();
	return 0;

fail:
	stack_lease_free(&stack.lease);
	return err;
}

/*
 * A forked child and its parent hold the same lease; the NIC's rings can
 * serve one process only.  The first process to start the stack claims it
 * in the shared region.  Returns 0 or -ENETDOWN with the reason printed.
 */
static int stack_lease_handover(pid_t pid);
static int stack_ctl_call(const char *req, size_t len, char *rep, size_t cap);
static void stack_switch_init(void);
static void stack_switch_keeper(void);

static int stack_claim_nic(void)
{
	uint32_t owner = 0, me = (uint32_t)getpid();

	if (__atomic_compare_exchange_n(&stack.region->owner_pid, &owner, me, false,
					__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE) || owner == me) {
		/* A child forked before the stack started (redis's
		 * daemonize): it is the application from now on, for `libretto
		 * ps` too (librettod accepts a direct child only; a deeper
		 * descendant stays shown under the lease's pid). */
		if (getpid() != stack.lease_pid)
			(void)stack_lease_handover(getpid());
		return 0;
	}
	fprintf(stderr, "libretto: pid %u cannot start the TCP/IP stack: the NIC of this "
		"lease is owned by pid %u (the first process of the lease to use it); "
		"this process's TCP/IP sockets fail with ENETDOWN\n", me, owner);
	return -ENETDOWN;
}

/* Under start_lock: open the NIC, start lwIP, the netif and the progress
 * thread.  Returns 0 or -errno with a message printed. */
static int stack_start_locked(void)
{
	int err;

	err = stack_claim_nic();
	if (err < 0)
		return err;
	stack.nic.ops = stack.lease.ops;
	memcpy(stack.nic.mac, stack.lease.mac, 6);
	stack.nic.mtu = 1500;
	err = stack.nic.ops->open(&stack.nic, &stack.lease.kv);
	if (err < 0) {
		fprintf(stderr, "libretto: cannot open the %s NIC from the lease: %s\n",
			stack.nic.ops->name, strerror(-err));
		return err;
	}
	atomic_store(&stack.nic_ok, true);
	stack_switch_init();

	/* From here on lwIP runs; a failure leaves it running idle (it has no
	 * interface, or one whose NIC is closed). */
	err = stack_start_lwip();
	if (err < 0)
		goto fail_nic;
	err = stack_add_netif();
	if (err < 0)
		goto fail_nic;
	/* The progress thread checks stack.active before it receives. */
	atomic_store_explicit(&stack.active, true, memory_order_release);
	err = stack_start_progress();
	if (err < 0) {
		atomic_store(&stack.active, false);
		atomic_store(&stack.nic_ok, false);
		return err;
	}
	return 0;

fail_nic:
	atomic_store(&stack.nic_ok, false);
	stack.nic.ops->close(&stack.nic);
	return err;
}

int stack_start(void)
{
	int state = atomic_load_explicit(&stack.start_state, memory_order_acquire);
	int err;

	if (state == STACK_RUNNING)
		return 0;
	if (state == STACK_FAILED)
		return -ENETDOWN;
	if (!stack.leased)
		return -ENOENT;
	pthread_mutex_lock(&stack.start_lock);
	state = atomic_load_explicit(&stack.start_state, memory_order_acquire);
	if (state == STACK_NOT_STARTED) {
		err = stack_start_locked();
		if (err < 0 && err != -ENETDOWN)
			fprintf(stderr, "libretto: the library OS could not start in pid %d; "
				"its TCP/IP sockets fail with ENETDOWN\n", (int)getpid());
		state = err < 0 ? STACK_FAILED : STACK_RUNNING;
		atomic_store_explicit(&stack.start_state, state, memory_order_release);
	}
	pthread_mutex_unlock(&stack.start_lock);
	return state == STACK_RUNNING ? 0 : -ENETDOWN;
}

/* ------------------------------------------------------------ keeper */

void stack_keeper_prepare(void)
{
	/* The receive path and linkoutput check nic_ok under their locks,
	 * which the fork handlers take: from the fork on, this process sends
	 * and receives nothing, and the keeper's copy of the NIC state is the
	 * NIC's. */
	atomic_store(&stack.nic_ok, false);
	if (stack.nic.ops->fork_keep)
		stack.nic.ops->fork_keep(&stack.nic, true);
}

void stack_keeper_abort(void)
{
	if (stack.nic.ops->fork_keep)
		stack.nic.ops->fork_keep(&stack.nic, false);
	atomic_store(&stack.nic_ok, true);
}

/* Tell librettod that pid (a child of the lease's pid) is the
 * application's process now; 0 or -errno. */
static int stack_lease_handover(pid_t pid)
{
	char req[64], rep[512];
	int n, err;

	if (stack.lease.ctl_fd < 0)
		return -EBADF;
	n = snprintf(req, sizeof(req), "handover\npid=%d\n", (int)pid);
	/* Under the stack lock (once it runs): the progress thread reads the
	 * lease connection too (mode switching). */
	stack_lock();
	err = stack_ctl_call(req, (size_t)n, rep, sizeof(rep));
	stack_unlock();
	if (err < 0)
		return -EIO;
	return strstr(rep, "errno=0") != NULL ? 0 : -EPERM;
}

void stack_keeper_parent(pid_t keeper)
{
	if (stack.nic.ops->fork_keep)
		stack.nic.ops->fork_keep(&stack.nic, false);
	if (stack_lease_handover(keeper) < 0)
		fprintf(stderr, "libretto: librettod did not take the hand-over of the lease to "
			"pid %d (libretto ps may show the application as exited)\n", (int)keeper);
}

/* lwIP's timers, which its tcpip thread ran in the parent. */
static void *stack_timer_main(void *arg)
{
	(void)arg;
	while (!atomic_load_explicit(&stack.stopping, memory_order_relaxed)) {
		u32_t ms;

		stack_lock();
		sys_check_timeouts();
		ms = sys_timeouts_sleeptime();
		stack_unlock();
		if (ms > 50)
			ms = 50;
		struct timespec ts = { 0, (long)ms * 1000000L };
		nanosleep(&ts, NULL);
	}
	return NULL;
}

int stack_keeper_child(void)
{
	pthread_t tid;
	sigset_t all, old;
	int err;

	__atomic_store_n(&stack.region->owner_pid, (uint32_t)getpid(), __ATOMIC_RELEASE);
	if (stack.nic.ops->fork_keep)
		stack.nic.ops->fork_keep(&stack.nic, false);
	stack.ctl_hold_ppid = getppid();
	stack_switch_keeper();
	atomic_store(&stack.stopping, false);
	atomic_store(&stack.nic_ok, true);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&tid, NULL, stack_timer_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		fprintf(stderr, "libretto: keeper: cannot start lwIP's timers: %s\n", strerror(err));
		return -err;
	}
	pthread_detach(tid);
	return stack_start_progress();
}

/* ------------------------------------------------- indirect: port claims */

bool stack_indirect(void)
{
	return stack.leased && (stack.lease.ops == &nic_shm_ops || stack.switchable);
}

/* Claimed (proto, port) pairs and how many sockets use each; under the
 * stack lock. */
#define STACK_MAX_CLAIMS 4096
static struct {
	uint8_t proto;
	uint16_t port;
	uint32_t refs;
} stack_claims[STACK_MAX_CLAIMS];
static int stack_nclaims;

/*
 * One request on the lease connection and its reply, under the core lock
 * (so requests never interleave).  librettod may have sent an order just
 * before (ctl.h: its first key is order=): it is kept for the progress
 * thread, and the reply is the next message.  0 or -errno.
 */
static int stack_ctl_call(const char *req, size_t len, char *rep, size_t cap)
{
	int fd = stack.lease.ctl_fd;

	if (fd < 0 || stack.ctl_dead)
		return -ENOTCONN;
	if (ctl_send(fd, req, len, NULL, 0) < 0)
		return -EIO;
	for (;;) {
		int fds[CTL_MAX_FDS], nfds = CTL_MAX_FDS;
		int n = ctl_recv(fd, rep, cap, fds, &nfds);

		if (n <= 0)
			return -EIO;
		if (strncmp(rep, "order=", 6) != 0) {
			for (int i = 0; i < nfds; i++)
				real.close(fds[i]);
			return 0;
		}
		if (stack.order.pending || (size_t)n >= sizeof(stack.order.text)) {
			fprintf(stderr, "libretto: an order from librettod was dropped (another "
				"one is pending)\n");
			for (int i = 0; i < nfds; i++)
				real.close(fds[i]);
			continue;
		}
		memcpy(stack.order.text, rep, (size_t)n + 1);
		memcpy(stack.order.fds, fds, sizeof(int) * (size_t)nfds);
		stack.order.nfds = nfds;
		__atomic_store_n(&stack.order.pending, true, __ATOMIC_RELEASE);
	}
}

/* One `port` request on the lease connection; 0 or -errno. */
static int stack_port_rpc(const char *op, uint8_t proto, uint16_t port)
{
	char req[128], rep[512];
	int n;

	n = snprintf(req, sizeof(req), "port\nop=%s\nproto=%s\nport=%u\nip=any\n", op,
		     proto == REGION_PROTO_TCP ? "tcp" : "udp", (unsigned)port);
	if (stack_ctl_call(req, (size_t)n, rep, sizeof(rep)) < 0)
		return stack.lease.ctl_fd < 0 ? -ENOTCONN : -EIO;
	const char *e = strstr(rep, "errno=");

	if (e == NULL)
		return -EPROTO;
	n = atoi(e + 6);
	return n > 0 ? -n : 0;
}

int stack_port_claim(uint8_t proto, uint16_t *port)
{
	int i, err;

	if (!stack_indirect())
		return 0;
	if (*port == 0) {
		/* An ephemeral port: ours to pick, librettod to grant. */
		uint32_t r = 0;

		if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
			r = (uint32_t)getpid() * 2654435761u;
		for (int tries = 0; tries < 64; tries++) {
			uint16_t cand = (uint16_t)(49152 + (r + (uint32_t)tries * 7919u) % 16384);
			bool mine = false;

			for (i = 0; i < stack_nclaims; i++)
				if (stack_claims[i].proto == proto && stack_claims[i].port == cand)
					mine = true;
			if (mine)
				continue;
			*port = cand;
			err = stack_port_claim(proto, port);
			if (err != -EADDRINUSE)
				return err;
		}
		*port = 0;
		return -EADDRINUSE;
	}
	for (i = 0; i < stack_nclaims; i++) {
		if (stack_claims[i].proto == proto && stack_claims[i].port == *port) {
			stack_claims[i].refs++;
			return 0;
		}
	}
	if (stack_nclaims == STACK_MAX_CLAIMS)
		return -ENOBUFS;
	err = stack_port_rpc("add", proto, *port);
	/*
	 * In direct mode the claim only prepares a switch (the address is
	 * ours alone): without librettod (it died or restarts) the socket
	 * works on, unclaimed, as it would without switching.
	 */
	if ((err == -EIO || err == -ENOTCONN) && strcmp(stack.mode, "direct") == 0)
		err = 0;
	if (err < 0)
		return err;
	stack_claims[stack_nclaims].proto = proto;
	stack_claims[stack_nclaims].port = *port;
	stack_claims[stack_nclaims].refs = 1;
	stack_nclaims++;
	return 0;
}

/* A TCP pcb still uses the local port (a connection accepted on a closed
 * listener, one closing or in TIME_WAIT): its segments still leave from
 * it, and netd lets out only what comes from ports we own. */
static bool stack_tcp_port_busy(uint16_t port)
{
	for (struct tcp_pcb *p = tcp_active_pcbs; p != NULL; p = p->next)
		if (p->local_port == port)
			return true;
	for (struct tcp_pcb *p = tcp_tw_pcbs; p != NULL; p = p->next)
		if (p->local_port == port)
			return true;
	return false;
}

void stack_port_unclaim(uint8_t proto, uint16_t port)
{
	if (!stack_indirect() || port == 0)
		return;
	for (int i = 0; i < stack_nclaims; i++) {
		if (stack_claims[i].proto != proto || stack_claims[i].port != port)
			continue;
		if (--stack_claims[i].refs == 0 &&
		    !(proto == REGION_PROTO_TCP && stack_tcp_port_busy(port))) {
			(void)stack_port_rpc("del", proto, port);
			stack_claims[i] = stack_claims[--stack_nclaims];
		}
		/* refs 0 but busy: stack_claims_gc() releases it later. */
		return;
	}
}

/* Release the claims no socket holds once no pcb uses their port any more
 * (after TIME_WAIT).  From the progress thread, about once a second. */
static void stack_claims_gc(void)
{
	static uint64_t last;
	struct timespec ts;
	uint64_t now;

	if (!stack_indirect())
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (uint64_t)ts.tv_sec;
	if (now == last)
		return;
	last = now;
	stack_lock();
	for (int i = 0; i < stack_nclaims; i++) {
		if (stack_claims[i].refs != 0 ||
		    (stack_claims[i].proto == REGION_PROTO_TCP &&
		     stack_tcp_port_busy(stack_claims[i].port)))
			continue;
		(void)stack_port_rpc("del", stack_claims[i].proto, stack_claims[i].port);
		stack_claims[i--] = stack_claims[--stack_nclaims];
	}
	stack_unlock();
}

/* ------------------------------------------------------- mode switching */

/*
 * librettod moves a switchable application between direct and indirect
 * mode (docs/switching.md).  Its order comes on the lease connection and
 * the progress thread carries it out: open the new path, swap it in under
 * the receive and stack locks (lwIP and every connection stay as they are;
 * only the netif's MAC changes), announce the new MAC with gratuitous ARP,
 * and keep receiving from the old path until the peer's frames stop coming
 * there, then close it and tell librettod, which frees it.
 */
/* The old path drains at least this long (the peer has the gratuitous
 * ARPs of 0 and 50 ms by then; frames in flight take microseconds) ... */
#define SWITCH_DRAIN_MIN_NS 400000000ull
/* ... and until nothing came from it for this long. */
#define SWITCH_DRAIN_IDLE_NS 200000000ull
/* How often a busy progress thread (which never sleeps in poll) looks at
 * the lease connection for orders. */
#define SWITCH_CTL_PERIOD_NS 20000000ull

static void stack_switch_init(void)
{
	const struct kv *kv = &stack.lease.kv;
	const char *v = kv_get(kv, "switchable");

	stack.switchable = v != NULL && strcmp(v, "1") == 0;
	snprintf(stack.mode, sizeof(stack.mode), "%s",
		 stack.lease.ops == &nic_shm_ops ? "indirect" : "direct");
	/* The backend's descriptors: every *_fd but the region and the lease. */
	stack.ncur_fds = 0;
	for (int i = 0; i < kv->n && stack.ncur_fds < CTL_MAX_FDS; i++) {
		const char *key = kv->pair[i].key;
		size_t len = strlen(key);
		unsigned long fd;

		if (len <= 3 || strcmp(key + len - 3, "_fd") != 0 || !strcmp(key, "region_fd") ||
		    !strcmp(key, "ctl_fd"))
			continue;
		if (kv_get_ulong(kv, key, &fd) == 0 && fd <= INT32_MAX)
			stack.cur_fds[stack.ncur_fds++] = (int)fd;
	}
}

/* A request to librettod about the switch; the reply only acknowledges. */
static void stack_switch_tell(const char *text)
{
	char rep[256];

	stack_lock();
	if (stack_ctl_call(text, strlen(text), rep, sizeof(rep)) < 0 && !stack.ctl_dead)
		fprintf(stderr, "libretto: could not tell librettod: %.40s...\n", text);
	stack_unlock();
}

static void stack_reattach_begin(void);   /* tag l */

/* Read an order if one is waiting on the lease connection (or see that
 * librettod closed it).  Without locks held. */
static void stack_ctl_poll(void)
{
	struct pollfd p = { .fd = stack.lease.ctl_fd, .events = POLLIN };
	char buf[sizeof(stack.order.text)];
	int fds[CTL_MAX_FDS], nfds = CTL_MAX_FDS, n;

	if (p.fd < 0 || stack.ctl_dead)
		return;
	/* A keeper leaves the lease connection to its parent until that has
	 * told librettod about it (stack_keeper_parent) and exited. */
	if (stack.ctl_hold_ppid && getppid() == stack.ctl_hold_ppid)
		return;
	stack.ctl_hold_ppid = 0;
	if (real.poll(&p, 1, 0) <= 0)
		return;
	stack_lock();
	/* Another thread may have read it meanwhile (stack_ctl_call). */
	p.revents = 0;
	if (stack.order.pending || real.poll(&p, 1, 0) <= 0)
		goto out;
	n = ctl_recv(p.fd, buf, sizeof(buf), fds, &nfds);
	if (n == -EMSGSIZE || n == -EINTR)
		goto out;
	if (n <= 0) {
		/* librettod is gone: the application runs on; nothing more
		 * can be switched until a new librettod takes the lease back
		 * (stack_reattach_service, tag l). */
		stack.ctl_dead = true;
		stack_reattach_begin();
		goto out;
	}
	if (strncmp(buf, "order=", 6) == 0) {
		memcpy(stack.order.text, buf, (size_t)n + 1);
		memcpy(stack.order.fds, fds, sizeof(int) * (size_t)nfds);
		stack.order.nfds = nfds;
		__atomic_store_n(&stack.order.pending, true, __ATOMIC_RELEASE);
	} else {
		for (int i = 0; i < nfds; i++)
			real.close(fds[i]);
	}
out:
	stack_unlock();
}

/* Close the old path (drained, or a new switch comes before it is). */
static void stack_switch_close_old(void)
{
	struct nic old;
	char text[64];

	pthread_mutex_lock(&stack.rx_lock);
	old = stack.old_nic;
	stack.old_nic.ops = NULL;
	pthread_mutex_unlock(&stack.rx_lock);
	if (old.ops == NULL)
		return;
	/* A thread that queued frames on it before the swap may still be
	 * ringing its doorbell (stack_unlock_batch): a kick takes microseconds;
	 * look for a moment without one, for at most 100 ms. */
	for (int i = 0; i < 100 && atomic_load(&stack.kicks_in_flight) > 0; i++) {
		const struct timespec ms = { 0, 1000000 };

		nanosleep(&ms, NULL);
	}
	for (int i = 0; i < stack.nold_fds; i++)
		stack_private_forget(stack.old_fds[i]);
	stack.nold_fds = 0;
	old.ops->close(&old);
	snprintf(text, sizeof(text), "switch_drained\nmode=%s\n", stack.mode);
	stack_switch_tell(text);
}

/*
 * In the keeper (stack_keeper_child): a switch's old path, still draining
 * when the owner exited, was not inherited (only the current NIC's memory
 * is, fork_keep): drop it without touching it, close our copies of its
 * descriptors, and let librettod free it.
 */
static void stack_switch_keeper(void)
{
	if (stack.old_nic.ops == NULL)
		return;
	stack.old_nic.ops = NULL;
	for (int i = 0; i < stack.nold_fds; i++) {
		stack_private_forget(stack.old_fds[i]);
		real.close(stack.old_fds[i]);
	}
	stack.nold_fds = 0;
	/* Told once the parent is gone (stack_switch_service). */
	stack.keeper_drained = true;
}

static void stack_switch_fail(const char *mode, const char *why)
{
	char text[256];

	fprintf(stderr, "libretto: the switch to %s mode failed: %s; staying in %s mode\n",
		mode, why, stack.mode);
	snprintf(text, sizeof(text), "switch_failed\nmode=%s\nerror=%s\n", mode, why);
	stack_switch_tell(text);
}

static void stack_switch_do(char *text, int *fds, int nfds)
{
	struct nic n = { .mtu = 1500 };
	int taken[CTL_MAX_FDS], k, err;
	const char *mode, *backend;
	char buf[96];
	struct kv kv;
	uint64_t now;

	k = stack_lease_adopt(text, fds, nfds, &kv, taken);
	if (k < 0) {
		stack_switch_fail("?", "the order's descriptors could not be taken");
		return;
	}
	mode = kv_get(&kv, "mode");
	backend = kv_get(&kv, "backend");
	n.ops = backend ? nic_ops_by_name(backend) : NULL;
	if (mode == NULL || (strcmp(mode, "direct") != 0 && strcmp(mode, "indirect") != 0) ||
	    n.ops == NULL || stack_lease_mac(kv_get(&kv, "mac"), n.mac) < 0) {
		/* Not opened: the descriptors are still ours to close. */
		for (int i = 0; i < k; i++) {
			stack_private_forget(taken[i]);
			real.close(taken[i]);
		}
		stack_switch_fail(mode ? mode : "?", "malformed order");
		kv_free(&kv);
		return;
	}
	/* A switch before the last one drained: the older path goes now. */
	stack_switch_close_old();
	err = n.ops->open(&n, &kv);
	if (err < 0) {
		/* open() owns the descriptors, and closed what it took. */
		for (int i = 0; i < k; i++)
			stack_private_forget(taken[i]);
		snprintf(buf, sizeof(buf), "cannot open the %s path: %s", n.ops->name,
			 strerror(-err));
		stack_switch_fail(mode, buf);
		kv_free(&kv);
		return;
	}
	now = now_ns();
	pthread_mutex_lock(&stack.rx_lock);
	stack_lock_batch();
	stack.old_nic = stack.nic;
	stack.old_nic.defer_kick = false;
	nic_kick(&stack.old_nic);
	if (stack.old_nic.ops->quiesce)
		stack.old_nic.ops->quiesce(&stack.old_nic);
	stack.nic = n;
	stack.nic.defer_kick = true;
	memcpy(stack.netif.hwaddr, n.mac, ETH_HWADDR_LEN);
	memcpy(stack.old_fds, stack.cur_fds, sizeof(stack.cur_fds));
	stack.nold_fds = stack.ncur_fds;
	memcpy(stack.cur_fds, taken, sizeof(int) * (size_t)k);
	stack.ncur_fds = k;
	snprintf(stack.mode, sizeof(stack.mode), "%s", mode);
	stack.switch_ns = now;
	atomic_store(&stack.old_last_rx_ns, now);
	atomic_store(&stack.path_failed, false);
	stack.rx_error_reported = false;
	stack.want_sent = false;
	/* The peer learns the new MAC (a gratuitous ARP overrides its entry
	 * at once); more follow while the old path still gets frames. */
	etharp_gratuitous(&stack.netif);
	stack.garp_count = 1;
	stack.garp_next_ns = now + 50000000ull;
	stack_unlock_batch();
	pthread_mutex_unlock(&stack.rx_lock);
	kv_free(&kv);
	snprintf(buf, sizeof(buf), "switched\nmode=%s\n", mode);
	stack_switch_tell(buf);
}

/* ------------------------------------------- supervisor restart (tag l) */

/*
 * When librettod dies (or is restarted) the lease connection reaches EOF,
 * but the lease lives on: a new librettod recovers it from its state record
 * and waits for us to re-attach (docs/librettod.md, "Restart").  The
 * progress thread connects to the control socket every
 * REATTACH_PERIOD_NS for at most REATTACH_FOR_NS, never blocking: the
 * connection is non-blocking and the reply is looked for at each turn.  On
 * success the new connection takes the old one's private descriptor number
 * (dup3), so nothing else in the runtime changes; the port claims are sent
 * again (idempotent) because direct mode let binds go unclaimed meanwhile.
 */
#define REATTACH_FOR_NS 60000000000ull
#define REATTACH_PERIOD_NS 100000000ull
#define REATTACH_REPLY_NS 2000000000ull

static void stack_reattach_begin(void)
{
	if (!kv_get(&stack.lease.kv, "secret") || !kv_get(&stack.lease.kv, "id"))
		return;    /* an older librettod: it cannot take us back */
	stack.reattach_fd = -1;
	stack.reattach_next_ns = now_ns();
	stack.reattach_until_ns = stack.reattach_next_ns + REATTACH_FOR_NS;
	fprintf(stderr, "libretto: librettod closed the lease connection; running on, and "
		"re-attaching when a new librettod is up\n");
}

static void stack_reattach_drop(void)
{
	if (stack.reattach_fd >= 0)
		real.close(stack.reattach_fd);
	stack.reattach_fd = -1;
}

/* Connect and send the request; the reply is read at a later turn. */
static void stack_reattach_send(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = stack_lease_ctl_path();
	char text[512], fds[CTL_MAX_FDS * 12];
	size_t used = 0;
	int fd, n;

	if (strlen(path) >= sizeof(sa.sun_path))
		return;
	strcpy(sa.sun_path, path);
	fd = real.socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return;
	if (real.connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		/* No librettod yet (ENOENT, ECONNREFUSED) or its backlog is full. */
		real.close(fd);
		return;
	}
	fds[0] = '\0';
	for (int i = 0; i < stack.ncur_fds && used < sizeof(fds); i++)
		used += (size_t)snprintf(fds + used, sizeof(fds) - used, "%s%d", i ? "," : "",
					 stack.cur_fds[i]);
	n = snprintf(text, sizeof(text), "reattach\nid=%s\nsecret=%s\nmode=%s\nfds=%s\nregion=%d\n",
		     kv_get(&stack.lease.kv, "id"), kv_get(&stack.lease.kv, "secret"), stack.mode,
		     fds, stack.lease.region_fd);
	if (n <= 0 || (size_t)n >= sizeof(text) || ctl_send(fd, text, (size_t)n, NULL, 0) < 0) {
		real.close(fd);
		return;
	}
	stack.reattach_fd = fd;
	stack.reattach_sent_ns = now_ns();
}

/* The reply came: errno=0 puts the connection in the lease's place. */
static void stack_reattach_reply(void)
{
	char rep[512];
	int fds[CTL_MAX_FDS], nfds = CTL_MAX_FDS, n, err, flags;
	const char *e;

	n = ctl_recv(stack.reattach_fd, rep, sizeof(rep), fds, &nfds);
	if (n == -EAGAIN)
		return;
	for (int i = 0; n > 0 && i < nfds; i++)
		real.close(fds[i]);
	e = n > 0 ? strstr(rep, "errno=") : NULL;
	err = e ? atoi(e + 6) : -1;
	if (err != 0) {
		stack_reattach_drop();
		if (err > 0) {
			/* This librettod does not know the lease: no point in asking again. */
			e = strstr(rep, "error=");
			fprintf(stderr, "libretto: the new librettod refused to take the lease back "
				"(%.*s); running on without it\n", e ? (int)strcspn(e + 6, "\n") : 5,
				e ? e + 6 : "errno");
			stack.reattach_until_ns = 0;
		}
		return;
	}
	flags = real.fcntl(stack.reattach_fd, F_GETFL, 0);
	if (flags >= 0)
		real.fcntl(stack.reattach_fd, F_SETFL, flags & ~O_NONBLOCK);
	stack_lock();
	if (real.dup3(stack.reattach_fd, stack.lease.ctl_fd, O_CLOEXEC) < 0) {
		stack_unlock();
		fprintf(stderr, "libretto: re-attaching to the lease: dup3: %s\n", strerror(errno));
		stack_reattach_drop();
		return;
	}
	stack_reattach_drop();
	stack.ctl_dead = false;
	stack.reattach_until_ns = 0;
	/* Binds of direct mode went unclaimed while librettod was away. */
	if (stack.switchable || stack.lease.ops == &nic_shm_ops)
		for (int i = 0; i < stack_nclaims; i++)
			(void)stack_port_rpc("add", stack_claims[i].proto, stack_claims[i].port);
	stack_unlock();
	fprintf(stderr, "libretto: re-attached to the lease (librettod restarted)\n");
}

/* From the progress thread while the lease connection is dead. */
static void stack_reattach_service(void)
{
	uint64_t now = now_ns();

	if (!stack.reattach_until_ns)
		return;
	if (stack.reattach_fd >= 0) {
		struct pollfd p = { .fd = stack.reattach_fd, .events = POLLIN };

		if (real.poll(&p, 1, 0) > 0)
			stack_reattach_reply();
		else if (now - stack.reattach_sent_ns >= REATTACH_REPLY_NS)
			stack_reattach_drop();
		return;
	}
	if (now >= stack.reattach_until_ns) {
		stack.reattach_until_ns = 0;
		fprintf(stderr, "libretto: no librettod took the lease back within %llu s; running "
			"on without it\n", REATTACH_FOR_NS / 1000000000ull);
		return;
	}
	if (now < stack.reattach_next_ns)
		return;
	stack.reattach_next_ns = now + REATTACH_PERIOD_NS;
	stack_reattach_send();
}

/* From the progress thread at every turn: orders, the old path's drain,
 * and a failed path's request to move.  readable: poll saw the lease
 * connection readable. */
static void stack_switch_service(bool readable)
{
	uint64_t now = now_ns();
	bool pending;

	if (stack.ctl_dead)
		stack_reattach_service();      /* tag l */
	if (readable || (stack.switchable && now >= stack.ctl_next_ns)) {
		stack.ctl_next_ns = now + SWITCH_CTL_PERIOD_NS;
		stack_ctl_poll();
	}
	if (stack.keeper_drained && !(stack.ctl_hold_ppid && getppid() == stack.ctl_hold_ppid)) {
		char text[64];

		stack.keeper_drained = false;
		snprintf(text, sizeof(text), "switch_drained\nmode=%s\n", stack.mode);
		stack_switch_tell(text);
	}
	/* Set under the core lock; a plain read first keeps the lock out of
	 * every turn of a busy progress thread. */
	pending = __atomic_load_n(&stack.order.pending, __ATOMIC_ACQUIRE);
	if (pending)
		stack_lock();
	if (pending && stack.order.pending) {
		char text[sizeof(stack.order.text)];
		int fds[CTL_MAX_FDS], nfds = stack.order.nfds;

		memcpy(text, stack.order.text, sizeof(text));
		memcpy(fds, stack.order.fds, sizeof(fds));
		stack.order.pending = false;
		stack_unlock();
		stack_switch_do(text, fds, nfds);
		now = now_ns();
	} else if (pending) {
		stack_unlock();
	}
	if (stack.old_nic.ops != NULL) {
		uint64_t last = atomic_load_explicit(&stack.old_last_rx_ns, memory_order_relaxed);

		if (now >= stack.garp_next_ns && (stack.garp_count < 4 || now - last < 1000000000ull)) {
			static const uint64_t gap_ms[] = { 50, 200, 750, 1000 };

			stack_lock();
			etharp_gratuitous(&stack.netif);
			stack_unlock();
			stack.garp_next_ns = now + gap_ms[stack.garp_count < 4 ? stack.garp_count : 3] *
						   1000000ull;
			stack.garp_count++;
		}
		if (now - stack.switch_ns >= SWITCH_DRAIN_MIN_NS && now - last >= SWITCH_DRAIN_IDLE_NS)
			stack_switch_close_old();
	}
	if (stack.switchable && !stack.want_sent && atomic_load(&stack.path_failed) &&
	    strcmp(stack.mode, "direct") == 0) {
		stack.want_sent = true;
		fprintf(stderr, "libretto: the NIC function failed; asking librettod to move this "
			"application to indirect mode\n");
		stack_switch_tell("switch_want\nmode=indirect\nreason=nic-error\n");
	}
}
