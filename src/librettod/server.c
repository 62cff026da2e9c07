/* librettod's control socket, application registry and event loop. */
#include "librettod/librettod.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <net/if.h>

#include "common/kv.h"
#include "libretto/ctl.h"
#include "common/proc.h"
#include "libretto/region.h"
#include "librettod/pool.h"
#include "librettod/proto.h"
#include "librettod/fsd_sup.h"   /* tag v3 */

/* Bounds that keep one misbehaving local user from exhausting the daemon. */
#define SERVER_MAX_CONNS 256
#define SERVER_MSGS_PER_WAKEUP 16

/*
 * The kernel releases a closed AF_XDP socket's queue binding a little after
 * the last descriptor goes (deferred work), so a VF released a moment ago can
 * still answer EBUSY.  A register that meets that is retried every
 * REG_RETRY_STEP_MS for at most REG_RETRY_MAX_MS, without blocking the loop,
 * when the VF was released less than REG_RETRY_MAX_MS ago.
 */
#define REG_RETRY_STEP_MS 50
#define REG_RETRY_MAX_MS 2000

/* `ps` names at most this many processes holding one lease. */
#define APP_MAX_HOLDERS 8

enum ev_kind { EV_LISTEN, EV_SIGNAL, EV_CONN, EV_PIDFD, EV_TIMER, EV_NETD /* tag s */,
	       EV_POLICY, EV_FSD /* tag v3 */ };

/* Mode switching (issue 6): where an application's switch stands. */
enum sw_state {
	SW_IDLE = 0,     /* one path, the current mode's */
	SW_ORDERED,      /* the order is sent; the runtime has not said switched */
	SW_DRAINING,     /* switched; the old path is held until switch_drained */
};

/* What an epoll event points at. */
struct ev {
	enum ev_kind kind;
	void *owner;
};

struct app;
struct pending;

/* One accepted control connection; a lease once it has registered. */
struct conn {
	struct ev ev;
	int fd;
	pid_t pid;                 /* SO_PEERCRED at accept time */
	uid_t uid;
	struct app *app;           /* the lease this connection holds, or NULL */
	struct pending *pend;      /* a register waiting for a busy VF, or NULL */
	bool dead;
	struct conn *next;
};

/* One registered application. */
struct app {
	struct ev pid_ev;
	unsigned id;
	char name[PROTO_NAME_MAX];
	pid_t pid;
	uid_t uid;
	bool alive;
	int pidfd;
	uint32_t ip;
	int vf;                    /* slot in the VF pool */
	struct ld_dev dev;
	char fallback_reason[48];
	int region_fd;
	struct libretto_region *region;
	struct conn *conn;
	unsigned long peer_ino;    /* inode of the client end of conn, 0 unknown */
	pid_t holders[APP_MAX_HOLDERS];
	int nholders;              /* found by the last holders_scan(), capped */
	struct ld_ind *ind;        /* tag p: indirect mode's rings (vf -1), NULL direct */
	bool shared_ip;            /* tag p: ip is the shared IP, not a pool lease */
	/*
	 * Mode switching (issue 6, docs/switching.md).  A switchable
	 * application has a dedicated IP and an ld_ind in both modes (its
	 * ports are in the port table); it holds a VF (vf >= 0) in direct
	 * mode, rings (ind_attached) in indirect mode, and both while a
	 * switch is under way.
	 */
	bool switchable;
	bool indirect;             /* the current mode */
	bool auto_mode;            /* the policy moves it (run --mode auto) */
	unsigned auto_high, auto_low, auto_dwell_ms;   /* packets/s, ms */
	enum sw_state sw;
	bool sw_to_indirect;       /* the mode of the switch under way */
	int sw_queued;             /* 1 direct, 2 indirect: asked for while draining, or
				    * waiting for a VF's queue to be free */
	char sw_queued_why[64];
	uint64_t sw_retry_until;   /* a queued switch to direct: when AF_PACKET will do */
	uint64_t mode_since_ms;
	char mode_why[96];
	unsigned switches;
	uint64_t rate_pkts, rate_pps;  /* policy: last rx+tx count, the rate */
	uint64_t rate_ms;              /* when rate_pkts was read */
	uint64_t above_ms, below_ms;   /* since when over high / under low, 0 not */
	/*
	 * Supervisor restart (tag l): the lease's secret (in the register
	 * reply, proves a `reattach`), the start time of pid (with start_pid,
	 * for the state record), and for a lease recovered from an earlier
	 * librettod's record: waiting for its runtime's `reattach` until
	 * await_until (ms), without a connection or a region meanwhile.
	 */
	char secret[PERSIST_SECRET_LEN + 1];
	unsigned long long start;
	pid_t start_pid;
	bool awaiting;
	uint64_t await_until;
	bool dead;
	struct app *next;
};

/*
 * An IP whose application died with connections open (the reaper reset
 * their peers): for TOMB_MS, automatic allocation prefers other addresses,
 * so that late segments of the dead connections do not reach a new owner.
 * An explicit ip= still gets it.
 */
#define TOMB_MS 10000
#define TOMB_MAX 64

struct tomb {
	uint32_t ip;
	uint64_t until_ms;         /* 0: unused */
};

/*
 * The daemon is single-threaded, so its state is one static object.
 * Objects closed while handling an epoll batch may still be referenced by
 * later events of the same batch; they are marked dead, moved to the
 * graveyard lists and freed only once the batch is done.
 */
static struct {
	const struct ld_config *cfg;
	int epfd, listen_fd, sig_fd;
	struct ev listen_ev, sig_ev;
	struct ip_pool ips;
	struct vf_pool vfs;
	struct conn *conns;
	int nconns;
	struct app *apps;
	unsigned napps;
	unsigned next_id;
	int timer_fd;              /* ticks while registers are pending */
	struct ev timer_ev;
	struct ev netd_ev;         /* netd supervision (netd_sup.c, tag s) */
	struct ev fsd_ev;          /* fsd supervision (fsd_sup.c, tag v3) */
	int policy_fd;             /* switching: the auto policy's and link checks' tick */
	struct ev policy_ev;
	unsigned auto_high, auto_low, auto_dwell_ms;   /* defaults for mode=auto */
	int npending;
	uint64_t *vf_released_ms;  /* per VF slot: when it was last released, 0 never */
	struct tomb tombs[TOMB_MAX];
	struct conn *dead_conns;
	struct app *dead_apps;
	bool stop;
	char in[CTL_MSG_MAX];
	char out[CTL_MSG_MAX];
	char lines[CTL_MSG_MAX];
} S;

/*
 * A register request parked until its VF's queue is free again.  It holds
 * its IP (in app->ip) but no VF slot, so `status` shows the VF free.
 */
struct pending {
	struct proto_register r;
	struct app *app;
	uint64_t started_ms, next_ms;
	int tries;
};

static const char *vf_name(int idx)
{
	return S.vfs.slot[idx].name;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* True if VF slot idx was released less than REG_RETRY_MAX_MS ago. */
static bool vf_recently_released(int idx)
{
	uint64_t t = S.vf_released_ms ? S.vf_released_ms[idx] : 0;

	return t && now_ms() - t < REG_RETRY_MAX_MS;
}

/* ------------------------------------------------------------------ */
/* Replies                                                             */

static int send_reply(struct conn *c, const char *text, size_t len, const int *fds, int nfds)
{
	int err = ctl_send(c->fd, text, len, fds, nfds);

	if (err)
		ld_log("error: reply to pid %d failed: %s", (int)c->pid, strerror(-err));
	return err;
}

/* "error=<text>\nerrno=N\n", the text flattened to one line. */
size_t ld_err_text(char *out, size_t cap, int errnum, const char *fmt, va_list ap)
{
	char text[1024];
	struct kv_buf b;

	vsnprintf(text, sizeof(text), fmt, ap);
	for (char *p = text; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	kv_buf_init(&b, out, cap);
	kv_buf_add(&b, '\n', "error", "%s", text);
	kv_buf_add(&b, '\n', "errno", "%d", errnum);
	return b.len;
}

static void reply_err(struct conn *c, int errnum, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	n = ld_err_text(S.out, sizeof(S.out), errnum, fmt, ap);
	va_end(ap);
	send_reply(c, S.out, n, NULL, 0);
}

/* ------------------------------------------------------------------ */
/* Registry                                                            */

static void epoll_del(int fd)
{
	epoll_ctl(S.epfd, EPOLL_CTL_DEL, fd, NULL);
}

static void tomb_add(uint32_t ip)
{
	struct tomb *t = &S.tombs[0];

	/* Reuse the slot that expires first (an unused one has until_ms 0). */
	for (int i = 1; i < TOMB_MAX; i++)
		if (S.tombs[i].until_ms < t->until_ms)
			t = &S.tombs[i];
	t->ip = ip;
	t->until_ms = now_ms() + TOMB_MS;
}

static bool tomb_active(uint32_t ip)
{
	uint64_t now = now_ms();

	for (int i = 0; i < TOMB_MAX; i++)
		if (S.tombs[i].until_ms > now && S.tombs[i].ip == ip)
			return true;
	return false;
}

/*
 * ip_pool_take_any, passing over tombstoned addresses while others are
 * free; when only tombstoned ones are left, the lowest of them.
 */
static int ip_take_auto(uint32_t *out)
{
	uint32_t skipped[TOMB_MAX];
	int n = 0, err;

	err = ip_pool_take_any(&S.ips, out);
	while (!err && n < TOMB_MAX && tomb_active(*out)) {
		skipped[n++] = *out;
		err = ip_pool_take_any(&S.ips, out);
	}
	if (err && n > 0) {
		*out = skipped[0];
		err = 0;
		for (int i = 1; i < n; i++)
			ip_pool_put(&S.ips, skipped[i]);
	} else {
		for (int i = 0; i < n; i++)
			ip_pool_put(&S.ips, skipped[i]);
	}
	return err;
}

static void app_release(struct app *a, const char *reason)
{
	struct app **pp;
	char ip[16];

	ld_log("release app=%u name=%s pid=%d ip=%s vf=%s backend=%s reason=%s",
	       a->id, a->name, (int)a->pid, ip_fmt(a->ip, ip), a->vf >= 0 ? vf_name(a->vf) : "-",
	       a->indirect ? "shm" : proto_backend_name(a->dev.backend), reason);
	volume_release(a->id);     /* tag v5: its volumes (issue 8) */
	/* tag p: an indirect lease's ports and rings (a switchable direct
	 * one's ports) go first. */
	if (a->ind) {
		/* Not while shutting down, when the application may be alive. */
		ind_close(a->ind, S.stop ? NULL : a->region);
		a->ind = NULL;
	}
	if (a->vf >= 0) {
		dev_close(&a->dev);
		/*
		 * Connections still listed belong to a process that died
		 * without closing them (a graceful exit leaves the table
		 * empty): reset their peers now, with the XSK gone and before
		 * the VF and IP go back to the pools.  Not while shutting down,
		 * when the application may be alive; not when its frames went
		 * through netd, which probed them above.
		 */
		if (!S.stop && a->region && !a->indirect) {
			char who[PROTO_NAME_MAX + 48];

			snprintf(who, sizeof(who), "app=%u name=%s", a->id, a->name);
			if (reaper_reset_peers(a->region, a->dev.ifname, a->dev.ifindex, a->dev.mac,
					       a->ip, S.cfg->prefix, S.cfg->has_gateway,
					       S.cfg->gateway, who) > 0)
				tomb_add(a->ip);
		}
		S.vfs.slot[a->vf].owner = 0;
		if (S.vf_released_ms)
			S.vf_released_ms[a->vf] = now_ms();
		a->vf = -1;
	}
	if (!a->shared_ip && ip_pool_put(&S.ips, a->ip) < 0)
		ld_log("error: app=%u ip %s was not taken (registry bug)", a->id, ip);
	region_destroy(a->region_fd, a->region);
	a->region = NULL;
	a->region_fd = -1;
	if (a->pidfd >= 0) {
		epoll_del(a->pidfd);
		close(a->pidfd);
		a->pidfd = -1;
	}
	if (a->conn)
		a->conn->app = NULL;
	a->conn = NULL;
	for (pp = &S.apps; *pp; pp = &(*pp)->next) {
		if (*pp == a) {
			*pp = a->next;
			break;
		}
	}
	S.napps--;
	a->dead = true;
	a->next = S.dead_apps;
	S.dead_apps = a;
}

static void pending_drop(struct conn *c);

static void conn_close(struct conn *c, const char *reason)
{
	struct conn **pp;

	if (c->pend) {
		ld_log("register abandoned: pid=%d name=%s closed its connection while waiting "
		       "for a busy VF", (int)c->pid, c->pend->r.name);
		pending_drop(c);
	}
	if (c->app)
		app_release(c->app, reason);
	epoll_del(c->fd);
	close(c->fd);
	c->fd = -1;
	for (pp = &S.conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	S.nconns--;
	c->dead = true;
	c->next = S.dead_conns;
	S.dead_conns = c;
}

static void graveyard_free(void)
{
	while (S.dead_conns) {
		struct conn *c = S.dead_conns;

		S.dead_conns = c->next;
		free(c);
	}
	while (S.dead_apps) {
		struct app *a = S.dead_apps;

		S.dead_apps = a->next;
		free(a);
	}
}

static struct app *app_by_ip(uint32_t ip)
{
	for (struct app *a = S.apps; a; a = a->next)
		if (a->ip == ip)
			return a;
	return NULL;
}

static struct app *app_by_id(unsigned id)
{
	for (struct app *a = S.apps; a; a = a->next)
		if (a->id == id)
			return a;
	return NULL;
}

/* ------------------------------------------------------------------ */
/* register                                                            */

/*
 * Open the VF with the requested backend.  For backend=auto a failed AF_XDP
 * set-up falls back to AF_PACKET and fallback (a short token) says why;
 * backend=afxdp never falls back.  A busy queue (EBUSY) falls back only if
 * busy_final: otherwise the caller means to retry it.  On failure msg holds
 * the sentence.
 */
static int open_backend(struct ld_dev *d, const char *ifname, enum proto_backend want,
			bool busy_final, char *fallback, size_t fblen, char *msg, size_t msglen)
{
	struct ld_dev_err e = { "", "" }, e2 = { "", "" };
	int err;

	fallback[0] = '\0';
	switch (want) {
	case PROTO_BACKEND_AFPACKET:
		err = dev_open_afpacket(d, ifname, &e);
		break;
	case PROTO_BACKEND_AFXDP:
		err = dev_open_afxdp(d, ifname, &e);
		break;
	case PROTO_BACKEND_AUTO:
	default:
		err = dev_open_afxdp(d, ifname, &e);
		if (!err)
			break;
		if (err == -EBUSY && !busy_final)
			break;
		ld_log("AF_XDP on %s failed (%s): %s; backend=auto falls back to AF_PACKET",
		       ifname, e.token, e.msg);
		err = dev_open_afpacket(d, ifname, &e2);
		if (!err) {
			snprintf(fallback, fblen, "%s", e.token);
			return 0;
		}
		snprintf(msg, msglen, "AF_XDP failed: %s; AF_PACKET failed too: %s", e.msg, e2.msg);
		return err;
	}
	if (err)
		snprintf(msg, msglen, "%s", e.msg);
	return err;
}

static int pidfd_open_pid(pid_t pid)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	return fd < 0 ? -errno : fd;
}

static void register_refused(struct conn *c, const char *name, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void register_refused(struct conn *c, const char *name, int errnum, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	ld_log("register refused: pid=%d name=%s errno=%d (%s): %s", (int)c->pid, name, errnum,
	       strerrorname_np(errnum) ? strerrorname_np(errnum) : "?", text);
	reply_err(c, errnum, "%s", text);
}

static void vf_list_text(char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (int i = 0; i < S.vfs.n && used < len; i++) {
		int n = snprintf(buf + used, len - used, "%s%s", i ? "," : "", vf_name(i));

		if (n < 0)
			break;
		used += (size_t)n;
	}
}

/* "vf1 by app=3 (http, pid 42), vf2 by app=4 (...)": who holds the VFs. */
static void vf_holders_text(char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (int i = 0; i < S.vfs.n && used < len; i++) {
		struct app *o = S.vfs.slot[i].owner ? app_by_id(S.vfs.slot[i].owner) : NULL;
		int n;

		if (!S.vfs.slot[i].owner)
			continue;
		n = snprintf(buf + used, len - used, "%s%s by app=%u (%s, pid %d)", used ? ", " : "",
			     vf_name(i), S.vfs.slot[i].owner, o ? o->name : "?", o ? (int)o->pid : 0);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

/*
 * Close the leases whose holders have all gone but whose EOF this loop has
 * not handled yet.  A client that starts the next program right after the
 * previous one exited would otherwise race that EOF and be told its VF or IP
 * is still leased.
 */
static void reap_hung_leases(void)
{
	struct app *next;

	for (struct app *a = S.apps; a; a = next) {
		struct pollfd p;

		next = a->next;
		if (!a->conn || a->conn->dead)
			continue;
		p.fd = a->conn->fd;
		p.events = POLLRDHUP;
		p.revents = 0;
		if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR)))
			conn_close(a->conn, "control connection closed");
	}
}

/*
 * Open the VF for a register: the explicit one, or for vf=auto the first
 * free one whose queue is not busy.  Returns 0 with *idx set, or -errno with
 * the sentence in msg; *retry tells whether the failure is a queue the
 * kernel has not released yet, on a VF released a moment ago.  With
 * last_try, backend=auto may fall back to AF_PACKET on a busy queue.
 */
static int register_open_vf(struct app *a, const struct proto_register *r, bool last_try,
			    int *idx, bool *retry, char *msg, size_t msglen)
{
	char holders[512];
	int err, i;

	*retry = false;
	if (!r->vf_auto) {
		i = vf_pool_find(&S.vfs, r->vf);
		if (i < 0) {
			char list[256];

			vf_list_text(list, sizeof(list));
			snprintf(msg, msglen, "vf=%s is not one of librettod's VFs (%s)", r->vf, list);
			return -ENODEV;
		}
		if (S.vfs.slot[i].owner) {
			struct app *o = app_by_id(S.vfs.slot[i].owner);

			snprintf(msg, msglen, "vf=%s is already leased by app=%u (%s, pid %d); "
				 "omit --vf to take a free one, or stop that program", r->vf,
				 S.vfs.slot[i].owner, o ? o->name : "?", o ? (int)o->pid : 0);
			return -EBUSY;
		}
		err = open_backend(&a->dev, r->vf, r->backend, last_try || !vf_recently_released(i),
				   a->fallback_reason, sizeof(a->fallback_reason), msg, msglen);
		if (err == -EBUSY && vf_recently_released(i))
			*retry = true;
		*idx = i;
		return err;
	}

	i = vf_pool_next_free(&S.vfs, 0);
	if (i < 0) {
		vf_holders_text(holders, sizeof(holders));
		snprintf(msg, msglen, "no free VF: all %d are leased: %s (`libretto ps` shows them; "
			 "stop one of those programs first)", S.vfs.n, holders);
		return -EBUSY;
	}
	/*
	 * A VF whose queue is still held by a former lessee's AF_XDP socket
	 * answers EBUSY; with vf=auto try the next free one.  Only when every
	 * free VF is busy, and one of them was released a moment ago, is the
	 * request worth retrying.
	 */
	for (;;) {
		int next;

		err = open_backend(&a->dev, vf_name(i), r->backend,
				   last_try || !vf_recently_released(i), a->fallback_reason,
				   sizeof(a->fallback_reason), msg, msglen);
		if (err != -EBUSY)
			break;
		if (vf_recently_released(i))
			*retry = true;
		next = vf_pool_next_free(&S.vfs, i + 1);
		if (next < 0)
			break;
		ld_log("vf=auto: %s is busy (%s); trying %s", vf_name(i), msg, vf_name(next));
		i = next;
	}
	if (err != -EBUSY)
		*retry = false;
	*idx = i;
	return err;
}

static void timer_arm(bool on)
{
	struct itimerspec its = { 0 };

	if (on) {
		its.it_value.tv_nsec = REG_RETRY_STEP_MS * 1000000L;
		its.it_interval.tv_nsec = REG_RETRY_STEP_MS * 1000000L;
	}
	if (timerfd_settime(S.timer_fd, 0, &its, NULL) < 0)
		ld_log("error: timerfd_settime: %s", strerror(errno));
}

static void pending_drop(struct conn *c)
{
	struct pending *p = c->pend;

	if (!p)
		return;
	c->pend = NULL;
	if (p->app) {
		dev_close(&p->app->dev);
		ip_pool_put(&S.ips, p->app->ip);
		free(p->app);
	}
	free(p);
	if (--S.npending == 0)
		timer_arm(false);
}

static void register_finish(struct conn *c, struct app *a, int idx);

/*
 * The inode of the client's end of control connection fd, asked of the
 * kernel's UNIX socket diagnostics (UNIX_DIAG_PEER), so that `ps` can find
 * every process holding the lease.  Returns 0 when it cannot be known.
 */
static unsigned long conn_peer_ino(int fd)
{
	struct {
		struct nlmsghdr nlh;
		struct unix_diag_req r;
	} req = {
		.nlh = { .nlmsg_len = sizeof(req), .nlmsg_type = SOCK_DIAG_BY_FAMILY,
			 .nlmsg_flags = NLM_F_REQUEST },
		.r = { .sdiag_family = AF_UNIX, .udiag_states = ~0u,
		       .udiag_show = UDIAG_SHOW_PEER, .udiag_cookie = { ~0u, ~0u } },
	};
	struct timeval tv = { .tv_sec = 0, .tv_usec = 200000 };
	union {
		char buf[4096];
		struct nlmsghdr align;
	} u;
	unsigned long peer = 0;
	struct stat st;
	ssize_t n;
	int nl;

	if (fstat(fd, &st) < 0)
		return 0;
	req.r.udiag_ino = (unsigned)st.st_ino;
	nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl < 0)
		return 0;
	setsockopt(nl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (send(nl, &req, sizeof(req), 0) == (ssize_t)sizeof(req) &&
	    (n = recv(nl, u.buf, sizeof(u.buf), 0)) > 0) {
		struct nlmsghdr *h = &u.align;

		if (NLMSG_OK(h, (size_t)n) && h->nlmsg_type == SOCK_DIAG_BY_FAMILY &&
		    h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct unix_diag_msg))) {
			struct unix_diag_msg *m = NLMSG_DATA(h);
			struct rtattr *a = (struct rtattr *)(m + 1);
			int len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*m)));

			for (; RTA_OK(a, len); a = RTA_NEXT(a, len))
				if (a->rta_type == UNIX_DIAG_PEER && RTA_PAYLOAD(a) >= 4)
					peer = *(uint32_t *)RTA_DATA(a);
		}
	}
	close(nl);
	return peer;
}

/*
 * One attempt at the VF of a register whose IP is taken.  On success the
 * lease is made and the reply sent; on a queue the kernel has not released
 * yet the request is parked (or stays parked) for the timer; otherwise the
 * refusal is sent and everything taken is given back.
 */
static void register_attempt(struct conn *c, struct app *a, const struct proto_register *r)
{
	struct pending *p = c->pend;
	uint64_t now = now_ms();
	bool last = p && now - p->started_ms + REG_RETRY_STEP_MS >= REG_RETRY_MAX_MS;
	bool retry;
	char msg[1024];
	int err, idx = -1;

	err = register_open_vf(a, r, last, &idx, &retry, msg, sizeof(msg));
	if (err == -EBUSY && retry && !last) {
		if (!p) {
			p = calloc(1, sizeof(*p));
			if (p) {
				p->r = *r;
				p->app = a;
				p->started_ms = now;
				c->pend = p;
				if (S.npending++ == 0)
					timer_arm(true);
				ld_log("register pid=%d name=%s: %s was released a moment ago and its "
				       "queue is still busy; retrying for up to %d ms", (int)c->pid,
				       r->name, idx >= 0 ? vf_name(idx) : "the VF", REG_RETRY_MAX_MS);
			}
		}
		if (p) {
			p->tries++;
			p->next_ms = now + REG_RETRY_STEP_MS;
			return;
		}
	}
	if (p) {
		/* The app now belongs to this call again, whatever happens next. */
		if (!err)
			ld_log("register pid=%d name=%s: %s free after %d retries", (int)c->pid,
			       r->name, vf_name(idx), p->tries);
		p->app = NULL;
		pending_drop(c);
	}
	if (err) {
		if (err == -EBUSY && retry)
			snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg),
				 "; still busy after %d ms of retries", REG_RETRY_MAX_MS);
		register_refused(c, r->name, -err, "%s", msg);
		ip_pool_put(&S.ips, a->ip);
		free(a);
		return;
	}
	a->vf = idx;
	register_finish(c, a, idx);
}

static void on_timer(void)
{
	uint64_t ticks, now = now_ms();
	struct conn *next;

	while (read(S.timer_fd, &ticks, sizeof(ticks)) == sizeof(ticks))
		;
	for (struct conn *c = S.conns; c; c = next) {
		struct proto_register r;

		next = c->next;
		if (c->dead || !c->pend || c->pend->next_ms > now)
			continue;
		/* register_attempt() may free c->pend: work on a copy of the request. */
		r = c->pend->r;
		register_attempt(c, c->pend->app, &r);
	}
}

static void cmd_register_indirect(struct conn *c, const struct kv *req);   /* tag p */
static void cmd_reattach(struct conn *c, const struct kv *req);   /* tag l */
static int auto_params(struct app *a, const struct kv *req, char *why, size_t len);

static void cmd_register(struct conn *c, const struct kv *req)
{
	struct proto_register r;
	char err_text[600], ip[16], a_ip[16], b_ip[16];
	struct app *a;
	int err;

	if (c->app) {
		reply_err(c, EALREADY, "this connection already holds lease app=%u; "
			  "use a new connection for another application", c->app->id);
		return;
	}
	if (c->pend) {
		reply_err(c, EINPROGRESS, "this connection's register is still waiting for its VF");
		return;
	}
	if (kv_get(req, "mode") && (!strcmp(kv_get(req, "mode"), "indirect") ||
				    !strcmp(kv_get(req, "mode"), "auto"))) {
		cmd_register_indirect(c, req);     /* tag p; auto starts indirect */
		return;
	}
	err = proto_parse_register(req, &r, err_text, sizeof(err_text));
	if (err) {
		register_refused(c, kv_get(req, "name") ? kv_get(req, "name") : "-", -err,
				 "%s", err_text);
		return;
	}
	reap_hung_leases();
	a = calloc(1, sizeof(*a));
	if (!a) {
		register_refused(c, r.name, ENOMEM, "out of memory");
		return;
	}
	a->pidfd = -1;
	a->region_fd = -1;
	a->vf = -1;
	dev_init(&a->dev);
	snprintf(a->name, sizeof(a->name), "%s", r.name);
	a->pid = c->pid;
	a->uid = c->uid;

	/* The IP. */
	ip_fmt(S.ips.first, a_ip);
	ip_fmt(S.ips.last, b_ip);
	if (r.ip_auto) {
		err = ip_take_auto(&a->ip);
		if (err) {
			register_refused(c, r.name, EADDRNOTAVAIL,
					 "no free IP: all %u addresses of the pool %s-%s are leased "
					 "(`libretto ps` shows by whom)", ip_pool_size(&S.ips), a_ip, b_ip);
			free(a);
			return;
		}
	} else {
		err = ip_pool_take(&S.ips, r.ip);
		if (err == -EADDRNOTAVAIL) {
			register_refused(c, r.name, EADDRNOTAVAIL,
					 "ip=%s is not in librettod's pool %s-%s: pick one in that range, "
					 "or omit --ip to get the next free one",
					 ip_fmt(r.ip, ip), a_ip, b_ip);
			free(a);
			return;
		}
		if (err == -EADDRINUSE) {
			struct app *o = app_by_ip(r.ip);

			register_refused(c, r.name, EADDRINUSE,
					 "ip=%s is already leased by app=%u (%s, pid %d): pick another, "
					 "or omit --ip to get the next free one",
					 ip_fmt(r.ip, ip), o ? o->id : 0, o ? o->name : "?",
					 o ? (int)o->pid : 0);
			free(a);
			return;
		}
		a->ip = r.ip;
	}
	register_attempt(c, a, &r);
}

/*
 * Record a lease whose id is set: link it to its connection and the
 * registry, and watch its pid (shared by both modes, tag p).
 */
static void app_link(struct conn *c, struct app *a)
{
	a->conn = c;
	c->app = a;
	a->peer_ino = conn_peer_ino(c->fd);
	a->next = S.apps;
	S.apps = a;
	S.napps++;
	a->alive = true;
	/* tag l: the secret that lets the runtime re-attach to this lease. */
	if (persist_secret(a->secret) < 0)
		a->secret[0] = '\0';
	a->pid_ev.kind = EV_PIDFD;
	a->pid_ev.owner = a;
	if (a->pid > 0) {
		a->pidfd = pidfd_open_pid(a->pid);
		if (a->pidfd < 0) {
			ld_log("app=%u: pidfd_open(%d) failed: %s; alive stays unknown (shown as 0)",
			       a->id, (int)a->pid, strerror(-a->pidfd));
			a->pidfd = -1;
			a->alive = false;
		} else {
			struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &a->pid_ev };

			if (epoll_ctl(S.epfd, EPOLL_CTL_ADD, a->pidfd, &ev) < 0) {
				ld_log("app=%u: cannot watch pid %d: %s", a->id, (int)a->pid,
				       strerror(errno));
				close(a->pidfd);
				a->pidfd = -1;
			}
		}
	}
}

/* The VF is open: make the region, record the lease and send the reply. */
static void register_finish(struct conn *c, struct app *a, int idx)
{
	const struct ld_config *cfg = S.cfg;
	char ip[16], mac[18];
	struct kv_buf b;
	const char *names[CTL_MAX_FDS];
	int fds[CTL_MAX_FDS], nfds, err;

	/* The shared region. */
	err = region_create(a->name, &a->region_fd, &a->region);
	if (err) {
		register_refused(c, a->name, -err, "cannot create the shared region: %s",
				 strerror(-err));
		dev_close(&a->dev);
		ip_pool_put(&S.ips, a->ip);
		free(a);
		return;
	}
	a->id = ++S.next_id;
	S.vfs.slot[idx].owner = a->id;
	app_link(c, a);
	a->mode_since_ms = now_ms();
	snprintf(a->mode_why, sizeof(a->mode_why), "started");
	/* Switchable when netd's port table exists: the ports go in it now. */
	if (netd_sup_porttab()) {
		char why[256];

		if (ind_open(a->id, a->name, a->ip, false, &a->ind, why, sizeof(why)) == 0)
			a->switchable = true;
		else
			ld_log("app=%u: cannot be switched to indirect mode: %s", a->id, why);
	}

	ip_fmt(a->ip, ip);
	proto_fmt_mac(a->dev.mac, mac);
	kv_buf_init(&b, S.out, sizeof(S.out));
	kv_buf_add(&b, '\n', "id", "%u", a->id);
	kv_buf_add(&b, '\n', "name", "%s", a->name);
	kv_buf_add(&b, '\n', "ip", "%s", ip);
	kv_buf_add(&b, '\n', "prefix", "%d", cfg->prefix);
	if (cfg->has_gateway) {
		char gw[16];

		kv_buf_add(&b, '\n', "gateway", "%s", ip_fmt(cfg->gateway, gw));
	} else {
		kv_buf_add(&b, '\n', "gateway", "none");
	}
	kv_buf_add(&b, '\n', "mac", "%s", mac);
	kv_buf_add(&b, '\n', "vf", "%s", vf_name(idx));
	kv_buf_add(&b, '\n', "ifindex", "%d", a->dev.ifindex);
	kv_buf_add(&b, '\n', "backend", "%s", proto_backend_name(a->dev.backend));
	if (a->dev.backend == PROTO_BACKEND_AFXDP) {
		kv_buf_add(&b, '\n', "umem_size", "%zu", LD_UMEM_SIZE);
		kv_buf_add(&b, '\n', "frame_size", "%d", LD_FRAME_SIZE);
		kv_buf_add(&b, '\n', "ring_size", "%d", LD_RING_SIZE);
	}
	if (a->fallback_reason[0])
		kv_buf_add(&b, '\n', "fallback_reason", "%s", a->fallback_reason);
	kv_buf_add(&b, '\n', "switchable", "%d", a->switchable ? 1 : 0);
	if (a->secret[0])
		kv_buf_add(&b, '\n', "secret", "%s", a->secret);     /* tag l */
	nfds = dev_fds(&a->dev, fds, CTL_MAX_FDS - 1, names);
	fds[nfds] = a->region_fd;
	names[nfds++] = "region";
	kv_buf_raw(&b, "fds=");
	for (int i = 0; i < nfds; i++) {
		kv_buf_raw(&b, i ? "," : "");
		kv_buf_raw(&b, names[i]);
	}
	kv_buf_raw(&b, "\n");
	kv_buf_add(&b, '\n', "errno", "0");

	ld_log("register app=%u name=%s pid=%d uid=%u ip=%s vf=%s ifindex=%d mac=%s backend=%s%s%s",
	       a->id, a->name, (int)a->pid, (unsigned)a->uid, ip, vf_name(idx), a->dev.ifindex, mac,
	       proto_backend_name(a->dev.backend),
	       a->fallback_reason[0] ? " fallback_reason=" : "", a->fallback_reason);
	if (!kv_buf_ok(&b) || send_reply(c, S.out, b.len, fds, nfds) < 0)
		app_release(a, "the register reply could not be delivered");
}

/* ---- begin: indirect mode's register and port (tag p) ---- */
/* Names as proto_parse_register() accepts them (it refuses mode=indirect). */
static bool ind_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= PROTO_NAME_MAX)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr("._+@:-", *s)))
			return false;
	return true;
}

/*
 * "register mode=indirect" (ctl.h): the application shares netd's MAC and
 * either the shared IP (ports demultiplex) or a dedicated pool address, and
 * gets a ring region and two doorbells that netd serves.
 */
static void cmd_register_indirect(struct conn *c, const struct kv *req)
{
	const struct ld_config *cfg = S.cfg;
	const char *name = kv_get(req, "name") ? kv_get(req, "name") : "app";
	const char *v = kv_get(req, "ip");
	char why[512], ip[16], mac[18], a_ip[16], b_ip[16];
	int fds[4], err;
	uint8_t m[6];
	struct kv_buf b;
	struct app *a;

	if (!ind_name_valid(name)) {
		register_refused(c, "-", EINVAL, "name= must be 1..%d characters of A-Z a-z 0-9 "
				 ". _ + @ : -", PROTO_NAME_MAX - 1);
		return;
	}
	if (!netd_sup_running(why, sizeof(why)) || !netd_sup_porttab()) {
		register_refused(c, name, ENETDOWN, "mode=indirect needs libretto-netd, and %s",
				 why);
		return;
	}
	reap_hung_leases();
	a = calloc(1, sizeof(*a));
	if (!a) {
		register_refused(c, name, ENOMEM, "out of memory");
		return;
	}
	a->pidfd = -1;
	a->region_fd = -1;
	a->vf = -1;
	dev_init(&a->dev);
	snprintf(a->name, sizeof(a->name), "%s", name);
	a->pid = c->pid;
	a->uid = c->uid;
	a->shared_ip = true;
	a->ip = cfg->shared_ip;
	a->indirect = true;
	if (!strcmp(kv_get(req, "mode"), "auto")) {
		err = auto_params(a, req, why, sizeof(why));
		if (err) {
			register_refused(c, name, EINVAL, "%s", why);
			free(a);
			return;
		}
		if (v && !strcmp(v, "shared")) {
			register_refused(c, name, EINVAL, "mode=auto needs a dedicated IP (an "
					 "application on the shared IP cannot have a VF of its own)");
			free(a);
			return;
		}
		if (!v || !strcmp(v, "auto")) {
			if (ip_take_auto(&a->ip) < 0) {
				ip_fmt(S.ips.first, a_ip);
				ip_fmt(S.ips.last, b_ip);
				register_refused(c, name, EADDRNOTAVAIL, "no free IP: all %u "
						 "addresses of the pool %s-%s are leased",
						 ip_pool_size(&S.ips), a_ip, b_ip);
				free(a);
				return;
			}
			a->shared_ip = false;
			goto ip_taken;
		}
	}
	if (v && strcmp(v, "shared") != 0 && strcmp(v, "auto") != 0) {
		if (ip_parse(v, &a->ip) < 0) {
			register_refused(c, name, EINVAL, "ip=%.32s is not an IPv4 address "
					 "(shared, auto or A.B.C.D)", v);
			free(a);
			return;
		}
		a->shared_ip = a->ip == cfg->shared_ip;
		if (a->shared_ip && a->auto_mode) {
			register_refused(c, name, EINVAL, "mode=auto needs a dedicated IP, not the "
					 "shared one");
			free(a);
			return;
		}
	}
	if (!a->shared_ip) {
		err = ip_pool_take(&S.ips, a->ip);
		if (err) {
			struct app *o = app_by_ip(a->ip);

			ip_fmt(S.ips.first, a_ip);
			ip_fmt(S.ips.last, b_ip);
			if (err == -EADDRINUSE)
				register_refused(c, name, EADDRINUSE, "ip=%s is already leased by "
						 "app=%u (%s, pid %d)", ip_fmt(a->ip, ip),
						 o ? o->id : 0, o ? o->name : "?", o ? (int)o->pid : 0);
			else
				register_refused(c, name, EADDRNOTAVAIL, "ip=%s is neither the shared "
						 "IP nor in librettod's pool %s-%s", ip_fmt(a->ip, ip),
						 a_ip, b_ip);
			free(a);
			return;
		}
	}
ip_taken:
	err = region_create(a->name, &a->region_fd, &a->region);
	if (err) {
		register_refused(c, name, -err, "cannot create the shared region: %s",
				 strerror(-err));
		goto fail;
	}
	a->id = ++S.next_id;
	err = ind_open(a->id, a->name, a->ip, true, &a->ind, why, sizeof(why));
	if (err) {
		register_refused(c, name, -err, "netd did not take the application: %s", why);
		region_destroy(a->region_fd, a->region);
		goto fail;
	}
	app_link(c, a);
	netd_sup_mac(m);
	memcpy(a->dev.mac, m, 6);
	a->switchable = !a->shared_ip;
	a->mode_since_ms = now_ms();
	snprintf(a->mode_why, sizeof(a->mode_why), "started");

	kv_buf_init(&b, S.out, sizeof(S.out));
	kv_buf_add(&b, '\n', "id", "%u", a->id);
	kv_buf_add(&b, '\n', "name", "%s", a->name);
	kv_buf_add(&b, '\n', "ip", "%s", ip_fmt(a->ip, ip));
	kv_buf_add(&b, '\n', "prefix", "%d", cfg->prefix);
	if (cfg->has_gateway)
		kv_buf_add(&b, '\n', "gateway", "%s", ip_fmt(cfg->gateway, a_ip));
	else
		kv_buf_add(&b, '\n', "gateway", "none");
	kv_buf_add(&b, '\n', "mac", "%s", proto_fmt_mac(m, mac));
	kv_buf_add(&b, '\n', "backend", "shm");
	kv_buf_add(&b, '\n', "ring_nframes", "%d", LD_IND_NFRAMES);
	kv_buf_add(&b, '\n', "ring_frame_size", "%d", LD_IND_FRAME_SIZE);
	kv_buf_add(&b, '\n', "ring_size", "%d", LD_IND_RING_SIZE);
	kv_buf_add(&b, '\n', "switchable", "%d", a->switchable ? 1 : 0);
	if (a->auto_mode) {
		kv_buf_add(&b, '\n', "auto_high", "%u", a->auto_high);
		kv_buf_add(&b, '\n', "auto_low", "%u", a->auto_low);
		kv_buf_add(&b, '\n', "auto_dwell_ms", "%u", a->auto_dwell_ms);
	}
	if (a->secret[0])
		kv_buf_add(&b, '\n', "secret", "%s", a->secret);     /* tag l */
	kv_buf_add(&b, '\n', "fds", "ring,efd_netd,efd_app,region");
	kv_buf_add(&b, '\n', "errno", "0");
	ind_fds(a->ind, fds);
	fds[3] = a->region_fd;
	ld_log("register app=%u name=%s pid=%d uid=%u mode=indirect ip=%s%s mac=%s backend=shm",
	       a->id, a->name, (int)a->pid, (unsigned)a->uid, ip, a->shared_ip ? " (shared)" : "",
	       mac);
	if (!kv_buf_ok(&b) || send_reply(c, S.out, b.len, fds, 4) < 0)
		app_release(a, "the register reply could not be delivered");
	return;
fail:
	if (!a->shared_ip)
		ip_pool_put(&S.ips, a->ip);
	free(a);
}

/* "port op=add|del proto= port= ip=" on an indirect lease (ctl.h). */
static void cmd_port(struct conn *c, const struct kv *req)
{
	char err[256];
	int e;

	if (!c->app || !c->app->ind) {
		reply_err(c, EINVAL, "port is sent on an indirect lease (the connection that "
			  "registered with mode=indirect)");
		return;
	}
	e = ind_port(c->app->ind, req, c->app->uid, err, sizeof(err));
	if (e) {
		reply_err(c, -e, "%s", err);
		return;
	}
	send_reply(c, "errno=0\n", 8, NULL, 0);
}
/* ---- end: indirect mode's register and port ---- */

/* ------------------------------------------------------------------ */
/* Mode switching (issue 6, docs/switching.md)                         */

/* The policy's tick: rates, thresholds, VF link checks. */
#define POLICY_TICK_MS 250

static int auto_param(const struct kv *req, const char *key, unsigned def, unsigned max,
		      unsigned *out, char *why, size_t len)
{
	unsigned long v;
	int e = kv_get_ulong(req, key, &v);

	if (e == -ENOENT) {
		*out = def;
		return 0;
	}
	if (e || v > max) {
		snprintf(why, len, "%s=%.32s is not a number in 0..%u", key,
			 kv_get(req, key) ? kv_get(req, key) : "", max);
		return -EINVAL;
	}
	*out = (unsigned)v;
	return 0;
}

/* mode=auto's thresholds: the request's, else librettod's defaults. */
static int auto_params(struct app *a, const struct kv *req, char *why, size_t len)
{
	if (auto_param(req, "auto_high", S.auto_high, 100000000, &a->auto_high, why, len) ||
	    auto_param(req, "auto_low", S.auto_low, 100000000, &a->auto_low, why, len) ||
	    auto_param(req, "auto_dwell_ms", S.auto_dwell_ms, 3600000, &a->auto_dwell_ms, why,
			len))
		return -EINVAL;
	if (a->auto_low >= a->auto_high) {
		snprintf(why, len, "auto_low=%u must be below auto_high=%u (hysteresis)", a->auto_low,
			 a->auto_high);
		return -EINVAL;
	}
	a->auto_mode = true;
	return 0;
}

/* An application by id or name (the oldest of that name). */
static struct app *app_by_ref(const char *ref)
{
	struct app *found = NULL;
	char *end;
	unsigned long id;

	if (!ref || !*ref)
		return NULL;
	id = strtoul(ref, &end, 10);
	if (!*end)
		return app_by_id((unsigned)id);
	for (struct app *a = S.apps; a; a = a->next)
		if (!a->dead && !strcmp(a->name, ref))
			found = a;    /* the list is newest first */
	return found;
}

static uint64_t rd64(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* The VF goes back to the pool after a switch (no reset of anybody). */
static void sw_vf_release(struct app *a)
{
	if (a->vf < 0)
		return;
	dev_close(&a->dev);
	S.vfs.slot[a->vf].owner = 0;
	if (S.vf_released_ms)
		S.vf_released_ms[a->vf] = now_ms();
	a->vf = -1;
}

/* Whether a VF netdev is up with a carrier; true when it cannot be told. */
static bool vf_link_ok(int idx)
{
	struct ifreq ifr = { 0 };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	bool ok = true;

	if (fd < 0)
		return true;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", vf_name(idx));
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0)
		ok = (ifr.ifr_flags & IFF_UP) && (ifr.ifr_flags & IFF_RUNNING);
	close(fd);
	return ok;
}

/*
 * Open a free VF for a: 0 (a->vf, a->dev set) or -errno with msg.  A VF
 * released a moment ago may still have its queue bound (EBUSY, see
 * REG_RETRY_MAX_MS): the others are tried first, and -EAGAIN says to try
 * again shortly, unless last, when AF_PACKET is accepted instead.
 */
static int sw_take_vf(struct app *a, bool last, char *msg, size_t len)
{
	char fallback[48];
	int err = -EBUSY;
	bool busy_recent = false;

	if (vf_pool_next_free(&S.vfs, 0) < 0) {
		char holders[512];

		vf_holders_text(holders, sizeof(holders));
		snprintf(msg, len, "no free VF: all %d are leased: %s", S.vfs.n, holders);
		return -EBUSY;
	}
	for (int pass = 0; pass < 2; pass++) {
		for (int i = vf_pool_next_free(&S.vfs, 0); i >= 0; i = vf_pool_next_free(&S.vfs, i + 1)) {
			if (vf_recently_released(i) != (pass == 1))
				continue;
			dev_init(&a->dev);
			err = open_backend(&a->dev, vf_name(i),
					   last ? PROTO_BACKEND_AUTO : PROTO_BACKEND_AFXDP, true,
					   fallback, sizeof(fallback), msg, len);
			if (!err) {
				a->vf = i;
				S.vfs.slot[i].owner = a->id;
				return 0;
			}
			if (err == -EBUSY && pass == 1)
				busy_recent = true;
		}
	}
	return busy_recent && !last ? -EAGAIN : err;
}

/*
 * Start moving a to the other mode: open the new path and send the order
 * (ctl.h order=switch).  0, or -errno with a sentence in msg (nothing
 * changed then).
 */
static int sw_start(struct app *a, bool to_indirect, const char *reason, char *msg, size_t len)
{
	char ip[16], mac[18];
	const char *names[CTL_MAX_FDS];
	int fds[CTL_MAX_FDS], nfds, err;
	struct kv_buf b;

	if (!a->switchable) {
		snprintf(msg, len, "app=%u (%s) cannot switch: %s", a->id, a->name,
			 a->shared_ip ? "it is on the shared IP (start it with --ip A)" :
			 "librettod had no port table when it started");
		return -EOPNOTSUPP;
	}
	if (a->sw == SW_ORDERED) {
		snprintf(msg, len, "app=%u (%s) is already switching to %s mode", a->id, a->name,
			 a->sw_to_indirect ? "indirect" : "direct");
		return -EBUSY;
	}
	if (a->indirect == to_indirect) {
		a->sw_queued = 0;	/* asked back to where it is: nothing queued */
		snprintf(msg, len, "app=%u (%s) is in %s mode already", a->id, a->name,
			 to_indirect ? "indirect" : "direct");
		return -EALREADY;
	}
	if (a->sw == SW_DRAINING) {
		/* Back before the old path is gone: once it is (a few hundred
		 * ms), so that a path is never opened twice. */
		a->sw_queued = to_indirect ? 2 : 1;
		snprintf(a->sw_queued_why, sizeof(a->sw_queued_why), "%s", reason);
		ld_log("switch app=%u name=%s to=%s reason=%s: queued until the old path drained",
		       a->id, a->name, to_indirect ? "indirect" : "direct", reason);
		return 0;
	}
	if (!a->conn || a->conn->dead) {
		snprintf(msg, len, "app=%u (%s) has no lease connection", a->id, a->name);
		return -ENOTCONN;
	}
	kv_buf_init(&b, S.out, sizeof(S.out));
	kv_buf_add(&b, '\n', "order", "switch");
	kv_buf_add(&b, '\n', "mode", "%s", to_indirect ? "indirect" : "direct");
	kv_buf_add(&b, '\n', "reason", "%s", reason);
	if (to_indirect) {
		uint8_t m[6];

		if (!netd_sup_running(msg, len)) {
			snprintf(msg + strlen(msg), len - strlen(msg), " (indirect mode needs netd)");
			return -ENETDOWN;
		}
		err = ind_attach(a->ind, msg, len);
		if (err)
			return err;
		netd_sup_mac(m);
		kv_buf_add(&b, '\n', "backend", "shm");
		kv_buf_add(&b, '\n', "mac", "%s", proto_fmt_mac(m, mac));
		kv_buf_add(&b, '\n', "ring_nframes", "%d", LD_IND_NFRAMES);
		kv_buf_add(&b, '\n', "ring_frame_size", "%d", LD_IND_FRAME_SIZE);
		kv_buf_add(&b, '\n', "ring_size", "%d", LD_IND_RING_SIZE);
		kv_buf_add(&b, '\n', "fds", "ring,efd_netd,efd_app");
		nfds = ind_fds(a->ind, fds);
	} else {
		bool last = a->sw_retry_until && now_ms() >= a->sw_retry_until;

		err = sw_take_vf(a, last, msg, len);
		if (err == -EAGAIN) {
			/* The policy tick retries it (on_policy). */
			if (!a->sw_retry_until)
				a->sw_retry_until = now_ms() + REG_RETRY_MAX_MS;
			a->sw_queued = 1;
			snprintf(a->sw_queued_why, sizeof(a->sw_queued_why), "%s", reason);
			return 0;
		}
		a->sw_retry_until = 0;
		if (err)
			return err;
		kv_buf_add(&b, '\n', "backend", "%s", proto_backend_name(a->dev.backend));
		kv_buf_add(&b, '\n', "mac", "%s", proto_fmt_mac(a->dev.mac, mac));
		kv_buf_add(&b, '\n', "vf", "%s", vf_name(a->vf));
		kv_buf_add(&b, '\n', "ifindex", "%d", a->dev.ifindex);
		if (a->dev.backend == PROTO_BACKEND_AFXDP) {
			kv_buf_add(&b, '\n', "umem_size", "%zu", LD_UMEM_SIZE);
			kv_buf_add(&b, '\n', "frame_size", "%d", LD_FRAME_SIZE);
			kv_buf_add(&b, '\n', "ring_size", "%d", LD_RING_SIZE);
		}
		nfds = dev_fds(&a->dev, fds, CTL_MAX_FDS, names);
		kv_buf_raw(&b, "fds=");
		for (int i = 0; i < nfds; i++) {
			kv_buf_raw(&b, i ? "," : "");
			kv_buf_raw(&b, names[i]);
		}
		kv_buf_raw(&b, "\n");
	}
	if (!kv_buf_ok(&b) || send_reply(a->conn, S.out, b.len, fds, nfds) < 0) {
		snprintf(msg, len, "the order could not be sent to app=%u", a->id);
		if (to_indirect)
			ind_detach(a->ind);
		else
			sw_vf_release(a);
		return -EIO;
	}
	a->sw = SW_ORDERED;
	a->sw_to_indirect = to_indirect;
	snprintf(a->mode_why, sizeof(a->mode_why), "%s", reason);
	ld_log("switch app=%u name=%s ip=%s to=%s%s%s reason=%s", a->id, a->name,
	       ip_fmt(a->ip, ip), to_indirect ? "indirect" : "direct", to_indirect ? "" : " vf=",
	       to_indirect ? "" : vf_name(a->vf), reason);
	return 0;
}

/* "switch app= mode=direct|indirect|auto" from the CLI (ctl.h). */
static void cmd_switch(struct conn *c, const struct kv *req)
{
	const char *mode = kv_get(req, "mode");
	struct app *a = app_by_ref(kv_get(req, "app"));
	char msg[600], why[64];
	int e;

	if (!a) {
		reply_err(c, ENOENT, "no application %.40s (`libretto ps` lists them)",
			  kv_get(req, "app") ? kv_get(req, "app") : "(app= missing)");
		return;
	}
	if (c->uid != 0 && c->uid != a->uid) {
		reply_err(c, EPERM, "app=%u belongs to uid %u: only it and root may switch it",
			  a->id, (unsigned)a->uid);
		return;
	}
	if (mode && !strcmp(mode, "auto")) {
		if (!a->switchable) {
			reply_err(c, EOPNOTSUPP, "app=%u (%s) cannot switch", a->id, a->name);
			return;
		}
		if (!a->auto_mode) {
			a->auto_mode = true;
			a->auto_high = a->auto_high ? a->auto_high : S.auto_high;
			a->auto_low = a->auto_low ? a->auto_low : S.auto_low;
			a->auto_dwell_ms = a->auto_dwell_ms ? a->auto_dwell_ms : S.auto_dwell_ms;
			a->above_ms = a->below_ms = 0;
			ld_log("app=%u name=%s: policy auto (high=%u low=%u dwell_ms=%u) by pid=%d",
			       a->id, a->name, a->auto_high, a->auto_low, a->auto_dwell_ms,
			       (int)c->pid);
		}
		send_reply(c, "errno=0\n", 8, NULL, 0);
		return;
	}
	if (!mode || (strcmp(mode, "direct") && strcmp(mode, "indirect"))) {
		reply_err(c, EINVAL, "switch needs mode=direct, mode=indirect or mode=auto");
		return;
	}
	snprintf(why, sizeof(why), "command:pid=%d", (int)c->pid);
	e = sw_start(a, !strcmp(mode, "indirect"), why, msg, sizeof(msg));
	if (e) {
		reply_err(c, -e, "%s", msg);
		return;
	}
	/* A command pins the application: the policy leaves it alone. */
	if (a->auto_mode)
		ld_log("app=%u name=%s: policy manual (switched by command)", a->id, a->name);
	a->auto_mode = false;
	send_reply(c, "errno=0\n", 8, NULL, 0);
}

/* The runtime's side of a switch: switched, switch_failed, switch_drained,
 * switch_want (ctl.h), on the lease connection. */
static void cmd_switch_event(struct conn *c, const char *cmd, const struct kv *req)
{
	struct app *a = c->app;
	const char *mode = kv_get(req, "mode");
	char msg[600];

	if (!a || !a->switchable) {
		reply_err(c, EINVAL, "%s is sent on a switchable lease", cmd);
		return;
	}
	send_reply(c, "errno=0\n", 8, NULL, 0);
	if (!strcmp(cmd, "switch_want")) {
		const char *why = kv_get(req, "reason");
		char reason[64];

		snprintf(reason, sizeof(reason), "runtime:%.40s", why ? why : "asked");
		if (mode && !strcmp(mode, "indirect") && sw_start(a, true, reason, msg, sizeof(msg)))
			ld_log("app=%u: its request to move to indirect mode failed: %s", a->id, msg);
		return;
	}
	if (a->sw == SW_IDLE) {
		ld_log("app=%u: %s while no switch is under way (ignored)", a->id, cmd);
		return;
	}
	if (!strcmp(cmd, "switched")) {
		a->indirect = a->sw_to_indirect;
		a->sw = SW_DRAINING;
		a->mode_since_ms = now_ms();
		a->switches++;
		a->above_ms = a->below_ms = 0;
		ld_log("app=%u name=%s: now in %s mode; the old path drains", a->id, a->name,
		       a->indirect ? "indirect" : "direct");
	} else if (!strcmp(cmd, "switch_failed")) {
		const char *e = kv_get(req, "error");

		ld_log("error: app=%u name=%s: the switch to %s mode failed in the application: %s",
		       a->id, a->name, a->sw_to_indirect ? "indirect" : "direct", e ? e : "?");
		if (a->sw_to_indirect)
			ind_detach(a->ind);
		else
			sw_vf_release(a);
		a->sw = SW_IDLE;
		snprintf(a->mode_why, sizeof(a->mode_why), "switch-failed");
	} else if (a->sw == SW_DRAINING) {   /* switch_drained */
		if (a->indirect)
			sw_vf_release(a);
		else
			ind_detach(a->ind);
		a->sw = SW_IDLE;
		ld_log("app=%u name=%s: the old path is drained and released", a->id, a->name);
		if (a->sw_queued) {
			bool to_indirect = a->sw_queued == 2;

			a->sw_queued = 0;
			if (sw_start(a, to_indirect, a->sw_queued_why, msg, sizeof(msg)) &&
			    a->indirect != to_indirect)
				ld_log("error: app=%u: the queued switch to %s mode failed: %s", a->id,
				       to_indirect ? "indirect" : "direct", msg);
		}
	}
}

/* Every POLICY_TICK_MS: failed VF links, and the auto policy. */
static void on_policy(void)
{
	uint64_t ticks, now = now_ms();
	struct app *want = NULL, *victim = NULL;
	char why[96], msg[600];

	while (read(S.policy_fd, &ticks, sizeof(ticks)) == sizeof(ticks))
		;
	for (struct app *a = S.apps; a; a = a->next) {
		uint64_t pkts, dt;

		if (a->dead || !a->switchable || !a->region)
			continue;
		if (a->sw == SW_IDLE && a->sw_queued) {
			bool to_indirect = a->sw_queued == 2;

			a->sw_queued = 0;
			if (sw_start(a, to_indirect, a->sw_queued_why, msg, sizeof(msg)) &&
			    a->indirect != to_indirect)
				ld_log("error: app=%u: the switch to %s mode failed: %s", a->id,
				       to_indirect ? "indirect" : "direct", msg);
			continue;
		}
		if (a->sw == SW_IDLE && !a->indirect && a->vf >= 0 && !vf_link_ok(a->vf)) {
			snprintf(why, sizeof(why), "vf-link-down:%s", vf_name(a->vf));
			if (sw_start(a, true, why, msg, sizeof(msg)))
				ld_log("app=%u: %s is down and the move to indirect failed: %s", a->id,
				       vf_name(a->vf), msg);
			continue;
		}
		pkts = rd64(&a->region->rx_packets) + rd64(&a->region->tx_packets);
		dt = now - a->rate_ms;
		if (a->rate_ms && dt > 0 && pkts >= a->rate_pkts) {
			uint64_t inst = (pkts - a->rate_pkts) * 1000 / dt;

			/* Half the weight on the last tick: about a second of memory. */
			a->rate_pps = (a->rate_pps + inst) / 2;
		}
		a->rate_pkts = pkts;
		a->rate_ms = now;
		if (!a->auto_mode || a->sw != SW_IDLE)
			continue;
		if (a->indirect) {
			a->above_ms = a->rate_pps >= a->auto_high ? (a->above_ms ? a->above_ms : now) : 0;
			if (a->above_ms && now - a->above_ms >= a->auto_dwell_ms &&
			    now - a->mode_since_ms >= a->auto_dwell_ms &&
			    (!want || a->rate_pps > want->rate_pps))
				want = a;
		} else {
			a->below_ms = a->rate_pps <= a->auto_low ? (a->below_ms ? a->below_ms : now) : 0;
			if (a->below_ms && now - a->below_ms >= a->auto_dwell_ms &&
			    now - a->mode_since_ms >= a->auto_dwell_ms) {
				snprintf(why, sizeof(why), "policy:%llupps<=low=%u",
					 (unsigned long long)a->rate_pps, a->auto_low);
				if (sw_start(a, true, why, msg, sizeof(msg)))
					ld_log("app=%u: policy move to indirect failed: %s", a->id, msg);
				continue;
			}
			if (now - a->mode_since_ms >= a->auto_dwell_ms &&
			    (!victim || a->rate_pps < victim->rate_pps))
				victim = a;
		}
	}
	if (!want)
		return;
	if (vf_pool_next_free(&S.vfs, 0) >= 0) {
		snprintf(why, sizeof(why), "policy:%llupps>=high=%u",
			 (unsigned long long)want->rate_pps, want->auto_high);
		/* A VF just released may still be busy: the next tick retries. */
		if (sw_start(want, false, why, msg, sizeof(msg)) && want->switches == 0)
			ld_log("app=%u: policy move to direct failed: %s", want->id, msg);
		return;
	}
	/* No VF free: the quietest auto application in direct mode gives its
	 * VF back if the busy one has clearly more traffic (twice: no
	 * ping-pong between two similar loads). */
	if (victim && victim->rate_pps * 2 < want->rate_pps) {
		snprintf(why, sizeof(why), "arbitration:app=%u_needs_it(%llupps>%llupps)", want->id,
			 (unsigned long long)want->rate_pps, (unsigned long long)victim->rate_pps);
		if (sw_start(victim, true, why, msg, sizeof(msg)))
			ld_log("app=%u: giving its VF back failed: %s", victim->id, msg);
	}
}

/* ------------------------------------------------------------------ */
/* ps, status, shutdown                                                */


/* The app whose lease's client end is socket inode ino, or NULL. */
static struct app *app_by_peer_ino(unsigned long ino)
{
	for (struct app *a = S.apps; a; a = a->next)
		if (a->peer_ino && a->peer_ino == ino)
			return a;
	return NULL;
}

/*
 * Find, for every application, the processes that hold a descriptor of its
 * lease (the client end of its control connection): the program, and any
 * child that inherited it.  One pass over /proc/PID/fd, done for `ps` only.
 */
static void holders_scan(void)
{
	struct dirent *pd;
	DIR *proc;

	for (struct app *a = S.apps; a; a = a->next)
		a->nholders = 0;
	proc = opendir("/proc");
	if (!proc)
		return;
	while ((pd = readdir(proc))) {
		char path[64], link[64];
		struct dirent *fdd;
		DIR *fds;
		int dfd;
		pid_t pid;

		if (pd->d_name[0] < '1' || pd->d_name[0] > '9')
			continue;
		pid = (pid_t)strtol(pd->d_name, NULL, 10);
		if (pid == getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
		fds = opendir(path);
		if (!fds)
			continue;
		dfd = dirfd(fds);
		while ((fdd = readdir(fds))) {
			unsigned long ino;
			struct app *a;
			ssize_t n;

			if (fdd->d_name[0] < '0' || fdd->d_name[0] > '9')
				continue;
			n = readlinkat(dfd, fdd->d_name, link, sizeof(link) - 1);
			if (n < 9)
				continue;
			link[n] = '\0';
			if (strncmp(link, "socket:[", 8) != 0)
				continue;
			ino = strtoul(link + 8, NULL, 10);
			a = app_by_peer_ino(ino);
			if (!a)
				continue;
			/* One entry per process, however many descriptors it has. */
			if ((a->nholders == 0 || a->holders[a->nholders - 1] != pid) &&
			    a->nholders < APP_MAX_HOLDERS)
				a->holders[a->nholders++] = pid;
		}
		closedir(fds);
	}
	closedir(proc);
}

/* One "app=..." line; returns its length, or 0 if it did not fit. */
static size_t ps_line(const struct app *a, char *buf, size_t len)
{
	/* tag l: a recovered lease has no region until it re-attaches. */
	static const struct libretto_region no_region;
	const struct libretto_region *r = a->region ? a->region : &no_region;
	struct region_port snap[REGION_MAX_PORTS];
	char ports[REGION_MAX_PORTS * 12 + 2], ip[16], mac[18];
	char holders[APP_MAX_HOLDERS * 12 + 2];
	uint32_t nports;
	int n;

	/*
	 * The application writes the region concurrently and may write
	 * anything: every field is read once, with a relaxed load (the
	 * runtime's relaxed stores), and nports is clamped before use.
	 */
	nports = __atomic_load_n(&r->nports, __ATOMIC_RELAXED);
	if (nports > REGION_MAX_PORTS)
		nports = REGION_MAX_PORTS;
	for (uint32_t i = 0; i < nports; i++) {
		snap[i].port = __atomic_load_n(&r->ports[i].port, __ATOMIC_RELAXED);
		snap[i].proto = __atomic_load_n(&r->ports[i].proto, __ATOMIC_RELAXED);
		snap[i].state = __atomic_load_n(&r->ports[i].state, __ATOMIC_RELAXED);
	}
	proto_fmt_ports(snap, nports, ports, sizeof(ports));
	/* tag p: an indirect application's ports are the ones netd steers to it. */
	if (a->ind && a->indirect)
		ind_fmt_ports(a->ind, ports, sizeof(ports));
	if (!a->peer_ino) {
		snprintf(holders, sizeof(holders), "?");
	} else if (a->nholders == 0) {
		snprintf(holders, sizeof(holders), "-");
	} else {
		size_t used = 0;

		holders[0] = '\0';
		for (int i = 0; i < a->nholders && used < sizeof(holders); i++)
			used += (size_t)snprintf(holders + used, sizeof(holders) - used, "%s%d",
						 i ? "," : "", (int)a->holders[i]);
	}
	if (a->indirect) {
		uint8_t m[6];

		netd_sup_mac(m);
		proto_fmt_mac(m, mac);
	} else {
		proto_fmt_mac(a->dev.mac, mac);
	}
	n = snprintf(buf, len,
		     "app=%u name=%s pid=%d alive=%d holders=%s mode=%s ip=%s mac=%s vf=%s "
		     "backend=%s policy=%s switching=%s mode_since_ms=%llu mode_why=%s switches=%u "
		     "rate_pps=%llu rx_packets=%llu rx_bytes=%llu tx_packets=%llu tx_bytes=%llu "
		     "ports=%s\n",
		     a->id, a->name, (int)a->pid, a->alive ? 1 : 0, holders,
		     a->indirect ? "indirect" : "direct", ip_fmt(a->ip, ip), mac,
		     a->vf >= 0 ? vf_name(a->vf) : "-",
		     a->indirect ? "shm" : proto_backend_name(a->dev.backend),
		     a->auto_mode ? "auto" : a->switchable ? "manual" : "fixed",
		     a->sw == SW_ORDERED ? (a->sw_to_indirect ? "to-indirect" : "to-direct") :
		     a->sw == SW_DRAINING ? "draining" :
		     a->sw_queued ? (a->sw_queued == 2 ? "queued-indirect" : "queued-direct") : "-",
		     (unsigned long long)(now_ms() - a->mode_since_ms), a->mode_why, a->switches,
		     (unsigned long long)a->rate_pps,
		     (unsigned long long)rd64(&r->rx_packets), (unsigned long long)rd64(&r->rx_bytes),
		     (unsigned long long)rd64(&r->tx_packets), (unsigned long long)rd64(&r->tx_bytes),
		     ports);
	return n < 0 || (size_t)n >= len ? 0 : (size_t)n;
}

static void cmd_ps(struct conn *c)
{
	/* Room kept for the "apps=", "truncated=" and "errno=" lines. */
	const size_t cap = sizeof(S.lines) - 96;
	size_t used = 0;
	unsigned shown = 0;
	struct app *list[512];
	struct kv_buf b;
	int n = 0;

	holders_scan();
	/* Registration order (oldest first) reads better than list order. */
	for (struct app *a = S.apps; a && n < (int)(sizeof(list) / sizeof(list[0])); a = a->next)
		list[n++] = a;
	for (int i = n - 1; i >= 0; i--) {
		size_t l = ps_line(list[i], S.lines + used, cap - used);

		if (l == 0)
			continue;
		used += l;
		shown++;
	}
	S.lines[used] = '\0';
	kv_buf_init(&b, S.out, sizeof(S.out));
	kv_buf_add(&b, '\n', "apps", "%u", shown);
	if (shown < S.napps)
		kv_buf_add(&b, '\n', "truncated", "%u", S.napps - shown);
	kv_buf_raw(&b, S.lines);
	kv_buf_add(&b, '\n', "errno", "0");
	if (!kv_buf_ok(&b)) {
		reply_err(c, EMSGSIZE, "the ps reply does not fit in one message");
		return;
	}
	send_reply(c, S.out, b.len, NULL, 0);
}

static void cmd_status(struct conn *c)
{
	const struct ld_config *cfg = S.cfg;
	char a[16], z[16];
	struct kv_buf b;

	kv_buf_init(&b, S.out, sizeof(S.out));
	kv_buf_add(&b, '\n', "nic", "%s", cfg->nic);
	kv_buf_add(&b, '\n', "shared_ip", "%s", ip_fmt(cfg->shared_ip, a));
	kv_buf_add(&b, '\n', "pool", "%s-%s", ip_fmt(cfg->pool_first, a),
		   ip_fmt(cfg->pool_last, z));
	kv_buf_add(&b, '\n', "prefix", "%d", cfg->prefix);
	if (cfg->has_gateway)
		kv_buf_add(&b, '\n', "gateway", "%s", ip_fmt(cfg->gateway, a));
	else
		kv_buf_add(&b, '\n', "gateway", "none");
	kv_buf_raw(&b, "vfs=");
	for (int i = 0; i < S.vfs.n; i++) {
		char item[64];

		if (S.vfs.slot[i].owner)
			snprintf(item, sizeof(item), "%s%s:%u", i ? "," : "", vf_name(i),
				 S.vfs.slot[i].owner);
		else
			snprintf(item, sizeof(item), "%s%s:free", i ? "," : "", vf_name(i));
		kv_buf_raw(&b, item);
	}
	kv_buf_raw(&b, "\n");
	kv_buf_add(&b, '\n', "netns", "%s", cfg->netns ? cfg->netns : "-");
	kv_buf_add(&b, '\n', "apps", "%u", S.napps);
	kv_buf_add(&b, '\n', "pid", "%d", (int)getpid());
	netd_sup_status(&b);       /* tag s */
	fsd_sup_status(&b);        /* tag v3 */
	volume_status(&b);         /* tag v5 */
	kv_buf_add(&b, '\n', "errno", "0");
	if (!kv_buf_ok(&b)) {
		reply_err(c, EMSGSIZE, "the status reply does not fit in one message");
		return;
	}
	send_reply(c, S.out, b.len, NULL, 0);
}

/*
 * "handover pid=K" on a lease connection: K runs the application's TCP/IP
 * stack from now on (the runtime's keeper, made when the process that ran
 * it exits; or a daemonized child that started it).  K must be a child of
 * the pid the lease names or hold the lease connection itself; from now on
 * K is the application's pid.
 */
/* pid has a descriptor on the socket whose inode is ino (/proc/pid/fd). */
static bool pid_holds_ino(pid_t pid, unsigned long ino)
{
	char path[64], link[64];
	struct dirent *e;
	bool yes = false;
	DIR *d;

	if (ino == 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (d == NULL)
		return false;
	while (!yes && (e = readdir(d)) != NULL) {
		ssize_t n = readlinkat(dirfd(d), e->d_name, link, sizeof(link) - 1);

		if (n > 8) {
			link[n] = '\0';
			yes = strncmp(link, "socket:[", 8) == 0 && strtoul(link + 8, NULL, 10) == ino;
		}
	}
	closedir(d);
	return yes;
}

static void cmd_handover(struct conn *c, const struct kv *req)
{
	struct app *a = c->app;
	const char *v = kv_get(req, "pid");
	char *end;
	long pid;
	int fd;

	if (a == NULL) {
		reply_err(c, EINVAL, "handover is sent on a lease (the connection that registered)");
		return;
	}
	pid = v ? strtol(v, &end, 10) : 0;
	if (v == NULL || *end || pid <= 0 || pid > INT32_MAX) {
		reply_err(c, EINVAL, "handover needs pid=N");
		return;
	}
	/* A child of the application's pid, or (its parent already gone, as
	 * after daemonize) a process that holds this lease's connection. */
	if (!proc_is_child_of((pid_t)pid, a->pid) && !pid_holds_ino((pid_t)pid, a->peer_ino)) {
		reply_err(c, EPERM, "pid %ld is neither a child of the application's pid %d "
			  "nor a holder of its lease", pid, (int)a->pid);
		return;
	}
	fd = pidfd_open_pid((pid_t)pid);
	if (fd < 0) {
		reply_err(c, -fd, "cannot watch pid %ld", pid);
		return;
	}
	if (a->pidfd >= 0) {
		epoll_del(a->pidfd);
		close(a->pidfd);
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &a->pid_ev };

	if (epoll_ctl(S.epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		ld_log("app=%u: cannot watch pid %ld: %s", a->id, pid, strerror(errno));
		close(fd);
		fd = -1;
	}
	ld_log("app=%u name=%s: pid %d hands the lease over to its child %ld", a->id, a->name,
	       (int)a->pid, pid);
	a->pidfd = fd;
	a->pid = (pid_t)pid;
	a->alive = fd >= 0;
	send_reply(c, "errno=0\n", 8, NULL, 0);
}

/* ---- begin: stats, netd's counters (tag s) ---- */
static void cmd_stats(struct conn *c)
{
	char err[512];
	int n = netd_sup_stats(S.out, sizeof(S.out), err, sizeof(err));
	size_t used;

	if (n < 0) {
		reply_err(c, -n, "%s", err);
		return;
	}
	/* Mode switching (issue 6): one "switch=<id>" line per switchable
	 * application, inserted before the final errno= line. */
	used = (size_t)n;
	if (used > 0 && used < sizeof(S.out)) {
		char *tail = strstr(S.out, "errno=");
		char keep[64];

		while (tail && tail != S.out && tail[-1] != '\n')
			tail = strstr(tail + 1, "errno=");
		if (tail && strlen(tail) < sizeof(keep)) {
			snprintf(keep, sizeof(keep), "%s", tail);
			used = (size_t)(tail - S.out);
			for (struct app *a = S.apps; a; a = a->next) {
				int k;

				if (a->dead || !a->switchable)
					continue;
				k = snprintf(S.out + used, sizeof(S.out) - used,
					     "switch=%u name=%s mode=%s policy=%s mode_since_ms=%llu "
					     "mode_why=%s switches=%u rate_pps=%llu vf=%s\n", a->id,
					     a->name, a->indirect ? "indirect" : "direct",
					     a->auto_mode ? "auto" : "manual",
					     (unsigned long long)(now_ms() - a->mode_since_ms),
					     a->mode_why, a->switches, (unsigned long long)a->rate_pps,
					     a->vf >= 0 ? vf_name(a->vf) : "-");
				if (k < 0 || (size_t)k >= sizeof(S.out) - used - sizeof(keep))
					break;
				used += (size_t)k;
			}
			used += (size_t)snprintf(S.out + used, sizeof(S.out) - used, "%s", keep);
		}
	}
	send_reply(c, S.out, used, NULL, 0);
}
/* ---- end: stats ---- */

/* ---- begin: netd restart and live upgrade (tag r) ---- */
/* "netd op=restart|upgrade [path=P]": root only, like shutdown. */
static void cmd_netd(struct conn *c, const struct kv *req)
{
	const char *op = kv_get(req, "op"), *path = kv_get(req, "path");
	char msg[600];
	int e;

	if (c->uid != 0 && c->uid != geteuid()) {
		reply_err(c, EPERM, "only root may restart or upgrade the network server");
		return;
	}
	if (!op || (strcmp(op, "restart") && strcmp(op, "upgrade"))) {
		reply_err(c, EINVAL, "netd needs op=restart or op=upgrade");
		return;
	}
	if (path && (!*path || *path != '/')) {
		reply_err(c, EINVAL, "path= must be absolute");
		return;
	}
	ld_log("netd %s requested by pid=%d uid=%u%s%s", op, (int)c->pid, (unsigned)c->uid,
	       path ? " path=" : "", path ? path : "");
	e = netd_sup_upgrade(!strcmp(op, "upgrade") ? path : NULL, msg, sizeof(msg));
	if (e) {
		reply_err(c, -e, "%s", msg);
		return;
	}
	/* Read as the rest of its line, like error= (kv.h). */
	snprintf(S.out, sizeof(S.out), "message=%s\nerrno=0\n", msg);
	send_reply(c, S.out, strlen(S.out), NULL, 0);
}

/* "fsd op=restart": root only; the new fsd adopts every volume and session. */
static void cmd_fsd(struct conn *c, const struct kv *req)
{
	const char *op = kv_get(req, "op");
	char msg[600];
	int e;

	if (c->uid != 0 && c->uid != geteuid()) {
		reply_err(c, EPERM, "only root may restart the storage server");
		return;
	}
	if (!op || strcmp(op, "restart")) {
		reply_err(c, EINVAL, "fsd needs op=restart");
		return;
	}
	ld_log("fsd restart requested by pid=%d uid=%u", (int)c->pid, (unsigned)c->uid);
	e = fsd_sup_restart(msg, sizeof(msg));
	if (e) {
		reply_err(c, -e, "%s", msg);
		return;
	}
	snprintf(S.out, sizeof(S.out), "message=%s\nerrno=0\n", msg);
	send_reply(c, S.out, strlen(S.out), NULL, 0);
}
/* ---- end: netd restart and live upgrade ---- */

static void cmd_shutdown(struct conn *c)
{
	/* The socket is world-writable so that any user can lease a VF; only
	 * root or the daemon's own user may stop it. */
	if (c->uid != 0 && c->uid != geteuid()) {
		if (geteuid() == 0)
			reply_err(c, EPERM, "only root may shut librettod down");
		else
			reply_err(c, EPERM, "only root and uid %u may shut librettod down",
				  (unsigned)geteuid());
		return;
	}
	ld_log("shutdown requested by pid=%d uid=%u", (int)c->pid, (unsigned)c->uid);
	send_reply(c, "errno=0\n", 8, NULL, 0);
	S.stop = true;
}

static void handle_request(struct conn *c, const char *text, size_t len)
{
	struct kv req;
	const char *cmd;
	int err;

	err = kv_parse(&req, text, len);
	if (err) {
		reply_err(c, -err, err == -EINVAL ? "request has more than %d key=value pairs" :
			  "out of memory (%d)", KV_MAX);
		return;
	}
	if (req.n == 0) {
		reply_err(c, EINVAL, "empty request");
		kv_free(&req);
		return;
	}
	cmd = req.pair[0].key;
	if (*req.pair[0].value)
		reply_err(c, EINVAL, "the first line must be a command name alone, not '%.40s=...'", cmd);
	else if (!strcmp(cmd, "register"))
		cmd_register(c, &req);
	else if (!strcmp(cmd, "ps"))
		cmd_ps(c);
	else if (!strcmp(cmd, "status"))
		cmd_status(c);
	else if (!strcmp(cmd, "shutdown"))
		cmd_shutdown(c);
	else if (!strcmp(cmd, "handover"))
		cmd_handover(c, &req);
	else if (!strcmp(cmd, "stats"))       /* tag s */
		cmd_stats(c);
	else if (!strcmp(cmd, "netd"))        /* tag r */
		cmd_netd(c, &req);
	else if (!strcmp(cmd, "fsd"))
		cmd_fsd(c, &req);
	else if (!strcmp(cmd, "port"))        /* tag p */
		cmd_port(c, &req);
	else if (!strcmp(cmd, "switch"))      /* issue 6 */
		cmd_switch(c, &req);
	else if (!strcmp(cmd, "reattach"))    /* tag l */
		cmd_reattach(c, &req);
	else if (!strcmp(cmd, "volume"))      /* tag v5: issue 8 */
		volume_cmd(c->fd, c->app ? c->app->id : 0, c->app ? c->app->name : NULL,
			   c->app ? c->app->pid : c->pid, &req);
	else if (!strcmp(cmd, "volumes"))     /* tag v5 */
		volume_list(c->fd);
	else if (!strcmp(cmd, "switched") || !strcmp(cmd, "switch_failed") ||
		 !strcmp(cmd, "switch_drained") || !strcmp(cmd, "switch_want"))
		cmd_switch_event(c, cmd, &req);
	else
		reply_err(c, EINVAL, "unknown command '%.40s' (register, port, ps, status, stats, "
			  "shutdown, handover, switch, netd, fsd, volume, volumes)", cmd);
	kv_free(&req);
}

/* ------------------------------------------------------------------ */
/* Events                                                              */

static void on_conn(struct conn *c)
{
	for (int i = 0; i < SERVER_MSGS_PER_WAKEUP && !c->dead && !S.stop; i++) {
		int n = ctl_recv(c->fd, S.in, sizeof(S.in), NULL, NULL);

		if (n == -EAGAIN)
			return;
		if (n == -EMSGSIZE) {
			reply_err(c, EMSGSIZE, "request longer than %d bytes", CTL_MSG_MAX - 1);
			continue;
		}
		if (n < 0) {
			char why[96];

			snprintf(why, sizeof(why), "control connection error (%s)", strerror(-n));
			conn_close(c, why);
			return;
		}
		if (n == 0) {
			conn_close(c, "control connection closed");
			return;
		}
		handle_request(c, S.in, (size_t)n);
	}
}

static void on_listen(void)
{
	for (;;) {
		struct ucred cred;
		socklen_t clen = sizeof(cred);
		struct epoll_event ev;
		struct conn *c;
		int fd = accept4(S.listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				ld_log("error: accept: %s", strerror(errno));
			return;
		}
		if (S.nconns >= SERVER_MAX_CONNS) {
			ld_log("error: %d control connections open; refusing another", S.nconns);
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->pid = 0;
		c->uid = (uid_t)-1;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0) {
			c->pid = cred.pid;
			c->uid = cred.uid;
		}
		c->ev.kind = EV_CONN;
		c->ev.owner = c;
		ev.events = EPOLLIN | EPOLLRDHUP;
		ev.data.ptr = &c->ev;
		if (epoll_ctl(S.epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			ld_log("error: epoll_ctl: %s", strerror(errno));
			close(fd);
			free(c);
			continue;
		}
		c->next = S.conns;
		S.conns = c;
		S.nconns++;
	}
}

static void on_pidfd(struct app *a)
{
	ld_log("app=%u name=%s pid=%d exited%s", a->id, a->name, (int)a->pid,
	       a->conn ? "; its lease stays until every holder of the control connection closes it" :
	       "");
	a->alive = false;
	epoll_del(a->pidfd);
	close(a->pidfd);
	a->pidfd = -1;
}

static void on_signal(void)
{
	struct signalfd_siginfo si;

	while (read(S.sig_fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			ld_log("signal %s from pid %u: shutting down", strsignal((int)si.ssi_signo),
			       si.ssi_pid);
			S.stop = true;
		}
	}
}

/* ------------------------------------------------------------------ */
/* Set-up and the loop                                                 */

static int mkdir_p(const char *dir, mode_t mode)
{
	char tmp[PATH_MAX];
	size_t len = strlen(dir);

	if (len == 0 || len >= sizeof(tmp))
		return -ENAMETOOLONG;
	memcpy(tmp, dir, len + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0) {
		if (errno != EEXIST)
			return -errno;
		return 0;
	}
	/* Created by us: make the mode exact whatever the umask is. */
	chmod(tmp, mode);
	return 0;
}

int server_listen(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[PATH_MAX];
	struct stat st;
	char *slash;
	int fd, e;

	if (!path || !*path) {
		snprintf(err, errlen, "no control socket path");
		return -EINVAL;
	}
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "control socket path %s is longer than %zu bytes", path,
			 sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		e = mkdir_p(dir, 0755);
		if (e) {
			snprintf(err, errlen, "cannot create %s: %s", dir, strerror(-e));
			return e;
		}
	}

	/* Is another librettod answering on this path? */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s exists and is not a socket; remove it or pass --control",
				 path);
			return -EEXIST;
		}
		fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			e = -errno;
			snprintf(err, errlen, "socket: %s", strerror(-e));
			return e;
		}
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			struct ucred cred = { 0 };
			socklen_t clen = sizeof(cred);

			getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen);
			close(fd);
			snprintf(err, errlen, "another librettod (pid %d) is already listening on %s",
				 (int)cred.pid, path);
			return -EADDRINUSE;
		}
		e = errno;
		close(fd);
		if (e != ECONNREFUSED) {
			snprintf(err, errlen, "cannot probe %s: %s", path, strerror(e));
			return -e;
		}
		if (unlink(path) < 0 && errno != ENOENT) {
			e = -errno;
			snprintf(err, errlen, "cannot remove the stale socket %s: %s", path, strerror(-e));
			return e;
		}
		ld_log("removed stale control socket %s", path);
	}

	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		e = -errno;
		snprintf(err, errlen, "socket: %s", strerror(-e));
		return e;
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		e = -errno;
		snprintf(err, errlen, "cannot bind %s: %s", path, strerror(-e));
		close(fd);
		return e;
	}
	/* Any local user may connect, and so lease a VF (see docs/librettod.md). */
	if (chmod(path, 0666) < 0 || listen(fd, 64) < 0) {
		e = -errno;
		snprintf(err, errlen, "cannot set up %s: %s", path, strerror(-e));
		close(fd);
		unlink(path);
		return e;
	}
	return fd;
}

/* ---- begin: supervisor restart (tag l, docs/librettod.md "Restart") ---- */

/*
 * How long a lease recovered from an earlier librettod's record waits for
 * its runtime's `reattach` (the runtime retries every 100 ms for a minute
 * after the old connection's EOF).
 */
#define RECOVER_GRACE_MS 10000

/* The record as last written, so that an unchanged registry is not rewritten. */
static char recover_last[CTL_MSG_MAX];
static size_t recover_last_len;
static bool recover_write_failed;

/*
 * Write the state record when the registry changed: netd's pid, then one
 * line per lease (oldest first), with what a successor needs to take the
 * lease back (persist.c).  Called after every batch of events.
 */
static void recover_save(void)
{
	static pid_t netd_pid;
	static unsigned long long netd_start;
	struct app *list[512];
	struct kv_buf b;
	int n = 0, err;
	pid_t np = netd_sup_pid();

	if (np != netd_pid) {
		netd_pid = np;
		netd_start = np > 0 ? proc_start_time(np) : 0;
	}
	kv_buf_init(&b, S.lines, sizeof(S.lines));
	kv_buf_add(&b, ' ', "librettod_pid", "%d", (int)getpid());
	kv_buf_add(&b, ' ', "netd_pid", "%d", (int)netd_pid);
	kv_buf_add(&b, ' ', "netd_start", "%llu", netd_start);
	kv_buf_add(&b, '\n', "next_id", "%u", S.next_id);
	for (struct app *a = S.apps; a && n < (int)(sizeof(list) / sizeof(list[0])); a = a->next)
		list[n++] = a;
	for (int i = n - 1; i >= 0; i--) {
		struct app *a = list[i];
		char ip[16];

		if (a->dead || !a->secret[0])
			continue;
		if (a->start_pid != a->pid) {
			a->start_pid = a->pid;
			a->start = proc_start_time(a->pid);
		}
		kv_buf_add(&b, ' ', "app", "%u", a->id);
		kv_buf_add(&b, ' ', "name", "%s", a->name);
		kv_buf_add(&b, ' ', "pid", "%d", (int)a->pid);
		kv_buf_add(&b, ' ', "start", "%llu", a->start);
		kv_buf_add(&b, ' ', "uid", "%u", (unsigned)a->uid);
		kv_buf_add(&b, ' ', "ip", "%s", ip_fmt(a->ip, ip));
		kv_buf_add(&b, ' ', "shared", "%d", a->shared_ip ? 1 : 0);
		kv_buf_add(&b, ' ', "mode", "%s", a->indirect ? "indirect" : "direct");
		kv_buf_add(&b, ' ', "vf", "%s", a->vf >= 0 ? vf_name(a->vf) : "-");
		kv_buf_add(&b, ' ', "backend", "%s", a->indirect ? "shm" :
			   proto_backend_name(a->dev.backend));
		kv_buf_add(&b, ' ', "switchable", "%d", a->switchable ? 1 : 0);
		kv_buf_add(&b, ' ', "auto", "%d", a->auto_mode ? 1 : 0);
		kv_buf_add(&b, ' ', "auto_high", "%u", a->auto_high);
		kv_buf_add(&b, ' ', "auto_low", "%u", a->auto_low);
		kv_buf_add(&b, ' ', "auto_dwell_ms", "%u", a->auto_dwell_ms);
		kv_buf_add(&b, '\n', "secret", "%s", a->secret);
	}
	if (!kv_buf_ok(&b)) {
		if (!recover_write_failed)
			ld_log("warning: the state record does not fit in %zu bytes; a restarted "
			       "librettod will not recover every lease", sizeof(S.lines));
		recover_write_failed = true;
		return;
	}
	if (b.len == recover_last_len && !memcmp(recover_last, b.p, b.len))
		return;
	err = persist_write(b.p, b.len);
	if (err) {
		if (!recover_write_failed)
			ld_log("warning: cannot write the state record %s: %s", persist_path(),
			       strerror(-err));
		recover_write_failed = true;
		return;
	}
	recover_write_failed = false;
	memcpy(recover_last, b.p, b.len);
	recover_last_len = b.len;
}

/* The VF slot named name, or -1. */
static int recover_vf_slot(const char *name)
{
	for (int i = 0; i < S.vfs.n; i++)
		if (!strcmp(S.vfs.slot[i].name, name))
			return i;
	return -1;
}

/*
 * At start-up: every lease of the earlier librettod's record becomes a
 * lease waiting for its runtime's `reattach`, holding its IP, its VF and
 * (through its ld_ind) its ports meanwhile.  One whose process is gone is
 * released at the first tick, which also undoes what it left behind (the
 * XSK program on its VF, its ports, netd's rings).
 */
static void recover_apps(void)
{
	const struct persist_rec *rec = persist_loaded();
	pid_t np = netd_sup_pid();
	bool netd_adopted = rec && np > 0 && np == rec->netd_pid;
	uint64_t now = now_ms();

	if (!rec)
		return;
	if (rec->next_id > S.next_id)
		S.next_id = rec->next_id;
	for (int i = 0; i < rec->napps; i++) {
		const struct persist_app *pa = &rec->apps[i];
		enum proto_backend be = !strcmp(pa->backend, "afpacket") ? PROTO_BACKEND_AFPACKET :
					PROTO_BACKEND_AFXDP;
		char why[256], ip[16];
		struct app *a;
		int err;

		if (app_by_id(pa->id)) {
			ld_log("recover: app=%u appears twice in the record; ignoring the second",
			       pa->id);
			continue;
		}
		a = calloc(1, sizeof(*a));
		if (!a) {
			ld_log("recover: out of memory for app=%u", pa->id);
			continue;
		}
		a->pidfd = -1;
		a->region_fd = -1;
		a->vf = -1;
		dev_init(&a->dev);
		a->id = pa->id;
		snprintf(a->name, sizeof(a->name), "%s", pa->name);
		a->pid = pa->pid;
		a->start = pa->start;
		a->start_pid = pa->pid;
		a->uid = pa->uid;
		a->ip = pa->ip;
		a->shared_ip = pa->shared_ip;
		a->indirect = pa->indirect;
		a->switchable = pa->switchable;
		a->auto_mode = pa->auto_mode;
		a->auto_high = pa->auto_high;
		a->auto_low = pa->auto_low;
		a->auto_dwell_ms = pa->auto_dwell_ms;
		memcpy(a->secret, pa->secret, sizeof(a->secret));
		if (!a->shared_ip && ip_pool_take(&S.ips, a->ip) < 0) {
			ld_log("recover: app=%u name=%s: ip %s is not in the pool (or taken twice); "
			       "not recovered", a->id, a->name, ip_fmt(a->ip, ip));
			free(a);
			continue;
		}
		if (pa->vf[0]) {
			int idx = recover_vf_slot(pa->vf);

			if (idx < 0 || S.vfs.slot[idx].owner) {
				ld_log("recover: app=%u name=%s: VF %s is not librettod's or taken "
				       "twice", a->id, a->name, pa->vf);
			} else if ((err = dev_adopt(&a->dev, pa->vf, be, -1, -1)) < 0) {
				ld_log("recover: app=%u name=%s: VF %s: %s", a->id, a->name, pa->vf,
				       strerror(-err));
			} else {
				a->vf = idx;
				S.vfs.slot[idx].owner = a->id;
			}
		}
		if (a->indirect) {
			uint8_t m[6];

			netd_sup_mac(m);
			memcpy(a->dev.mac, m, 6);
		}
		if ((a->indirect || a->switchable) && netd_sup_porttab() &&
		    ind_recover(a->id, a->name, a->ip, netd_adopted && a->indirect, &a->ind, why,
				sizeof(why)) < 0)
			ld_log("recover: app=%u name=%s: %s", a->id, a->name, why);
		a->awaiting = true;
		a->await_until = now + RECOVER_GRACE_MS;
		a->mode_since_ms = now;
		snprintf(a->mode_why, sizeof(a->mode_why), "recovered");
		a->next = S.apps;
		S.apps = a;
		S.napps++;
		a->pid_ev.kind = EV_PIDFD;
		a->pid_ev.owner = a;
		a->alive = proc_same(a->pid, a->start);
		if (a->alive) {
			a->pidfd = pidfd_open_pid(a->pid);
			if (a->pidfd >= 0) {
				struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &a->pid_ev };

				if (epoll_ctl(S.epfd, EPOLL_CTL_ADD, a->pidfd, &ev) < 0) {
					close(a->pidfd);
					a->pidfd = -1;
				}
			}
		}
		ld_log("recover: app=%u name=%s pid=%d (%s) mode=%s ip=%s vf=%s: %s", a->id, a->name,
		       (int)a->pid, a->alive ? "alive" : "gone", a->indirect ? "indirect" : "direct",
		       ip_fmt(a->ip, ip), a->vf >= 0 ? vf_name(a->vf) : "-",
		       a->alive ? "waiting for its runtime to re-attach" : "releasing it");
	}
}

/* Every POLICY_TICK_MS: recovered leases that are gone or did not come back. */
static void recover_tick(void)
{
	uint64_t now = now_ms();
	struct app *next;

	for (struct app *a = S.apps; a; a = next) {
		next = a->next;
		if (!a->awaiting || a->dead)
			continue;
		if (!a->alive)
			app_release(a, "recovered, but its process is gone");
		else if (now >= a->await_until)
			app_release(a, "recovered, but its runtime did not re-attach within the "
				    "grace period");
	}
}

/* Parse "N,N,..." (at most max numbers); how many, or -EINVAL. */
static int recover_fd_list(const char *s, int *out, int max)
{
	int n = 0;

	while (s && *s) {
		char *end;
		long v = strtol(s, &end, 10);

		if (end == s || v < 0 || v > INT32_MAX || n == max)
			return -EINVAL;
		out[n++] = (int)v;
		if (*end == ',')
			end++;
		else if (*end)
			return -EINVAL;
		s = end;
	}
	return n;
}

/*
 * "reattach id= secret= mode= fds=N,... region=N" from a runtime whose
 * lease connection reached EOF (librettod restarted).  The descriptor
 * numbers are the sender's: librettod copies them with pidfd_getfd() (it is
 * root), checks them and takes the lease back on this connection.
 */
static void cmd_reattach(struct conn *c, const struct kv *req)
{
	const char *mode = kv_get(req, "mode"), *secret = kv_get(req, "secret");
	int nums[CTL_MAX_FDS], got[CTL_MAX_FDS], n, ngot = 0, pidfd = -1, rfd = -1, err;
	struct libretto_region *r = NULL;
	unsigned long id = 0, region = 0;
	bool to_indirect;
	struct app *a;
	char why[256];

	if (kv_get_ulong(req, "id", &id) < 0 || kv_get_ulong(req, "region", &region) < 0 ||
	    region > INT32_MAX || !mode || (strcmp(mode, "direct") && strcmp(mode, "indirect")) ||
	    (n = recover_fd_list(kv_get(req, "fds"), nums, CTL_MAX_FDS)) < 0) {
		reply_err(c, EINVAL, "reattach needs id=, secret=, mode=direct|indirect, fds=N,... "
			  "and region=N");
		return;
	}
	a = app_by_id((unsigned)id);
	if (c->app) {
		reply_err(c, EALREADY, "this connection already holds lease app=%u", c->app->id);
		return;
	}
	if (!a || !a->awaiting || !persist_secret_eq(secret, a->secret) ||
	    (c->uid != 0 && c->uid != a->uid)) {
		ld_log("reattach app=%lu from pid=%d uid=%u refused: %s", id, (int)c->pid,
		       (unsigned)c->uid, !a ? "no such lease" : !a->awaiting ? "not waiting" :
		       "wrong secret or uid");
		reply_err(c, EACCES, "no lease app=%lu waits for this reattach (unknown id, not "
			  "recovered, or wrong secret)", id);
		return;
	}
	to_indirect = !strcmp(mode, "indirect");
	if ((to_indirect && (!a->ind || n != 3)) ||
	    (!to_indirect && (a->vf < 0 || n != (a->dev.backend == PROTO_BACKEND_AFPACKET ? 1 : 2)))) {
		snprintf(why, sizeof(why), "mode=%s with %d descriptors does not match the "
			 "recovered lease (vf=%s, rings=%s)", mode, n, a->vf >= 0 ? vf_name(a->vf) : "-",
			 a->ind ? "yes" : "no");
		goto refuse;
	}
	pidfd = pidfd_open_pid(c->pid);
	if (pidfd < 0) {
		snprintf(why, sizeof(why), "pidfd_open(%d): %s", (int)c->pid, strerror(-pidfd));
		goto refuse;
	}
	rfd = persist_getfd(pidfd, (int)region);
	for (; ngot < n; ngot++) {
		got[ngot] = persist_getfd(pidfd, nums[ngot]);
		if (got[ngot] < 0)
			break;
	}
	if (rfd < 0 || ngot < n) {
		snprintf(why, sizeof(why), "cannot take the descriptors back from pid %d: %s",
			 (int)c->pid, strerror(-(rfd < 0 ? rfd : got[ngot])));
		goto refuse;
	}
	{
		struct stat st;

		if (fstat(rfd, &st) < 0 || st.st_size != LIBRETTO_REGION_SIZE ||
		    (r = mmap(NULL, LIBRETTO_REGION_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, rfd,
			      0)) == MAP_FAILED || r->magic != LIBRETTO_REGION_MAGIC) {
			if (r && r != MAP_FAILED)
				munmap(r, LIBRETTO_REGION_SIZE);
			r = NULL;
			snprintf(why, sizeof(why), "region=%lu is not a libretto region", region);
			goto refuse;
		}
	}
	if (to_indirect) {
		err = ind_adopt_rings(a->ind, got[0], got[1], got[2], why, sizeof(why));
		ngot = 0;          /* owned (or closed) by ind_adopt_rings */
		if (err)
			goto refuse;
	} else {
		int xsk = got[0], umem = n > 1 ? got[1] : -1;
		int dom = -1;
		socklen_t dl = sizeof(dom);

		getsockopt(xsk, SOL_SOCKET, SO_DOMAIN, &dom, &dl);
		if (dom != (a->dev.backend == PROTO_BACKEND_AFPACKET ? AF_PACKET : AF_XDP)) {
			snprintf(why, sizeof(why), "the path's first descriptor is not the %s "
				 "socket", proto_backend_name(a->dev.backend));
			goto refuse;
		}
		err = dev_adopt(&a->dev, vf_name(a->vf), a->dev.backend, xsk, umem);
		ngot = 0;          /* owned (or closed) by dev_adopt */
		if (err) {
			snprintf(why, sizeof(why), "VF %s: %s", vf_name(a->vf), strerror(-err));
			goto refuse;
		}
	}
	a->indirect = to_indirect;
	a->region_fd = rfd;
	a->region = r;
	a->awaiting = false;
	a->conn = c;
	c->app = a;
	a->peer_ino = conn_peer_ino(c->fd);
	if (a->pid != c->pid) {
		/* Another process of the application runs the stack now. */
		if (a->pidfd >= 0) {
			epoll_del(a->pidfd);
			close(a->pidfd);
		}
		a->pid = c->pid;
		a->pidfd = pidfd;
		pidfd = -1;
		{
			struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &a->pid_ev };

			if (epoll_ctl(S.epfd, EPOLL_CTL_ADD, a->pidfd, &ev) < 0) {
				close(a->pidfd);
				a->pidfd = -1;
			}
		}
		a->alive = true;
	}
	if (pidfd >= 0)
		close(pidfd);
	snprintf(a->mode_why, sizeof(a->mode_why), "reattached");
	ld_log("reattach app=%u name=%s pid=%d mode=%s ip=%s vf=%s: the lease is back on a new "
	       "connection", a->id, a->name, (int)a->pid, mode, ip_fmt(a->ip, why),
	       a->vf >= 0 ? vf_name(a->vf) : "-");
	send_reply(c, "errno=0\n", 8, NULL, 0);
	return;
refuse:
	for (int i = 0; i < ngot; i++)
		close(got[i]);
	if (r)
		munmap(r, LIBRETTO_REGION_SIZE);
	if (rfd >= 0)
		close(rfd);
	if (pidfd >= 0)
		close(pidfd);
	ld_log("reattach app=%u name=%s from pid=%d refused: %s", a->id, a->name, (int)c->pid, why);
	reply_err(c, EPROTO, "reattach app=%u: %s", a->id, why);
}
/* ---- end: supervisor restart ---- */

static int server_setup(const struct ld_config *cfg, int listen_fd)
{
	struct epoll_event ev;
	sigset_t set;
	int err;

	S.cfg = cfg;
	S.listen_fd = listen_fd;
	S.sig_fd = -1;
	S.timer_fd = -1;
	S.policy_fd = -1;
	S.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (S.epfd < 0)
		return -errno;
	err = ip_pool_init(&S.ips, cfg->pool_first, cfg->pool_last);
	if (err)
		return err;
	err = vf_pool_init(&S.vfs, cfg->vfs, cfg->nvfs);
	if (err)
		return err;
	S.vf_released_ms = calloc((size_t)S.vfs.n, sizeof(*S.vf_released_ms));
	if (!S.vf_released_ms)
		return -ENOMEM;
	S.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (S.timer_fd < 0)
		return -errno;
	S.policy_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (S.policy_fd < 0)
		return -errno;
	{
		struct itimerspec its = {
			.it_value.tv_nsec = POLICY_TICK_MS * 1000000L,
			.it_interval.tv_nsec = POLICY_TICK_MS * 1000000L,
		};

		if (timerfd_settime(S.policy_fd, 0, &its, NULL) < 0)
			return -errno;
	}
	/* main.c filled in the defaults (--auto-*, the config file). */
	S.auto_high = cfg->auto_high;
	S.auto_low = cfg->auto_low;
	S.auto_dwell_ms = cfg->auto_dwell_ms;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	S.sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (S.sig_fd < 0)
		return -errno;

	S.listen_ev.kind = EV_LISTEN;
	ev.events = EPOLLIN;
	ev.data.ptr = &S.listen_ev;
	if (epoll_ctl(S.epfd, EPOLL_CTL_ADD, listen_fd, &ev) < 0)
		return -errno;
	S.sig_ev.kind = EV_SIGNAL;
	ev.data.ptr = &S.sig_ev;
	if (epoll_ctl(S.epfd, EPOLL_CTL_ADD, S.sig_fd, &ev) < 0)
		return -errno;
	S.timer_ev.kind = EV_TIMER;
	ev.data.ptr = &S.timer_ev;
	if (epoll_ctl(S.epfd, EPOLL_CTL_ADD, S.timer_fd, &ev) < 0)
		return -errno;
	S.policy_ev.kind = EV_POLICY;
	ev.data.ptr = &S.policy_ev;
	if (epoll_ctl(S.epfd, EPOLL_CTL_ADD, S.policy_fd, &ev) < 0)
		return -errno;
	/* netd supervision (tag s): its pidfd and timer behind one descriptor. */
	if (netd_sup_fd() >= 0) {
		S.netd_ev.kind = EV_NETD;
		ev.data.ptr = &S.netd_ev;
		if (epoll_ctl(S.epfd, EPOLL_CTL_ADD, netd_sup_fd(), &ev) < 0)
			return -errno;
	}
	/* fsd supervision (tag v3): its pidfd, timers and control socket behind one descriptor. */
	if (fsd_sup_fd() >= 0) {
		S.fsd_ev.kind = EV_FSD;
		ev.data.ptr = &S.fsd_ev;
		if (epoll_ctl(S.epfd, EPOLL_CTL_ADD, fsd_sup_fd(), &ev) < 0)
			return -errno;
	}
	recover_apps();                      /* tag l */
	recover_save();
	return 0;
}

static void server_teardown(void)
{
	/* tag l: an orderly stop leaves nothing to recover. */
	persist_remove();
	/* netd first (tag s): it stops using the NIC before anything goes. */
	netd_sup_stop();
	while (S.apps)
		app_release(S.apps, "librettod shutting down");
	/* tag v3: after the leases (their sessions closed), fsd unmounts what is left. */
	fsd_sup_stop();
	while (S.conns)
		conn_close(S.conns, "librettod shutting down");
	graveyard_free();
	if (S.listen_fd >= 0) {
		close(S.listen_fd);
		unlink(S.cfg->control);
	}
	S.listen_fd = -1;
	if (S.sig_fd >= 0)
		close(S.sig_fd);
	if (S.timer_fd >= 0)
		close(S.timer_fd);
	S.timer_fd = -1;
	if (S.policy_fd >= 0)
		close(S.policy_fd);
	S.policy_fd = -1;
	free(S.vf_released_ms);
	S.vf_released_ms = NULL;
	if (S.epfd >= 0)
		close(S.epfd);
	ip_pool_fini(&S.ips);
	vf_pool_fini(&S.vfs);
}

int server_run(const struct ld_config *cfg, int listen_fd)
{
	struct epoll_event evs[32];
	int err;

	err = server_setup(cfg, listen_fd);
	if (err) {
		ld_log("error: event loop set-up failed: %s", strerror(-err));
		server_teardown();
		return err;
	}
	while (!S.stop) {
		int n = epoll_wait(S.epfd, evs, 32, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			ld_log("error: epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n && !S.stop; i++) {
			struct ev *e = evs[i].data.ptr;

			switch (e->kind) {
			case EV_LISTEN:
				on_listen();
				break;
			case EV_SIGNAL:
				on_signal();
				break;
			case EV_CONN: {
				struct conn *c = e->owner;

				if (!c->dead)
					on_conn(c);
				break;
			}
			case EV_TIMER:
				on_timer();
				break;
			case EV_NETD:        /* tag s */
				netd_sup_on_event();
				break;
			case EV_FSD:         /* tag v3 */
				fsd_sup_on_event();
				break;
			case EV_POLICY:
				on_policy();
				recover_tick();      /* tag l */
				break;
			case EV_PIDFD: {
				struct app *a = e->owner;

				if (!a->dead && a->pidfd >= 0)
					on_pidfd(a);
				break;
			}
			}
		}
		graveyard_free();
		recover_save();              /* tag l */
	}
	server_teardown();
	ld_log("stopped");
	return err;
}
