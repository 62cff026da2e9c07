/* fake-lease: run a command on the library OS with a NIC lease made here, without librettod (tests only). */
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <net/if.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/if_packet.h>

#include <bpf/libbpf.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>

#include "common/kv.h"
#include "libretto/ctl.h"
#include "libretto/region.h"

/*
 * Usage: fake-lease --ifname DEV --ip A --prefix N [--gateway G]
 *                   --backend afpacket|afxdp [--preload SO | --no-preload]
 *                   -- CMD ARGS...
 *
 * Creates what librettod would hand an application (an AF_PACKET socket, or
 * an AF_XDP socket with a memfd UMEM; a counters region; a lease connection),
 * puts LIBRETTO_LEASE and LD_PRELOAD in the environment exactly as
 * `libretto run` does, and runs CMD in a child.  --no-preload leaves
 * LD_PRELOAD alone, for a CMD that loads the runtime itself (a debugger's
 * inferior, a program linked with it).  When CMD ends, prints the
 * region's counters on stderr as one key=value line and exits with CMD's
 * status (128+N if a signal N killed it).  Exits 77 when not root (a test
 * skip), 2 on usage errors, 1 when the NIC access cannot be made.
 */

#define FL_FRAME_SIZE 2048
#define FL_NFRAMES 4096
#define FL_RING_SIZE 2048

#ifndef LIBRETTO_SO_PATH
#define LIBRETTO_SO_PATH "libretto.so"
#endif

static pid_t child = -1;

/* libbpf and libxdp chat about their fallbacks (no bpffs: no dispatcher);
 * failures reach us as return values, which we report. */
static int quiet_libbpf(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return 0;
}

static int quiet_libxdp(enum libxdp_print_level level, const char *fmt, va_list ap)
{
	return 0;
}

static void forward_signal(int sig)
{
	if (child > 0)
		kill(child, sig);
}

static void usage(void)
{
	fprintf(stderr, "usage: fake-lease --ifname DEV --ip A --prefix N [--gateway G]\n"
		"                  --backend afpacket|afxdp [--preload SO | --no-preload]\n"
		"                  -- CMD ARGS...\n");
	exit(2);
}

static int get_mac(const char *ifname, unsigned char mac[6])
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (s < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(s, SIOCGIFHWADDR, &ifr) < 0) {
		int e = -errno;

		close(s);
		return e;
	}
	close(s);
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	return 0;
}

static int make_region(void)
{
	struct libretto_region *r;
	int fd = memfd_create("libretto-region", MFD_CLOEXEC);

	if (fd < 0)
		err(1, "memfd_create");
	if (ftruncate(fd, LIBRETTO_REGION_SIZE) < 0)
		err(1, "ftruncate region");
	r = mmap(NULL, LIBRETTO_REGION_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (r == MAP_FAILED)
		err(1, "mmap region");
	r->magic = LIBRETTO_REGION_MAGIC;
	r->version = LIBRETTO_REGION_VERSION;
	munmap(r, LIBRETTO_REGION_SIZE);
	return fd;
}

static int make_packet(int ifindex)
{
	struct sockaddr_ll sll = {
		.sll_family = AF_PACKET,
		.sll_protocol = htons(ETH_P_ALL),
		.sll_ifindex = ifindex,
	};
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));

	if (fd < 0)
		err(1, "socket(AF_PACKET)");
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0)
		err(1, "bind(AF_PACKET)");
	return fd;
}

struct xsk_state {
	struct xsk_umem *umem;
	struct xsk_socket *xsk;
	struct xsk_ring_prod fill, tx;
	struct xsk_ring_cons comp, rx;
	int umem_fd;
	int xsk_fd;
};

static void make_xsk(const char *ifname, struct xsk_state *s)
{
	size_t size = (size_t)FL_NFRAMES * FL_FRAME_SIZE;
	struct xsk_umem_config ucfg = {
		.fill_size = FL_RING_SIZE,
		.comp_size = FL_RING_SIZE,
		.frame_size = FL_FRAME_SIZE,
		.frame_headroom = 0,
	};
	struct xsk_socket_config scfg = {
		.rx_size = FL_RING_SIZE,
		.tx_size = FL_RING_SIZE,
		.xdp_flags = XDP_FLAGS_DRV_MODE,
		.bind_flags = XDP_COPY | XDP_USE_NEED_WAKEUP,
	};
	void *area;
	int e;

	s->umem_fd = memfd_create("libretto-umem", MFD_CLOEXEC);
	if (s->umem_fd < 0)
		err(1, "memfd_create umem");
	if (ftruncate(s->umem_fd, (off_t)size) < 0)
		err(1, "ftruncate umem");
	area = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, s->umem_fd, 0);
	if (area == MAP_FAILED)
		err(1, "mmap umem");
	e = xsk_umem__create(&s->umem, area, size, &s->fill, &s->comp, &ucfg);
	if (e)
		errx(1, "xsk_umem__create: %s", strerror(-e));
	/* The kernel releases a closed socket's hold on the queue a little
	 * later (deferred work): right after a previous run the queue can be
	 * busy for a moment. */
	for (int i = 0; i < 40; i++) {
		e = xsk_socket__create(&s->xsk, ifname, 0, s->umem, &s->rx, &s->tx, &scfg);
		if (e != -EBUSY)
			break;
		usleep(50000);
	}
	if (e)
		errx(1, "xsk_socket__create on %s (native XDP, copy mode): %s", ifname, strerror(-e));
	s->xsk_fd = xsk_socket__fd(s->xsk);
}

/* A descriptor the exec'd program inherits (the originals are close-on-exec). */
static int inheritable(int fd)
{
	int n = fcntl(fd, F_DUPFD, 3);

	if (n < 0)
		err(1, "dup");
	return n;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ifname", required_argument, NULL, 'i' },
		{ "ip", required_argument, NULL, 'a' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "gateway", required_argument, NULL, 'g' },
		{ "backend", required_argument, NULL, 'b' },
		{ "preload", required_argument, NULL, 'P' },
		{ "no-preload", no_argument, NULL, 'N' },
		{ NULL, 0, NULL, 0 },
	};
	const char *ifname = NULL, *ip = NULL, *prefix = NULL, *gateway = "none";
	const char *backend = NULL, *preload = getenv("LIBRETTO_PRELOAD");
	struct xsk_state xs = { .umem_fd = -1, .xsk_fd = -1 };
	struct kv_buf b;
	char lease[1024], mac_s[32], *oldpre, *newpre;
	unsigned char mac[6] = { 0 };
	struct sigaction sa;
	int no_preload = 0;
	int c, ifindex, region_fd, packet_fd = -1, sv[2], status;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'i': ifname = optarg; break;
		case 'a': ip = optarg; break;
		case 'p': prefix = optarg; break;
		case 'g': gateway = optarg; break;
		case 'b': backend = optarg; break;
		case 'P': preload = optarg; break;
		case 'N': no_preload = 1; break;
		default: usage();
		}
	}
	if (!ifname || !ip || !prefix || !backend || optind >= argc)
		usage();
	if (strcmp(backend, "afpacket") != 0 && strcmp(backend, "afxdp") != 0)
		usage();
	if (!preload || !*preload)
		preload = LIBRETTO_SO_PATH;
	if (geteuid() != 0) {
		fprintf(stderr, "fake-lease: needs root (raw sockets, XDP)\n");
		return 77;
	}
	ifindex = (int)if_nametoindex(ifname);
	if (!ifindex)
		err(1, "%s", ifname);
	if (get_mac(ifname, mac) < 0)
		err(1, "MAC of %s", ifname);
	snprintf(mac_s, sizeof(mac_s), "%02x:%02x:%02x:%02x:%02x:%02x",
		 mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);

	region_fd = make_region();
	if (strcmp(backend, "afxdp") == 0) {
		libbpf_set_print(quiet_libbpf);
		libxdp_set_print(quiet_libxdp);
		make_xsk(ifname, &xs);
	}
	else
		packet_fd = make_packet(ifindex);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		err(1, "socketpair");

	/* The same keys as the register reply, then the descriptors. */
	kv_buf_init(&b, lease, sizeof(lease));
	kv_buf_add(&b, ' ', "id", "%d", 1);
	kv_buf_add(&b, ' ', "name", "%s", "fake");
	kv_buf_add(&b, ' ', "ip", "%s", ip);
	kv_buf_add(&b, ' ', "prefix", "%s", prefix);
	kv_buf_add(&b, ' ', "gateway", "%s", gateway);
	kv_buf_add(&b, ' ', "mac", "%s", mac_s);
	kv_buf_add(&b, ' ', "vf", "%s", ifname);
	kv_buf_add(&b, ' ', "ifindex", "%d", ifindex);
	kv_buf_add(&b, ' ', "backend", "%s", backend);
	if (packet_fd < 0) {
		kv_buf_add(&b, ' ', "umem_size", "%zu", (size_t)FL_NFRAMES * FL_FRAME_SIZE);
		kv_buf_add(&b, ' ', "frame_size", "%d", FL_FRAME_SIZE);
		kv_buf_add(&b, ' ', "ring_size", "%d", FL_RING_SIZE);
		kv_buf_add(&b, ' ', "fds", "%s", "xsk,umem,region");
	} else {
		kv_buf_add(&b, ' ', "fds", "%s", "packet,region");
	}

	child = fork();
	if (child < 0)
		err(1, "fork");
	if (child == 0) {
		if (packet_fd < 0) {
			/* libxdp's socket is not close-on-exec: only our copy
			 * may reach the program, as with librettod. */
			fcntl(xs.xsk_fd, F_SETFD, FD_CLOEXEC);
			kv_buf_add(&b, ' ', "xsk_fd", "%d", inheritable(xs.xsk_fd));
			kv_buf_add(&b, ' ', "umem_fd", "%d", inheritable(xs.umem_fd));
		} else {
			kv_buf_add(&b, ' ', "packet_fd", "%d", inheritable(packet_fd));
		}
		kv_buf_add(&b, ' ', "region_fd", "%d", inheritable(region_fd));
		kv_buf_add(&b, ' ', "ctl_fd", "%d", inheritable(sv[1]));
		if (!kv_buf_ok(&b))
			errx(1, "lease too long");
		b.p[b.len - 1] = '\0'; /* no trailing separator */
		setenv(LIBRETTO_LEASE_ENV, lease, 1);
		if (no_preload)
			goto run;
		oldpre = getenv("LD_PRELOAD");
		if (oldpre && *oldpre) {
			if (asprintf(&newpre, "%s %s", preload, oldpre) < 0)
				err(1, "asprintf");
		} else {
			newpre = (char *)preload;
		}
		setenv("LD_PRELOAD", newpre, 1);
run:
		execvp(argv[optind], argv + optind);
		err(127, "%s", argv[optind]);
	}

	close(sv[1]);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = forward_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	while (waitpid(child, &status, 0) < 0)
		if (errno != EINTR)
			err(1, "waitpid");

	{
		struct libretto_region *r = mmap(NULL, LIBRETTO_REGION_SIZE, PROT_READ, MAP_SHARED,
						 region_fd, 0);

		if (r != MAP_FAILED) {
			fprintf(stderr, "fake-lease: rx_packets=%llu rx_bytes=%llu tx_packets=%llu "
				"tx_bytes=%llu rx_drops=%llu tx_drops=%llu nports=%u\n",
				(unsigned long long)r->rx_packets, (unsigned long long)r->rx_bytes,
				(unsigned long long)r->tx_packets, (unsigned long long)r->tx_bytes,
				(unsigned long long)r->rx_drops, (unsigned long long)r->tx_drops,
				r->nports);
			munmap(r, LIBRETTO_REGION_SIZE);
		}
	}
	if (xs.xsk)
		xsk_socket__delete(xs.xsk);
	if (xs.umem)
		xsk_umem__delete(xs.umem);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
