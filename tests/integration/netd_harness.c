/* End-to-end test of libretto-netd: this program is its supervisor and three synthetic applications. */
/*
 * Runs inside the testbed's host namespace (as root).  It creates the AF_XDP
 * socket and UMEM on the PF with libxdp (as librettod does for VFs), a port
 * table memfd, three ring regions (include/libretto/ring.h) with their
 * doorbells, starts libretto-netd on a socketpair and registers everything.
 * Two threads act as applications A and B: they lend fill frames, count the
 * UDP datagrams they receive per destination port, and A echoes datagrams
 * to its port back through its TX ring (addresses swapped).  Application C
 * is driven by the main thread and turns hostile near the end.  The main
 * thread drives the peer namespace with ping, ip neigh and python3 and
 * checks netd's counters.  Prints one line per check on stderr; exit 0 when
 * all pass, 1 otherwise.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <bpf/libbpf.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>

#include "common/kv.h"
#include "common/porttab.h"
#include "libretto/ring.h"

#define UMEM_FRAMES 4096
#define FRAME 2048
#define XRING 2048
#define APP_FRAMES 512
#define APP_RING 256

static const char *opt_netd, *opt_ifname = "pf0", *opt_peer = "libretto-peer";
static const char *opt_ip = "10.42.0.2", *opt_peer_ip = "10.42.0.1";
static uint8_t netd_mac[6];
static char netd_mac_str[32];
static uint16_t port_a = 7001, port_b = 7002, port_c = 7003, port_wild = 7005;
/* B's own address besides the shared one: netd does not front it. */
static const char *b_own_ip = "10.42.0.20";
static int failures;

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "netd_harness: %s: ", ok ? "ok" : "FAIL");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	if (!ok)
		failures++;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "netd_harness: FAIL: %s: %s\n", what, strerror(err));
	exit(1);
}

static void msleep(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static int sealed_memfd(const char *name, size_t size)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
		die("memfd", errno);
	return fd;
}

/* ---- a synthetic application on a ring region ---- */

struct happ {
	uint32_t id;
	uint16_t port;           /* the UDP port it echoes (0: none) */
	int region_fd, efd_netd, efd_app;
	void *mem;
	struct ring_region_hdr hdr;
	uint8_t *frames;
	struct ring_prod fill, tx;
	struct ring_cons rx, comp;
	uint64_t free_tx[APP_FRAMES];
	unsigned nfree;
	pthread_t thr;
	/* Shared with the main thread. */
	volatile int stop, paused;
	uint64_t rx_udp_a, rx_udp_b, rx_udp_wild, rx_arp, rx_total, echoed, sleeps;
	pthread_mutex_t lock;
	uint32_t inject_len[8];
	uint8_t inject_buf[8][256];
	int ninject;
};

static void happ_init(struct happ *a, uint32_t id, uint16_t port)
{
	size_t size = ring_region_size(APP_FRAMES, FRAME, APP_RING);
	uint32_t idx, i, nfill = APP_RING;

	memset(a, 0, sizeof(*a));
	pthread_mutex_init(&a->lock, NULL);
	a->id = id;
	a->port = port;
	a->region_fd = sealed_memfd("netd-test-region", size);
	a->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, a->region_fd, 0);
	if (a->mem == MAP_FAILED)
		die("region mmap", errno);
	if (ring_region_init(a->mem, size, APP_FRAMES, FRAME, APP_RING) ||
	    ring_region_check(a->mem, size, &a->hdr))
		die("region init", EINVAL);
	if (ring_prod_attach(&a->fill, a->mem, &a->hdr, RING_FILL) ||
	    ring_cons_attach(&a->rx, a->mem, &a->hdr, RING_RX) ||
	    ring_prod_attach(&a->tx, a->mem, &a->hdr, RING_TX) ||
	    ring_cons_attach(&a->comp, a->mem, &a->hdr, RING_COMP))
		die("ring attach", EPROTO);
	a->frames = ring_frames(a->mem, &a->hdr);
	a->efd_netd = eventfd(0, EFD_CLOEXEC);
	a->efd_app = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (a->efd_netd < 0 || a->efd_app < 0)
		die("eventfd", errno);
	/* Frames 0..APP_RING-1 are lent for RX, the rest are for TX. */
	ring_prod_reserve(&a->fill, nfill, &idx);
	for (i = 0; i < nfill; i++) {
		struct ring_desc *d = ring_prod_desc(&a->fill, idx + i);

		d->offset = (uint64_t)i * FRAME;
		d->len = FRAME;
		d->flags = 0;
	}
	ring_prod_submit(&a->fill, nfill);
	for (i = nfill; i < APP_FRAMES; i++)
		a->free_tx[a->nfree++] = (uint64_t)i * FRAME;
}

/* Queue buf on the TX ring (copied into a free frame); ring netd's doorbell if asked. */
static bool happ_send(struct happ *a, const uint8_t *buf, uint32_t len)
{
	struct ring_desc *d;
	uint64_t one = 1, off;
	uint32_t idx;

	if (a->nfree == 0 || ring_prod_reserve(&a->tx, 1, &idx) != 1)
		return false;
	off = a->free_tx[--a->nfree];
	memcpy(a->frames + off, buf, len);
	d = ring_prod_desc(&a->tx, idx);
	d->offset = off;
	d->len = len;
	d->flags = 0;
	ring_prod_submit(&a->tx, 1);
	if (ring_prod_needs_wakeup(&a->tx))
		(void)!write(a->efd_netd, &one, sizeof(one));
	return true;
}

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* One received frame: count it; A echoes UDP to its port. */
static void happ_rx(struct happ *a, uint8_t *f, uint32_t len)
{
	uint8_t out[FRAME], tmp[6];
	unsigned ihl;
	uint16_t dport;

	a->rx_total++;
	if (len >= 42 && rd16(f + 12) == 0x0806) {
		a->rx_arp++;
		return;
	}
	if (len < 34 || rd16(f + 12) != 0x0800 || f[23] != 17)
		return;
	ihl = (f[14] & 0xfu) * 4u;
	if (len < 14 + ihl + 8)
		return;
	dport = rd16(f + 14 + ihl + 2);
	if (dport == port_a)
		a->rx_udp_a++;
	if (dport == port_b)
		a->rx_udp_b++;
	if (dport == port_wild)
		a->rx_udp_wild++;
	if (a->port == 0 || dport != a->port)
		return;
	/* Swapping addresses and ports keeps both checksums valid. */
	memcpy(out, f, len);
	memcpy(out, f + 6, 6);
	memcpy(out + 6, netd_mac, 6);
	memcpy(tmp, out + 26, 4);
	memcpy(out + 26, out + 30, 4);
	memcpy(out + 30, tmp, 4);
	memcpy(tmp, out + 14 + ihl, 2);
	memcpy(out + 14 + ihl, out + 14 + ihl + 2, 2);
	memcpy(out + 14 + ihl + 2, tmp, 2);
	if (happ_send(a, out, len))
		a->echoed++;
}

static void *happ_main(void *arg)
{
	struct happ *a = arg;
	uint32_t idx, n, i, fidx;
	uint64_t junk;

	while (!a->stop) {
		int work = 0;

		pthread_mutex_lock(&a->lock);
		for (i = 0; i < (unsigned)a->ninject; i++)
			happ_send(a, a->inject_buf[i], a->inject_len[i]);
		work += a->ninject;
		a->ninject = 0;
		pthread_mutex_unlock(&a->lock);

		n = ring_cons_peek(&a->comp, 64, &idx);
		for (i = 0; i < n; i++) {
			struct ring_desc d;

			ring_cons_read(&a->comp, idx + i, &d);
			if (a->nfree < APP_FRAMES)
				a->free_tx[a->nfree++] = d.offset;
		}
		if (n)
			ring_cons_release(&a->comp, n);
		work += (int)n;

		if (a->paused) {
			msleep(5);
			continue;
		}
		n = ring_cons_peek(&a->rx, 64, &idx);
		for (i = 0; i < n; i++) {
			struct ring_desc d, *fd;

			ring_cons_read(&a->rx, idx + i, &d);
			if (ring_desc_valid(&a->hdr, &d))
				happ_rx(a, a->frames + d.offset, d.len);
			/* Lend the frame again: the fill ring has room for
			 * every RX frame, they are APP_RING in all. */
			if (ring_prod_reserve(&a->fill, 1, &fidx) == 1) {
				fd = ring_prod_desc(&a->fill, fidx);
				fd->offset = d.offset - d.offset % FRAME;
				fd->len = FRAME;
				fd->flags = 0;
				ring_prod_submit(&a->fill, 1);
			}
		}
		if (n)
			ring_cons_release(&a->rx, n);
		work += (int)n;
		if (work)
			continue;
		/* Sleep on the doorbell with the ring.h protocol. */
		if (ring_cons_prepare_sleep(&a->rx) == 0 && ring_cons_prepare_sleep(&a->comp) == 0) {
			struct pollfd p = { .fd = a->efd_app, .events = POLLIN };

			a->sleeps++;
			poll(&p, 1, 20);
			(void)!read(a->efd_app, &junk, sizeof(junk));
		}
		ring_cons_end_sleep(&a->rx);
		ring_cons_end_sleep(&a->comp);
	}
	return NULL;
}

/* ---- frames the main thread asks an application to send ---- */

static uint16_t csum(const uint8_t *p, size_t len)
{
	uint32_t s = 0;
	size_t i;

	for (i = 0; i + 1 < len; i += 2)
		s += rd16(p + i);
	if (len & 1)
		s += (uint32_t)p[len - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static uint32_t build_udp(uint8_t *f, const uint8_t *src_mac, const uint8_t *dst_mac,
			  const char *src_ip, uint16_t sport, const char *dst_ip, uint16_t dport,
			  const char *payload)
{
	size_t pl = strlen(payload);
	uint32_t len = (uint32_t)(42 + pl);
	struct in_addr s, d;
	uint16_t c;

	inet_pton(AF_INET, src_ip, &s);
	inet_pton(AF_INET, dst_ip, &d);
	memset(f, 0, len < 60 ? 60 : len);
	memcpy(f, dst_mac, 6);
	memcpy(f + 6, src_mac, 6);
	f[12] = 0x08;
	f[14] = 0x45;
	f[16] = (uint8_t)((20 + 8 + pl) >> 8);
	f[17] = (uint8_t)(20 + 8 + pl);
	f[22] = 64;
	f[23] = 17;
	memcpy(f + 26, &s, 4);
	memcpy(f + 30, &d, 4);
	c = csum(f + 14, 20);
	f[24] = (uint8_t)(c >> 8);
	f[25] = (uint8_t)c;
	f[34] = (uint8_t)(sport >> 8);
	f[35] = (uint8_t)sport;
	f[36] = (uint8_t)(dport >> 8);
	f[37] = (uint8_t)dport;
	f[38] = (uint8_t)((8 + pl) >> 8);
	f[39] = (uint8_t)(8 + pl);
	memcpy(f + 42, payload, pl); /* UDP checksum 0: none */
	return len < 60 ? 60 : len;
}

static void happ_inject(struct happ *a, const uint8_t *f, uint32_t len)
{
	pthread_mutex_lock(&a->lock);
	if (a->ninject < 8 && len <= sizeof(a->inject_buf[0])) {
		memcpy(a->inject_buf[a->ninject], f, len);
		a->inject_len[a->ninject++] = len;
	}
	pthread_mutex_unlock(&a->lock);
}

/* ---- talking to netd ---- */

static int ctl;
static char reply[65536];

/* Send one request; returns the reply's errno value (0 success). */
static int netd_req(const char *text, const int *fds, int nfds)
{
	const char *e;
	int n;

	if (ctl_send(ctl, text, strlen(text), fds, nfds) < 0)
		return EPIPE;
	n = ctl_recv(ctl, reply, sizeof(reply), NULL, NULL);
	if (n <= 0)
		return EPIPE;
	e = strstr(reply, "errno=");
	return e ? atoi(e + 6) : EPROTO;
}

/* A counter from the last stats reply: global (app 0) or one application's; -1 if absent. */
static long long stat_get(uint32_t app, const char *key)
{
	char pat[64], line[32];
	const char *p, *eol;
	size_t kl;

	if (app == 0) {
		snprintf(pat, sizeof(pat), "%s=", key);
		kl = strlen(pat);
		for (p = reply; p && *p; p = (eol = strchr(p, '\n')) ? eol + 1 : NULL)
			if (!strncmp(p, pat, kl))
				return atoll(p + kl);
		return -1;
	}
	snprintf(line, sizeof(line), "app=%u ", app);
	p = strstr(reply, line);
	if (p == NULL)
		return -1;
	eol = strchr(p, '\n');
	snprintf(pat, sizeof(pat), " %s=", key);
	p = strstr(p, pat);
	/* Counters that stayed 0 are left out of the reply. */
	if (p == NULL || (eol && p > eol))
		return 0;
	return atoll(p + strlen(pat));
}

static long long stats(uint32_t app, const char *key)
{
	if (netd_req("stats\n", NULL, 0))
		return -1;
	return stat_get(app, key);
}

/* ---- the peer ---- */

static int peer_sh(const char *cmd)
{
	char buf[4096];
	int st;

	snprintf(buf, sizeof(buf), "timeout 15 ip netns exec %s sh -c '%s' >&2", opt_peer, cmd);
	st = system(buf);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int peer_py(const char *code)
{
	char buf[8192];
	int st;

	snprintf(buf, sizeof(buf), "timeout 15 ip netns exec %s python3 -c \"%s\" >&2", opt_peer, code);
	st = system(buf);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static bool wait_until(uint64_t *counter, uint64_t want, unsigned ms)
{
	unsigned t;

	for (t = 0; t < ms; t += 10) {
		if (__atomic_load_n(counter, __ATOMIC_RELAXED) >= want)
			return true;
		msleep(10);
	}
	return __atomic_load_n(counter, __ATOMIC_RELAXED) >= want;
}

/* ---- setup ---- */

static void bpffs(void)
{
	struct statfs st;

	if (statfs("/sys/fs/bpf", &st) == 0 && st.f_type == BPF_FS_MAGIC)
		return;
	/* `ip netns exec` gives us a fresh /sys without bpffs; libxdp wants one. */
	mkdir("/sys/fs/bpf", 0700);
	mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700");
}

/* libxdp explains its dispatcher fallback at length; the test reports failures itself. */
static int quiet_bpf(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return 0;
}

static int quiet_xdp(enum libxdp_print_level level, const char *fmt, va_list ap)
{
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: netd_harness --netd PATH --mac MAC [--ifname pf0] [--peer-ns NS] "
		"[--ip 10.42.0.2] [--peer-ip 10.42.0.1]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct xsk_ring_prod xfill, xtx;
	struct xsk_ring_cons xcomp, xrx;
	struct xsk_umem *umem = NULL;
	struct xsk_socket *xsk = NULL;
	struct xsk_umem_config ucfg = {
		.fill_size = XRING, .comp_size = XRING, .frame_size = FRAME,
		.frame_headroom = 0, .flags = 0,
	};
	struct xsk_socket_config scfg = {
		.rx_size = XRING, .tx_size = XRING, .libxdp_flags = 0,
		.xdp_flags = XDP_FLAGS_DRV_MODE, .bind_flags = XDP_COPY | XDP_USE_NEED_WAKEUP,
	};
	static struct happ A, B, C;
	size_t umem_size = (size_t)UMEM_FRAMES * FRAME, pt_size = porttab_size(64);
	int umem_fd, pt_fd, sp[2], fds[3], err, i, st;
	uint8_t frame[256], bad_mac[6] = { 0x02, 0x4c, 0, 0, 0x0e, 0x0e };
	struct porttab pt;
	char text[512], cmd[2048];
	uint32_t ip_h;
	struct in_addr ia;
	void *area, *ptm;
	pid_t netd;
	long long v, b_before;
	bool ok;

	for (i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			usage();
		if (!strcmp(argv[i], "--netd"))
			opt_netd = argv[++i];
		else if (!strcmp(argv[i], "--ifname"))
			opt_ifname = argv[++i];
		else if (!strcmp(argv[i], "--peer-ns"))
			opt_peer = argv[++i];
		else if (!strcmp(argv[i], "--ip"))
			opt_ip = argv[++i];
		else if (!strcmp(argv[i], "--peer-ip"))
			opt_peer_ip = argv[++i];
		else if (!strcmp(argv[i], "--mac")) {
			snprintf(netd_mac_str, sizeof(netd_mac_str), "%s", argv[++i]);
			if (sscanf(netd_mac_str, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &netd_mac[0],
				   &netd_mac[1], &netd_mac[2], &netd_mac[3], &netd_mac[4],
				   &netd_mac[5]) != 6)
				usage();
		} else
			usage();
	}
	if (opt_netd == NULL || netd_mac_str[0] == 0 || inet_pton(AF_INET, opt_ip, &ia) != 1)
		usage();
	ip_h = ntohl(ia.s_addr);
	signal(SIGPIPE, SIG_IGN);
	bpffs();
	if (!getenv("NETD_HARNESS_VERBOSE")) {
		libbpf_set_print(quiet_bpf);
		libxdp_set_print(quiet_xdp);
	}

	/* The PF's XSK and UMEM, as librettod makes them for VFs. */
	umem_fd = sealed_memfd("netd-test-umem", umem_size);
	area = mmap(NULL, umem_size, PROT_READ | PROT_WRITE, MAP_SHARED, umem_fd, 0);
	if (area == MAP_FAILED)
		die("umem mmap", errno);
	err = xsk_umem__create(&umem, area, umem_size, &xfill, &xcomp, &ucfg);
	if (err)
		die("xsk_umem__create", -err);
	err = xsk_socket__create(&xsk, opt_ifname, 0, umem, &xrx, &xtx, &scfg);
	if (err)
		die("xsk_socket__create", -err);

	/* The port table: A owns UDP port_a, B owns UDP port_b on the shared IP. */
	pt_fd = sealed_memfd("netd-test-porttab", pt_size);
	ptm = mmap(NULL, pt_size, PROT_READ | PROT_WRITE, MAP_SHARED, pt_fd, 0);
	if (ptm == MAP_FAILED || porttab_init(ptm, pt_size) || porttab_attach(&pt, ptm, pt_size))
		die("porttab", EINVAL);
	if (porttab_insert(&pt, ip_h, 17, port_a, 1) || porttab_insert(&pt, ip_h, 17, port_b, 2) ||
	    porttab_insert(&pt, ip_h, 17, port_c, 3) || porttab_insert(&pt, 0, 17, port_wild, 2))
		die("porttab_insert", EINVAL);

	happ_init(&A, 1, port_a);
	happ_init(&B, 2, 0);
	happ_init(&C, 3, 0);

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
		die("socketpair", errno);
	netd = fork();
	if (netd < 0)
		die("fork", errno);
	if (netd == 0) {
		/* The child end becomes fd 3 and survives exec; everything
		 * else is CLOEXEC. */
		if (sp[1] == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(sp[1], 3) < 0)
			_exit(127);
		if (getenv("NETD_STATS_JSON"))
			execl(opt_netd, "libretto-netd", "--control-fd", "3", "--stats-json",
			      getenv("NETD_STATS_JSON"), (char *)NULL);
		else
			execl(opt_netd, "libretto-netd", "--control-fd", "3", (char *)NULL);
		_exit(127);
	}
	close(sp[1]);
	ctl = sp[0];

	/* Registration, and a few refusals on the way. */
	snprintf(text, sizeof(text), "nic\nifname=%s\nmac=%s\numem_size=%zu\nframe_size=%d\n"
		 "ring_size=%d\n", opt_ifname, netd_mac_str, umem_size, FRAME, XRING);
	fds[0] = xsk_socket__fd(xsk);
	fds[1] = umem_fd;
	check(netd_req(text, fds, 2) == 0, "nic registered (%s)", reply);
	check(netd_req("nic\n", NULL, 0) == EEXIST, "a second nic is refused");
	snprintf(text, sizeof(text), "porttab\nsize=%zu\n", pt_size);
	check(netd_req(text, &pt_fd, 1) == 0, "porttab registered");
	snprintf(text, sizeof(text), "ip\naddr=%s\n", opt_ip);
	check(netd_req(text, NULL, 0) == 0, "ip %s registered", opt_ip);
	{
		/* An unsealed region would let the app crash netd with SIGBUS. */
		int bad = memfd_create("unsealed", MFD_CLOEXEC);

		(void)!ftruncate(bad, 1 << 20);
		fds[0] = bad;
		fds[1] = A.efd_netd;
		fds[2] = A.efd_app;
		snprintf(text, sizeof(text), "app_add\nid=9\nips=%s\n", opt_ip);
		check(netd_req(text, fds, 3) == EPERM, "an unsealed region is refused (%s)", reply);
		close(bad);
	}
	fds[0] = A.region_fd;
	fds[1] = A.efd_netd;
	fds[2] = A.efd_app;
	snprintf(text, sizeof(text), "app_add\nid=1\nips=%s\n", opt_ip);
	check(netd_req(text, fds, 3) == 0, "app A registered");
	fds[0] = B.region_fd;
	fds[1] = B.efd_netd;
	fds[2] = B.efd_app;
	snprintf(text, sizeof(text), "app_add\nid=2\nips=%s,%s\n", opt_ip, b_own_ip);
	check(netd_req(text, fds, 3) == 0, "app B registered");
	fds[0] = C.region_fd;
	fds[1] = C.efd_netd;
	fds[2] = C.efd_app;
	snprintf(text, sizeof(text), "app_add\nid=3\nips=%s\n", opt_ip);
	check(netd_req(text, fds, 3) == 0, "app C (the hostile one) registered");
	check(netd_req("bogus\n", NULL, 0) == EINVAL, "an unknown command is refused");
	check(ring_region_generation(A.mem) == 2 &&
	      (__atomic_load_n(&((struct ring_region_hdr *)A.mem)->flags, __ATOMIC_ACQUIRE) &
	       RING_REGION_F_NETD_UP), "netd bumped the generation and set NETD_UP");
	if (failures)
		goto out;
	pthread_create(&A.thr, NULL, happ_main, &A);
	pthread_create(&B.thr, NULL, happ_main, &B);

	/* 1. ping and ARP. */
	peer_sh("ip neigh flush all");
	snprintf(cmd, sizeof(cmd), "ping -c 3 -i 0.2 -W 2 %s", opt_ip);
	check(peer_sh(cmd) == 0, "the peer pings %s (answered by netd)", opt_ip);
	snprintf(cmd, sizeof(cmd), "ip neigh show %s | grep -qi %s", opt_ip, netd_mac_str);
	check(peer_sh(cmd) == 0, "ARP resolves %s to %s", opt_ip, netd_mac_str);
	v = stats(0, "echo_replies");
	check(v >= 3, "netd counted its echo replies (%lld)", v);
	check(wait_until(&A.rx_arp, 1, 1000) && wait_until(&B.rx_arp, 1, 1000),
	      "both apps on the IP got a copy of the ARP request (A %llu, B %llu)",
	      (unsigned long long)A.rx_arp, (unsigned long long)B.rx_arp);

	/* 2. UDP to A's port reaches A only, and A's echo reaches the peer. */
	snprintf(cmd, sizeof(cmd),
		 "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
		 "s.settimeout(3)\ns.sendto(b'hello-A',('%s',%u))\nd,a=s.recvfrom(2048)\n"
		 "print('echo',d,a)\nsys.exit(0 if d==b'hello-A' and a==('%s',%u) else 1)",
		 opt_ip, port_a, opt_ip, port_a);
	check(peer_py(cmd) == 0, "a UDP datagram to %s:%u comes back from app A", opt_ip, port_a);
	check(A.rx_udp_a == 1 && B.rx_udp_a == 0,
	      "it reached app A only (A saw %llu, B saw %llu)",
	      (unsigned long long)A.rx_udp_a, (unsigned long long)B.rx_udp_a);
	v = stats(1, "tx_frames");
	check(v >= 1 && stat_get(1, "rx_frames") >= 1, "netd counted app A's rx and tx (tx %lld, rx %lld)",
	      v, stat_get(1, "rx_frames"));

	/* 2b. B's own address: ARP answered, B's wildcard port reaches B,
	 * A's port (bound on the shared address only) reaches nobody. */
	v = stats(0, "rx_no_port");
	snprintf(cmd, sizeof(cmd),
		 "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
		 "s.sendto(b'to-B-own',('%s',%u))\ns.sendto(b'not-A',('%s',%u))",
		 b_own_ip, port_wild, b_own_ip, port_a);
	check(peer_py(cmd) == 0, "the peer sent to %s:%u and :%u", b_own_ip, port_wild, port_a);
	ok = wait_until(&B.rx_udp_wild, 1, 2000);
	check(ok && A.rx_udp_wild == 0, "B's wildcard port on its own address reaches B only");
	msleep(100);
	b_before = stats(0, "rx_no_port");
	check(A.rx_udp_a == 1 && b_before == v + 1,
	      "A's port on B's address reaches nobody (rx_no_port %lld -> %lld)", v, b_before);
	snprintf(cmd, sizeof(cmd), "ip neigh show %s | grep -qi %s", b_own_ip, netd_mac_str);
	check(peer_sh(cmd) == 0, "ARP resolves B's own %s to netd's MAC", b_own_ip);

	/* 3. Spoofed transmissions are dropped and counted; a legitimate one goes. */
	snprintf(cmd, sizeof(cmd), "timeout 5 ip netns exec %s python3 -c \"import socket\n"
		 "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('%s',5555))\n"
		 "s.settimeout(2)\ntry:\n  while True:\n    d,a=s.recvfrom(2048); print(d.decode(), a[1]); "
		 "import sys; sys.stdout.flush()\nexcept Exception: pass\"", opt_peer, opt_peer_ip);
	{
		FILE *lp = popen(cmd, "r");
		uint8_t peer_mac[6] = { 0x02, 0x4c, 0, 0, 0, 0x01 };
		char line[256], got[1024] = "";
		uint32_t len;

		msleep(500);
		/* Idle for 500 ms: netd sleeps and asked A for a doorbell, so
		 * the legitimate frame below also proves netd wakes on efd_netd. */
		check(__atomic_load_n(A.tx.flags, __ATOMIC_ACQUIRE) & RING_NEED_WAKEUP,
		      "idle netd set NEED_WAKEUP on A's tx ring");
		len = build_udp(frame, netd_mac, peer_mac, "10.42.0.3", port_a, opt_peer_ip, 5555,
				"spoof-ip");
		happ_inject(&A, frame, len);
		len = build_udp(frame, netd_mac, peer_mac, opt_ip, port_b, opt_peer_ip, 5555,
				"spoof-port");
		happ_inject(&A, frame, len);
		len = build_udp(frame, bad_mac, peer_mac, opt_ip, port_a, opt_peer_ip, 5555,
				"spoof-mac");
		happ_inject(&A, frame, len);
		len = build_udp(frame, netd_mac, peer_mac, opt_ip, port_a, opt_peer_ip, 5555,
				"legit");
		happ_inject(&A, frame, len);
		while (lp && fgets(line, sizeof(line), lp))
			strncat(got, line, sizeof(got) - strlen(got) - 1);
		if (lp)
			pclose(lp);
		check(strstr(got, "legit") != NULL && strstr(got, "spoof") == NULL,
		      "the peer got the legitimate frame and no spoofed one (got: %s)", got);
	}
	stats(1, "tx_drops");
	check(stat_get(1, "tx_drop_src_ip") == 1 && stat_get(1, "tx_drop_src_port") == 1 &&
	      stat_get(1, "tx_drop_src_mac") == 1,
	      "netd counted the spoofs: src_ip %lld, src_port %lld, src_mac %lld",
	      stat_get(1, "tx_drop_src_ip"), stat_get(1, "tx_drop_src_port"),
	      stat_get(1, "tx_drop_src_mac"));

	/* 4. TCP to a port nobody has: RST, so connect() is refused. */
	snprintf(cmd, sizeof(cmd),
		 "import socket,sys\ns=socket.socket()\ns.settimeout(3)\ntry:\n"
		 "  s.connect(('%s',9))\nexcept ConnectionRefusedError:\n  sys.exit(0)\n"
		 "except Exception as e:\n  print(repr(e))\nsys.exit(1)", opt_ip);
	check(peer_py(cmd) == 0, "TCP connect to %s:9 is refused (RST from netd)", opt_ip);
	v = stats(0, "rst_sent");
	check(v >= 1, "netd counted the RST (%lld)", v);

	/* 4b. UDP to a port nobody has: ICMP port unreachable, as from Linux. */
	snprintf(cmd, sizeof(cmd),
		 "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
		 "s.settimeout(2)\ns.connect(('%s',9))\ns.send(b'x')\ntry:\n  s.recv(100)\n"
		 "except ConnectionRefusedError:\n  sys.exit(0)\nexcept Exception as e:\n"
		 "  print(repr(e))\nsys.exit(1)", opt_ip);
	check(peer_py(cmd) == 0, "UDP to %s:9 gets port unreachable (ECONNREFUSED)", opt_ip);

	/* 5. B stops consuming; a flood to B does not stall A. */
	B.paused = 1;
	msleep(50);
	b_before = stats(2, "rx_frames");
	snprintf(cmd, sizeof(cmd),
		 "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
		 "for i in range(1500):\n  s.sendto(b'x'*64,('%s',%u))\n"
		 "  i%%100==99 and time.sleep(0.005)", opt_ip, port_b);
	check(peer_py(cmd) == 0, "the peer sent 1500 datagrams to stalled app B");
	snprintf(cmd, sizeof(cmd),
		 "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
		 "s.settimeout(1)\nok=0\nfor i in range(20):\n  s.sendto(b'again',('%s',%u))\n"
		 "  try:\n    d,a=s.recvfrom(2048); ok+=d==b'again'\n  except socket.timeout: pass\n"
		 "print('echoes',ok)\nsys.exit(0 if ok>=19 else 1)", opt_ip, port_a);
	check(peer_py(cmd) == 0, "app A still echoes while B is stalled");
	v = stats(2, "rx_ring_full");
	/* B lent APP_RING frames: exactly that many fit, the rest are dropped. */
	check(v > 0 && stat_get(2, "rx_frames") - b_before == APP_RING,
	      "netd dropped B's overflow (rx_ring_full %lld, %lld delivered into %d lent frames)",
	      v, stat_get(2, "rx_frames") - b_before, APP_RING);
	B.paused = 0;
	ok = wait_until(&B.rx_udp_b, APP_RING, 2000);
	check(ok, "B, resumed, drains its ring (%llu)", (unsigned long long)B.rx_udp_b);
	check(B.rx_udp_a == 0, "B never saw A's datagrams");

	/* 6. C turns hostile: garbage fill and tx descriptors, an impossible
	 * producer index, a rewritten region header.  netd must survive, count
	 * it against C alone, and go on serving the others. */
	{
		struct ring_region_hdr *h = C.mem;
		uint32_t i2, idx;
		uint64_t one = 1;

		for (i2 = 0; i2 < APP_RING; i2++)
			__atomic_store_n(&C.fill.descs[i2].offset, (uint64_t)1 << 40, __ATOMIC_RELAXED);
		snprintf(cmd, sizeof(cmd),
			 "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
			 "for i in range(3): s.sendto(b'to-C',('%s',%u))", opt_ip, port_c);
		peer_py(cmd);
		ring_prod_reserve(&C.tx, 2, &idx);
		ring_prod_desc(&C.tx, idx)->offset = C.hdr.frames_len + 4096;
		ring_prod_desc(&C.tx, idx)->len = 100;
		ring_prod_desc(&C.tx, idx + 1)->offset = 0;
		ring_prod_desc(&C.tx, idx + 1)->len = 0;
		ring_prod_submit(&C.tx, 2);
		(void)!write(C.efd_netd, &one, sizeof(one));
		msleep(100);
		__atomic_store_n(C.tx.producer, C.tx.prod + 0x80000000u, __ATOMIC_RELEASE);
		h->ring_size = 1u << 30;
		h->frames_len = ~0ull;
		(void)!write(C.efd_netd, &one, sizeof(one));
		msleep(100);
	}
	snprintf(cmd, sizeof(cmd), "ping -c 2 -i 0.2 -W 2 %s", opt_ip);
	check(peer_sh(cmd) == 0, "netd still answers ping after C's garbage");
	snprintf(cmd, sizeof(cmd),
		 "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
		 "s.settimeout(1)\ns.sendto(b'still',('%s',%u))\nd,a=s.recvfrom(2048)\n"
		 "sys.exit(0 if d==b'still' else 1)", opt_ip, port_a);
	check(peer_py(cmd) == 0, "app A still echoes after C's garbage");
	v = stats(3, "rx_bad_fill");
	check(v == 3 && stat_get(3, "tx_drop_desc_bounds") == 1 &&
	      stat_get(3, "tx_drop_too_short") == 1 && stat_get(3, "ring_errors") >= 1 &&
	      stat_get(3, "tx_frames") == 0,
	      "C's garbage is counted against C: rx_bad_fill %lld, tx_drop_desc_bounds %lld, "
	      "tx_drop_too_short %lld, ring_errors %lld", v, stat_get(3, "tx_drop_desc_bounds"),
	      stat_get(3, "tx_drop_too_short"), stat_get(3, "ring_errors"));
	check(stat_get(1, "ring_errors") == 0 && stat_get(2, "ring_errors") == 0,
	      "and not against A or B");
	check(netd_req("app_del\nid=3\n", NULL, 0) == 0, "app C deregistered");

	/* 7. app_del, then quit. */
	check(netd_req("app_del\nid=2\n", NULL, 0) == 0, "app B deregistered");
	check(netd_req("app_del\nid=2\n", NULL, 0) == ENOENT, "a second app_del is refused");
	check(!(__atomic_load_n(&((struct ring_region_hdr *)B.mem)->flags, __ATOMIC_ACQUIRE) &
		RING_REGION_F_NETD_UP), "NETD_UP cleared on B's region");
	stats(0, "rx_frames");
	fprintf(stderr, "netd_harness: final stats:\n%s\n", reply);
out:
	check(netd_req("quit\n", NULL, 0) == 0, "quit acknowledged");
	for (i = 0; i < 40; i++) {
		if (waitpid(netd, &st, WNOHANG) == netd)
			break;
		msleep(50);
	}
	if (i == 40) {
		kill(netd, SIGKILL);
		waitpid(netd, &st, 0);
		check(false, "netd did not exit within 2 s of quit");
	} else {
		check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "netd exited with status 0");
	}
	A.stop = B.stop = 1;
	if (A.thr)
		pthread_join(A.thr, NULL);
	if (B.thr)
		pthread_join(B.thr, NULL);
	xsk_socket__delete(xsk);
	xsk_umem__delete(umem);
	fprintf(stderr, "netd_harness: %s (%d failure%s)\n", failures ? "FAILED" : "PASSED",
		failures, failures == 1 ? "" : "s");
	return failures ? 1 : 0;
}
