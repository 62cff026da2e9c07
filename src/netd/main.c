/* libretto-netd: start-up, the supervisor's control channel, and the poll/sleep loop. */
#include "netd/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/ctlfd.h"
#include "common/kv.h"
#include "netd/sandbox.h"
#include "libretto/ctl.h"

/* epoll tags: the control socket, the XSK, then efd_netd of app slot i. */
#define TAG_CTL 0
#define TAG_XSK 1
#define TAG_APP 2

/* Busy rounds between two looks at the control socket. */
#define CTL_EVERY 64
/* Idle spinning before sleeping, and the longest sleep: an idle netd still
 * beats its heartbeat every NETD_HEARTBEAT_MS, so it is never taken for hung. */
#define SPIN_NS 50000
#define SLEEP_MS NETD_HEARTBEAT_MS

/* Control messages are rare: one static buffer each way, no allocation. */
static char msg_in[NETD_MSG_MAX];
static char msg_out[NETD_MSG_MAX];

static struct netd g_netd;

static void netd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void netd_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("libretto: netd: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	int i;

	if (s == NULL || sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x", &v[0], &v[1], &v[2], &v[3],
				&v[4], &v[5]) != 6)
		return -EINVAL;
	for (i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	return 0;
}

static int parse_ip(const char *s, uint32_t *ip)
{
	struct in_addr a;

	if (s == NULL || inet_pton(AF_INET, s, &a) != 1)
		return -EINVAL;
	*ip = ntohl(a.s_addr);
	return 0;
}

static int epoll_add(struct netd *n, int fd, uint32_t events, uint64_t tag)
{
	struct epoll_event ev = { .events = events, .data.u64 = tag };

	return epoll_ctl(n->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* ---- nic ---- */

static void *map_ring(int fd, size_t len, off_t pgoff)
{
	void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, pgoff);

	return m == MAP_FAILED ? NULL : m;
}

static void q_init(struct xsk_q *q, void *map, const struct xdp_ring_offset *o, uint32_t size)
{
	q->producer = (uint32_t *)(void *)((char *)map + o->producer);
	q->consumer = (uint32_t *)(void *)((char *)map + o->consumer);
	q->flags = (uint32_t *)(void *)((char *)map + o->flags);
	q->descs = (char *)map + o->desc;
	q->size = size;
	q->mask = size - 1;
	q->cached_prod = __atomic_load_n(q->producer, __ATOMIC_ACQUIRE);
	q->cached_cons = __atomic_load_n(q->consumer, __ATOMIC_ACQUIRE);
}

static void nic_close(struct netd_nic *x)
{
	int i;

	for (i = 0; i < 4; i++)
		if (x->map[i])
			munmap(x->map[i], x->maplen[i]);
	if (x->umem)
		munmap(x->umem, x->umem_size);
	if (x->sh)
		munmap(x->sh, x->sh_len);
	free(x->free_frames);
	if (x->xsk_fd >= 0)
		close(x->xsk_fd);
	if (x->umem_fd >= 0)
		close(x->umem_fd);
	if (x->sh_fd >= 0)
		close(x->sh_fd);
	memset(x, 0, sizeof(*x));
	x->xsk_fd = x->umem_fd = x->sh_fd = -1;
}

/* The heartbeat the supervisor watches (netd.h): one relaxed store per turn. */
static void heartbeat(struct netd *n)
{
	struct netd_shared *sh = n->nic.sh;

	if (sh != NULL)
		__atomic_store_n(&sh->heartbeat, __atomic_load_n(&sh->heartbeat, __ATOMIC_RELAXED) + 1,
				 __ATOMIC_RELAXED);
}

static bool is_pow2(unsigned long v)
{
	return v && !(v & (v - 1));
}

static int cmd_nic(struct netd *n, const struct kv *kv, const int *fds, int nfds, const char **why)
{
	struct netd_nic *x = &n->nic;
	unsigned long umem_size, frame_size, ring_size;
	struct xdp_mmap_offsets off;
	socklen_t optlen = sizeof(off);
	const char *ifname = kv_get(kv, "ifname");
	uint32_t i, nfill, idx;
	struct stat st;
	int err;

	if (x->up)
		return *why = "nic_already_set", -EEXIST;
	if (nfds != 2 && nfds != 3)
		return *why = "nic_needs_xsk_and_umem_fds", -EINVAL;
	if (ifname == NULL || strlen(ifname) >= sizeof(x->ifname) ||
	    parse_mac(kv_get(kv, "mac"), x->mac) ||
	    kv_get_ulong(kv, "umem_size", &umem_size) ||
	    kv_get_ulong(kv, "frame_size", &frame_size) ||
	    kv_get_ulong(kv, "ring_size", &ring_size))
		return *why = "nic_keys", -EINVAL;
	if (!is_pow2(frame_size) || frame_size < 2048 || frame_size > 65536 ||
	    !is_pow2(ring_size) || ring_size > (1u << 16) || umem_size % frame_size ||
	    umem_size / frame_size < 4 || umem_size / frame_size > (1u << 20))
		return *why = "nic_geometry", -EINVAL;
	if (fstat(fds[1], &st) < 0 || (unsigned long)st.st_size < umem_size)
		return *why = "umem_too_small", -EINVAL;
	if (getsockopt(fds[0], SOL_XDP, XDP_MMAP_OFFSETS, &off, &optlen) < 0)
		return *why = "not_an_xsk", -errno;
	x->xsk_fd = -1;
	x->umem_fd = -1;
	x->sh_fd = -1;
	snprintf(x->ifname, sizeof(x->ifname), "%s", ifname);
	x->umem_size = umem_size;
	x->frame_size = (uint32_t)frame_size;
	x->nframes = (uint32_t)(umem_size / frame_size);
	x->umem = mmap(NULL, umem_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		       fds[1], 0);
	if (x->umem == MAP_FAILED) {
		x->umem = NULL;
		err = -errno;
		*why = "umem_mmap";
		goto fail;
	}
	x->maplen[0] = off.fr.desc + ring_size * sizeof(uint64_t);
	x->maplen[1] = off.cr.desc + ring_size * sizeof(uint64_t);
	x->maplen[2] = off.rx.desc + ring_size * sizeof(struct xdp_desc);
	x->maplen[3] = off.tx.desc + ring_size * sizeof(struct xdp_desc);
	x->map[0] = map_ring(fds[0], x->maplen[0], XDP_UMEM_PGOFF_FILL_RING);
	x->map[1] = map_ring(fds[0], x->maplen[1], XDP_UMEM_PGOFF_COMPLETION_RING);
	x->map[2] = map_ring(fds[0], x->maplen[2], XDP_PGOFF_RX_RING);
	x->map[3] = map_ring(fds[0], x->maplen[3], XDP_PGOFF_TX_RING);
	for (i = 0; i < 4; i++)
		if (x->map[i] == NULL) {
			err = -errno;
			*why = "ring_mmap";
			goto fail;
		}
	q_init(&x->fill, x->map[0], &off.fr, (uint32_t)ring_size);
	q_init(&x->comp, x->map[1], &off.cr, (uint32_t)ring_size);
	q_init(&x->rx, x->map[2], &off.rx, (uint32_t)ring_size);
	q_init(&x->tx, x->map[3], &off.tx, (uint32_t)ring_size);
	if (nfds == 3) {
		/* The NIC state the supervisor keeps across netds (netd.h). */
		if (fstat(fds[2], &st) < 0 ||
		    (size_t)st.st_size < netd_shared_size(x->nframes)) {
			err = -EINVAL;
			*why = "state_too_small";
			goto fail;
		}
		x->sh_len = netd_shared_size(x->nframes);
		x->sh = mmap(NULL, x->sh_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
			     fds[2], 0);
		if (x->sh == MAP_FAILED) {
			x->sh = NULL;
			err = -errno;
			*why = "state_mmap";
			goto fail;
		}
	}
	x->adopted = x->fill.cached_prod || x->comp.cached_prod || x->rx.cached_prod ||
		     x->tx.cached_prod;
	/* Used rings: only with the state of who held which frame. */
	if (x->adopted && (x->sh == NULL || x->sh->magic != NETD_SHARED_MAGIC ||
			   x->sh->nframes != x->nframes)) {
		err = -EBUSY;
		*why = "rings_in_use";
		goto fail;
	}
	x->free_frames = calloc(x->nframes, sizeof(uint64_t));
	if (x->free_frames == NULL) {
		err = -ENOMEM;
		*why = "no_memory";
		goto fail;
	}
	if (x->adopted) {
		n->st.adopt_reclaimed = netd_nic_adopt(x);
	} else {
		nfill = x->nframes / 2;
		if (nfill > ring_size)
			nfill = (uint32_t)ring_size;
		xsk_q_reserve(&x->fill, nfill, &idx);
		for (i = 0; i < nfill; i++) {
			*xsk_q_addr(&x->fill, idx + i) = (uint64_t)i * x->frame_size;
			netd_frame_mark(x, (uint64_t)i * x->frame_size, NETD_FRAME_RX);
		}
		xsk_q_submit(&x->fill);
		for (i = x->nframes; i > nfill; i--) {
			x->free_frames[x->nfree++] = (uint64_t)(i - 1) * x->frame_size;
			netd_frame_mark(x, (uint64_t)(i - 1) * x->frame_size, NETD_FRAME_FREE);
		}
		if (x->sh != NULL) {
			x->sh->nframes = x->nframes;
			__atomic_store_n(&x->sh->magic, NETD_SHARED_MAGIC, __ATOMIC_RELEASE);
		}
	}
	if (x->sh != NULL)
		x->sh->pid = (uint32_t)getpid();
	/*
	 * hold=1: touch no ring until `start`, so that a successor does not
	 * answer frames for applications it has not been given yet (a SYN to
	 * a port whose owner is not added would get a RST).
	 */
	n->held = kv_get(kv, "hold") && !strcmp(kv_get(kv, "hold"), "1");
	err = n->held ? 0 : epoll_add(n, fds[0], EPOLLIN, TAG_XSK);
	if (err) {
		*why = "epoll";
		goto fail;
	}
	x->xsk_fd = fds[0];
	x->umem_fd = fds[1];
	x->sh_fd = nfds == 3 ? fds[2] : -1;
	x->up = true;
	/* A clean handover left every ring index exact: nothing to resync. */
	n->took_over = x->adopted && kv_get(kv, "handover") && !strcmp(kv_get(kv, "handover"), "1");
	if (x->adopted) {
		/* Whatever the predecessor queued: make the kernel look. */
		x->tx_kick = true;
		(void)recvfrom(x->xsk_fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
	}
	return 0;
fail:
	/* The descriptors stay the caller's: ctl_handle() closes them. */
	x->xsk_fd = x->umem_fd = x->sh_fd = -1;
	nic_close(x);
	return err;
}

/* ---- porttab, ip ---- */

static int cmd_porttab(struct netd *n, const struct kv *kv, const int *fds, int nfds,
		       const char **why)
{
	unsigned long size;
	struct stat st;
	void *m;
	int err;

	if (n->have_porttab)
		return *why = "porttab_already_set", -EEXIST;
	if (nfds != 1 || kv_get_ulong(kv, "size", &size) || size == 0)
		return *why = "porttab_keys", -EINVAL;
	if (fstat(fds[0], &st) < 0 || (unsigned long)st.st_size < size)
		return *why = "porttab_too_small", -EINVAL;
	/* Read-only: netd can never corrupt the supervisor's table. */
	m = mmap(NULL, size, PROT_READ, MAP_SHARED, fds[0], 0);
	if (m == MAP_FAILED)
		return *why = "porttab_mmap", -errno;
	err = porttab_attach(&n->pt, m, size);
	if (err) {
		munmap(m, size);
		return *why = "porttab_format", err;
	}
	n->porttab_mem = m;
	n->porttab_len = size;
	n->porttab_fd = fds[0];
	n->have_porttab = true;
	return 0;
}

static int cmd_ip(struct netd *n, const struct kv *kv, const char **why)
{
	uint32_t ip;

	if (parse_ip(kv_get(kv, "addr"), &ip) || ip == 0)
		return *why = "addr_key", -EINVAL;
	if (netd_fronts(n, ip))
		return 0;
	if (n->n_ips >= NETD_MAX_IPS)
		return *why = "too_many_ips", -ENOSPC;
	n->ips[n->n_ips++] = ip;
	return 0;
}

/* ---- applications ---- */

static struct netd_app *find_app(struct netd *n, uint32_t id)
{
	unsigned i;

	for (i = 0; i < NETD_MAX_APPS; i++)
		if (n->apps[i].used && n->apps[i].id == id)
			return &n->apps[i];
	return NULL;
}

static bool is_eventfd(int fd)
{
	char path[64], link[64];
	ssize_t k;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	k = readlink(path, link, sizeof(link) - 1);
	if (k < 0)
		return false;
	link[k] = 0;
	return strcmp(link, "anon_inode:[eventfd]") == 0;
}

static int parse_ips(const char *s, struct validate_app *va)
{
	char buf[128], *save = NULL, *t;

	if (s == NULL || strlen(s) >= sizeof(buf))
		return -EINVAL;
	snprintf(buf, sizeof(buf), "%s", s);
	va->n_ips = 0;
	for (t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (va->n_ips >= NETD_APP_MAX_IPS || parse_ip(t, &va->ips[va->n_ips]) ||
		    va->ips[va->n_ips] == 0)
			return -EINVAL;
		va->n_ips++;
	}
	return va->n_ips ? 0 : -EINVAL;
}

static int cmd_app_add(struct netd *n, const struct kv *kv, const int *fds, int nfds,
		       const char **why)
{
	struct netd_app *a = NULL;
	unsigned long id;
	struct stat st;
	unsigned i;
	int seals, err, fl;

	if (nfds != 3)
		return *why = "app_needs_region_efd_netd_efd_app", -EINVAL;
	if (kv_get_ulong(kv, "id", &id) || id == 0 || id > UINT32_MAX)
		return *why = "app_id", -EINVAL;
	if (find_app(n, (uint32_t)id))
		return *why = "app_exists", -EEXIST;
	for (i = 0; i < NETD_MAX_APPS && a == NULL; i++)
		if (!n->apps[i].used)
			a = &n->apps[i];
	if (a == NULL)
		return *why = "too_many_apps", -ENOSPC;
	memset(a, 0, sizeof(*a));
	if (parse_ips(kv_get(kv, "ips"), &a->va))
		return *why = "app_ips", -EINVAL;
	/* The application holds the memfd too: unsealed, it could shrink it
	 * under our mapping and every access would raise SIGBUS in netd. */
	if (!is_eventfd(fds[1]) || !is_eventfd(fds[2]))
		return *why = "doorbell_not_eventfd", -EINVAL;
	/* netd must never block writing efd_app; the application waits
	 * for it with poll() (ring.h's sleeper protocol). */
	fl = fcntl(fds[2], F_GETFL);
	if (fl < 0 || fcntl(fds[2], F_SETFL, fl | O_NONBLOCK) < 0)
		return *why = "efd_app_flags", -errno;
	seals = fcntl(fds[0], F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK))
		return *why = "region_unsealed", -EPERM;
	if (fstat(fds[0], &st) < 0 || st.st_size < RING_HDR_SIZE)
		return *why = "region_size", -EINVAL;
	a->maplen = (size_t)st.st_size;
	a->mem = mmap(NULL, a->maplen, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
	if (a->mem == MAP_FAILED)
		return *why = "region_mmap", -errno;
	err = ring_region_check(a->mem, a->maplen, &a->hdr);
	if (!err)
		err = ring_cons_attach(&a->fill, a->mem, &a->hdr, RING_FILL);
	if (!err)
		err = ring_prod_attach(&a->rx, a->mem, &a->hdr, RING_RX);
	if (!err)
		err = ring_cons_attach(&a->tx, a->mem, &a->hdr, RING_TX);
	if (!err)
		err = ring_prod_attach(&a->comp, a->mem, &a->hdr, RING_COMP);
	if (!err)
		/*
		 * Edge-triggered: every write to an eventfd wakes its waiters,
		 * so netd never reads efd_netd.  Reading it would let the
		 * application block netd by draining the counter between
		 * epoll_wait() and read().
		 */
		err = epoll_add(n, fds[1], EPOLLIN | EPOLLET, TAG_APP + (uint64_t)(a - n->apps));
	if (err) {
		munmap(a->mem, a->maplen);
		memset(a, 0, sizeof(*a));
		return *why = "region_format", err;
	}
	a->frames = ring_frames(a->mem, &a->hdr);
	a->id = (uint32_t)id;
	a->region_fd = fds[0];
	a->efd_netd = fds[1];
	a->efd_app = fds[2];
	a->va.id = a->id;
	memcpy(a->va.mac, n->nic.mac, 6);
	a->va.owns_port = netd_owns_port;
	a->va.owns_port_ctx = n;
	a->va.frags = &n->tx_frags;
	/*
	 * A new generation tells the runtime to resynchronise (take back the
	 * frames a dead netd held).  After a clean handover the predecessor
	 * held none and every index is exact, so the generation stays: the
	 * resync would only race with us for nothing.
	 */
	if (!n->took_over)
		ring_region_new_generation(a->mem);
	__atomic_or_fetch(&((struct ring_region_hdr *)a->mem)->flags, RING_REGION_F_NETD_UP,
			  __ATOMIC_RELEASE);
	a->used = true;
	return 0;
}

static void app_release(struct netd *n, struct netd_app *a)
{
	epoll_ctl(n->epfd, EPOLL_CTL_DEL, a->efd_netd, NULL);
	/* After a handover the region is the successor's: leave its flag. */
	if (!n->handed_over)
		__atomic_and_fetch(&((struct ring_region_hdr *)a->mem)->flags,
				   ~RING_REGION_F_NETD_UP, __ATOMIC_RELEASE);
	frag_forget_app(&n->rx_frags, a->id);
	frag_forget_app(&n->tx_frags, a->id);
	munmap(a->mem, a->maplen);
	close(a->region_fd);
	close(a->efd_netd);
	close(a->efd_app);
	memset(a, 0, sizeof(*a));
}

/* "reap conns=LIP:LPORT-RIP:RPORT,..." (netd.h): probe a dead
 * application's peers so that their connections get reset. */
static int cmd_reap(struct netd *n, const struct kv *kv, struct kv_buf *b, const char **why)
{
	const char *s = kv_get(kv, "conns");
	unsigned sent = 0, total = 0;

	if (!n->nic.up)
		return *why = "no_nic_yet", -ENODEV;
	while (s != NULL && *s) {
		unsigned a1, a2, a3, a4, b1, b2, b3, b4, lp, rp;
		int used = 0;

		if (sscanf(s, "%u.%u.%u.%u:%u-%u.%u.%u.%u:%u%n", &a1, &a2, &a3, &a4, &lp, &b1, &b2, &b3,
			   &b4, &rp, &used) != 10 || a1 > 255 || a2 > 255 || a3 > 255 || a4 > 255 ||
		    b1 > 255 || b2 > 255 || b3 > 255 || b4 > 255 || lp == 0 || lp > 65535 ||
		    rp == 0 || rp > 65535)
			return *why = "conns", -EINVAL;
		total++;
		if (netd_reap_probe(n, a1 << 24 | a2 << 16 | a3 << 8 | a4, (uint16_t)lp,
				    b1 << 24 | b2 << 16 | b3 << 8 | b4, (uint16_t)rp))
			sent++;
		s += used;
		if (*s == ',')
			s++;
		else if (*s)
			return *why = "conns", -EINVAL;
	}
	kv_buf_add(b, '\n', "conns", "%u", total);
	kv_buf_add(b, '\n', "probes", "%u", sent);
	return 0;
}

static int cmd_app_del(struct netd *n, const struct kv *kv, const char **why)
{
	struct netd_app *a;
	unsigned long id;

	if (kv_get_ulong(kv, "id", &id) || id == 0 || id > UINT32_MAX)
		return *why = "app_id", -EINVAL;
	a = find_app(n, (uint32_t)id);
	if (a == NULL)
		return *why = "no_such_app", -ENOENT;
	app_release(n, a);
	return 0;
}

/* ---- stats ---- */

static void stats_global(const struct netd *n, struct kv_buf *b)
{
	const struct netd_stats *s = &n->st;
	uint64_t malformed = 0;
	unsigned r;

	for (r = 0; r < CLASSIFY_REASON_COUNT; r++)
		malformed += s->rx_malformed[r];
	kv_buf_add(b, '\n', "rx_frames", "%llu", (unsigned long long)s->rx_frames);
	kv_buf_add(b, '\n', "rx_bytes", "%llu", (unsigned long long)s->rx_bytes);
	kv_buf_add(b, '\n', "tx_frames", "%llu", (unsigned long long)s->tx_frames);
	kv_buf_add(b, '\n', "tx_bytes", "%llu", (unsigned long long)s->tx_bytes);
	kv_buf_add(b, '\n', "rx_malformed", "%llu", (unsigned long long)malformed);
	for (r = 1; r < CLASSIFY_REASON_COUNT; r++)
		if (s->rx_malformed[r]) {
			char key[64];

			snprintf(key, sizeof(key), "rx_malformed_%s", classify_reason_str(r));
			kv_buf_add(b, '\n', key, "%llu", (unsigned long long)s->rx_malformed[r]);
		}
	kv_buf_add(b, '\n', "rx_not_ours", "%llu", (unsigned long long)s->rx_not_ours);
	kv_buf_add(b, '\n', "rx_no_port", "%llu", (unsigned long long)s->rx_no_port);
	kv_buf_add(b, '\n', "rx_unsupported", "%llu", (unsigned long long)s->rx_unsupported);
	kv_buf_add(b, '\n', "rx_frag_miss", "%llu", (unsigned long long)s->rx_frag_miss);
	kv_buf_add(b, '\n', "rx_bad_desc", "%llu", (unsigned long long)s->rx_bad_desc);
	kv_buf_add(b, '\n', "arp_replies", "%llu", (unsigned long long)s->arp_replies);
	kv_buf_add(b, '\n', "echo_replies", "%llu", (unsigned long long)s->echo_replies);
	kv_buf_add(b, '\n', "rst_sent", "%llu", (unsigned long long)s->rst_sent);
	kv_buf_add(b, '\n', "unreach_sent", "%llu", (unsigned long long)s->unreach_sent);
	kv_buf_add(b, '\n', "icmp_ratelimited", "%llu", (unsigned long long)s->icmp_ratelimited);
	kv_buf_add(b, '\n', "reply_no_frame", "%llu", (unsigned long long)s->reply_no_frame);
	kv_buf_add(b, '\n', "sleeps", "%llu", (unsigned long long)s->sleeps);
	kv_buf_add(b, '\n', "rx_delivered", "%llu", (unsigned long long)s->rx_delivered);
	kv_buf_add(b, '\n', "rx_handled", "%llu", (unsigned long long)s->rx_handled);
	kv_buf_add(b, '\n', "rx_dropped", "%llu", (unsigned long long)s->rx_dropped);
	kv_buf_add(b, '\n', "adopted", "%d", n->nic.adopted ? 1 : 0);
	kv_buf_add(b, '\n', "adopt_reclaimed", "%llu", (unsigned long long)s->adopt_reclaimed);
	if (n->nic.up) {
		struct xdp_statistics xs;
		socklen_t xl = sizeof(xs);

		/* The kernel's own drops on the PF's socket: frames lost before
		 * netd could see them (these persist across netds on one XSK). */
		if (getsockopt(n->nic.xsk_fd, SOL_XDP, XDP_STATISTICS, &xs, &xl) == 0) {
			kv_buf_add(b, '\n', "xsk_rx_dropped", "%llu", (unsigned long long)xs.rx_dropped);
			kv_buf_add(b, '\n', "xsk_rx_ring_full", "%llu",
				   (unsigned long long)xs.rx_ring_full);
			kv_buf_add(b, '\n', "xsk_fill_empty", "%llu",
				   (unsigned long long)xs.rx_fill_ring_empty_descs);
			kv_buf_add(b, '\n', "xsk_tx_invalid", "%llu",
				   (unsigned long long)xs.tx_invalid_descs);
		}
	}
	kv_buf_add(b, '\n', "reap_probes", "%llu", (unsigned long long)s->reap_probes);
	kv_buf_add(b, '\n', "reap_no_neigh", "%llu", (unsigned long long)s->reap_no_neigh);
}

static void stats_app(const struct netd_app *a, struct kv_buf *b)
{
	const struct netd_app_stats *s = &a->st;
	uint32_t errors = a->fill.errors + a->tx.errors + a->rx.errors + a->comp.errors;
	unsigned r;

	kv_buf_add(b, ' ', "app", "%u", a->id);
	kv_buf_add(b, ' ', "rx_frames", "%llu", (unsigned long long)s->rx_frames);
	kv_buf_add(b, ' ', "rx_bytes", "%llu", (unsigned long long)s->rx_bytes);
	kv_buf_add(b, ' ', "tx_frames", "%llu", (unsigned long long)s->tx_frames);
	kv_buf_add(b, ' ', "tx_bytes", "%llu", (unsigned long long)s->tx_bytes);
	kv_buf_add(b, ' ', "rx_ring_full", "%llu", (unsigned long long)s->rx_ring_full);
	kv_buf_add(b, ' ', "rx_bad_fill", "%llu", (unsigned long long)s->rx_bad_fill);
	kv_buf_add(b, ' ', "tx_drops", "%llu", (unsigned long long)s->tx_drops);
	for (r = 1; r < VALIDATE_REASON_COUNT; r++)
		if (s->tx_drop[r]) {
			char key[64];

			snprintf(key, sizeof(key), "tx_drop_%s", validate_reason_str(r));
			kv_buf_add(b, ' ', key, "%llu", (unsigned long long)s->tx_drop[r]);
		}
	kv_buf_add(b, ' ', "tx_ring_full", "%llu", (unsigned long long)s->tx_ring_full);
	kv_buf_add(b, ' ', "wakeups", "%llu", (unsigned long long)s->wakeups);
	kv_buf_add(b, '\n', "ring_errors", "%u", errors);
}

static void cmd_stats(struct netd *n, struct kv_buf *b)
{
	unsigned i, napps = 0;

	stats_global(n, b);
	for (i = 0; i < NETD_MAX_APPS; i++)
		napps += n->apps[i].used;
	kv_buf_add(b, '\n', "apps", "%u", napps);
	for (i = 0; i < NETD_MAX_APPS; i++)
		if (n->apps[i].used)
			stats_app(&n->apps[i], b);
}

/*
 * --stats-json PATH: the same counters as one JSON object, rewritten in
 * place (the file is opened before the seccomp filter, which forbids open)
 * after every `stats` request, about once a second while netd runs, and at
 * exit.  For tools that want to read netd without speaking its protocol.
 */
static char json_buf[NETD_MSG_MAX];
static int json_fd = -1;
static uint64_t json_last_ms;

struct jbuf {
	char *p;
	size_t len, cap;
	bool overflow;
};

static void jb_add(struct jbuf *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jb_add(struct jbuf *j, const char *fmt, ...)
{
	va_list ap;
	int k;

	if (j->overflow)
		return;
	va_start(ap, fmt);
	k = vsnprintf(j->p + j->len, j->cap - j->len, fmt, ap);
	va_end(ap);
	if (k < 0 || (size_t)k >= j->cap - j->len)
		j->overflow = true;
	else
		j->len += (size_t)k;
}

static void stats_json(const struct netd *n, struct jbuf *j)
{
	const struct netd_stats *s = &n->st;
	const char *sep = "";
	unsigned i, r;

	jb_add(j, "{\"rx_frames\":%llu,\"rx_bytes\":%llu,\"tx_frames\":%llu,\"tx_bytes\":%llu,",
	       (unsigned long long)s->rx_frames, (unsigned long long)s->rx_bytes,
	       (unsigned long long)s->tx_frames, (unsigned long long)s->tx_bytes);
	jb_add(j, "\"rx_malformed\":{");
	for (r = 1; r < CLASSIFY_REASON_COUNT; r++)
		if (s->rx_malformed[r]) {
			jb_add(j, "%s\"%s\":%llu", sep, classify_reason_str(r),
			       (unsigned long long)s->rx_malformed[r]);
			sep = ",";
		}
	jb_add(j, "},\"rx_not_ours\":%llu,\"rx_no_port\":%llu,\"rx_unsupported\":%llu,"
	       "\"rx_frag_miss\":%llu,\"rx_bad_desc\":%llu,\"arp_replies\":%llu,"
	       "\"echo_replies\":%llu,\"rst_sent\":%llu,\"unreach_sent\":%llu,"
	       "\"icmp_ratelimited\":%llu,\"reply_no_frame\":%llu,\"sleeps\":%llu,"
	       "\"rx_delivered\":%llu,\"rx_handled\":%llu,\"rx_dropped\":%llu,\"adopted\":%d,"
	       "\"adopt_reclaimed\":%llu,\"apps\":[",
	       (unsigned long long)s->rx_not_ours, (unsigned long long)s->rx_no_port,
	       (unsigned long long)s->rx_unsupported, (unsigned long long)s->rx_frag_miss,
	       (unsigned long long)s->rx_bad_desc, (unsigned long long)s->arp_replies,
	       (unsigned long long)s->echo_replies, (unsigned long long)s->rst_sent,
	       (unsigned long long)s->unreach_sent, (unsigned long long)s->icmp_ratelimited,
	       (unsigned long long)s->reply_no_frame, (unsigned long long)s->sleeps,
	       (unsigned long long)s->rx_delivered, (unsigned long long)s->rx_handled,
	       (unsigned long long)s->rx_dropped, n->nic.adopted ? 1 : 0,
	       (unsigned long long)s->adopt_reclaimed);
	sep = "";
	for (i = 0; i < NETD_MAX_APPS; i++) {
		const struct netd_app *a = &n->apps[i];
		const struct netd_app_stats *t = &a->st;
		const char *sep2 = "";

		if (!a->used)
			continue;
		jb_add(j, "%s{\"id\":%u,\"rx_frames\":%llu,\"rx_bytes\":%llu,\"tx_frames\":%llu,"
		       "\"tx_bytes\":%llu,\"rx_ring_full\":%llu,\"rx_bad_fill\":%llu,"
		       "\"tx_drops\":%llu,\"tx_ring_full\":%llu,\"wakeups\":%llu,"
		       "\"ring_errors\":%u,\"tx_drop\":{", sep, a->id,
		       (unsigned long long)t->rx_frames, (unsigned long long)t->rx_bytes,
		       (unsigned long long)t->tx_frames, (unsigned long long)t->tx_bytes,
		       (unsigned long long)t->rx_ring_full, (unsigned long long)t->rx_bad_fill,
		       (unsigned long long)t->tx_drops, (unsigned long long)t->tx_ring_full,
		       (unsigned long long)t->wakeups,
		       a->fill.errors + a->tx.errors + a->rx.errors + a->comp.errors);
		for (r = 1; r < VALIDATE_REASON_COUNT; r++)
			if (t->tx_drop[r]) {
				jb_add(j, "%s\"%s\":%llu", sep2, validate_reason_str(r),
				       (unsigned long long)t->tx_drop[r]);
				sep2 = ",";
			}
		jb_add(j, "}}");
		sep = ",";
	}
	jb_add(j, "]}\n");
}

static void stats_json_dump(struct netd *n)
{
	struct jbuf j = { json_buf, 0, sizeof(json_buf), false };

	if (json_fd < 0)
		return;
	stats_json(n, &j);
	if (j.overflow)
		return;
	/* Readers may see a torn file for a moment; they retry on a parse error. */
	if (pwrite(json_fd, json_buf, j.len, 0) != (ssize_t)j.len ||
	    ftruncate(json_fd, (off_t)j.len) < 0)
		netd_log("--stats-json: %s", strerror(errno));
}

static void stats_json_tick(struct netd *n)
{
	struct timespec ts;
	uint64_t now;

	if (json_fd < 0)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
	if (now - json_last_ms >= 1000) {
		json_last_ms = now;
		stats_json_dump(n);
	}
}

/* ---- the control channel ---- */

/*
 * Handle one request.  Returns 1 to go on, 0 to exit (quit or EOF).  A
 * failed request keeps none of its descriptors.
 */
static int ctl_handle(struct netd *n)
{
	int fds[CTL_MAX_FDS], nfds = CTL_MAX_FDS, len, err = 0, i, used_fds = 0, go = 1;
	const char *why = NULL, *cmd;
	struct kv_buf b;
	struct kv kv;

	len = ctl_recv(n->ctl_fd, msg_in, sizeof(msg_in), fds, &nfds);
	if (len == -EAGAIN || len == -EINTR)
		return 1;
	kv_buf_init(&b, msg_out, sizeof(msg_out));
	if (len == -EMSGSIZE) {
		/* ctl_recv() already closed what came with it. */
		nfds = 0;
		err = -EMSGSIZE;
		why = "message_too_long";
		goto reply;
	}
	if (len <= 0) {
		if (len < 0)
			netd_log("control socket: %s; exiting", strerror(-len));
		return 0;
	}
	if (kv_parse(&kv, msg_in, (size_t)len) < 0) {
		err = -EINVAL;
		why = "bad_record";
		goto reply;
	}
	cmd = kv.n > 0 ? kv.pair[0].key : "";
	if (n->handed_over && strcmp(cmd, "stats") && strcmp(cmd, "quit")) {
		err = -EBUSY;
		why = "handed_over";
	} else if (!strcmp(cmd, "start")) {
		if (!n->nic.up) {
			err = -ENODEV, why = "no_nic_yet";
		} else if (n->held) {
			err = epoll_add(n, n->nic.xsk_fd, EPOLLIN, TAG_XSK);
			if (err)
				why = "epoll";
			else
				n->held = false;
		}
	} else if (!strcmp(cmd, "handover")) {
		/*
		 * We are between two rounds: every rx ring filled in the last
		 * batch was published at its end (publish_rx), every completion
		 * too (tx_app); flush the XSK tx ring, and from now on touch no
		 * ring.  The full fence orders every ring and state-array store
		 * before the reply the supervisor waits for.
		 */
		netd_flush(n);
		n->handed_over = true;
		/* Their readiness is the successor's business now: no wake-ups
		 * (the XSK's is level-triggered and would keep us spinning). */
		if (n->nic.up)
			epoll_ctl(n->epfd, EPOLL_CTL_DEL, n->nic.xsk_fd, NULL);
		for (i = 0; i < NETD_MAX_APPS; i++)
			if (n->apps[i].used)
				epoll_ctl(n->epfd, EPOLL_CTL_DEL, n->apps[i].efd_netd, NULL);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		cmd_stats(n, &b);
		stats_json_dump(n);
	} else if (!strcmp(cmd, "nic")) {
		err = cmd_nic(n, &kv, fds, nfds, &why);
		used_fds = !err;
		if (!err) {
			kv_buf_add(&b, '\n', "adopted", "%d", n->nic.adopted ? 1 : 0);
			kv_buf_add(&b, '\n', "reclaimed", "%llu",
				   (unsigned long long)n->st.adopt_reclaimed);
		}
	} else if (!strcmp(cmd, "porttab")) {
		err = cmd_porttab(n, &kv, fds, nfds, &why);
		used_fds = !err;
	} else if (!strcmp(cmd, "ip")) {
		err = cmd_ip(n, &kv, &why);
	} else if (!strcmp(cmd, "app_add")) {
		if (!n->nic.up)
			err = -ENODEV, why = "no_nic_yet";
		else
			err = cmd_app_add(n, &kv, fds, nfds, &why);
		used_fds = !err;
	} else if (!strcmp(cmd, "app_del")) {
		err = cmd_app_del(n, &kv, &why);
	} else if (!strcmp(cmd, "reap")) {
		err = cmd_reap(n, &kv, &b, &why);
	} else if (!strcmp(cmd, "stats")) {
		cmd_stats(n, &b);
		stats_json_dump(n);
	} else if (!strcmp(cmd, "quit")) {
		go = 0;
	} else {
		err = -EINVAL;
		why = "unknown_command";
	}
	kv_free(&kv);
reply:
	if (!used_fds)
		for (i = 0; i < nfds; i++)
			close(fds[i]);
	if (err)
		kv_buf_add(&b, '\n', "error", "%s", why ? why : "failed");
	kv_buf_add(&b, '\n', "errno", "%d", -err);
	if (!kv_buf_ok(&b)) {
		kv_buf_init(&b, msg_out, sizeof(msg_out));
		kv_buf_add(&b, '\n', "error", "reply_too_long");
		kv_buf_add(&b, '\n', "errno", "%d", E2BIG);
	}
	if (ctl_send(n->ctl_fd, msg_out, b.len, NULL, 0) < 0)
		return 0;
	return go;
}

/* ---- the loop ---- */

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Drain doorbells and serve the control socket; returns 0 to exit. */
static int handle_events(struct netd *n, int timeout_ms)
{
	struct epoll_event ev[NETD_MAX_APPS + 2];
	int k, i;

	k = epoll_wait(n->epfd, ev, NETD_MAX_APPS + 2, timeout_ms);
	stats_json_tick(n);
	for (i = 0; i < k; i++) {
		uint64_t tag = ev[i].data.u64;

		if (tag == TAG_CTL) {
			if (!ctl_handle(n))
				return 0;
		}
		/* Application doorbells (edge-triggered, never read) and the
		 * XSK only end the sleep: the next netd_poll() does the work. */
	}
	return 1;
}

static int run(struct netd *n)
{
	uint64_t idle_since = 0;
	unsigned rounds = 0;

	for (;;) {
		heartbeat(n);
		if (netd_poll(n) > 0) {
			idle_since = 0;
			if (++rounds % CTL_EVERY == 0 && !handle_events(n, 0))
				return 0;
			continue;
		}
		if (idle_since == 0) {
			idle_since = mono_ns();
			continue;
		}
		if (mono_ns() - idle_since < SPIN_NS)
			continue;
		if (netd_prepare_sleep(n)) {
			n->st.sleeps++;
			if (!handle_events(n, SLEEP_MS)) {
				netd_end_sleep(n);
				return 0;
			}
		} else if (!handle_events(n, 0)) {
			netd_end_sleep(n);
			return 0;
		}
		netd_end_sleep(n);
		idle_since = 0;
	}
}

static void usage(FILE *f)
{
	fputs("usage: libretto-netd --control-fd N [--stats-json PATH] [--no-sandbox]\n"
	      "The network server of LibrettOS; started by its supervisor, which\n"
	      "configures it over the inherited SOCK_SEQPACKET descriptor N\n"
	      "(include/libretto/netd.h, docs/netd.md).  After start-up netd\n"
	      "restricts itself with a seccomp filter; --no-sandbox skips it.\n"
	      "--stats-json PATH keeps the counters there as JSON (rewritten\n"
	      "about once a second, on each stats request and at exit).\n", f);
}

int main(int argc, char **argv)
{
	struct netd *n = &g_netd;
	bool sandbox = true;
	const char *ctl_arg = NULL;
	int fd = -1, err = 0;
	unsigned i;
	int rc;

	for (i = 1; i < (unsigned)argc; i++) {
		if (!strcmp(argv[i], "--control-fd") && i + 1 < (unsigned)argc) {
			ctl_arg = argv[++i];
		} else if (!strcmp(argv[i], "--stats-json") && i + 1 < (unsigned)argc) {
			json_fd = open(argv[++i], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
			if (json_fd < 0) {
				netd_log("--stats-json %s: %s", argv[i], strerror(errno));
				return 2;
			}
		} else if (!strcmp(argv[i], "--no-sandbox")) {
			sandbox = false;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (!ctl_arg || (err = ctlfd_parse(ctl_arg, &fd)) == -EINVAL) {
		usage(stderr);
		return 2;
	}
	if (err) {
		netd_log("--control-fd %d is not a SOCK_SEQPACKET socket", fd);
		return 2;
	}
	/* A vanished supervisor must show as an error, not kill us. */
	signal(SIGPIPE, SIG_IGN);
	n->ctl_fd = (int)fd;
	fcntl(n->ctl_fd, F_SETFD, FD_CLOEXEC);
	n->nic.xsk_fd = n->nic.umem_fd = n->nic.sh_fd = -1;
	n->porttab_fd = -1;
	frag_init(&n->rx_frags, 30000);
	frag_init(&n->tx_frags, 30000);
	n->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (n->epfd < 0 || epoll_add(n, n->ctl_fd, EPOLLIN, TAG_CTL)) {
		netd_log("epoll: %s", strerror(errno));
		return 1;
	}
	if (sandbox) {
		int err = netd_sandbox();

		if (err)
			netd_log("warning: running without the seccomp filter: %s", strerror(-err));
	}
	rc = run(n);
	stats_json_dump(n);
	for (i = 0; i < NETD_MAX_APPS; i++)
		if (n->apps[i].used)
			app_release(n, &n->apps[i]);
	if (n->nic.up)
		nic_close(&n->nic);
	if (n->have_porttab) {
		munmap(n->porttab_mem, n->porttab_len);
		close(n->porttab_fd);
	}
	close(n->epfd);
	return rc;
}
