/* librettod's indirect-mode leases: each application's ring region and
 * doorbells handed to libretto-netd, and its entries in the port table. */
#include "librettod/librettod.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "common/kv.h"
#include "common/porttab.h"
#include "libretto/netd.h"
#include "libretto/region.h"
#include "libretto/ring.h"
#include "librettod/pool.h"

/*
 * The ports one application may hold.  The runtime registers one entry per
 * (proto, port) it binds, so this bounds the sockets of distinct ports, not
 * the sockets: a client's connections each take an ephemeral port, so it is
 * as large as the runtime's own claim table (STACK_MAX_CLAIMS).  `ps` shows
 * the first REGION_MAX_PORTS of them.
 */
#define IND_MAX_PORTS 4096

struct ind_port {
	uint32_t ip;       /* host byte order, the lease's address */
	uint16_t port;
	uint8_t proto;     /* IPPROTO_TCP, IPPROTO_UDP */
};

struct ld_ind {
	unsigned id;                 /* the app id, also the port table's */
	char name[PROTO_NAME_MAX];
	uint32_t ip;                 /* host byte order */
	int ring_fd, efd_netd, efd_app;
	void *mem;                   /* librettod's own mapping of the region */
	size_t len;
	bool added;                  /* the running netd has it (app_add answered 0) */
	struct ind_port ports[IND_MAX_PORTS];
	int nports;
	struct ld_ind *next;
};

/* Every open indirect lease, so that a restarted netd gets them all back. */
static struct ld_ind *ind_list;

/* "app_add" of x to the running netd; 0 or -errno with the reason in err. */
static int ind_app_add(struct ld_ind *x, char *err, size_t errlen)
{
	char text[128], ip[16];
	int fds[3] = { x->ring_fd, x->efd_netd, x->efd_app };
	int e;

	snprintf(text, sizeof(text), "app_add\nid=%u\nips=%s\n", x->id, ip_fmt(x->ip, ip));
	e = netd_sup_request(text, fds, 3, err, errlen);
	if (e == 0)
		x->added = true;
	return e;
}

/* The ring region: a memfd laid out by ring_region_init(), size-sealed. */
static int ind_region_create(struct ld_ind *x)
{
	size_t len = ring_region_size(LD_IND_NFRAMES, LD_IND_FRAME_SIZE, LD_IND_RING_SIZE);
	int fd, err;
	void *mem;

	if (len == 0)
		return -EINVAL;
	/*
	 * The seals keep the application from truncating the region under
	 * netd (SIGBUS in the server) or growing it; F_SEAL_SEAL keeps it from
	 * adding F_SEAL_WRITE, which would fail netd's writable mapping.
	 */
	err = ld_sealed_map("libretto-ring", len, &fd, &mem);
	if (err)
		return err;
	err = ring_region_init(mem, len, LD_IND_NFRAMES, LD_IND_FRAME_SIZE, LD_IND_RING_SIZE);
	if (err) {
		munmap(mem, len);
		close(fd);
		return err;
	}
	x->ring_fd = fd;
	x->mem = mem;
	x->len = len;
	return 0;
}

/* The ring region and doorbells (not the ports). */
static void ind_rings_free(struct ld_ind *x)
{
	if (x->mem)
		munmap(x->mem, x->len);
	if (x->ring_fd >= 0)
		close(x->ring_fd);
	if (x->efd_netd >= 0)
		close(x->efd_netd);
	if (x->efd_app >= 0)
		close(x->efd_app);
	x->mem = NULL;
	x->ring_fd = x->efd_netd = x->efd_app = -1;
}

static void ind_free(struct ld_ind *x)
{
	ind_rings_free(x);
	free(x);
}

/* A fresh ring region and doorbells, handed to netd with app_add. */
static int ind_rings_open(struct ld_ind *x, char *err, size_t errlen)
{
	int e = ind_region_create(x);

	if (e) {
		snprintf(err, errlen, "cannot create the ring region: %s", strerror(-e));
		return e;
	}
	x->efd_netd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	x->efd_app = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (x->efd_netd < 0 || x->efd_app < 0) {
		e = -errno;
		snprintf(err, errlen, "cannot create the doorbells: %s", strerror(-e));
		ind_rings_free(x);
		return e;
	}
	e = ind_app_add(x, err, errlen);
	if (e)
		ind_rings_free(x);
	return e;
}

int ind_open(unsigned id, const char *name, uint32_t ip, bool attach, struct ld_ind **out,
	     char *err, size_t errlen)
{
	struct ld_ind *x = calloc(1, sizeof(*x));
	int e;

	if (!x) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	x->id = id;
	snprintf(x->name, sizeof(x->name), "%s", name);
	x->ip = ip;
	x->ring_fd = x->efd_netd = x->efd_app = -1;
	if (attach) {
		e = ind_rings_open(x, err, errlen);
		if (e) {
			free(x);
			return e;
		}
	}
	x->next = ind_list;
	ind_list = x;
	*out = x;
	return 0;
}

bool ind_attached(const struct ld_ind *x)
{
	return x->mem != NULL;
}

int ind_attach(struct ld_ind *x, char *err, size_t errlen)
{
	if (x->mem) {
		snprintf(err, errlen, "the application already has its rings");
		return -EALREADY;
	}
	return ind_rings_open(x, err, errlen);
}

void ind_detach(struct ld_ind *x)
{
	char text[64], err[160];
	int e;

	if (x->added) {
		snprintf(text, sizeof(text), "app_del\nid=%u\n", x->id);
		e = netd_sup_request(text, NULL, 0, err, sizeof(err));
		if (e && e != -ENETDOWN)
			ld_log("app=%u: netd refused app_del: %s", x->id, err);
		x->added = false;
	}
	ind_rings_free(x);
}

int ind_fds(const struct ld_ind *x, int fds[3])
{
	fds[0] = x->ring_fd;
	fds[1] = x->efd_netd;
	fds[2] = x->efd_app;
	return 3;
}

/*
 * The connections still listed in the application's region belong to a
 * process that died without closing them: netd probes their peers, whose
 * challenge ACKs then reach a port nobody owns and are answered with a RST
 * (netd.h, `reap`).  The ports must be gone from the table first.
 */
static bool ind_reap(const struct ld_ind *x, const struct libretto_region *r)
{
	char text[4096], err[160];
	size_t used;
	uint32_t hwm;
	int n = 0;

	if (r == NULL)
		return false;
	used = (size_t)snprintf(text, sizeof(text), "reap\nconns=");
	hwm = __atomic_load_n(&r->conn_hwm, __ATOMIC_RELAXED);
	if (hwm > REGION_MAX_CONNS)
		hwm = REGION_MAX_CONNS;
	for (uint32_t i = 0; i < hwm && used + 48 < sizeof(text); i++) {
		const struct region_conn *e = &r->conns[i];
		uint32_t lip, rip;
		uint16_t lp, rp;

		if (__atomic_load_n(&e->valid, __ATOMIC_ACQUIRE) != REGION_CONN_VALID)
			continue;
		lip = ntohl(__atomic_load_n(&e->local_ip, __ATOMIC_RELAXED));
		rip = ntohl(__atomic_load_n(&e->remote_ip, __ATOMIC_RELAXED));
		lp = __atomic_load_n(&e->local_port, __ATOMIC_RELAXED);
		rp = __atomic_load_n(&e->remote_port, __ATOMIC_RELAXED);
		/* Only the application's own address, only real peers. */
		if (lip != x->ip || lp == 0 || rp == 0 || rip == 0 || (rip >> 24) == 127 ||
		    (rip >> 28) >= 14)
			continue;
		used += (size_t)snprintf(text + used, sizeof(text) - used,
					 "%s%u.%u.%u.%u:%u-%u.%u.%u.%u:%u", n ? "," : "",
					 lip >> 24, (lip >> 16) & 255, (lip >> 8) & 255, lip & 255, lp,
					 rip >> 24, (rip >> 16) & 255, (rip >> 8) & 255, rip & 255, rp);
		n++;
	}
	if (n == 0)
		return false;
	used += (size_t)snprintf(text + used, sizeof(text) - used, "\n");
	if (netd_sup_request(text, NULL, 0, err, sizeof(err)) == 0) {
		ld_log("app=%u name=%s: %d connection%s left open: netd probes their peers", x->id,
		       x->name, n, n == 1 ? "" : "s");
		return true;
	}
	ld_log("app=%u: netd could not reset the peers of %d connections: %s", x->id, n, err);
	return false;
}

void ind_close(struct ld_ind *x, const struct libretto_region *r)
{
	struct porttab *pt = netd_sup_porttab();
	struct ld_ind **pp;
	char text[64], err[160];
	int n = 0, e;

	if (!x)
		return;
	for (pp = &ind_list; *pp; pp = &(*pp)->next) {
		if (*pp == x) {
			*pp = x->next;
			break;
		}
	}
	/* Ports first: from now on netd drops the application's traffic and
	 * resets what comes for its connections. */
	if (pt)
		n = porttab_remove_all(pt, x->id);
	/* The peers' answers to the probes must still find netd serving the
	 * address (a dedicated one goes with app_del): give them a moment. */
	if (x->added && ind_reap(x, r)) {
		struct timespec ts = { 0, 50 * 1000000L };

		nanosleep(&ts, NULL);
	}
	if (x->added) {
		snprintf(text, sizeof(text), "app_del\nid=%u\n", x->id);
		e = netd_sup_request(text, NULL, 0, err, sizeof(err));
		/* A netd that is not running has forgotten the application anyway. */
		if (e && e != -ENETDOWN)
			ld_log("app=%u: netd refused app_del: %s", x->id, err);
	}
	ld_log("app=%u name=%s: indirect lease closed, %d port table entr%s removed", x->id,
	       x->name, n, n == 1 ? "y" : "ies");
	ind_free(x);
}

static int ind_port_find(const struct ld_ind *x, uint32_t ip, uint8_t proto, uint16_t port)
{
	for (int i = 0; i < x->nports; i++)
		if (x->ports[i].ip == ip && x->ports[i].proto == proto && x->ports[i].port == port)
			return i;
	return -1;
}

static const struct ld_ind *ind_by_id(unsigned id)
{
	for (const struct ld_ind *o = ind_list; o; o = o->next)
		if (o->id == id)
			return o;
	return NULL;
}

int ind_port(struct ld_ind *x, const struct kv *req, uid_t uid, char *err, size_t errlen)
{
	struct porttab *pt = netd_sup_porttab();
	const char *op = kv_get(req, "op"), *pr = kv_get(req, "proto"), *v;
	unsigned long port;
	char *end = NULL;
	uint32_t ip = x->ip;
	uint8_t proto;
	char ipbuf[16];
	bool add;
	int i, e;

	if (op && !strcmp(op, "add")) {
		add = true;
	} else if (op && !strcmp(op, "del")) {
		add = false;
	} else {
		snprintf(err, errlen, "port needs op=add or op=del");
		return -EINVAL;
	}
	if (pr && !strcmp(pr, "tcp")) {
		proto = IPPROTO_TCP;
	} else if (pr && !strcmp(pr, "udp")) {
		proto = IPPROTO_UDP;
	} else {
		snprintf(err, errlen, "port needs proto=tcp or proto=udp");
		return -EINVAL;
	}
	/* Not kv_get_ulong(): the command line itself is the first key "port". */
	v = NULL;
	for (i = 1; i < req->n && !v; i++)
		if (!strcmp(req->pair[i].key, "port"))
			v = req->pair[i].value;
	port = v && *v >= '0' && *v <= '9' ? strtoul(v, &end, 10) : 0;
	if (!v || *end || port == 0 || port > 65535) {
		snprintf(err, errlen, "port needs port=N, 1..65535");
		return -EINVAL;
	}
	/*
	 * "any" is the lease's own address, never the table's wildcard: two
	 * applications on different addresses may then use the same port.
	 */
	v = kv_get(req, "ip");
	if (v && strcmp(v, "any") != 0) {
		if (ip_parse(v, &ip) < 0) {
			snprintf(err, errlen, "ip=%.32s is not an IPv4 address (A.B.C.D or any)", v);
			return -EINVAL;
		}
		if (ip != x->ip) {
			snprintf(err, errlen, "ip=%s is not this application's address %s", v,
				 ip_fmt(x->ip, ipbuf));
			return -EADDRNOTAVAIL;
		}
	}
	if (!pt) {
		snprintf(err, errlen, "librettod has no port table");
		return -ENETDOWN;
	}
	i = ind_port_find(x, ip, proto, (uint16_t)port);
	if (!add) {
		if (i < 0) {
			snprintf(err, errlen, "%s:%lu is not registered by this application", pr, port);
			return -ENOENT;
		}
		e = porttab_remove(pt, ip, proto, (uint16_t)port, x->id);
		if (e)
			ld_log("app=%u: port table remove of %s:%lu: %s (registry bug)", x->id, pr,
			       port, strerror(-e));
		x->ports[i] = x->ports[--x->nports];
		return 0;
	}
	/* The runtime counts its own binds: one entry per port is enough here. */
	if (i >= 0)
		return 0;
	/*
	 * As the kernel does for bind(): on an address other users share, a
	 * privileged port must not go to whoever asks first.
	 */
	if (port < 1024 && uid != 0) {
		snprintf(err, errlen, "%s:%lu: ports below 1024 need root (uid %u is not)", pr, port,
			 (unsigned)uid);
		return -EACCES;
	}
	if (x->nports == IND_MAX_PORTS) {
		snprintf(err, errlen, "this application already holds %d ports", IND_MAX_PORTS);
		return -ENOSPC;
	}
	e = porttab_insert(pt, ip, proto, (uint16_t)port, x->id);
	if (e == -EADDRINUSE) {
		unsigned holder = porttab_lookup(pt, ip, proto, (uint16_t)port);
		const struct ld_ind *o = ind_by_id(holder);

		snprintf(err, errlen, "%s:%lu on %s is in use by app=%u (%s)", pr, port,
			 ip_fmt(ip, ipbuf), holder, o ? o->name : "?");
		return e;
	}
	if (e) {
		snprintf(err, errlen, "cannot add %s:%lu to the port table: %s", pr, port,
			 strerror(-e));
		return e;
	}
	x->ports[x->nports].ip = ip;
	x->ports[x->nports].proto = proto;
	x->ports[x->nports].port = (uint16_t)port;
	x->nports++;
	return 0;
}

void ind_fmt_ports(const struct ld_ind *x, char *buf, size_t len)
{
	struct region_port rp[REGION_MAX_PORTS];
	int n = x->nports < REGION_MAX_PORTS ? x->nports : REGION_MAX_PORTS;

	for (int i = 0; i < n; i++) {
		rp[i].port = x->ports[i].port;
		rp[i].proto = x->ports[i].proto == IPPROTO_TCP ? REGION_PROTO_TCP : REGION_PROTO_UDP;
		rp[i].state = 1;
	}
	proto_fmt_ports(rp, (uint32_t)n, buf, len);
}

void ind_netd_up(void)
{
	char err[160];

	/*
	 * The new netd knows nothing: give it every region back.  Their ring
	 * indices stay where the old netd left them; netd bumps each region's
	 * generation, which tells the runtime to resynchronise.
	 */
	for (struct ld_ind *x = ind_list; x; x = x->next) {
		x->added = false;
		if (!x->mem)
			continue;	/* a switchable application in direct mode */
		if (ind_app_add(x, err, sizeof(err)) == 0)
			ld_log("app=%u name=%s: handed back to the new netd", x->id, x->name);
		else
			ld_log("error: app=%u name=%s: the new netd refused app_add: %s; the "
			       "application gets no traffic", x->id, x->name, err);
	}
}

void ind_netd_down(void)
{
	for (struct ld_ind *x = ind_list; x; x = x->next) {
		struct ring_region_hdr *h = x->mem;

		x->added = false;
		if (!h)
			continue;
		__atomic_and_fetch(&h->flags, ~RING_REGION_F_NETD_UP, __ATOMIC_RELEASE);
	}
}

/* ---- begin: supervisor restart (tag l) ---- */

int ind_recover(unsigned id, const char *name, uint32_t ip, bool netd_has, struct ld_ind **out,
		char *err, size_t errlen)
{
	struct porttab *pt = netd_sup_porttab();
	struct ld_ind *x;
	int e = ind_open(id, name, ip, false, &x, err, errlen);

	if (e)
		return e;
	/*
	 * The port table outlived the old librettod (netd maps it): the
	 * entries owned by this app id are its ports.  Only librettod writes
	 * the table, so nothing changes it while we read.
	 */
	for (uint32_t i = 0; pt && i < pt->capacity && x->nports < IND_MAX_PORTS; i++) {
		const struct porttab_entry *ent = &pt->ents[i];

		if (ent->state != PORTTAB_LIVE || ent->app_id != id)
			continue;
		x->ports[x->nports].ip = ent->ip;
		x->ports[x->nports].port = ent->port;
		x->ports[x->nports].proto = ent->proto;
		x->nports++;
	}
	x->added = netd_has;
	*out = x;
	return 0;
}

int ind_adopt_rings(struct ld_ind *x, int ring_fd, int efd_netd, int efd_app, char *err,
		    size_t errlen)
{
	size_t len = ring_region_size(LD_IND_NFRAMES, LD_IND_FRAME_SIZE, LD_IND_RING_SIZE);
	struct stat st;
	void *mem;
	int seals;

	if (x->mem) {
		snprintf(err, errlen, "the application already has its rings");
		goto fail;
	}
	/* The application handed these back: check they are what we made. */
	seals = fcntl(ring_fd, F_GET_SEALS);
	if (fstat(ring_fd, &st) < 0 || (size_t)st.st_size != len || seals < 0 ||
	    (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW)) {
		snprintf(err, errlen, "the ring descriptor is not a sealed ring region of %zu bytes",
			 len);
		goto fail;
	}
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, ring_fd, 0);
	if (mem == MAP_FAILED) {
		snprintf(err, errlen, "cannot map the ring region: %s", strerror(errno));
		goto fail;
	}
	x->ring_fd = ring_fd;
	x->efd_netd = efd_netd;
	x->efd_app = efd_app;
	x->mem = mem;
	x->len = len;
	if (!x->added) {
		int e = ind_app_add(x, err, errlen);

		if (e) {
			ind_rings_free(x);
			return e;
		}
	}
	return 0;
fail:
	close(ring_fd);
	close(efd_netd);
	close(efd_app);
	return -EINVAL;
}
/* ---- end: supervisor restart ---- */
