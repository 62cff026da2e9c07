/* librettod internals shared by its files: configuration, log, NIC access,
 * the control server. */
#ifndef LIBRETTOD_H
#define LIBRETTOD_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <net/if.h>
#include <sys/types.h>

#include "librettod/proto.h"

#define LD_UMEM_FRAMES 4096
#define LD_FRAME_SIZE 2048
#define LD_UMEM_SIZE ((size_t)LD_UMEM_FRAMES * LD_FRAME_SIZE)
#define LD_RING_SIZE 2048

/* What the command line asked for, after defaults. */
struct ld_config {
	const char *netns;      /* NULL: stay in the current network namespace */
	const char *nic;
	char **vfs;             /* owned, sorted as given or by vf number */
	int nvfs;
	bool vfs_given;
	uint32_t shared_ip;     /* host byte order */
	uint32_t pool_first, pool_last;
	int prefix;
	bool has_gateway;
	uint32_t gateway;
	const char *control;
	bool daemon;
	const char *log_path;
	const char *pidfile;    /* NULL: none */
	/* The auto policy's defaults, packets/s and ms (main.c fills them). */
	unsigned auto_high, auto_low, auto_dwell_ms;
};

/*
 * server.c: an error reply ("error=<text on one line>", "errno=N") in out
 * (cap bytes); returns its length.  reply_err and the volume command use it.
 */
size_t ld_err_text(char *out, size_t cap, int errnum, const char *fmt, va_list ap)
	__attribute__((format(printf, 4, 0)));

/* log.c: timestamped lines on stderr (the log file under --daemon). */
void ld_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * dev.c: the per-lease NIC access and shared region.  A dev is one VF opened
 * with one backend; dev_close() undoes everything dev_open_*() did.
 */
struct xsk_umem;
struct xsk_socket;

struct ld_dev {
	enum proto_backend backend;   /* AFXDP or AFPACKET once open */
	char ifname[IF_NAMESIZE];
	int ifindex;
	uint8_t mac[6];
	/* afxdp */
	int umem_fd;                  /* memfd behind the UMEM */
	void *umem_area;
	struct xsk_umem *umem;
	struct xsk_socket *xsk;
	void *rings;                  /* libxdp's ring structs, unused by us */
	/* afpacket */
	int pkt_fd;
	/*
	 * Supervisor restart (tag l): a dev adopted from descriptors a running
	 * process holds (dev_adopt()), without libxdp's objects: xsk_fd is our
	 * copy of the socket; dev_close() closes it and detaches the XSK
	 * program itself.
	 */
	bool adopted;
	int xsk_fd;
};

/* Why AF_XDP could not be set up: a sentence and a short token. */
struct ld_dev_err {
	char msg[400];
	char token[48];
};

void dev_init(struct ld_dev *d);
/* Look up ifindex and MAC of ifname in the current netns; 0 or -errno. */
int dev_ifinfo(const char *ifname, int *ifindex, uint8_t mac[6]);
int dev_open_afxdp(struct ld_dev *d, const char *ifname, struct ld_dev_err *e);
int dev_open_afpacket(struct ld_dev *d, const char *ifname, struct ld_dev_err *e);
void dev_close(struct ld_dev *d);
/*
 * Supervisor restart (tag l): describe a VF (or the PF) whose XSK and UMEM
 * (backend AFXDP: xsk_fd, umem_fd) or packet socket (AFPACKET: xsk_fd is
 * the packet socket, umem_fd -1) were made by an earlier librettod and taken
 * back from their holder; d takes ownership of the descriptors, and
 * dev_close() later tears the device down as for one we opened.  0 or
 * -errno (the descriptors closed).  dev_xsk_fd(): the XSK's descriptor.
 */
int dev_adopt(struct ld_dev *d, const char *ifname, enum proto_backend backend, int xsk_fd,
	      int umem_fd);
int dev_xsk_fd(const struct ld_dev *d);
/* The descriptors to hand over, in the reply's "fds=" order (not dup'd). */
int dev_fds(const struct ld_dev *d, int *fds, int max, const char **names);
/* Route libxdp's messages to the log; mount bpffs if it is missing. */
void dev_global_init(void);

/*
 * A memfd of size bytes, sealed against shrinking, growing and further
 * seals (so a peer can neither truncate it under us nor forbid our
 * writable mapping), mapped shared read-write: 0 or -errno.
 */
int ld_sealed_map(const char *name, size_t size, int *fd_out, void **mem_out);
/* A region memfd of LIBRETTO_REGION_SIZE, initialised and size-sealed. */
struct libretto_region;
int region_create(const char *name, int *fd_out, struct libretto_region **map_out);
void region_destroy(int fd, struct libretto_region *map);

/*
 * reaper.c: after an application's lease ends (its XSK and XDP program
 * already torn down, the VF not yet back in the pool), reset the peers of
 * the TCP connections still listed in its region, sending from ip (host
 * byte order) and mac on the VF.  r is hostile input.  Bounded to about
 * half a second; logs what it did, naming the lease `who`.  Returns the
 * number of valid connections the table listed (reset or not), or -ENOMEM.
 */
int reaper_reset_peers(const struct libretto_region *r, const char *ifname, int ifindex,
		       const uint8_t mac[6], uint32_t ip, int prefix, bool has_gw, uint32_t gw,
		       const char *who);

/* ---- begin: netd supervision (netd_sup.c, tag s) ---- */
/*
 * netd_sup.c: librettod starts libretto-netd on the PF (cfg->nic), hands it
 * the PF's AF_XDP socket and UMEM, the port table (a memfd librettod alone
 * writes) and the shared IP, watches it with a pidfd and restarts it when it
 * dies.  netd_sup_start() runs once at start-up: 0 when netd runs, else
 * -errno with the reason logged and shown by status (librettod serves direct
 * mode regardless; transient failures are retried from the event loop).
 * netd_sup_fd() is an epoll descriptor for the event loop; when it is
 * readable call netd_sup_on_event().  netd_sup_status() appends
 * netd=running|restarting|stopped, netd_pid=, netd_restarts=,
 * netd_last_exit= and, when netd is not running, netd_error=.
 * netd_sup_stats() forwards netd's `stats` reply into out (cap bytes),
 * prefixed by netd_pid= and netd_restarts=: its length, or -errno with a
 * sentence in err.  netd_sup_stop() sends `quit`, waits at most 2 s (then
 * SIGKILL) and releases everything; safe to call twice.
 */
struct kv_buf;
struct porttab;
int netd_sup_start(const struct ld_config *cfg);
int netd_sup_fd(void);
void netd_sup_on_event(void);
void netd_sup_status(struct kv_buf *b);
int netd_sup_stats(char *out, size_t cap, char *err, size_t errlen);
/* The port table librettod writes (NULL when it could not be created). */
struct porttab *netd_sup_porttab(void);
void netd_sup_stop(void);
/*
 * Live upgrade to the netd binary path (NULL: restart the same binary)
 * without losing a frame: the old netd hands over at a ring boundary, the
 * new one adopts the same rings.  0 with a sentence in msg, or -errno.
 */
int netd_sup_upgrade(const char *path, char *msg, size_t len);
/* ---- end: netd supervision ---- */

/* ---- begin: netd supervision, indirect mode's needs (netd_sup.c, tag p) ---- */
/*
 * netd_sup_running(): whether netd runs now; when not, why (one line) in why.
 * netd_sup_request(): one request to the running netd (netd.h format);
 * returns 0, the reply's error as -errno with its error= word in err, or
 * -ENETDOWN when netd is not running.  netd_sup_mac(): the MAC netd sends
 * from (the PF's), zeros until netd first ran.
 */
struct kv;
bool netd_sup_running(char *why, size_t len);
int netd_sup_request(const char *text, const int *fds, int nfds, char *err, size_t errlen);
void netd_sup_mac(uint8_t mac[6]);
/* ---- end: netd supervision, indirect mode's needs ---- */

/* ---- begin: indirect mode (indirect.c, tag p) ---- */
/*
 * One indirect lease's ring region (LD_IND_NFRAMES frames of
 * LD_IND_FRAME_SIZE bytes, rings of LD_IND_RING_SIZE), its two doorbell
 * eventfds and its port table entries.  ind_open() creates them and sends
 * netd `app_add` (id = the app id, which is also the port table's);
 * 0 or -errno with a sentence in err.  ind_fds() gives the descriptors in
 * the register reply's order ring, efd_netd, efd_app (not dup'd).
 * ind_close() removes the application's ports, sends `app_del` and frees
 * everything.  ind_port() serves a `port` request (ctl.h) on the lease:
 * 0 or -errno with a sentence in err (EADDRINUSE names the holder; EACCES
 * for a port below 1024 when uid, the lease's, is not root).
 * ind_fmt_ports() formats the held ports as `ps` shows them.
 * ind_netd_up() re-sends `app_add` of every lease to a netd that has just
 * (re)started; ind_netd_down() clears RING_REGION_F_NETD_UP in every region
 * when netd has died.
 */
#define LD_IND_NFRAMES 1024
#define LD_IND_FRAME_SIZE 2048
#define LD_IND_RING_SIZE 512
struct ld_ind;
int ind_open(unsigned id, const char *name, uint32_t ip, bool attach, struct ld_ind **out,
	     char *err, size_t errlen);
/*
 * Mode switching (issue 6): a switchable application in direct mode has an
 * ld_ind without rings (ind_open(attach=false)): its ports are in the port
 * table, but netd does not know it.  ind_attach() gives it a fresh ring
 * region and doorbells and sends app_add (0 or -errno with err);
 * ind_detach() sends app_del and frees the rings, keeping the ports.
 * ind_attached(): whether it has rings now.
 */
int ind_attach(struct ld_ind *x, char *err, size_t errlen);
void ind_detach(struct ld_ind *x);
bool ind_attached(const struct ld_ind *x);
int ind_fds(const struct ld_ind *x, int fds[3]);
void ind_close(struct ld_ind *x, const struct libretto_region *r);
int ind_port(struct ld_ind *x, const struct kv *req, uid_t uid, char *err, size_t errlen);
void ind_fmt_ports(const struct ld_ind *x, char *buf, size_t len);
void ind_netd_up(void);
void ind_netd_down(void);
/* ---- end: indirect mode ---- */

/* ---- begin: supervisor restart (persist.c and its users, tag l) ---- */
/*
 * persist.c: the state record, a file next to the control socket
 * (`<dir>/state`, mode 0600, written to a temporary name and renamed) that
 * describes netd and every lease, so that a librettod started after one
 * that died can adopt them (docs/librettod.md, "Restart").  persist_init()
 * derives the path from the control socket's; persist_write() replaces the
 * record with text; persist_load() reads it (0, or -errno: -ENOENT none,
 * -EPERM not root's) and persist_loaded() returns it (NULL when none).
 * proc_start_time(): a process's start time in clock ticks (0 when gone);
 * proc_same(): whether pid is still the process that started then (and is
 * no zombie).  persist_secret(): a random lease secret in hex;
 * persist_secret_eq() compares two in constant time.  persist_getfd():
 * pidfd_getfd(2), a copy of another process's descriptor (root), or -errno.
 */
#define PERSIST_SECRET_LEN 32
#define PERSIST_MAX_APPS 256

struct persist_app {
	unsigned id;
	char name[PROTO_NAME_MAX];
	pid_t pid;
	unsigned long long start;
	uid_t uid;
	uint32_t ip;
	bool shared_ip, indirect, switchable, auto_mode;
	unsigned auto_high, auto_low, auto_dwell_ms;
	char vf[IF_NAMESIZE];       /* "" none */
	char backend[16];           /* afxdp, afpacket, shm */
	char secret[PERSIST_SECRET_LEN + 1];
};

struct persist_rec {
	pid_t librettod_pid;
	pid_t netd_pid;
	unsigned long long netd_start;
	unsigned next_id;
	int napps;
	struct persist_app apps[PERSIST_MAX_APPS];
};

void persist_init(const char *control);
const char *persist_path(void);
int persist_write(const char *text, size_t len);
void persist_remove(void);
int persist_load(void);
const struct persist_rec *persist_loaded(void);
unsigned long long proc_start_time(pid_t pid);
bool proc_same(pid_t pid, unsigned long long start);
int persist_secret(char out[PERSIST_SECRET_LEN + 1]);
bool persist_secret_eq(const char *a, const char *b);
int persist_getfd(int pidfd, int fd);

/*
 * netd_sup.c: netd_sup_adopt() takes over a netd an earlier librettod
 * started (instead of netd_sup_start()): the supervisor's end of its control
 * socket (netd holds a copy as descriptor NETD_SUP_FD for this), the PF's
 * XSK and UMEM, the state region and the port table, all copied from netd
 * with pidfd_getfd().  0 when netd is adopted and answers; -errno otherwise
 * (nothing adopted; the caller kills that netd and starts a new one).
 * netd_sup_pid(): the running netd's pid, 0 when none.
 */
#define NETD_SUP_FD 4
int netd_sup_adopt(const struct ld_config *cfg, pid_t pid);
pid_t netd_sup_pid(void);

/*
 * indirect.c: a recovered lease's ld_ind.  ind_recover() makes it with its
 * ports read back from the port table (by app id); netd_has: the adopted
 * netd already serves the application (no app_add needed).  ind_adopt_rings()
 * gives it the ring region and doorbells taken back from the application
 * (ownership passes; app_add is sent when netd does not have it yet).
 * Both 0 or -errno with a sentence in err.
 */
int ind_recover(unsigned id, const char *name, uint32_t ip, bool netd_has, struct ld_ind **out,
		char *err, size_t errlen);
int ind_adopt_rings(struct ld_ind *x, int ring_fd, int efd_netd, int efd_app, char *err,
		    size_t errlen);
/* ---- end: supervisor restart ---- */

/* ---- begin: volumes (volume.c, issue 8, tag v5) ---- */
/*
 * volume.c: the images application leases use (include/libretto/ctl.h,
 * `volume` and `volumes`).  volume_cmd() serves a `volume` request on the
 * connection fd of lease app (0: not a lease, refused) named name with
 * pid, and sends the reply itself (with the image descriptor, or fsd's
 * session descriptors).  volume_release() gives back every volume of a
 * lease whose end has come (direct: librettod's lock goes; indirect: the
 * fsd session is closed).  volume_list() answers `volumes`;
 * volume_status() appends volumes=N to a status reply.
 */
struct kv;
struct kv_buf;
void volume_cmd(int fd, unsigned app, const char *name, pid_t pid, const struct kv *req);
void volume_release(unsigned app);
void volume_list(int fd);
void volume_status(struct kv_buf *b);
/* ---- end: volumes ---- */

/*
 * server.c: the control socket and the event loop.  server_listen() binds
 * and listens (the caller has checked for a live daemon); server_run() runs
 * until shutdown or SIGTERM/SIGINT, then releases every lease.
 */
int server_listen(const char *path, char *err, size_t errlen);
int server_run(const struct ld_config *cfg, int listen_fd);

#endif
