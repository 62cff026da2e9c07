/* librettod internals shared by its files: configuration, log, NIC access,
 * the control server. */
#ifndef LIBRETTOD_H
#define LIBRETTOD_H

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
/* The descriptors to hand over, in the reply's "fds=" order (not dup'd). */
int dev_fds(const struct ld_dev *d, int *fds, int max, const char **names);
/* Route libxdp's messages to the log; mount bpffs if it is missing. */
void dev_global_init(void);

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

/*
 * server.c: the control socket and the event loop.  server_listen() binds
 * and listens (the caller has checked for a live daemon); server_run() runs
 * until shutdown or SIGTERM/SIGINT, then releases every lease.
 */
int server_listen(const char *path, char *err, size_t errlen);
int server_run(const struct ld_config *cfg, int listen_fd);

#endif
