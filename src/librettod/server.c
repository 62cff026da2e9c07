/* librettod's control socket, application registry and event loop. */
#include "librettod/librettod.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>

#include "common/kv.h"
#include "libretto/ctl.h"
#include "libretto/region.h"
#include "librettod/pool.h"
#include "librettod/proto.h"

/* Bounds that keep one misbehaving local user from exhausting the daemon. */
#define SERVER_MAX_CONNS 256
#define SERVER_MSGS_PER_WAKEUP 16

enum ev_kind { EV_LISTEN, EV_SIGNAL, EV_CONN, EV_PIDFD };

/* What an epoll event points at. */
struct ev {
	enum ev_kind kind;
	void *owner;
};

struct app;

/* One accepted control connection; a lease once it has registered. */
struct conn {
	struct ev ev;
	int fd;
	pid_t pid;                 /* SO_PEERCRED at accept time */
	uid_t uid;
	struct app *app;           /* the lease this connection holds, or NULL */
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
	bool dead;
	struct app *next;
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
	struct conn *dead_conns;
	struct app *dead_apps;
	bool stop;
	char in[CTL_MSG_MAX];
	char out[CTL_MSG_MAX];
	char lines[CTL_MSG_MAX];
} S;

static const char *vf_name(int idx)
{
	return S.vfs.slot[idx].name;
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
static void reply_err(struct conn *c, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void reply_err(struct conn *c, int errnum, const char *fmt, ...)
{
	char text[512];
	struct kv_buf b;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	for (char *p = text; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	kv_buf_init(&b, S.out, sizeof(S.out));
	kv_buf_add(&b, '\n', "error", "%s", text);
	kv_buf_add(&b, '\n', "errno", "%d", errnum);
	send_reply(c, S.out, b.len, NULL, 0);
}

/* ------------------------------------------------------------------ */
/* Registry                                                            */

static void epoll_del(int fd)
{
	epoll_ctl(S.epfd, EPOLL_CTL_DEL, fd, NULL);
}

static void app_release(struct app *a, const char *reason)
{
	struct app **pp;
	char ip[16];

	ld_log("release app=%u name=%s pid=%d ip=%s vf=%s backend=%s reason=%s",
	       a->id, a->name, (int)a->pid, ip_fmt(a->ip, ip), vf_name(a->vf),
	       proto_backend_name(a->dev.backend), reason);
	dev_close(&a->dev);
	if (ip_pool_put(&S.ips, a->ip) < 0)
		ld_log("error: app=%u ip %s was not taken (registry bug)", a->id, ip);
	S.vfs.slot[a->vf].owner = 0;
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

static void conn_close(struct conn *c, const char *reason)
{
	struct conn **pp;

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
 * backend=afxdp never falls back.  On failure msg holds the sentence.
 */
static int open_backend(struct ld_dev *d, const char *ifname, enum proto_backend want,
			char *fallback, size_t fblen, char *msg, size_t msglen)
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
	char text[512];
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

static void cmd_register(struct conn *c, const struct kv *req)
{
	const struct ld_config *cfg = S.cfg;
	struct proto_register r;
	char err_text[600], ip[16], a_ip[16], b_ip[16], mac[18];
	struct app *a;
	struct kv_buf b;
	const char *names[CTL_MAX_FDS];
	int fds[CTL_MAX_FDS], nfds, err, idx;

	if (c->app) {
		reply_err(c, EALREADY, "this connection already holds lease app=%u; "
			  "use a new connection for another application", c->app->id);
		return;
	}
	err = proto_parse_register(req, &r, err_text, sizeof(err_text));
	if (err) {
		register_refused(c, kv_get(req, "name") ? kv_get(req, "name") : "-", -err,
				 "%s", err_text);
		return;
	}
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
		err = ip_pool_take_any(&S.ips, &a->ip);
		if (err) {
			register_refused(c, r.name, EADDRNOTAVAIL,
					 "no free IP: all %u addresses of the pool %s-%s are leased (libretto ps)",
					 ip_pool_size(&S.ips), a_ip, b_ip);
			goto fail_free;
		}
	} else {
		err = ip_pool_take(&S.ips, r.ip);
		if (err == -EADDRNOTAVAIL) {
			register_refused(c, r.name, EADDRNOTAVAIL, "ip=%s is not in the pool %s-%s",
					 ip_fmt(r.ip, ip), a_ip, b_ip);
			goto fail_free;
		}
		if (err == -EADDRINUSE) {
			struct app *o = app_by_ip(r.ip);

			register_refused(c, r.name, EADDRINUSE, "ip=%s is already leased by app=%u (%s)",
					 ip_fmt(r.ip, ip), o ? o->id : 0, o ? o->name : "?");
			goto fail_free;
		}
		a->ip = r.ip;
	}

	/* The VF and its NIC access. */
	if (!r.vf_auto) {
		idx = vf_pool_find(&S.vfs, r.vf);
		if (idx < 0) {
			char list[256];

			vf_list_text(list, sizeof(list));
			register_refused(c, r.name, ENODEV, "vf=%s is not one of librettod's VFs (%s)",
					 r.vf, list);
			goto fail_ip;
		}
		if (S.vfs.slot[idx].owner) {
			struct app *o = app_by_id(S.vfs.slot[idx].owner);

			register_refused(c, r.name, EBUSY, "vf=%s is already leased by app=%u (%s)",
					 r.vf, S.vfs.slot[idx].owner, o ? o->name : "?");
			goto fail_ip;
		}
		err = open_backend(&a->dev, r.vf, r.backend, a->fallback_reason,
				   sizeof(a->fallback_reason), err_text, sizeof(err_text));
	} else {
		idx = vf_pool_next_free(&S.vfs, 0);
		if (idx < 0) {
			register_refused(c, r.name, EBUSY, "no free VF: %d of %d are leased (libretto ps)",
					 vf_pool_used(&S.vfs), S.vfs.n);
			goto fail_ip;
		}
		/*
		 * A VF whose queue is still held by a former lessee's AF_XDP
		 * socket answers EBUSY; with vf=auto try the next free one.
		 */
		for (;;) {
			int next;

			err = open_backend(&a->dev, vf_name(idx), r.backend, a->fallback_reason,
					   sizeof(a->fallback_reason), err_text, sizeof(err_text));
			if (err != -EBUSY)
				break;
			next = vf_pool_next_free(&S.vfs, idx + 1);
			if (next < 0)
				break;
			ld_log("vf=auto: %s is busy (%s); trying %s", vf_name(idx), err_text,
			       vf_name(next));
			idx = next;
		}
	}
	if (err) {
		register_refused(c, r.name, -err, "%s", err_text);
		goto fail_ip;
	}
	a->vf = idx;

	/* The shared region. */
	err = region_create(a->name, &a->region_fd, &a->region);
	if (err) {
		register_refused(c, r.name, -err, "cannot create the shared region: %s", strerror(-err));
		goto fail_dev;
	}

	a->id = ++S.next_id;
	a->conn = c;
	c->app = a;
	S.vfs.slot[idx].owner = a->id;
	a->next = S.apps;
	S.apps = a;
	S.napps++;
	a->alive = true;
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
	return;

fail_dev:
	dev_close(&a->dev);
fail_ip:
	ip_pool_put(&S.ips, a->ip);
fail_free:
	free(a);
}

/* ------------------------------------------------------------------ */
/* ps, status, shutdown                                                */

static uint64_t rd64(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* One "app=..." line; returns its length, or 0 if it did not fit. */
static size_t ps_line(const struct app *a, char *buf, size_t len)
{
	const struct libretto_region *r = a->region;
	struct region_port snap[REGION_MAX_PORTS];
	char ports[REGION_MAX_PORTS * 12 + 2], ip[16], mac[18];
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
	n = snprintf(buf, len,
		     "app=%u name=%s pid=%d alive=%d mode=direct ip=%s mac=%s vf=%s backend=%s "
		     "rx_packets=%llu rx_bytes=%llu tx_packets=%llu tx_bytes=%llu ports=%s\n",
		     a->id, a->name, (int)a->pid, a->alive ? 1 : 0, ip_fmt(a->ip, ip),
		     proto_fmt_mac(a->dev.mac, mac), vf_name(a->vf),
		     proto_backend_name(a->dev.backend),
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
	kv_buf_add(&b, '\n', "errno", "0");
	if (!kv_buf_ok(&b)) {
		reply_err(c, EMSGSIZE, "the status reply does not fit in one message");
		return;
	}
	send_reply(c, S.out, b.len, NULL, 0);
}

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
	else
		reply_err(c, EINVAL, "unknown command '%.40s' (register, ps, status, shutdown)", cmd);
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

static int server_setup(const struct ld_config *cfg, int listen_fd)
{
	struct epoll_event ev;
	sigset_t set;
	int err;

	S.cfg = cfg;
	S.listen_fd = listen_fd;
	S.sig_fd = -1;
	S.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (S.epfd < 0)
		return -errno;
	err = ip_pool_init(&S.ips, cfg->pool_first, cfg->pool_last);
	if (err)
		return err;
	err = vf_pool_init(&S.vfs, cfg->vfs, cfg->nvfs);
	if (err)
		return err;

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
	return 0;
}

static void server_teardown(void)
{
	while (S.apps)
		app_release(S.apps, "librettod shutting down");
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
			case EV_PIDFD: {
				struct app *a = e->owner;

				if (!a->dead && a->pidfd >= 0)
					on_pidfd(a);
				break;
			}
			}
		}
		graveyard_free();
	}
	server_teardown();
	ld_log("stopped");
	return err;
}
