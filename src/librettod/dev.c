/* librettod's NIC access for one lease (AF_XDP or AF_PACKET on a VF) and the
 * per-application shared region. */
#include "librettod/librettod.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/if_packet.h>
#include <linux/if_xdp.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <bpf/libbpf.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>

#include "libretto/region.h"

/* The name libxdp gives its default XSK redirect program. */
#define XSK_DEF_PROG_NAME "xsk_def_prog"

/* libxdp's ring handles; it keeps pointers to them for the socket's life. */
struct dev_rings {
	struct xsk_ring_prod fill, tx;
	struct xsk_ring_cons comp, rx;
};

/*
 * libxdp and libbpf report the real cause of many failures only through
 * their print callbacks ("Kernel error message: Underlying driver does not
 * support XDP in native mode").  We log their warnings and keep the most
 * telling recent line so that an error reply can quote it.
 */
static char xdp_kernel_msg[200];
static char xdp_last_msg[200];
static bool dispatcher_noise, dispatcher_noted;

static void xdp_msg_reset(void)
{
	xdp_kernel_msg[0] = '\0';
	xdp_last_msg[0] = '\0';
}

/* The best explanation collected since xdp_msg_reset(). */
static const char *xdp_msg_detail(void)
{
	if (xdp_kernel_msg[0])
		return xdp_kernel_msg;
	if (xdp_last_msg[0])
		return xdp_last_msg;
	return NULL;
}

static void xdp_msg_line(const char *src, char *line)
{
	size_t n = strlen(line);
	const char *k;

	while (n && (line[n - 1] == '\n' || line[n - 1] == ' '))
		line[--n] = '\0';
	/*
	 * On kernels that refuse libxdp's dispatcher (it needs freplace
	 * programs), every attach first fails to load it, then attaches the
	 * program on its own.  Say that once instead of four lines per lease.
	 */
	if (strstr(line, "'xdp_pass'") && !dispatcher_noise)
		dispatcher_noise = true;
	if (dispatcher_noise) {
		if (strstr(line, "xdp-dispatcher.o")) {
			dispatcher_noise = false;
			if (!dispatcher_noted)
				ld_log("note: libxdp's multi-program dispatcher cannot be loaded on this "
				       "kernel; libxdp attaches the XSK program on its own (one XDP "
				       "program per VF)");
			dispatcher_noted = true;
		}
		return;
	}
	if ((k = strstr(line, "Kernel error message: ")))
		snprintf(xdp_kernel_msg, sizeof(xdp_kernel_msg), "%s", k + 22);
	else
		snprintf(xdp_last_msg, sizeof(xdp_last_msg), "%.*s", (int)strcspn(line, "\n"), line);
	ld_log("%s: %s", src, line);
}

/* One warning line from libxdp or libbpf: both prefix their own name; we
 * put it back uniformly. */
static void dev_lib_print(const char *lib, const char *fmt, va_list ap)
{
	char line[400];
	size_t n = strlen(lib);

	vsnprintf(line, sizeof(line), fmt, ap);
	if (!strncmp(line, lib, n) && !strncmp(line + n, ": ", 2))
		memmove(line, line + n + 2, strlen(line + n + 2) + 1);
	xdp_msg_line(lib, line);
}

static int dev_libxdp_print(enum libxdp_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBXDP_WARN)
		dev_lib_print("libxdp", fmt, ap);
	return 0;
}

static int dev_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_WARN)
		dev_lib_print("libbpf", fmt, ap);
	return 0;
}

static const char *bpffs_path(void)
{
	const char *p = getenv("LIBXDP_BPFFS");

	return p && *p ? p : "/sys/fs/bpf";
}

static bool bpffs_mounted(const char *path)
{
	struct statfs st;

	return statfs(path, &st) == 0 && st.f_type == BPF_FS_MAGIC;
}

/*
 * libxdp pins its multi-program dispatcher in bpffs; without one it can
 * only attach a single program the legacy way.  `ip netns exec` mounts a
 * fresh /sys without /sys/fs/bpf, so a daemon started that way often lacks
 * it: mount one (in our mount namespace) rather than lose the dispatcher.
 */
void dev_global_init(void)
{
	const char *path = bpffs_path();

	libxdp_set_print(dev_libxdp_print);
	libbpf_set_print(dev_libbpf_print);
	if (bpffs_mounted(path))
		return;
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		ld_log("warning: bpffs is not mounted and %s cannot be created (%s); "
		       "libxdp will attach XDP programs without its dispatcher", path, strerror(errno));
		return;
	}
	if (mount("bpf", path, "bpf", 0, "mode=0700") < 0) {
		ld_log("warning: bpffs is not mounted at %s and mounting it failed (%s); "
		       "libxdp will attach XDP programs without its dispatcher", path, strerror(errno));
		return;
	}
	ld_log("mounted bpffs at %s for libxdp's XDP dispatcher", path);
}

void dev_init(struct ld_dev *d)
{
	memset(d, 0, sizeof(*d));
	d->umem_fd = -1;
	d->pkt_fd = -1;
	d->xsk_fd = -1;
}

int dev_adopt(struct ld_dev *d, const char *ifname, enum proto_backend backend, int xsk_fd,
	      int umem_fd)
{
	int err;

	dev_init(d);
	snprintf(d->ifname, sizeof(d->ifname), "%s", ifname);
	err = dev_ifinfo(ifname, &d->ifindex, d->mac);
	if (err) {
		if (xsk_fd >= 0)
			close(xsk_fd);
		if (umem_fd >= 0)
			close(umem_fd);
		return err;
	}
	d->backend = backend;
	d->adopted = true;
	if (backend == PROTO_BACKEND_AFPACKET) {
		d->pkt_fd = xsk_fd;
		if (umem_fd >= 0)
			close(umem_fd);
	} else {
		d->xsk_fd = xsk_fd;
		d->umem_fd = umem_fd;
	}
	return 0;
}

int dev_xsk_fd(const struct ld_dev *d)
{
	return d->xsk ? xsk_socket__fd(d->xsk) : d->xsk_fd;
}

int dev_ifinfo(const char *ifname, int *ifindex, uint8_t mac[6])
{
	struct ifreq ifr;
	int fd, err = 0;

	if (strlen(ifname) >= sizeof(ifr.ifr_name))
		return -ENAMETOOLONG;
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, ifname);
	if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) {
		err = -errno;
		goto out;
	}
	*ifindex = ifr.ifr_ifindex;
	if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) {
		err = -errno;
		goto out;
	}
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
out:
	close(fd);
	return err;
}

static void dev_err(struct ld_dev_err *e, const char *token, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void dev_err(struct ld_dev_err *e, const char *token, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	snprintf(e->token, sizeof(e->token), "%s", token);
}

static const char *errname(int err)
{
	const char *n = strerrorname_np(err);

	return n ? n : "EUNKNOWN";
}

/* A memfd of size bytes whose size can never change again (no SIGBUS for
 * us if the application tries to shrink it). */
static int sealed_memfd(const char *name, size_t size)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

/*
 * Remove libxdp's XSK program from ifindex.  libxdp 1.3 leaves it attached
 * when the last socket goes (newer versions count users); each VF carries
 * at most one of our sockets, so once it is deleted nothing uses the
 * program.  Other programs in the dispatcher are left alone.
 */
static void dev_xdp_detach(int ifindex, const char *ifname)
{
	struct xdp_multiprog *mp = xdp_multiprog__get_from_ifindex(ifindex);
	struct xdp_program *p, *ours = NULL;
	enum xdp_attach_mode mode;
	int err;

	if (!mp || libxdp_get_error(mp))
		return;
	mode = xdp_multiprog__attach_mode(mp);
	if (xdp_multiprog__is_legacy(mp)) {
		p = xdp_multiprog__main_prog(mp);
		if (p && !strcmp(xdp_program__name(p), XSK_DEF_PROG_NAME))
			ours = p;
	} else {
		for (p = xdp_multiprog__next_prog(NULL, mp); p; p = xdp_multiprog__next_prog(p, mp))
			if (!strcmp(xdp_program__name(p), XSK_DEF_PROG_NAME))
				ours = p;
	}
	if (ours) {
		err = xdp_program__detach(ours, ifindex, mode, 0);
		if (err)
			ld_log("warning: could not detach the XSK program from %s: %s",
			       ifname, strerror(-err));
	}
	xdp_multiprog__close(mp);
}

int dev_open_afxdp(struct ld_dev *d, const char *ifname, struct ld_dev_err *e)
{
	const struct xsk_umem_config ucfg = {
		.fill_size = LD_RING_SIZE,
		.comp_size = LD_RING_SIZE,
		.frame_size = LD_FRAME_SIZE,
		.frame_headroom = 0,
		.flags = 0,
	};
	const struct xsk_socket_config scfg = {
		.rx_size = LD_RING_SIZE,
		.tx_size = LD_RING_SIZE,
		.libxdp_flags = 0,
		.xdp_flags = XDP_FLAGS_DRV_MODE,
		.bind_flags = XDP_COPY | XDP_USE_NEED_WAKEUP,
	};
	struct dev_rings *r;
	int err;

	dev_init(d);
	snprintf(d->ifname, sizeof(d->ifname), "%s", ifname);
	err = dev_ifinfo(ifname, &d->ifindex, d->mac);
	if (err) {
		dev_err(e, "no_such_vf", "VF %s is gone from librettod's network namespace (%s): "
			"was the testbed removed or rebuilt under librettod?  Run `libretto down`, "
			"`libretto testbed up`, `libretto up`", ifname, strerror(-err));
		return err;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		dev_err(e, "enomem", "out of memory");
		return -ENOMEM;
	}
	d->rings = r;
	err = sealed_memfd("libretto-umem", LD_UMEM_SIZE);
	if (err < 0) {
		dev_err(e, "umem_memfd", "cannot create the UMEM memfd: %s", strerror(-err));
		goto fail;
	}
	d->umem_fd = err;
	d->umem_area = mmap(NULL, LD_UMEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, d->umem_fd, 0);
	if (d->umem_area == MAP_FAILED) {
		err = -errno;
		d->umem_area = NULL;
		dev_err(e, "umem_mmap", "cannot map the UMEM: %s", strerror(-err));
		goto fail;
	}
	xdp_msg_reset();
	err = xsk_umem__create(&d->umem, d->umem_area, LD_UMEM_SIZE, &r->fill, &r->comp, &ucfg);
	if (err) {
		d->umem = NULL;
		if (err == -EAFNOSUPPORT)
			dev_err(e, "afxdp_unsupported",
				"the kernel has no AF_XDP sockets (EAFNOSUPPORT; CONFIG_XDP_SOCKETS)");
		else if (err == -EPERM || err == -ENOBUFS)
			dev_err(e, "umem_register",
				"registering the UMEM failed: %s (%s; librettod needs CAP_NET_RAW and "
				"CAP_IPC_LOCK or enough RLIMIT_MEMLOCK)", strerror(-err), errname(-err));
		else
			dev_err(e, "umem_register", "registering the UMEM failed: %s (%s)",
				strerror(-err), errname(-err));
		goto fail;
	}
	err = xsk_socket__create(&d->xsk, ifname, 0, d->umem, &r->rx, &r->tx, &scfg);
	if (err) {
		char tok[40];
		const char *detail = xdp_msg_detail();
		char why[sizeof(xdp_kernel_msg) + 4];

		snprintf(why, sizeof(why), "%s%s", detail ? ": " : "", detail ? detail : "");
		d->xsk = NULL;
		snprintf(tok, sizeof(tok), "xsk_%s", errname(-err));
		if (err == -EOPNOTSUPP)
			dev_err(e, "xdp_native_unsupported",
				"%s: the driver does not support native-mode XDP / AF_XDP "
				"(EOPNOTSUPP%s)", ifname, why);
		else if (err == -EBUSY)
			dev_err(e, "xsk_busy",
				"%s queue 0 is busy: another AF_XDP socket (maybe a previous lessee "
				"that still holds its descriptor) is bound to it, or an XDP program is "
				"attached in another mode (EBUSY%s)", ifname, why);
		else if (err == -EPERM || err == -EACCES)
			dev_err(e, "xdp_permission",
				"%s: loading or attaching the XDP program was refused (%s; librettod "
				"needs CAP_NET_ADMIN and CAP_BPF or CAP_SYS_ADMIN%s)",
				ifname, errname(-err), why);
		else if (err == -ENOENT)
			dev_err(e, "xdp_prog_missing",
				"%s: libxdp could not find or load its XSK program xsk_def_xdp_prog.o "
				"(ENOENT; is the libxdp1 package complete?%s)", ifname, why);
		else
			dev_err(e, tok, "%s: creating the AF_XDP socket failed: %s (%s%s)",
				ifname, strerror(-err), errname(-err), why);
		goto fail;
	}
	d->backend = PROTO_BACKEND_AFXDP;
	return 0;
fail:
	dev_close(d);
	return err < 0 ? err : -EIO;
}

int dev_open_afpacket(struct ld_dev *d, const char *ifname, struct ld_dev_err *e)
{
	struct sockaddr_ll sll;
	int one = 1, err;

	dev_init(d);
	snprintf(d->ifname, sizeof(d->ifname), "%s", ifname);
	err = dev_ifinfo(ifname, &d->ifindex, d->mac);
	if (err) {
		dev_err(e, "no_such_vf", "VF %s is gone from librettod's network namespace (%s): "
			"was the testbed removed or rebuilt under librettod?  Run `libretto down`, "
			"`libretto testbed up`, `libretto up`", ifname, strerror(-err));
		return err;
	}
	/*
	 * Protocol 0 receives nothing until bind() names the protocol and the
	 * interface, so no frame from another interface sneaks into the queue.
	 */
	d->pkt_fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (d->pkt_fd < 0) {
		err = -errno;
		dev_err(e, "packet_socket", "cannot create an AF_PACKET socket: %s", strerror(-err));
		goto fail;
	}
	if (setsockopt(d->pkt_fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)) < 0) {
		err = -errno;
		dev_err(e, "packet_ignore_outgoing", "PACKET_IGNORE_OUTGOING: %s", strerror(-err));
		goto fail;
	}
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = d->ifindex;
	if (bind(d->pkt_fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		err = -errno;
		dev_err(e, "packet_bind", "cannot bind the AF_PACKET socket to %s: %s",
			ifname, strerror(-err));
		goto fail;
	}
	d->backend = PROTO_BACKEND_AFPACKET;
	return 0;
fail:
	dev_close(d);
	return err;
}

void dev_close(struct ld_dev *d)
{
	bool had_xsk = d->xsk != NULL || (d->adopted && d->backend == PROTO_BACKEND_AFXDP);

	/* An adopted XSK: our copy goes; the holder's goes with its process. */
	if (d->xsk_fd >= 0)
		close(d->xsk_fd);
	d->xsk_fd = -1;
	d->adopted = false;

	if (d->xsk)
		xsk_socket__delete(d->xsk);
	d->xsk = NULL;
	if (d->umem) {
		int err = xsk_umem__delete(d->umem);

		if (err)
			ld_log("warning: UMEM of %s still busy: %s", d->ifname, strerror(-err));
	}
	d->umem = NULL;
	if (had_xsk)
		dev_xdp_detach(d->ifindex, d->ifname);
	if (d->umem_area)
		munmap(d->umem_area, LD_UMEM_SIZE);
	d->umem_area = NULL;
	if (d->umem_fd >= 0)
		close(d->umem_fd);
	d->umem_fd = -1;
	free(d->rings);
	d->rings = NULL;
	if (d->pkt_fd >= 0)
		close(d->pkt_fd);
	d->pkt_fd = -1;
}

int dev_fds(const struct ld_dev *d, int *fds, int max, const char **names)
{
	int n = 0;

	if (d->backend == PROTO_BACKEND_AFXDP && max >= 2) {
		fds[n] = dev_xsk_fd(d);
		names[n++] = "xsk";
		fds[n] = d->umem_fd;
		names[n++] = "umem";
	} else if (d->backend == PROTO_BACKEND_AFPACKET && max >= 1) {
		fds[n] = d->pkt_fd;
		names[n++] = "packet";
	}
	return n;
}

int ld_sealed_map(const char *name, size_t size, int *fd_out, void **mem_out)
{
	int fd = sealed_memfd(name, size);
	void *mem;

	if (fd < 0)
		return fd;
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (mem == MAP_FAILED) {
		int err = -errno;

		close(fd);
		return err;
	}
	*fd_out = fd;
	*mem_out = mem;
	return 0;
}

int region_create(const char *name, int *fd_out, struct libretto_region **map_out)
{
	char memname[96];
	struct libretto_region *r;
	void *mem;
	int fd, err;

	snprintf(memname, sizeof(memname), "libretto-region-%s", name);
	err = ld_sealed_map(memname, LIBRETTO_REGION_SIZE, &fd, &mem);
	if (err)
		return err;
	r = mem;
	/* Nobody else has the descriptor yet, so plain stores are enough. */
	r->magic = LIBRETTO_REGION_MAGIC;
	r->version = LIBRETTO_REGION_VERSION;
	*fd_out = fd;
	*map_out = r;
	return 0;
}

void region_destroy(int fd, struct libretto_region *map)
{
	if (map)
		munmap(map, LIBRETTO_REGION_SIZE);
	if (fd >= 0)
		close(fd);
}
